"""Stitcher: window predictions back into whole images, in RAM or memory-mapped."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import reference_window
from hypothesis import given, settings
from hypothesis import strategies as st

import ndpatch
from ndpatch.demo import make_dataset
from ndpatch.regions import grid_starts
from ndpatch.stitch import Stitcher


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    specs = [{"shape": (70, 90, 3), "dtype": "uint8"}, {"shape": (33, 41), "dtype": "uint16"}]
    return ndpatch.CocoSampler(make_dataset(tmp_path_factory.mktemp("stitch"), specs))


@pytest.mark.parametrize("overlap,edge", [(0.0, "shift"), (0.3, "shift"), (0.0, "pad"), (0.5, "pad")])
def test_identity_model_reproduces_every_image(sampler, overlap, edge):
    grid = sampler.regions.new_sample_grid(window_dims=(16, 20), window_overlap=overlap, edge=edge)
    stitchers = {}
    for tr in grid["positives"] + grid["negatives"]:
        sample = sampler.load_sample(tr, with_annots=False)
        dims = sample["params"]["data_dims"]
        stitcher = stitchers.setdefault(tr["gid"], Stitcher(dims))
        stitcher.add(tr["space_slice"], sample["im"])
    assert sorted(stitchers) == [1, 2]
    for gid, stitcher in stitchers.items():
        full = reference_window(sampler.index.source(gid).path, slice(0, stitcher.dims[0]),
                                slice(0, stitcher.dims[1]))
        out = stitcher.finalize(dtype=full.dtype)
        np.testing.assert_array_equal(out, full)
        assert stitcher.weights.min() >= 1


def test_weighted_overlap_is_a_weighted_mean():
    stitcher = Stitcher((1, 4))
    stitcher.add((slice(0, 1), slice(0, 3)), np.full((1, 3), 2.0), weight=np.array([[1.0, 1.0, 3.0]]))
    stitcher.add((slice(0, 1), slice(2, 6)), np.full((1, 4), 6.0))   # runs past the edge
    np.testing.assert_array_equal(stitcher.finalize(), [[2.0, 2.0, (3 * 2 + 6) / 4, 6.0]])


def test_uncovered_pixels_get_fill_and_shapes_are_checked():
    stitcher = Stitcher((3, 3), fill=-1)
    stitcher.add((slice(0, 2), slice(0, 2)), np.ones((2, 2, 5)))
    out = stitcher.finalize()
    assert out.shape == (3, 3, 5) and (out[2] == -1).all() and (out[:2, :2] == 1).all()
    with pytest.raises(ndpatch.TargetError, match="does not fit window"):
        stitcher.add((slice(0, 2), slice(0, 2)), np.ones((3, 2, 5)))
    with pytest.raises(ndpatch.TargetError, match="other channels"):
        stitcher.add((slice(0, 2), slice(0, 2)), np.ones((2, 2, 4)))
    assert np.isnan(Stitcher((2, 2)).finalize()).all()


@settings(max_examples=50, deadline=None)
@given(st.tuples(st.integers(1, 12), st.integers(1, 30), st.integers(1, 30)),
       st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)),
       st.sampled_from([0.0, 0.25, 0.5]))
def test_any_grid_of_time_height_width_stitches_back(dims, window, overlap):
    data = np.random.default_rng(0).integers(0, 1000, size=dims + (2,)).astype(np.float32)
    stitcher = Stitcher(dims)
    for start in grid_starts(dims, window, overlap):
        sl = tuple(slice(s, s + w) for s, w in zip(start.tolist(), window))
        part = np.zeros(window + (2,), np.float32)
        inside = tuple(slice(0, min(s.stop, n) - s.start) for s, n in zip(sl, dims))
        part[inside] = data[sl]
        stitcher.add(sl, part)
    np.testing.assert_array_equal(stitcher.finalize(dtype=np.float32), data)


def test_memory_mapped_accumulators_give_the_same_result(tmp_path):
    rng = np.random.default_rng(4)
    dims, window = (37, 53), (9, 11)
    in_ram = Stitcher(dims)
    on_disk = Stitcher(dims, max_ram_bytes=0, workdir=tmp_path)
    for start in grid_starts(dims, window, 0.4, "pad"):
        sl = tuple(slice(s, s + w) for s, w in zip(start.tolist(), window))
        data, weight = rng.random(window + (3,)), rng.random(window)
        in_ram.add(sl, data, weight)
        on_disk.add(sl, data, weight)
    assert not in_ram.on_disk and on_disk.on_disk and isinstance(on_disk.sums, np.memmap)
    assert in_ram.sums.dtype == np.float32                      # float32 by default
    np.testing.assert_array_equal(on_disk.finalize(), in_ram.finalize())
    np.testing.assert_array_equal(on_disk.finalize(dtype=np.uint8), in_ram.finalize(dtype=np.uint8))
    assert os.listdir(tmp_path) == []                           # the files are unlinked from the start


STITCH_UNDER_A_MEMORY_CAP = """
import resource, sys
import numpy as np
from ndpatch.stitch import Stitcher

height, width = 4096, 2048              # 8 M pixels: 128 MB of float64 sums + weights
def data_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmData")) // 1024
cap = (data_mb() + 64) << 20            # 64 MB more than the process uses now
resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
try:
    np.ones((height, width)) + np.ones((height, width))
    sys.exit("the memory cap does not hold: float64 accumulators fit in RAM")
except MemoryError:
    pass
stitcher = Stitcher((height, width), max_ram_bytes=16 << 20, workdir=sys.argv[1])
ramp = np.arange(width, dtype=np.float32)[None, :] + 1000 * np.arange(256, dtype=np.float32)[:, None]
for y0 in range(0, height, 128):        # windows of 256 rows, overlapping by half, past the bottom edge
    stitcher.add((slice(y0, y0 + 256), slice(0, width)), ramp + 1000 * y0)
out = stitcher.finalize()
assert stitcher.on_disk and isinstance(out, np.memmap)
for r0 in range(0, height, 512):        # the weighted mean of equal values is the value: exact
    expected = np.arange(width, dtype=np.float32)[None, :] + 1000 * np.arange(r0, r0 + 512, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(out[r0:r0 + 512], expected)
print("ok", int(stitcher.weights.max()))
"""


def test_a_scene_larger_than_the_memory_cap_is_stitched_on_disk(tmp_path):
    done = subprocess.run([sys.executable, "-c", STITCH_UNDER_A_MEMORY_CAP, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "2"]
