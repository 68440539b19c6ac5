"""Stitcher: window predictions back into whole images."""
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
