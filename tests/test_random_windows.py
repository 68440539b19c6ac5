"""RandomWindows: images drawn in proportion to their area, windows inside them (torchgeo's RandomGeoSampler)."""
import math

import kwcoco
import numpy as np
import pytest

import ndpatch
from ndpatch import RandomWindows
from ndpatch.errors import SamplingError, TargetError
from ndpatch.splits import window_in_region

SIZES = {1: (100, 120), 2: (40, 60), 3: (10, 12), 4: (16, 200)}   # gid: (height, width), no pixels needed


def layout(sizes=SIZES):
    dset = kwcoco.CocoDataset()
    for gid, (height, width) in sizes.items():
        dset.add_image(id=gid, file_name=f"none{gid}.tif", width=width, height=height)
    return ndpatch.CocoSampler(dset)


def test_images_are_drawn_in_proportion_to_their_area_and_windows_lie_inside():
    windows = RandomWindows(layout(), (16, 16), length=20000, rng=0)
    counts = {gid: 0 for gid in SIZES}
    for target in windows:
        rows, cols = target["space_slice"]
        height, width = SIZES[target["gid"]]
        assert 0 <= rows.start and rows.stop <= height and 0 <= cols.start and cols.stop <= width
        assert (rows.stop - rows.start, cols.stop - cols.start) == (16, 16)
        counts[target["gid"]] += 1
    assert counts[3] == 0                                      # smaller than the window: skipped
    areas = {gid: h * w for gid, (h, w) in SIZES.items() if gid != 3}
    total = sum(areas.values())
    for gid, area in areas.items():
        p = area / total
        assert abs(counts[gid] / 20000 - p) < 4 * math.sqrt(p * (1 - p) / 20000), (gid, counts)


def test_starts_are_uniform_over_the_image():
    windows = RandomWindows(layout({1: (20, 30)}), (16, 16), length=30000, rng=1)
    starts = np.array([(t["space_slice"][0].start, t["space_slice"][1].start) for t in windows])
    rows, cols = np.bincount(starts[:, 0], minlength=5), np.bincount(starts[:, 1], minlength=15)
    assert len(rows) == 5 and len(cols) == 15                  # every start in [0, H - h] x [0, W - w]
    assert rows.min() > 0.9 * 30000 / 5 and cols.min() > 0.85 * 30000 / 15


def test_pad_draws_smaller_images_covering_them():
    windows = RandomWindows(layout(), (16, 16), length=4000, pad=True, rng=2)
    small = [t["space_slice"] for t in windows if t["gid"] == 3]
    assert small
    for rows, cols in small:
        assert rows.start <= 0 and rows.stop >= 10 and cols.start <= 0 and cols.stop >= 12   # the image is inside
    assert {(r.start, c.start) for r, c in small} <= {(y, x) for y in range(-6, 1) for x in range(-4, 1)}


def test_seeded_like_the_other_strategies():
    sampler = layout()
    a = [t["space_slice"] for t in RandomWindows(sampler, (16, 16), length=50, rng=7)]
    b = [t["space_slice"] for t in RandomWindows(sampler, (16, 16), length=50, rng=7)]
    c = [t["space_slice"] for t in RandomWindows(sampler, (16, 16), length=50, rng=8)]
    assert a == b and a != c
    stream = RandomWindows(sampler, (16, 16), length=50, rng=7)
    first, second = list(stream), list(stream)
    assert [t["space_slice"] for t in first] == a and first != second   # each epoch continues the stream
    assert stream.draw(rng=3) == RandomWindows(sampler, (16, 16), rng=9).draw(rng=3)


def test_default_length_is_torchgeos_count_of_non_overlapping_windows():
    def tiles(n, k):
        return math.ceil((n - k) / k) + 1
    expected = sum(tiles(h, 16) * tiles(w, 16) for gid, (h, w) in SIZES.items() if gid != 3)
    assert len(RandomWindows(layout(), (16, 16))) == expected
    assert len(RandomWindows(layout(), (16, 16), pad=True)) == expected + 1
    assert len(RandomWindows(layout(), (16, 16), gids=[1])) == tiles(100, 16) * tiles(120, 16)


def test_block_split_images_keep_windows_in_their_blocks():
    dset = kwcoco.CocoDataset()
    region = {"split": "train", "block_size": 10, "image_shape": [40, 40], "blocks": [[0, 0], [0, 1], [1, 0], [1, 1],
                                                                                     [3, 3]]}
    dset.add_image(id=1, file_name="none.tif", width=40, height=40, split_region=region)
    dset.add_image(id=2, file_name="other.tif", width=20, height=20)
    windows = RandomWindows(ndpatch.CocoSampler(dset), (8, 8), length=3000, rng=0)
    counts = {1: 0, 2: 0}
    for target in windows:
        counts[target["gid"]] += 1
        if target["gid"] == 1:
            assert window_in_region(region, *target["space_slice"])
    p = 500 / 900   # owned area 5 blocks of 100 pixels, against the other image's 400
    assert abs(counts[1] / 3000 - p) < 4 * math.sqrt(p * (1 - p) / 3000)


def test_errors_name_what_is_wrong():
    with pytest.raises(SamplingError, match=r"no image of dataset .* has room for a 500x16 window \(pad=True"):
        RandomWindows(layout(), (500, 16))
    with pytest.raises(TargetError, match="window_dims must be"):
        RandomWindows(layout(), (0, 16))
    with pytest.raises(ndpatch.UnknownImageError):
        RandomWindows(layout(), (8, 8), gids=[99])
