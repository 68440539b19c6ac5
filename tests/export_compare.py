"""Helpers of the export tests: compare two export folders file for file, run an export in a subprocess."""
import json
import subprocess
import sys
import time
from pathlib import Path

from osgeo import gdal

#: summary.json keys that say how a run went rather than what it wrote.
RUN_KEYS = ("elapsed_s", "resumed_blocks", "redone_blocks", "workers")


def output_files(out: Path) -> list[str]:
    """Every file of an export folder outside its state folder, as sorted relative paths."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and ".ndpatch-export" not in p.parts)


def assert_same_export(got: Path, expected: Path) -> None:
    """Same files with the same bytes (summary.json: same content apart from how the run went)."""
    assert output_files(got) == output_files(expected)
    for name in output_files(expected):
        if name == "summary.json":
            a, b = (json.loads((root / name).read_text()) for root in (got, expected))
            assert {k: v for k, v in a.items() if k not in RUN_KEYS} == \
                   {k: v for k, v in b.items() if k not in RUN_KEYS}
        else:
            assert (got / name).read_bytes() == (expected / name).read_bytes(), name
    for name in output_files(expected):
        if name.endswith(".tif"):  # and GDAL sees the same rasters (pixels, georeferencing)
            a, b = gdal.Open(str(got / name)), gdal.Open(str(expected / name))
            assert (a.ReadRaster(), a.GetGeoTransform(), a.GetProjection()) == \
                   (b.ReadRaster(), b.GetGeoTransform(), b.GetProjection())


def snapshot(out: Path) -> dict:
    """Every file under ``out`` (state folder included) with its inode, size, mtime and bytes."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            stat = p.stat()
            files[str(p.relative_to(out))] = (stat.st_ino, stat.st_size, stat.st_mtime_ns, p.read_bytes())
    return files


def start_cli_export(*args: str) -> subprocess.Popen:
    """``python -m ndpatch export ARGS`` in its own process (stderr kept for a failure message)."""
    return subprocess.Popen([sys.executable, "-m", "ndpatch", "export", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0, what: str = "the export") -> None:
    """Poll ``condition()`` until true; fail if ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"{what} ended (exit {proc.returncode}) before the test could act: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not get there in {timeout} s")
        time.sleep(0.002)


def parts(out: Path) -> int:
    folder = out / ".ndpatch-export" / "parts"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0
