"""An export killed with SIGKILL part-way and resumed equals an uninterrupted export."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
from osgeo import gdal

from ndpatch.cli import main
from ndpatch.demo import make_dataset

SCRIPT = """
import sys
from ndpatch.export import export
export(sys.argv[1], sys.argv[2], format="chips", window=6, progress=False)
"""


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    dset = make_dataset(tmp_path / "src", [{"shape": (72, 78, 3), "dtype": "uint8"},
                                           {"shape": (48, 54), "dtype": "uint16"}])
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, dset.fpath, str(killed)])
    parts = killed / ".ndpatch-export" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("*.json"))) >= 3:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists(), "the export finished before it could be killed"
    assert main(["export", dset.fpath, str(killed), "--window", "6", "--resume"]) == 0
    assert main(["export", dset.fpath, str(whole), "--window", "6"]) == 0
    assert (killed / "chips.csv").read_text() == (whole / "chips.csv").read_text()
    for kind in ("images", "labels"):
        names = sorted(p.name for p in (whole / kind).iterdir())
        assert sorted(p.name for p in (killed / kind).iterdir() if not p.name.startswith(".")) == names
        for name in names:
            a, b = gdal.Open(str(killed / kind / name)), gdal.Open(str(whole / kind / name))
            np.testing.assert_array_equal(a.ReadAsArray(), b.ReadAsArray())
    assert not [p for p in killed.rglob("*.tmp-*")], "temp files of the killed run are removed on resume"
