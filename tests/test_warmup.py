"""`ndpatch warmup` and `ndpatch cache info|verify|clear`, and the docs/cache.md example."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ndpatch.cli import main
from ndpatch.demo import make_dataset
from ndpatch.sampler import CocoSampler
from ndpatch.warmup import warmup

SPECS = [{"shape": (120, 100, 3), "dtype": "uint8"}, {"shape": (60, 80), "dtype": "uint16"},
         {"shape": (50, 40), "dtype": "uint8", "driver": "PNG"}]


@pytest.fixture
def dset(tmp_path):
    return make_dataset(tmp_path / "data", SPECS)


def test_warmup_cli_converts_in_parallel_then_does_nothing(dset, tmp_path, capsys):
    workdir = str(tmp_path / "cache")
    args = ["warmup", dset.fpath, "--backend", "cog", "--workers", "2", "--workdir", workdir]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 images: 3 converted, 0 already cached, 0 failed" in out
    assert float(re.search(r"([\d.]+) [kMG]?B written", out).group(1)) > 0
    assert main(args) == 0
    assert "3 images: nothing to do, all already cached" in capsys.readouterr().out
    sampler = CocoSampler(dset.fpath, workdir=workdir, backend="cog")
    assert not any(sampler.entry(gid).meta["converted"] for gid in (1, 2, 3))
    assert main(["cache", "info", "--workdir", workdir]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "cog: 3 entries (0 read in place)" in out


def test_warmup_reports_failures_with_reasons(dset, tmp_path):
    missing = CocoSampler(dset).index.source(2).path
    os.unlink(missing)
    summary = warmup(dset, backend="npy", workdir=str(tmp_path / "cache"), workers=0, progress=False)
    assert (summary.converted, summary.cached, list(summary.failed)) == (2, 0, [2])
    assert "image 2" in summary.failed[2] and missing in summary.failed[2]
    assert f"failed: {summary.failed[2]}" in str(summary)


def test_cache_verify_finds_and_deletes_a_truncated_entry_and_clear_empties(dset, tmp_path, capsys):
    workdir = str(tmp_path / "cache")
    warmup(dset, backend="npy", workdir=workdir, workers=0, progress=False)
    path = CocoSampler(dset, workdir=workdir, backend="npy").entry(1).path
    with open(path, "r+b") as file:
        file.truncate(100)
    assert main(["cache", "verify", "--workdir", workdir]) == 1
    assert "corrupt" in capsys.readouterr().out
    assert main(["cache", "verify", "--workdir", workdir, "--delete"]) == 1
    assert main(["cache", "verify", "--workdir", workdir]) == 0
    assert "2 of 2 entries ok" in capsys.readouterr().out
    assert main(["cache", "clear", "--workdir", workdir]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert list(Path(workdir, "entries").iterdir()) == []


def test_cache_verify_quick_reads_no_pixels_and_full_finds_a_bit_flip(dset, tmp_path, capsys):
    workdir = str(tmp_path / "cache")
    warmup(dset, backend="npy", workdir=workdir, workers=0, progress=False)
    path = CocoSampler(dset, workdir=workdir, backend="npy").entry(1).path
    with open(path, "r+b") as file:  # one pixel's bit, far from the header: sizes and headers still agree
        file.seek(-7, os.SEEK_END)
        byte = file.read(1)
        file.seek(-7, os.SEEK_END)
        file.write(bytes([byte[0] ^ 1]))
    assert main(["cache", "verify", "--quick", "--workdir", workdir]) == 0
    assert "3 of 3 entries ok" in capsys.readouterr().out
    assert main(["cache", "verify", "--workdir", workdir]) == 1
    out = capsys.readouterr().out
    assert "corrupt" in out and "2 of 3 entries ok" in out


def test_cache_dir_defaults_to_env_var(dset, tmp_path, monkeypatch):
    monkeypatch.setenv("NDPATCH_CACHE", str(tmp_path / "env-cache"))
    entry = CocoSampler(dset, backend="npy").entry(1)
    assert Path(entry.path).parent == tmp_path / "env-cache" / "entries"


#: Makes every npy conversion of a process started with this on PYTHONPATH wait first (workers included).
SLOW_CONVERSIONS = '''
import os
if os.environ.get("NDPATCH_TEST_CONVERT_DELAY"):
    import time
    import ndpatch.cache.npy as npy
    convert = npy.convert_to_npy
    def slow(*args, **kwargs):
        time.sleep(float(os.environ["NDPATCH_TEST_CONVERT_DELAY"]))
        return convert(*args, **kwargs)
    npy.convert_to_npy = slow
'''


def start_slow_warmup(dset, tmp_path, delay: float) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """``python -m ndpatch warmup`` with 2 workers whose conversions take ``delay`` s; returns it and its workers."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_CONVERSIONS)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "NDPATCH_TEST_CONVERT_DELAY": str(delay)}
    leader = subprocess.Popen([sys.executable, "-m", "ndpatch", "warmup", dset.fpath, "--backend", "npy",
                               "--workers", "2", "--workdir", str(tmp_path / "cache")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = [p for p in psutil.Process(leader.pid).children(recursive=True)
                   if p.parent() is not None and p.parent().pid != leader.pid]  # the forkserver's children
        if len(workers) == 2:
            return leader, workers
        time.sleep(0.05)
    leader.kill()
    raise AssertionError("the warmup never started its 2 workers")


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(120)
def test_sigkill_of_the_leader_leaves_no_worker_running(dset, tmp_path):
    leader, workers = start_slow_warmup(dset, tmp_path, delay=60)
    descendants = psutil.Process(leader.pid).children(recursive=True)  # workers, forkserver, tracker
    time.sleep(0.5)  # the workers are inside a conversion now
    leader.send_signal(signal.SIGKILL)
    leader.wait()
    deadline = time.monotonic() + 5
    while not all(gone(p) for p in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.pid for p in descendants if not gone(p)] == []
    assert len(workers) == 2


@pytest.mark.timeout(120)
def test_a_dead_worker_fails_its_images_with_a_reason_not_a_traceback(dset, tmp_path):
    leader, workers = start_slow_warmup(dset, tmp_path, delay=3)
    workers[0].send_signal(signal.SIGKILL)
    out, err = leader.communicate(timeout=100)
    assert leader.returncode == 1, err
    assert "BrokenProcessPool" not in out + err and "Traceback" not in err
    assert "a warmup worker process died (killed by a signal, or out of memory)" in out
    assert re.search(r"3 images: \d converted, 0 already cached, [1-3] failed", out)
