"""Class maps and instance masks against an independent rasterisation (shapely, pixel centres)."""
import kwimage
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

import ndpatch
from ndpatch.demo import make_dataset
from ndpatch.errors import NdpatchError
from ndpatch.masks import class_map, instance_masks, label_dtype, paint_order


def make_annots(shapes, cids=None, aids=None):
    """annots dict from a list of shapes: ('box', x, y, w, h) or ('poly', [(x, y), ...], holes)."""
    boxes, ssegs = [], []
    for shape in shapes:
        if shape[0] == "box":
            boxes.append(shape[1:])
            ssegs.append(None)
        else:
            poly = kwimage.Polygon(exterior=np.array(shape[1], float),
                                   interiors=[np.array(h, float) for h in shape[2]])
            boxes.append(poly.box().to_xywh().data.tolist())
            ssegs.append(poly.to_multi_polygon())
    n = len(shapes)
    return {
        "aids": np.arange(1, n + 1) if aids is None else np.asarray(aids),
        "cids": np.ones(n, int) if cids is None else np.asarray(cids),
        "rel_boxes": kwimage.Boxes(np.array(boxes, float).reshape(-1, 4), "xywh"),
        "rel_ssegs": ssegs,
    }


def reference_mask(shape, hw):
    """Pixels whose centre is inside the shape, and pixels whose centre is on its boundary."""
    if shape[0] == "box":
        x, y, w, h = shape[1:]
        geom = shapely.box(x, y, x + w, y + h)
    else:
        geom = shapely.Polygon(shape[1], shape[2])
    rows, cols = np.mgrid[:hw[0], :hw[1]]
    xs, ys = cols.ravel() + 0.5, rows.ravel() + 0.5
    inside = shapely.contains_xy(geom, xs, ys).reshape(hw)
    points = shapely.points(xs, ys)
    on_edge = (shapely.distance(geom.boundary, points) < 1e-6).reshape(hw)
    return inside, on_edge


coord = st.floats(-8, 40, allow_nan=False).map(lambda v: round(v, 3))
box_shape = st.tuples(st.just("box"), coord, coord, st.floats(0.1, 30), st.floats(0.1, 30))
poly_shape = st.tuples(st.just("poly"), st.lists(st.tuples(coord, coord), min_size=3, max_size=6),
                       st.just([])).filter(lambda s: shapely.Polygon(s[1]).is_valid
                                           and shapely.Polygon(s[1]).area > 0.01)


@settings(max_examples=60, deadline=None)
@given(shapes=st.lists(st.one_of(box_shape, poly_shape), min_size=1, max_size=4),
       hw=st.tuples(st.integers(1, 33), st.integers(1, 33)))
def test_instance_masks_are_pixel_centres_inside(shapes, hw):
    masks = instance_masks(make_annots(shapes), hw)
    assert masks.shape == (len(shapes), *hw) and masks.dtype == bool
    for mask, shape in zip(masks, shapes):
        inside, on_edge = reference_mask(shape, hw)
        np.testing.assert_array_equal(mask[~on_edge], inside[~on_edge])


@settings(max_examples=60, deadline=None)
@given(shapes=st.lists(st.one_of(box_shape, poly_shape), min_size=1, max_size=5),
       data=st.data())
def test_class_map_smaller_area_wins(shapes, data):
    cids = data.draw(st.lists(st.integers(1, 300), min_size=len(shapes), max_size=len(shapes)))
    annots = make_annots(shapes, cids=cids)
    hw = (30, 35)
    cmap = class_map(annots, hw, dtype=label_dtype(max(cids)))
    masks = instance_masks(annots, hw)
    areas = [s[3] * s[4] if s[0] == "box" else shapely.Polygon(s[1]).area for s in shapes]
    expected = np.zeros(hw, cmap.dtype)
    for i in sorted(range(len(shapes)), key=lambda i: (-areas[i], i + 1)):
        expected[masks[i]] = cids[i]
    np.testing.assert_array_equal(cmap, expected)


def test_equal_areas_larger_id_wins_in_every_window():
    """Two 8-pixel boxes (found by hypothesis): OGR's area of the one at x=0.031 was 8.000000000000002."""
    tall, wide = ("box", 0.0, 0.0, 1.0, 8.0), ("box", 0.031, 0.0, 8.0, 1.0)
    for dx in (0.0, 100.25, -3.7):   # the same pair seen from windows at other origins
        shifted = [(kind, x + dx, y, w, h) for kind, x, y, w, h in (tall, wide)]
        assert paint_order(make_annots(shifted, cids=[1, 2])) == [0, 1]
    assert class_map(make_annots([tall, wide], cids=[1, 2]), (8, 9))[0, 0] == 2


def test_small_annotation_painted_over_large_one_whatever_the_order():
    big, small = ("box", 0, 0, 10, 10), ("box", 2, 2, 3, 3)
    for shapes, cids in [([big, small], [1, 2]), ([small, big], [2, 1])]:
        cmap = class_map(make_annots(shapes, cids=cids), (10, 10))
        assert (cmap[2:5, 2:5] == 2).all()
        assert (cmap == 1).sum() == 100 - 9


def test_equal_areas_larger_annotation_id_wins():
    a, b = ("box", 0, 0, 4, 4), ("box", 2, 0, 4, 4)
    cmap = class_map(make_annots([a, b], cids=[5, 6], aids=[20, 10]), (4, 6))
    assert (cmap[:, 2:4] == 5).all()
    assert paint_order(make_annots([a, b], cids=[5, 6], aids=[20, 10])) == [1, 0]


def test_polygon_with_hole():
    shape = ("poly", [(0, 0), (10, 0), (10, 10), (0, 10)], [[(3, 3), (7, 3), (7, 7), (3, 7)]])
    cmap = class_map(make_annots([shape], cids=[4]), (12, 12))
    inside, _ = reference_mask(shape, (12, 12))
    np.testing.assert_array_equal(cmap == 4, inside)
    assert not cmap[3:7, 3:7].any()


def test_uncategorised_and_shapeless_annotations():
    annots = make_annots([("box", 0, 0, 3, 3), ("box", 1, 1, 0, 0)], cids=[-1, 2])
    assert not class_map(annots, (5, 5)).any()
    masks = instance_masks(annots, (5, 5))
    assert masks[0].sum() == 9 and masks[1].sum() == 0
    empty = make_annots([])
    assert class_map(empty, (3, 4)).shape == (3, 4)
    assert instance_masks(empty, (3, 4)).shape == (0, 3, 4)


def test_label_dtype_and_overflow():
    assert label_dtype(1) == np.uint8 and label_dtype(65535) == np.uint16
    with pytest.raises(NdpatchError, match="uint16"):
        label_dtype(70000)
    with pytest.raises(NdpatchError, match="category id 300"):
        class_map(make_annots([("box", 0, 0, 2, 2)], cids=[300]), (3, 3), dtype=np.uint8)


def test_sample_annots_of_a_window(tmp_path):
    dset = make_dataset(tmp_path, [{"shape": (40, 50, 3), "dtype": "uint8"}])
    sampler = ndpatch.CocoSampler(dset)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(5, 35), slice(-3, 40))})
    cmap = class_map(sample["annots"], sample["im"].shape[:2])
    # Independent: image-space shapes translated by the window origin (x0=-3, y0=5).
    box = dset.anns[1]["bbox"]
    tri = np.array(dset.anns[2]["segmentation"][0]).reshape(-1, 2) - [-3, 5]
    box_mask, box_edge = reference_mask(("box", box[0] + 3, box[1] - 5, box[2], box[3]), cmap.shape)
    tri_mask, tri_edge = reference_mask(("poly", tri.tolist(), []), cmap.shape)
    expected = np.where(box_mask, 1, 0)
    expected[tri_mask] = 2
    exact = ~(tri_edge | box_edge)
    np.testing.assert_array_equal(cmap[exact], expected[exact])
    assert (cmap == 2).sum() > 50 and (cmap == 1).sum() > 0
