"""The suite never reads or writes a per-user cache: the top-level conftest.py points them at this run's temp folder."""
import os
import tempfile
from pathlib import Path

import ndpatch
from ndpatch.cache.store import cache_root
from ndpatch.demo import kwcoco_demo


def run_root() -> Path:
    """The run's temporary folder that both per-user caches live in."""
    xdg, ours = Path(os.environ["XDG_CACHE_HOME"]), Path(os.environ["NDPATCH_CACHE"])
    assert xdg.parent == ours.parent
    root = xdg.parent
    assert root.parent == Path(tempfile.gettempdir()) and root.name.startswith("ndpatch-tests-")
    return root


def test_per_user_caches_point_into_this_runs_temp_folder():
    root = run_root()
    assert root.is_dir()
    assert cache_root().is_relative_to(root)
    assert not Path.home().joinpath(".cache").is_relative_to(root)


def test_kwcoco_demo_data_and_default_cache_are_inside_it():
    root = run_root()
    assert Path(kwcoco_demo("shapes2").fpath).is_relative_to(root)
    entry = ndpatch.CocoSampler.demo("shapes2", backend="npy").entry(1)
    assert Path(entry.path).is_relative_to(root)
