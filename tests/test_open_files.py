"""Open files stay within a per-process budget, whatever the number of threads and images.

The big case runs in a subprocess whose soft ``RLIMIT_NOFILE`` is 256 (set before
ndpatch is imported, so its budget follows): 16 threads read 150 images each, 600
in all, on the direct and the npy backends, and every window must be exact.
"""
import json
import os
import subprocess
import sys
import threading

import kwcoco
import numpy as np
import pytest

import ndpatch
from ndpatch import gdalio
from ndpatch.cache.npy import MEMMAPS
from ndpatch.demo import write_raster
from ndpatch.errors import CorruptCacheError

MANY_THREADS = r'''
import json, os, resource, sys, threading
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
import kwcoco, numpy as np
import ndpatch
from ndpatch import gdalio
from ndpatch.cache.npy import MEMMAPS
from ndpatch.demo import write_raster

root, n_images, n_threads = sys.argv[1], 600, 16
dset = kwcoco.CocoDataset()
for k in range(n_images):
    pixels = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) + 7 * k).astype(np.uint16)
    dset.add_image(file_name=write_raster(f"{root}/img_{k:03d}.tif", pixels), width=10, height=12)

def open_descriptors():
    return len(os.listdir("/proc/self/fd"))

baseline = open_descriptors()
report = {"budget": gdalio.OPEN_FILES_BUDGET, "baseline": baseline}
for name, backend in (("direct", None), ("npy", "npy")):  # npy: converting as it reads
    sampler = ndpatch.CocoSampler(dset, workdir=f"{root}/cache", backend=backend)
    peak, wrong, errors = [0], [], []

    def work(offset):  # 150 images per thread, every image read by at least one thread
        try:
            for k in range(n_images // 4):
                gid = (offset + k) % n_images + 1
                im = sampler.load_sample({"gid": gid, "space_slice": (slice(2, 9), slice(1, 10))},
                                         with_annots=False)["im"]
                expected = (np.arange(120).reshape(12, 10)[2:9, 1:10] + 7 * (gid - 1)).astype(np.uint16)
                if not np.array_equal(im[..., 0], expected):
                    wrong.append(gid)
                if k % 10 == 0:
                    peak[0] = max(peak[0], open_descriptors())
        except Exception as err:
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(t * 37,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report[name] = {"peak": peak[0], "wrong": len(wrong), "errors": errors[:3],
                            "after": open_descriptors(), "handles_after": len(gdalio.POOL),
                            "memmaps_after": len(MEMMAPS)}
print(json.dumps(report))
'''


def test_sixteen_threads_over_600_images_under_ulimit_256(tmp_path):
    done = subprocess.run([sys.executable, "-c", MANY_THREADS, str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["budget"] == 64  # a quarter of the soft limit
    baseline, budget = report["baseline"], report["budget"]
    for name in ("direct", "npy"):
        result = report[name]
        assert result["errors"] == [] and result["wrong"] == 0, (name, result)
        # the pools hold at most the budget; each thread briefly holds up to 3 more (a conversion's
        # source, temp file and lock; a sidecar or header being checked)
        assert result["peak"] <= baseline + budget + 3 * 16, (name, result)
        assert result["handles_after"] == 0, (name, result)  # each thread's handles closed when it ended
    assert report["direct"]["after"] <= baseline + 2
    assert report["npy"]["memmaps_after"] <= budget // 2  # the memmap pool is per process, bounded
    assert report["npy"]["after"] <= baseline + budget // 2 + 2


def _dataset(tmp_path, n=3):
    dset = kwcoco.CocoDataset()
    for k in range(n):
        pixels = np.full((20, 30), k + 1, np.uint8)
        dset.add_image(file_name=write_raster(tmp_path / f"img_{k}.tif", pixels), width=30, height=20)
    return dset


def test_the_handle_budget_is_shared_by_all_threads(tmp_path):
    dset = _dataset(tmp_path, n=6)
    pool = gdalio.HandlePool(capacity=4)
    paths = [os.path.join(dset.bundle_dpath, img["file_name"]) for img in dset.imgs.values()]
    barrier = threading.Barrier(3)
    sizes = []

    def work():
        for path in paths:
            assert pool.get(path).RasterXSize == 30
            sizes.append(len(pool))
        barrier.wait()  # all threads alive: their handles are all counted
        sizes.append(len(pool))
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(sizes) <= 4
    assert len(pool) == 0


def test_a_handle_in_use_by_its_caller_survives_eviction(tmp_path):
    dset = _dataset(tmp_path, n=3)
    pool = gdalio.HandlePool(capacity=1)
    first, second = (os.path.join(dset.bundle_dpath, dset.imgs[gid]["file_name"]) for gid in (1, 2))
    ds = pool.get(first)
    pool.get(second)  # evicts the first from the pool
    assert len(pool) == 1
    assert int(ds.ReadAsArray().max()) == 1  # still open for the caller that holds it


def test_a_truncated_npy_entry_raises_a_clear_error(tmp_path):
    dset = _dataset(tmp_path, n=1)
    sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend="npy")
    entry = sampler.entry(1)
    MEMMAPS.forget(entry.path)
    os.truncate(entry.path, os.path.getsize(entry.path) - 100)
    with pytest.raises(CorruptCacheError, match=rf"image 1 \({entry.source}\).*{entry.path}.*truncated"):
        sampler.load_sample({"gid": 1, "space_slice": (slice(0, 20), slice(0, 30))})
    again = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend="npy")
    with pytest.warns(RuntimeWarning, match="rebuilding"):  # a new sampler rebuilds it
        im = again.load_sample({"gid": 1, "space_slice": (slice(0, 20), slice(0, 30))})["im"]
    assert (im == 1).all()


def test_max_open_files_follows_the_environment(monkeypatch):
    monkeypatch.setenv("NDPATCH_MAX_OPEN_FILES", "40")
    assert gdalio.max_open_files() == 40
    monkeypatch.setenv("NDPATCH_MAX_OPEN_FILES", "many")
    with pytest.raises(ndpatch.NdpatchError, match="NDPATCH_MAX_OPEN_FILES"):
        gdalio.max_open_files()
