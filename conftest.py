"""Test-run set-up shared by tests/ and the package's doctests: a hermetic per-user cache.

Before anything computes a cache path, the per-user caches (``XDG_CACHE_HOME``:
kwcoco's demo data; ``NDPATCH_CACHE``: ndpatch's default cache) point at one new
temporary folder for the whole run, removed at the end: nothing a user or another
run reads is written, and nothing they wrote is read. kwcoco's demo datasets that
the suite and the docstrings use are made once here, at the start (their progress
output would otherwise land in whichever doctest first asks for them).
"""
import contextlib
import io
import os
import shutil
import tempfile

HERMETIC_ROOT = tempfile.mkdtemp(prefix="ndpatch-tests-")
os.environ["XDG_CACHE_HOME"] = os.path.join(HERMETIC_ROOT, "xdg-cache")
os.environ["NDPATCH_CACHE"] = os.path.join(HERMETIC_ROOT, "ndpatch-cache")
# albumentations (docs/torch.md's examples) asks PyPI for a newer version on import: not from the tests.
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

#: kwcoco demo datasets made before the first test (keys and keyword arguments as the tests use them).
DEMO_DATASETS = [("shapes2", {}), ("shapes8", {}), ("vidshapes2", {}), ("vidshapes8-multispectral", {})]


def pytest_sessionstart(session):
    import kwcoco
    with contextlib.redirect_stdout(io.StringIO()):
        for key, kwargs in DEMO_DATASETS:
            kwcoco.CocoDataset.demo(key, verbose=0, **kwargs)


def pytest_unconfigure(config):
    shutil.rmtree(HERMETIC_ROOT, ignore_errors=True)
