"""Warmup and export on a Dask LocalCluster of 2 worker processes: exactly once, bit-exact, worker deaths.

Conversions are counted by a ``sitecustomize`` on the workers' PYTHONPATH (the
workers are spawned processes: they inherit the environment, not this
process's patches): each npy conversion appends its source to a log file, and
waits ``NDPATCH_TEST_CONVERT_DELAY`` seconds first when that is set.
"""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ndpatch
from export_compare import assert_same_export
from ndpatch.cache import CacheStore
from ndpatch.cli import main
from ndpatch.demo import make_dataset
from ndpatch.distributed import environ_kept
from ndpatch.export import export
from ndpatch.warmup import warmup

distributed = pytest.importorskip("distributed")

N_IMAGES = 8

COUNTED_CONVERSIONS = '''
import os
if os.environ.get("NDPATCH_TEST_CONVERSION_LOG"):
    import time
    import ndpatch.cache.npy as npy
    convert = npy.convert_to_npy
    def counted(source, *args, **kwargs):
        with open(os.environ["NDPATCH_TEST_CONVERSION_LOG"], "a") as log:
            log.write(f"{os.getpid()} start {source.path}\\n")
        time.sleep(float(os.environ.get("NDPATCH_TEST_CONVERT_DELAY", "0")))
        result = convert(source, *args, **kwargs)
        with open(os.environ["NDPATCH_TEST_CONVERSION_LOG"], "a") as log:
            log.write(f"{os.getpid()} done {source.path}\\n")
        return result
    npy.convert_to_npy = counted
'''


@pytest.fixture(scope="module")
def dset(tmp_path_factory):
    specs = [{"shape": (90 + 7 * i, 110, 3), "dtype": "uint8"} for i in range(N_IMAGES)]
    specs[3] = {"shape": (64, 80), "dtype": "uint16", "nodata": 0}
    return make_dataset(tmp_path_factory.mktemp("dask-data"), specs)


@pytest.fixture(scope="module")
def conversion_log(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(COUNTED_CONVERSIONS)
    log = site / "conversions.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
        patch.setenv("NDPATCH_TEST_CONVERSION_LOG", str(log))
        yield log


@pytest.fixture(scope="module")
def client(conversion_log):
    """A LocalCluster of 2 single-threaded worker processes (started after the log is in the environment).

    Dask's defaults, as a user's own cluster has them; its nanny's variables leave this process's
    environment afterwards, so that processes later tests start do not inherit them."""
    with environ_kept(), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


# A lambda travels by value (cloudpickle); os.environ's bound methods would carry a copy of this
# process's environment and change that copy, not the worker's.
set_worker_env = lambda name, value: (os.environ.pop(name, None) if value is None  # noqa: E731
                                      else os.environ.__setitem__(name, value))


def log_lines(log: Path, what: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in log.read_text().splitlines() if line.split(" ", 2)[1] == what] \
        if log.exists() else []


def test_a_local_cluster_converts_every_image_exactly_once(dset, client, conversion_log, tmp_path):
    conversion_log.unlink(missing_ok=True)
    workdir = str(tmp_path / "cache")
    summary = warmup(dset.fpath, backend="npy", workdir=workdir, client=client, progress=False)
    assert (summary.converted, summary.cached, summary.failed) == (N_IMAGES, 0, {})
    done = log_lines(conversion_log, "done")
    assert sorted(done) == sorted(ndpatch.CocoSampler(dset).index.source(g).path for g in dset.imgs)
    pids = {line.split()[0] for line in conversion_log.read_text().splitlines()}
    assert len(pids) == 2 and str(os.getpid()) not in pids           # both workers converted, not this process
    direct = ndpatch.CocoSampler(dset.fpath)
    cached = ndpatch.CocoSampler(dset.fpath, backend="npy", workdir=workdir)
    for gid in dset.imgs:
        window = {"gid": gid, "space_slice": (slice(-3, 70), slice(10, 120))}
        assert not cached.entry(gid).meta["converted"]
        np.testing.assert_array_equal(cached.load_sample(window)["im"], direct.load_sample(window)["im"])
    again = warmup(dset.fpath, backend="npy", workdir=workdir, client=client, progress=False)
    assert (again.converted, again.cached) == (0, N_IMAGES)
    assert len(log_lines(conversion_log, "done")) == N_IMAGES        # the second run converted nothing


def test_two_warmups_at_once_on_one_cache_convert_each_image_once(dset, client, conversion_log, tmp_path):
    conversion_log.unlink(missing_ok=True)
    workdir = str(tmp_path / "cache")
    sources = [ndpatch.CocoSampler(dset).index.source(g) for g in sorted(dset.imgs)]
    from ndpatch.warmup import convert_one
    futures = client.map(convert_one, sources + sources, backend="npy", workdir=workdir, options={}, pure=False)
    results = client.gather(futures)
    assert sum(converted for _, converted, _, _ in results) == N_IMAGES
    assert sorted(log_lines(conversion_log, "done")) == sorted(s.path for s in sources)


@contextlib.contextmanager
def a_converting_worker_killed(client, conversion_log: Path, monkeypatch):
    """Within the block, SIGKILL the first worker seen starting a conversion; yields the killed source paths."""
    conversion_log.unlink(missing_ok=True)
    monkeypatch.setenv("NDPATCH_TEST_CONVERT_DELAY", "0.5")
    client.run(set_worker_env, "NDPATCH_TEST_CONVERT_DELAY", "0.5")  # the running workers too
    killed = []

    def kill_a_converting_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            started = [line.split() for line in (conversion_log.read_text().splitlines()
                                                 if conversion_log.exists() else []) if " start " in line]
            if started:
                pid, _, path = started[0]
                os.kill(int(pid), signal.SIGKILL)
                killed.append(path)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_converting_worker)
    killer.start()
    try:
        yield killed
    finally:
        killer.join()
        client.run(set_worker_env, "NDPATCH_TEST_CONVERT_DELAY", None)
    assert len(killed) == 1


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_conversion_loses_nothing(dset, client, conversion_log, tmp_path, monkeypatch):
    workdir = str(tmp_path / "cache")
    with a_converting_worker_killed(client, conversion_log, monkeypatch) as killed:
        summary = warmup(dset.fpath, backend="npy", workdir=workdir, client=client, progress=False)
    # Dask ran the killed image again elsewhere (or, had every try died, the summary names it)
    assert summary.converted + len(summary.failed) == N_IMAGES
    assert all("image" in reason and "died" in reason for reason in summary.failed.values())
    if not summary.failed:  # the retry removed the killed attempt's temp file under the entry's lock
        assert CacheStore(workdir).temp_files() == []
    direct = ndpatch.CocoSampler(dset.fpath, backend=None)
    cached = ndpatch.CocoSampler(dset.fpath, backend="npy", workdir=workdir)
    for gid in dset.imgs:                         # every entry that is served is whole and exact
        window = {"gid": gid, "space_slice": (slice(0, 60), slice(0, 80))}
        np.testing.assert_array_equal(cached.load_sample(window)["im"], direct.load_sample(window)["im"])
    assert summary.failed or killed[0] in log_lines(conversion_log, "done")


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_export_leaves_the_export_a_local_run_makes(dset, client, conversion_log, tmp_path,
                                                                         monkeypatch):
    """The export's blocks convert their images on the workers (a fresh cache): one worker dies in a conversion."""
    kwargs = {"format": "chips", "window": 48, "progress": False, "backend": "npy"}
    with a_converting_worker_killed(client, conversion_log, monkeypatch):
        on_dask = export(dset.fpath, tmp_path / "dask", client=client, workdir=str(tmp_path / "c1"), **kwargs)
    local = export(dset.fpath, tmp_path / "local", workers=1, workdir=str(tmp_path / "c2"), **kwargs)
    assert on_dask["chips"] == local["chips"]
    assert_same_export(tmp_path / "dask", tmp_path / "local")
    assert CacheStore(str(tmp_path / "c1")).temp_files() == []


def test_export_on_dask_equals_a_local_export_and_resumes_exactly(dset, client, tmp_path):
    kwargs = {"format": "chips", "window": 48, "progress": False, "backend": "npy", "workdir": str(tmp_path / "c")}
    on_dask = export(dset.fpath, tmp_path / "dask", client=client, **kwargs)
    local = export(dset.fpath, tmp_path / "local", workers=1, **kwargs)
    assert on_dask["chips"] == local["chips"] and on_dask["workers"] == "dask"
    assert_same_export(tmp_path / "dask", tmp_path / "local")
    parts = sorted((tmp_path / "dask" / ".ndpatch-export" / "parts").iterdir())
    parts[1].unlink()                                  # as if the export had been killed before block 1 finished
    resumed = export(dset.fpath, tmp_path / "dask", client=client, resume=True, **kwargs)
    assert (resumed["resumed_blocks"], resumed["blocks"]) == (local["blocks"] - 1, local["blocks"])
    assert_same_export(tmp_path / "dask", tmp_path / "local")


def test_cli_dask_local_cluster(dset, tmp_path, capsys):
    workdir = str(tmp_path / "cache")
    assert main(["warmup", dset.fpath, "--backend", "npy", "--dask", "local:1", "--workdir", workdir]) == 0
    assert f"{N_IMAGES} converted" in capsys.readouterr().out
    options = ["--format", "chips", "--window", "48", "--backend", "npy", "--workdir", workdir]
    assert main(["export", dset.fpath, str(tmp_path / "dask"), *options, "--dask", "local:1"]) == 0
    assert main(["export", dset.fpath, str(tmp_path / "local"), *options, "--workers", "1"]) == 0
    assert_same_export(tmp_path / "dask", tmp_path / "local")
    with pytest.raises(SystemExit):
        main(["warmup", dset.fpath, "--dask", "local:0"])
    with pytest.raises(SystemExit):
        main(["warmup", dset.fpath, "--dask", "local:2", "--workers", "2"])


def test_a_worker_dying_as_a_run_starts_does_not_fail_it(monkeypatch):
    """Small task arguments go with each task; a scatter whose worker dies is tried again."""
    from distributed.comm.core import CommClosedError

    from ndpatch import distributed as ndpatch_distributed

    class FlakyClient:
        tries = 0

        def scatter(self, values, broadcast, hash):
            self.tries += 1
            if self.tries < ndpatch_distributed.SCATTER_TRIES:
                raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")
            return ["future"]

    monkeypatch.setattr(ndpatch_distributed.time, "sleep", lambda seconds: None)
    client = FlakyClient()
    assert ndpatch_distributed._scatter(client, b"x") == "future"
    assert client.tries == ndpatch_distributed.SCATTER_TRIES
    spec = {"dataset": "/data/train.kwcoco.json", "out_dir": "/exports/a", "window": (256, 256)}
    assert ndpatch_distributed._cheap(spec) and not ndpatch_distributed._cheap(bytes(1 << 20))


LOCAL_CLUSTER_ENVIRONMENT = '''
import os
from ndpatch.distributed import connect
if __name__ == "__main__":
    before = dict(os.environ)
    with connect("local:2") as client:
        seen = client.run(lambda dask_worker: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                               os.environ.get("OMP_NUM_THREADS"),
                                               "profile" in dask_worker.periodic_callbacks,
                                               dask_worker.periodic_callbacks["tick"].callback_time))
    assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
    print(sorted(seen.values()))
'''


@pytest.mark.timeout(120)
def test_local_cluster_workers_keep_glibc_adaptive_and_this_process_environment(tmp_path):
    """'local:N' workers start without Dask's MALLOC_TRIM_THRESHOLD_ (it slowed conversions 2.2x),
    without its profiler (~10% of a conversion's CPU) and with a 1 s event-loop tick; the variables
    Dask's nanny writes into this process's environment are put back (a fresh process: the
    forkserver and the environment are per process)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}
    assert last_line_printed(tmp_path, LOCAL_CLUSTER_ENVIRONMENT, env=env) == "[(None, '1', False, 1000), (None, '1', False, 1000)]"


def last_line_printed(tmp_path, script: str, *args: str, env: dict | None = None) -> str:
    """Run ``script`` as the main module of a fresh Python process in ``tmp_path``; the last line it printed."""
    path = tmp_path / "script.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split("\n")[-2]


FORK_SERVER_PRELOAD = '''
import sys
from ndpatch.distributed import connect
from ndpatch.workers import process_pool


def imported():
    return "colorsys" in sys.modules, "wave" in sys.modules


if __name__ == "__main__":
    assert "colorsys" not in sys.modules
    if sys.argv[1] == "pool":
        with process_pool(1, preload=("colorsys",)) as pool:
            print(pool.submit(imported).result())
    else:
        with connect("local:1", preload=("colorsys",)) as client:
            print(*client.run(imported).values())
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", ["pool", "local:1"])
def test_workers_start_with_the_preloaded_modules_imported(tmp_path, workers):
    """Pool and 'local:N' workers fork from a server that imported what their tasks need (else ~0.5 s
    each on its first task); a module no one asked for is not there (a fresh process each: the fork server
    is per process, and Dask would otherwise start it with its own list)."""
    assert last_line_printed(tmp_path, FORK_SERVER_PRELOAD, workers) == "(True, False)"
