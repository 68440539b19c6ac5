"""Differential test: the same targets give the same pixels and boxes as ndsampler 0.8.1."""
import numpy as np
import pytest

import ndpatch

ndsampler = pytest.importorskip("ndsampler")


@pytest.fixture(scope="module")
def samplers():
    import kwcoco
    dset = kwcoco.CocoDataset.demo("shapes8", verbose=0)
    return ndpatch.CocoSampler(dset), ndsampler.CocoSampler(dset, backend=None)


TARGETS = [
    {"gid": 1, "cx": 5, "cy": 2, "width": 6, "height": 6},
    {"gid": 2, "cx": 300.5, "cy": 120.25, "width": 101, "height": 64.4},
    {"gid": 3, "cx": 590, "cy": 598, "width": 64, "height": 64},
    {"gid": 4, "space_slice": (slice(-10, 20), slice(500, 700))},
    {"gid": 5, "cx": 200, "cy": 300, "width": 128, "height": 96, "pad": (4, 9)},
    {"aid": 1},
    {"aid": 7, "pad": 5},
]


@pytest.mark.parametrize("target", TARGETS, ids=range(len(TARGETS)))
def test_same_pixels_and_boxes(samplers, target):
    ours, theirs = samplers
    a = ours.load_sample(dict(target))
    b = theirs.load_sample(dict(target))
    np.testing.assert_array_equal(a["im"], b["im"])
    assert a["target"]["space_slice"] == b["target"]["space_slice"]
    np.testing.assert_array_equal(a["params"]["offset"], b["params"]["offset"])
    np.testing.assert_array_equal(a["params"]["sample_tlbr"].data, b["params"]["sample_tlbr"].data)
    order_a, order_b = np.argsort(a["annots"]["aids"]), np.argsort(b["annots"]["aids"])
    np.testing.assert_array_equal(a["annots"]["aids"][order_a], b["annots"]["aids"][order_b])
    np.testing.assert_allclose(a["annots"]["rel_boxes"].to_xywh().data[order_a],
                               b["annots"]["rel_boxes"].to_xywh().data[order_b])
