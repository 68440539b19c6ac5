"""The wheel: metadata (version, license, dependencies, extras), contents, and dependencies that match the imports."""
import ast
import email.parser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import ndpatch

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Modules that only an extra brings, and that extra.
OPTIONAL_IMPORTS = {"torch": "torch", "lightning": "lightning", "webdataset": "export", "tfrecord": "export",
                    "pytest": "tests", "hypothesis": "tests", "distributed": "dask", "dask": "dask"}
#: Imported but deliberately not a pip dependency: GDAL's bindings match the system GDAL (README).
SYSTEM_IMPORTS = {"osgeo"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a copy of the sources (no network, no build isolation)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "ndpatch", src / "ndpatch", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    (path,) = dist.glob("ndpatch-*.whl")
    return zipfile.ZipFile(path)


def metadata(wheel: zipfile.ZipFile):
    return email.parser.Parser().parsestr(wheel.read(f"ndpatch-{ndpatch.__version__}.dist-info/METADATA").decode())


def requirements(meta) -> dict[str, set[str]]:
    """Requirement names by extra ('' for the base dependencies)."""
    by_extra: dict[str, set[str]] = {}
    for line in meta.get_all("Requires-Dist"):
        req = Requirement(line)
        extra = str(req.marker).split("==")[1].strip(" '\"") if req.marker else ""
        by_extra.setdefault(extra, set()).add(canonicalize_name(req.name))
    return by_extra


def test_wheel_metadata(wheel):
    meta = metadata(wheel)
    assert meta["Name"] == "ndpatch" and meta["Version"] == ndpatch.__version__
    assert meta["License-Expression"] == "Apache-2.0" and meta["Requires-Python"] == ">=3.11"
    names = wheel.namelist()
    assert f"ndpatch-{ndpatch.__version__}.dist-info/licenses/LICENSE" in names
    assert "Apache License" in wheel.read(f"ndpatch-{ndpatch.__version__}.dist-info/licenses/LICENSE").decode()
    assert "ndpatch/py.typed" in names
    entry_points = wheel.read(f"ndpatch-{ndpatch.__version__}.dist-info/entry_points.txt").decode()
    assert "ndpatch = ndpatch.cli:main" in entry_points
    assert meta.get_payload().startswith("# ndpatch")  # the README is the long description


def test_wheel_holds_every_module(wheel):
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "ndpatch").rglob("*.py")}
    assert modules <= set(wheel.namelist())


def test_wheel_dependencies_and_extras(wheel):
    by_extra = requirements(metadata(wheel))
    declared = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert by_extra[""] == declared
    assert {"numpy", "kwcoco", "kwimage", "delayed-image", "shapely", "opencv-python-headless", "pyyaml"} <= declared
    assert "gdal" not in set().union(*by_extra.values())  # a system prerequisite, not something pip builds
    extras = PYPROJECT["tool"]["ndpatch"]["extras"]
    assert {"torch", "export", "tests"} <= set(extras)
    assert set(by_extra) == {"", "all", *extras}
    for name, reqs in extras.items():
        assert by_extra[name] == {canonicalize_name(Requirement(r).name) for r in reqs}
    assert by_extra["all"] == set().union(*(by_extra[name] for name in extras))
    assert {"webdataset", "tfrecord"} <= by_extra["export"] and "torch" in by_extra["torch"]


def third_party_imports() -> dict[str, set[str]]:
    """Top-level names of the modules ndpatch imports (absolute imports outside ndpatch and the stdlib) → importers."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "ndpatch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "ndpatch" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_import_is_a_declared_dependency(wheel):
    by_extra = requirements(metadata(wheel))
    distributions = importlib.metadata.packages_distributions()
    for module, importers in third_party_imports().items():
        if module in SYSTEM_IMPORTS:
            continue
        names = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert names, f"{module} (imported by {sorted(importers)}) is not installed"
        extra = OPTIONAL_IMPORTS.get(module, "")
        assert names & by_extra[extra], f"{module} (imported by {sorted(importers)}) is not in the {extra or 'base'} dependencies"


def test_requirements_pins_satisfy_the_declared_ranges():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    declared = [*PYPROJECT["project"]["dependencies"], *sum(PYPROJECT["tool"]["ndpatch"]["extras"].values(), [])]
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "torch":  # installed by the Makefile (the local CPU wheel), not from requirements.txt
            (version,) = set(re.findall(r"torch==([\w.+]+)", (ROOT / "Makefile").read_text()))
            assert req.specifier.contains(version), f"the Makefile installs torch=={version}, outside {req}"
            continue
        assert name in pins, f"{name} is not pinned in requirements.txt"
        assert req.specifier.contains(pins[name]), f"requirements.txt pins {name}=={pins[name]}, outside {req}"


def test_import_without_gdal_bindings_says_how_to_install_them(tmp_path):
    # A stand-in osgeo package that fails to import, first on the path: as when the bindings are missing.
    (tmp_path / "osgeo").mkdir()
    (tmp_path / "osgeo" / "__init__.py").write_text("raise ImportError('No module named osgeo._gdal')\n")
    done = subprocess.run([sys.executable, "-c", "import ndpatch"], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ndpatch needs GDAL's Python bindings")
    assert 'pip install --no-build-isolation "GDAL==$(gdal-config --version)"' in last
    assert "apt-get install libgdal-dev gdal-bin" in last and "osgeo._gdal" in last


def test_changelog_has_this_version():
    assert f"## [{ndpatch.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
