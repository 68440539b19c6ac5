"""Sampling strategies: targets table, positives, true negatives, preselect, grids, balance, seeds."""
from collections import Counter

import kwcoco
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ndpatch
from ndpatch.demo import write_raster
from ndpatch.errors import SamplingError
from ndpatch.regions import axis_starts, grid_starts, strided_starts
from ndpatch.target import window_from_center


def layout_dataset(height, width, anns, categories=("a",)):
    """An in-memory dataset (no pixels) of one image with the given boxes / polygons."""
    dset = kwcoco.CocoDataset()
    for name in categories:
        dset.add_category(name)
    gid = dset.add_image(file_name="none.tif", width=width, height=height)
    for ann in anns:
        dset.add_annotation(gid, category_id=1, **ann)
    return dset


def extent(ann):
    """An annotation's extent, built independently of ndpatch: its polygon (shapely), else its box.

    A box is ``(x, y, w, h)``; a side of zero size (or one too small to move ``x + w``
    off ``x``) is a point lying in the half-open pixel that holds it, the pixel rule
    load_sample uses.
    """
    if "segmentation" in ann:
        return shapely.Polygon(np.reshape(ann["segmentation"][0], (-1, 2)))
    return tuple(ann["bbox"])


def axis_meets(start: float, size: float, lo: int, hi: int) -> bool:
    """Does ``[start, start + size)`` share length with ``[lo, hi)`` (a point: lie in it)?"""
    end = start + size
    return start < hi and (end > lo if end > start else start >= lo)


def meets(geom, rows, cols):
    """Does the window share area with the geometry (a box tuple, or a shapely geometry)?"""
    if isinstance(geom, tuple):
        x, y, w, h = geom
        return axis_meets(x, w, cols.start, cols.stop) and axis_meets(y, h, rows.start, rows.stop)
    return geom.intersection(shapely.box(cols.start, rows.start, cols.stop, rows.stop)).area > 0


# -- the targets table ------------------------------------------------------------------

def test_targets_table_matches_annotations():
    dset = kwcoco.CocoDataset.demo("shapes8", verbose=0)
    regions = ndpatch.CocoSampler(dset).regions
    table = regions.targets
    assert len(table["aid"]) == dset.n_annots
    assert np.all(np.diff(table["gid"]) >= 0)
    for row in range(len(table["aid"])):
        ann = dset.anns[int(table["aid"][row])]
        x, y, w, h = ann["bbox"]
        img = dset.imgs[ann["image_id"]]
        assert table["gid"][row] == ann["image_id"] and table["category_id"][row] == ann["category_id"]
        assert (table["cx"][row], table["cy"][row], table["width"][row], table["height"][row]) == \
               (x + w / 2, y + h / 2, w, h)
        assert (table["img_width"][row], table["img_height"][row]) == (img["width"], img["height"])


def test_table_derives_missing_boxes_and_rejects_unknown_images():
    dset = layout_dataset(20, 20, [{"segmentation": [[2, 3, 10, 3, 6, 9]]}, {"bbox": [1, 1, 2, 2]}])
    dset.dataset["annotations"][0].pop("bbox", None)
    table = ndpatch.CocoSampler(dset).regions.targets
    assert table["cx"].tolist() == [6.0, 2.0] and table["width"].tolist() == [8.0, 2.0]
    dset.dataset["annotations"][1]["image_id"] = 99
    with pytest.raises(ndpatch.DatasetError, match="annotation 2 refers to unknown image 99"):
        ndpatch.CocoSampler(dset).regions.targets


# -- positives -------------------------------------------------------------------------------

def test_positive_epochs_visit_every_annotation_once():
    dset = kwcoco.CocoDataset.demo("shapes8", verbose=0)
    regions = ndpatch.CocoSampler(dset).regions
    regions.reseed(0)
    n = dset.n_annots
    for _ in range(2):
        epoch = [regions.get_positive()["aid"] for _ in range(n)]
        assert sorted(epoch) == sorted(dset.anns)


def test_positive_windows_fixed_fitted_and_jittered():
    dset = kwcoco.CocoDataset.demo("shapes8", verbose=0)
    sampler = ndpatch.CocoSampler(dset)
    regions = sampler.regions
    regions.configure(window_dims=(30, 40))
    tr = regions.get_positive(3)
    x, y, w, h = dset.anns[tr["aid"]]["bbox"]
    assert (tr["width"], tr["height"], tr["cx"], tr["cy"]) == (40, 30, x + w / 2, y + h / 2)
    regions.configure(window_dims=None, context=2.0)
    tr = regions.get_positive(3)
    assert (tr["width"], tr["height"]) == (np.ceil(max(w, 1) * 2), np.ceil(max(h, 1) * 2))
    regions.configure(context=1.5, center_jitter=1.0, scale_jitter=0.5)
    for row in range(len(regions.targets["aid"])):
        tr = regions.get_positive(row, rng=row)
        x, y, w, h = dset.anns[tr["aid"]]["bbox"]
        fitted = np.array([max(w, 1), max(h, 1)]) * 1.5
        size = np.array([tr["width"], tr["height"]])
        assert np.all(size >= np.floor(fitted / 1.5)) and np.all(size <= np.ceil(fitted * 1.5))
        rows, cols = window_from_center(tr["cx"], tr["cy"], tr["width"], tr["height"])
        assert cols.start - 1 <= x + w / 2 <= cols.stop + 1 and rows.start - 1 <= y + h / 2 <= rows.stop + 1
    with pytest.raises(ndpatch.TargetError, match="scale_jitter"):
        regions.configure(window_dims=(8, 8))


@given(st.integers(1, 200), st.integers(1, 60), st.integers(1, 60))
def test_shifted_grid_is_the_strided_rule_with_the_last_window_on_the_edge(length, window, stride):
    """kwarray.SlidingWindow (keepbound) gives exactly ndpatch's own rule for edge='shift'."""
    stride = min(stride, window)
    expected = list(range(0, max(length - window, 0) + 1, stride))
    if length > window and expected[-1] != length - window:
        expected.append(length - window)
    assert strided_starts(length, window, stride).tolist() == expected
    padded = strided_starts(length, window, stride, "pad").tolist()
    assert padded[:len(expected) - 1] == expected[:-1] and padded[-1] + window >= length


# -- negatives -------------------------------------------------------------------------------

def box_free_exists(height, width, h, w, anns):
    """Brute force: is there an integer placement whose window meets no annotation box?"""
    ys = range(min(0, height - h), max(0, height - h) + 1)
    xs = range(min(0, width - w), max(0, width - w) + 1)
    boxes = [extent({"bbox": a["bbox"]}) for a in anns]
    return any(not any(meets(b, slice(y, y + h), slice(x, x + w)) for b in boxes) for y in ys for x in xs)


@st.composite
def layouts(draw):
    height, width = draw(st.integers(4, 36)), draw(st.integers(4, 36))
    anns = []
    for _ in range(draw(st.integers(0, 6))):
        x, y = draw(st.floats(-3, width)), draw(st.floats(-3, height))
        w, h = draw(st.floats(0, width / 2)), draw(st.floats(0, height / 2))
        if draw(st.booleans()) and w > 1 and h > 1:   # a triangle inside its box
            tri = [x, y + h, x + w, y + h, x + w / 2, y]
            anns.append({"bbox": [x, y, w, h], "segmentation": [tri]})
        else:
            anns.append({"bbox": [x, y, w, h]})
    dims = (draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    return height, width, anns, dims


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.integers(0, 2**32 - 1))
# a box whose corner y=8 comes back as 7.999999999999999 from cy - h/2 seemed to touch rows [1, 8)
@example((8, 4, [{"bbox": [0.0, 8.0, 0.0, 1.0815137803471813]}, {"bbox": [0.0, 0.0, 0.0, 0.0]},
                 {"bbox": [0.0, 0.0, 0.0, 0.0]}, {"bbox": [0.0, 0.0, 0.0, 0.0]}], (7, 4)), 0)
# a zero-height box just above row 0 lies in row -1: it leaves rows [0, 4) free
@example((4, 28, [{"bbox": [0.0, -5.884542520274701e-09, 14.0, 0.0]}, {"bbox": [0.0, 0.0, 0.0, 0.0]},
                  {"bbox": [0.0, 0.0, 0.0, 0.0]}], (4, 1)), 1)
# ... and one 1e-10 below row 0 too (a fixed widening of zero sizes would reach into row 0)
@example((4, 28, [{"bbox": [0.0, -1e-10, 28.0, 0.0]}], (4, 28)), 0)
def test_negatives_meet_no_annotation(layout, seed):
    height, width, anns, dims = layout
    regions = ndpatch.CocoSampler(layout_dataset(height, width, anns)).regions
    regions.configure(window_dims=dims, negative_tries=4)
    try:
        tr = regions.get_negative(rng=seed)
    except SamplingError as err:
        assert "no room" in str(err) or "has room" in str(err)
        assert not box_free_exists(height, width, *dims, anns)
        return
    rows, cols = window_from_center(tr["cx"], tr["cy"], tr["width"], tr["height"])
    assert (rows.stop - rows.start, cols.stop - cols.start) == dims
    assert rows.start >= min(0, height - dims[0]) and rows.stop <= max(height, dims[0])
    assert cols.start >= min(0, width - dims[1]) and cols.stop <= max(width, dims[1])
    assert not any(meets(extent(ann), rows, cols) for ann in anns)


def test_negative_may_sit_inside_a_box_outside_its_polygon():
    tri = [0, 40, 40, 40, 0, 0]                       # lower-left half of the box [0, 40)^2
    dset = layout_dataset(40, 40, [{"bbox": [0, 0, 40, 40], "segmentation": [tri]}])
    regions = ndpatch.CocoSampler(dset).regions
    regions.configure(window_dims=(8, 8), negative_tries=200)
    tr = regions.get_negative(rng=1)
    rows, cols = window_from_center(tr["cx"], tr["cy"], 8, 8)
    assert not meets(extent(dset.dataset["annotations"][0]), rows, cols)


def test_no_room_names_the_image():
    dset = layout_dataset(20, 20, [{"bbox": [0, 0, 20, 20]}])
    sampler = ndpatch.CocoSampler(dset)
    sampler.regions.configure(window_dims=(4, 4))
    with pytest.raises(SamplingError, match=r"image 1 \(.*none.tif\): no room for a 4x4 negative"):
        sampler.regions.get_negative(gid=1, rng=0)
    with pytest.raises(SamplingError, match="no image .* has room"):
        sampler.load_negative(rng=0)
    with pytest.raises(LookupError):
        sampler.regions.get_negative(rng=0)


@pytest.fixture(scope="module")
def nodata_sampler(tmp_path_factory):
    """Two 40x50 uint8 images declaring nodata 0: one with a nodata left half, one all nodata."""
    tmp = tmp_path_factory.mktemp("nodata")
    rng = np.random.default_rng(0)
    half = rng.integers(1, 255, (40, 50), dtype=np.uint8)
    half[:, :25] = 0
    write_raster(tmp / "half.tif", half, nodata=0)
    write_raster(tmp / "empty.tif", np.zeros((40, 50), np.uint8), nodata=0)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(tmp / "d.kwcoco.json")
    dset.add_category("thing")
    half_gid = dset.add_image(file_name="half.tif", width=50, height=40)
    empty_gid = dset.add_image(file_name="empty.tif", width=50, height=40)
    dset.add_annotation(half_gid, category_id=1, bbox=[30, 5, 6, 6])
    return ndpatch.CocoSampler(dset), half, half_gid, empty_gid


def test_negatives_respect_the_nodata_limit(nodata_sampler):
    sampler, half, half_gid, empty_gid = nodata_sampler
    sampler.regions.configure(window_dims=(10, 12), max_nodata=0.25)
    for seed in range(25):
        tr = sampler.regions.get_negative(rng=seed)
        assert tr["gid"] == half_gid
        rows, cols = window_from_center(tr["cx"], tr["cy"], 12, 10)
        assert (half[rows, cols] == 0).mean() <= 0.25
        assert not meets(shapely.box(30, 5, 36, 11), rows, cols)
    with pytest.raises(SamplingError, match=rf"image {empty_gid} .*empty.tif.*at most 0.25 nodata"):
        sampler.regions.get_negative(gid=empty_gid, rng=0)
    sample = sampler.load_negative(rng=3)
    assert len(sample["annots"]["aids"]) == 0


# -- preselect, get_item, ratio -----------------------------------------------------------------

def test_preselect_counts_and_get_item():
    sampler = ndpatch.CocoSampler.demo("shapes8")
    regions = sampler.regions
    with pytest.raises(SamplingError, match="preselect"):
        regions.get_negative(0)
    assert regions.preselect(n_pos=7, n_neg=11, window_dims=(32, 32), rng=0) == (7, 11)
    assert (regions.n_positives, regions.n_negatives, regions.n_samples) == (7, 11, 18)
    items = [regions.get_item(i) for i in range(18)]
    assert all(tr["aid"] is not None for tr in items[:7]) and all(tr["aid"] is None for tr in items[7:])
    assert items[7] == regions.get_negative(0)
    assert regions.preselect(n_pos=4, neg_to_pos_ratio=2.5, rng=0) == (4, 10)
    with pytest.raises(ndpatch.TargetError, match="not both"):
        regions.preselect(n_neg=1, neg_to_pos_ratio=1)
    sample = sampler.load_item(5)
    assert sample["im"].shape == (32, 32, 3) and len(sample["annots"]["aids"]) == 0
    regions.configure(window_dims=(32, 32), neg_to_pos_ratio=3.0)
    draws = [regions.draw(np.random.default_rng(i))["aid"] is None for i in range(400)]
    assert abs(np.mean(draws) - 0.75) < 0.08


# -- class balance ----------------------------------------------------------------------

def tree_dataset():
    """animal -> {cat (900 annots), dog (90)}, vehicle -> {car (10)}."""
    dset = kwcoco.CocoDataset()
    for name, parent in [("animal", None), ("cat", "animal"), ("dog", "animal"),
                         ("vehicle", None), ("car", "vehicle")]:
        dset.add_category(name, supercategory=parent)
    gid = dset.add_image(file_name="none.tif", width=100, height=100)
    for name, count in [("cat", 900), ("dog", 90), ("car", 10)]:
        cid = dset.name_to_cat[name]["id"]
        for _ in range(count):
            dset.add_annotation(gid, category_id=cid, bbox=[1, 1, 5, 5])
    return dset


@pytest.mark.parametrize("balance,expected", [
    (None, {"cat": 0.9, "dog": 0.09, "car": 0.01}),
    ("category", {"cat": 1 / 3, "dog": 1 / 3, "car": 1 / 3}),
    ("hierarchy", {"cat": 0.25, "dog": 0.25, "car": 0.5}),
])
def test_balanced_draws_match_target_frequencies(balance, expected):
    dset = tree_dataset()
    regions = ndpatch.CocoSampler(dset).regions
    regions.configure(balance=balance)
    rng = np.random.default_rng(0)
    names = Counter(dset.cats[regions.get_positive(rng=rng)["category_id"]]["name"] for _ in range(10_000))
    for name, p in expected.items():
        assert abs(names[name] / 10_000 - p) < 0.02, (name, names)


def test_balance_power_interpolates():
    regions = ndpatch.CocoSampler(tree_dataset()).regions
    regions.configure(balance="category", balance_power=0.5)   # mass ~ sqrt(count): 30, 9.49, 3.16
    rng = np.random.default_rng(1)
    cats = Counter(regions.get_positive(rng=rng)["category_id"] for _ in range(10_000))
    weights = np.sqrt([900, 90, 10])
    np.testing.assert_allclose([cats[2] / 1e4, cats[3] / 1e4, cats[5] / 1e4], weights / weights.sum(),
                               atol=0.02)


# -- reproducibility -----------------------------------------------------------------------

def draws(seed):
    regions = ndpatch.CocoSampler.demo("shapes8").regions
    regions.configure(window_dims=(24, 24), center_jitter=0.5, neg_to_pos_ratio=1.0)
    regions.reseed(seed)
    return [regions.draw() for _ in range(30)]


def test_same_seed_same_targets():
    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    gen_a, gen_b = np.random.default_rng(9), np.random.default_rng(9)
    regions = ndpatch.CocoSampler.demo("shapes8").regions
    regions.configure(window_dims=(24, 24))
    assert [regions.get_negative(rng=gen_a) for _ in range(5)] == \
           [regions.get_negative(rng=gen_b) for _ in range(5)]


def test_workers_get_independent_streams(monkeypatch):
    import torch.utils.data

    class Info:
        id = 0
    main = draws(5)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: Info())
    worker0 = draws(5)
    assert worker0 == draws(5)
    Info.id = 1
    worker1 = draws(5)
    assert worker0 != worker1 and main not in (worker0, worker1)


# -- grids -------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 25), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]),
       st.sampled_from(["shift", "pad"]))
def test_axis_starts_cover_every_pixel(length, window, overlap, edge):
    starts = axis_starts(length, window, overlap, edge)
    count = np.zeros(length, int)
    for s in starts:
        count[max(s, 0):min(s + window, length)] += 1
    assert count.min() >= 1
    assert starts[0] == 0 and np.all(np.diff(starts) > 0)
    if edge == "shift" and length >= window:
        assert starts[-1] == length - window               # last window aligned to the edge
    if overlap == 0 and (edge == "pad" or length % window == 0):
        assert count.max() == 1                            # each pixel exactly once


def test_grid_labels_and_exact_cover():
    dset = layout_dataset(30, 45, [{"bbox": [2, 2, 5, 5]},
                                   {"bbox": [20, 10, 10, 10], "segmentation": [[20, 20, 30, 20, 30, 10]]}])
    regions = ndpatch.CocoSampler(dset).regions
    grid = regions.new_sample_grid(window_dims=(10, 15))
    windows = grid["positives"] + grid["negatives"]
    assert len(windows) == len(grid_starts((30, 45), (10, 15))) == 9
    cover = np.zeros((30, 45), int)
    for tr in windows:
        rows, cols = tr["space_slice"]
        cover[rows, cols] += 1
        expected = [a["id"] for a in dset.dataset["annotations"] if meets(extent(a), rows, cols)]
        assert tr["aids"] == expected and tr["label"] == ("positive" if expected else "negative")
    assert (cover == 1).all()
    # the triangle is the lower-right half of its box: a window in the upper-left corner meets nothing
    assert regions.hits(1, slice(10, 12), slice(20, 22)) == [] and regions.hits(1, slice(18, 20), slice(28, 30)) == [2]
    assert len(regions.new_sample_grid(window_dims="full")["positives"]) == 1
    with pytest.raises(ndpatch.TargetError, match="task"):
        regions.new_sample_grid("video_classification", window_dims=(4, 4))

def test_degenerate_segmentations_count_by_their_box(tmp_path):
    """A two-point ring or an empty segmentation (kwcoco's demo data has both) counts by its box."""
    from ndpatch.demo import write_raster
    write_raster(tmp_path / "a.tif", np.zeros((40, 40), np.uint8))
    dset = kwcoco.CocoDataset()
    gid = dset.add_image(file_name=str(tmp_path / "a.tif"), width=40, height=40)
    cid = dset.add_category("thing")
    line = dset.add_annotation(gid, category_id=cid, bbox=[0, 0, 40, 19], segmentation=[[1, 2, 30, 4]])
    empty = dset.add_annotation(gid, category_id=cid, bbox=[0, 21, 40, 19], segmentation=[])
    regions = ndpatch.Regions(ndpatch.CocoSampler(dset), window_dims=(2, 8))
    assert regions.hits(gid, slice(10, 12), slice(30, 32)) == [line]
    assert regions.hits(gid, slice(30, 32), slice(5, 7)) == [empty]
    for seed in range(20):
        rows, cols = regions.window(regions.get_negative(rng=seed, gid=gid))
        assert rows.start >= 19 and rows.stop <= 21


def test_preselected_pool_survives_pickling(tmp_path):
    """Spawned DataLoader workers get the sampler by pickle: preselected targets come along."""
    import pickle
    sampler = ndpatch.CocoSampler(kwcoco.CocoDataset.demo("shapes8", verbose=0))
    sampler.regions.preselect(n_pos=5, n_neg=3, window_dims=(64, 64), rng=0)
    clone = pickle.loads(pickle.dumps(sampler))
    assert [clone.regions.get_item(i) for i in range(8)] == [sampler.regions.get_item(i) for i in range(8)]


# -- block splits: no window of one split touches another split's block ------------------------

@settings(max_examples=300, deadline=None)
@given(boxes=st.lists(st.tuples(st.integers(-3, 20), st.integers(-3, 20), st.integers(1, 8), st.integers(1, 8)),
                      max_size=5),
       dims=st.tuples(st.integers(1, 8), st.integers(1, 8)), start=st.tuples(st.integers(-5, 20), st.integers(-5, 20)),
       ranges=st.tuples(st.integers(-4, 16), st.integers(0, 8), st.integers(-4, 16), st.integers(0, 8)))
def test_nearest_free_position_is_the_nearest_free_start(boxes, dims, start, ranges):
    from ndpatch.regions import nearest_free_position
    x, y, bw, bh = np.array(boxes, float).reshape(-1, 4).T
    bounds = (x, y, x + bw, y + bh)
    h, w = dims
    ylo, ny, xlo, nx = ranges
    ranges = ((ylo, ylo + ny), (xlo, xlo + nx))
    found = nearest_free_position(bounds, dims, start, ranges)
    free = [(y, x) for y in range(ylo, ylo + ny + 1) for x in range(xlo, xlo + nx + 1)
            if not any(max(x, b[0]) < min(x + w, b[0] + b[2]) and max(y, b[1]) < min(y + h, b[1] + b[3])
                       for b in boxes)]
    if not free:
        assert found is None
    else:
        cost = lambda p: abs(p[0] - start[0]) + abs(p[1] - start[1])   # noqa: E731
        assert found in free and cost(found) == min(map(cost, free))


@pytest.fixture(scope="module")
def split_source(tmp_path_factory):
    from ndpatch.demo import make_dataset
    return make_dataset(tmp_path_factory.mktemp("block_src"),
                        [{"shape": shape, "dtype": "uint8"} for shape in ((40, 50), (33, 61), (24, 24))])


def split_samplers(source, out, block_size, seed):
    """One sampler per split file of a block split of ``source``: {split: sampler}."""
    from ndpatch.splits import split_dataset
    split_dataset(source, out, by="block", block_size=block_size, seed=seed, overwrite=True)
    return {name: ndpatch.CocoSampler(str(out / f"{name}.kwcoco.json")) for name in ("train", "val", "test")}


def n_blocks(region):
    (height, width), size = region["image_shape"], region["block_size"]
    return -(-height // size) * -(-width // size)


def placeable(region, centre, dims):
    """Brute force: does some window of ``dims`` containing ``centre`` stay in the region?"""
    from ndpatch.splits import window_in_region
    (h, w), (cx, cy) = dims, centre
    return any(window_in_region(region, slice(y, y + h), slice(x, x + w))
               for y in range(int(np.ceil(cy)) - h, int(np.floor(cy)) + 1)
               for x in range(int(np.ceil(cx)) - w, int(np.floor(cx)) + 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block=st.integers(4, 24), seed=st.integers(0, 10_000), grid_factor=st.integers(1, 3),
       window=st.one_of(st.none(), st.tuples(st.integers(2, 20), st.integers(2, 20))),
       jitter=st.sampled_from([0.0, 0.5]), edge=st.sampled_from(["shift", "pad"]),
       overlap=st.sampled_from([0.0, 0.25]))
def test_block_split_windows_stay_in_their_split(split_source, tmp_path, block, seed, grid_factor, window,
                                                 jitter, edge, overlap):
    from ndpatch.splits import window_in_region
    samplers = split_samplers(split_source, tmp_path, block, seed)
    covered = {gid: np.zeros((img["height"], img["width"]), bool) for gid, img in split_source.imgs.items()}
    for name, sampler in samplers.items():
        dset, regions = sampler.dset, sampler.regions
        region = {gid: img["split_region"] for gid, img in dset.imgs.items()}
        config = {"window_dims": window, "center_jitter": jitter}
        if window is None:
            config.update(context=1.5, scale_jitter=0.5)
        regions.configure(**config)
        regions.reseed(seed)

        # positives: exactly the placeable annotations, each once per epoch, inside the split, around the centre
        smallest = np.exp(-np.log1p(config.get("scale_jitter", 0.0)))
        usable = []
        for aid, ann in dset.anns.items():
            x, y, w, h = ann["bbox"]
            dims = window or (int(np.ceil(max(h, 1) * 1.5 * smallest)), int(np.ceil(max(w, 1) * 1.5 * smallest)))
            if placeable(region[ann["image_id"]], (x + w / 2, y + h / 2), dims):
                usable.append(aid)
        if not usable:
            with pytest.raises(SamplingError, match=str(dset.fpath)):
                regions.get_positive()
        else:
            drawn = [regions.get_positive() for _ in range(len(usable))]
            assert sorted(tr["aid"] for tr in drawn) == sorted(usable)
            for tr in drawn + [regions.get_positive() for _ in range(5)]:
                rows, cols = regions.window(tr)
                x, y, w, h = dset.anns[tr["aid"]]["bbox"]
                assert window_in_region(region[tr["gid"]], rows, cols)
                # moved windows contain the centre; unmoved jittered ones may miss it by the rounding
                # of the window start (as outside block splits)
                slack = 1 if jitter and len(region[tr["gid"]]["blocks"]) == n_blocks(region[tr["gid"]]) else 0
                assert rows.start - slack <= y + h / 2 <= rows.stop + slack
                assert cols.start - slack <= x + w / 2 <= cols.stop + slack

        # negatives: inside the split and off every annotation; "no room" only when no window inside
        # the split avoids every annotation's box (brute force)
        for _ in range(10 if dset.anns or window else 0):
            try:
                tr = regions.get_negative()
            except SamplingError:
                nh, nw = regions.negative_dims()
                for gid, img in dset.imgs.items():
                    for y0 in range(min(0, img["height"] - nh), max(0, img["height"] - nh) + 1):
                        for x0 in range(min(0, img["width"] - nw), max(0, img["width"] - nw) + 1):
                            rows, cols = slice(y0, y0 + nh), slice(x0, x0 + nw)
                            assert not (window_in_region(region[gid], rows, cols)
                                        and not any(meets(extent({"bbox": dset.anns[a]["bbox"]}), rows, cols)
                                                    for a in dset.index.gid_to_aids[gid]))
                break
            rows, cols = regions.window(tr)
            assert window_in_region(region[tr["gid"]], rows, cols)
            assert not any(meets(extent(dset.anns[a]), rows, cols) for a in dset.index.gid_to_aids[tr["gid"]])

        # grids: every window inside the split; windows that divide the block size cover every pixel together
        grid = regions.new_sample_grid(window_dims=(block // grid_factor,) * 2, edge=edge)
        free_grid = regions.new_sample_grid(window_dims=(window or (9, 9)), window_overlap=overlap, edge=edge)
        for tr in free_grid["positives"] + free_grid["negatives"]:
            assert window_in_region(region[tr["gid"]], *tr["space_slice"])
        for tr in grid["positives"] + grid["negatives"]:
            assert window_in_region(region[tr["gid"]], *tr["space_slice"])
            if block % grid_factor == 0:
                rows, cols = tr["space_slice"]
                covered[tr["gid"]][max(rows.start, 0):rows.stop, max(cols.start, 0):cols.stop] = True
    if block % grid_factor == 0:
        assert all(mask.all() for mask in covered.values())


def test_block_split_with_no_placeable_positive_names_the_dataset(split_source, tmp_path):
    samplers = split_samplers(split_source, tmp_path, block_size=4, seed=0)
    regions = samplers["test"].regions
    regions.configure(window_dims=(30, 30))
    with pytest.raises(SamplingError, match=r"is not a positive here: no 30x30 window .* inside split 'test'"):
        regions.get_positive(0)
    with pytest.raises(SamplingError, match=r"test\.kwcoco\.json: no annotation has a window"):
        regions.get_positive()
    assert regions.preselect(n_neg=0) == (0, 0)
    with pytest.raises(SamplingError, match="or block of another split"):
        regions.get_negative()
