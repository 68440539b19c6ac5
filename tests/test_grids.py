"""Grid windows: per-axis strides and overlaps, sparse grids, and the edge rules of torchgeo and Raster Vision.

The expected window sets are written here from the other libraries' documented rules
(not from ndpatch's code, and not run against those libraries, which are not installed):

- torchgeo ``GridGeoSampler(size=k, stride=s)`` (0.5 and later, torchgeo PR #1329): on each axis of a tile of L pixels,
  ``ceil((L - k) / s) + 1`` windows starting every ``s`` from the tile's minimum
  coordinate, the last one running past the tile; tiles smaller than the window are
  skipped. The minimum *y* of a north-up raster is its bottom edge, so in pixel rows
  the windows are anchored at the bottom and the last runs past the top.
- Raster Vision ``Box.get_windows(size=k, stride=s, padding=p, pad_direction=d)``:
  the box is grown by ``p`` (default ``k // 2``) at its end (``'end'``: bottom/right),
  start (``'start'``) or both sides; the windows are every ``s`` from the grown box's
  start that lie inside it.
"""
import math

import kwcoco
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ndpatch
from ndpatch.cli import main
from ndpatch.demo import make_dataset
from ndpatch.errors import TargetError
from ndpatch.export import export
from ndpatch.sampling.geometry import GridRule, axis_starts, grid_starts


def torchgeo_axis(length, window, stride, from_the_end=False):
    """torchgeo's window starts on one axis (pixel starts; ``from_the_end``: rows of a north-up raster)."""
    if length < window:
        return []                                      # tiles smaller than the patch are skipped
    n = math.ceil((length - window) / stride) + 1
    starts = [i * stride for i in range(n)]
    return sorted(length - window - s for s in starts) if from_the_end else starts


def raster_vision_axis(length, window, stride, padding=None, pad_direction="end"):
    """Raster Vision's window starts on one axis of ``Box.get_windows``."""
    padding = window // 2 if padding is None else padding
    lo = -padding if pad_direction in ("start", "both") else 0
    hi = length + padding if pad_direction in ("end", "both") else length
    return list(range(lo, hi - window + 1, stride))


def meets_image(starts, length, window):
    return [s for s in starts if s < length and s + window > 0]


sizes = st.integers(1, 60)


@settings(max_examples=300, deadline=None)
@given(length=sizes, window=st.integers(1, 30), stride=st.integers(1, 40))
@example(length=10, window=2, stride=5)    # sparse: torchgeo's last window lies wholly past the image
@example(length=10, window=4, stride=3)
def test_pad_grids_are_torchgeos(length, window, stride):
    expected = torchgeo_axis(length, window, stride)
    rows_expected = torchgeo_axis(length, window, stride, from_the_end=True)
    got = axis_starts(length, window, edge="pad", stride=stride).tolist()
    got_rows = axis_starts(length, window, edge="pad", stride=stride, pad_direction="start").tolist()
    if length >= window:
        # ndpatch leaves out windows that do not meet the image (torchgeo's sparse grids have some)
        assert got == meets_image(expected, length, window)
        assert got_rows == meets_image(rows_expected, length, window)
        if stride <= window:
            assert got == expected and got_rows == rows_expected
    else:  # torchgeo skips the image; ndpatch gives one padded window
        assert expected == [] and got == [0] and got_rows == [length - window]


def test_a_north_up_raster_tiled_as_torchgeo_does():
    """A 100 x 70 (rows x cols) raster, 32-pixel windows every 24 pixels, as torchgeo's GridGeoSampler."""
    height, width, k, s = 100, 70, 32, 24
    expected = {(r, c) for r in torchgeo_axis(height, k, s, from_the_end=True) for c in torchgeo_axis(width, k, s)}
    assert len(expected) == 4 * 3
    got = grid_starts((height, width), (k, k), edge="pad", stride=s, pad_direction=("start", "end"))
    assert {tuple(p) for p in got.tolist()} == expected
    assert min(r for r, _ in expected) == 100 - 32 - 3 * 24 == -4    # runs past the top edge


@settings(max_examples=300, deadline=None)
@given(length=sizes, window=st.integers(1, 30), stride=st.integers(1, 40), padding=st.integers(0, 29),
       pad_direction=st.sampled_from(["end", "start", "both"]))
def test_overshoot_grids_are_raster_visions(length, window, stride, padding, pad_direction):
    padding = min(padding, window - 1)   # a larger padding only adds windows wholly outside, which ndpatch leaves out
    expected = raster_vision_axis(length, window, stride, padding, pad_direction)
    got = axis_starts(length, window, edge="overshoot", stride=stride, padding=padding,
                      pad_direction=pad_direction).tolist()
    if expected:
        assert got == expected
    else:  # the window does not fit even the padded image: one padded window
        assert length < window and len(got) == 1
    default = axis_starts(length, window, edge="overshoot", stride=stride, pad_direction=pad_direction).tolist()
    if raster_vision_axis(length, window, stride, None, pad_direction):
        assert default == raster_vision_axis(length, window, stride, None, pad_direction)


@settings(max_examples=200, deadline=None)
@given(length=sizes, window=st.integers(1, 30), stride=st.integers(1, 40))
def test_drop_is_raster_vision_without_padding_and_shift_stays_inside(length, window, stride):
    assert axis_starts(length, window, edge="drop", stride=stride).tolist() == \
        raster_vision_axis(length, window, stride, padding=0)
    shifted = axis_starts(length, window, edge="shift", stride=stride)
    if length >= window:
        assert shifted[0] == 0 and shifted[-1] == length - window and (np.diff(shifted) > 0).all()
        assert (np.diff(shifted) <= stride).all()
    else:
        assert shifted.tolist() == [0]


def test_raster_vision_example_windows():
    """A 10 x 10 box, 4-pixel windows every 3: padding 2 (the default) at the end, then at the start."""
    end = {(r, c) for r in range(0, 9, 3) for c in range(0, 9, 3)}            # starts 0, 3, 6 (6 + 4 <= 12)
    got = grid_starts((10, 10), (4, 4), edge="overshoot", stride=3)
    assert {tuple(p) for p in got.tolist()} == end
    start = {(r, c) for r in range(-2, 7, 3) for c in range(-2, 7, 3)}        # -2, 1, 4 (4 + 4 <= 10)
    got = grid_starts((10, 10), (4, 4), edge="overshoot", stride=3, pad_direction="start")
    assert {tuple(p) for p in got.tolist()} == start


def test_window_larger_than_the_image():
    for edge in ("shift", "pad", "overshoot"):
        assert grid_starts((5, 6), (8, 8), edge=edge).tolist() == [[0, 0]]
    assert grid_starts((5, 6), (8, 8), edge="pad", pad_direction="start").tolist() == [[-3, -2]]
    assert grid_starts((5, 6), (8, 8), edge="shift", pad_direction="both").tolist() == [[-1, -1]]
    assert grid_starts((5, 6), (8, 8), edge="drop").tolist() == []
    assert grid_starts((5, 20), (8, 8), edge="drop").tolist() == []   # one axis too short is enough


def test_per_axis_strides_overlaps_and_sparse_grids():
    assert grid_starts((10, 12), (4, 6), stride=(3, 6)).tolist() == \
        [[r, c] for r in (0, 3, 6) for c in (0, 6)]
    assert grid_starts((10, 12), (4, 6), overlap=(0.5, 0.0)).tolist() == \
        [[r, c] for r in (0, 2, 4, 6) for c in (0, 6)]
    sparse = grid_starts((30, 30), (4, 4), stride=10, edge="drop")
    assert sparse.tolist() == [[r, c] for r in (0, 10, 20) for c in (0, 10, 20)]
    assert axis_starts(30, 4, stride=10).tolist() == [0, 10, 20, 26]        # shift: the last one on the edge


@pytest.mark.parametrize("call, message", [
    (lambda: grid_starts((10, 10), (0, 5)), r"window size must be a whole number of pixels >= 1 .*\(0, 5\)"),
    (lambda: grid_starts((10, 10), (-3, 5), stride=2), r"window size .*\(-3, 5\)"),
    (lambda: axis_starts(10, 0), r"window size .*\(0,\)"),
    (lambda: grid_starts((10, 10), (4, 4), stride=0), r"stride must be a whole number of pixels >= 1"),
    (lambda: grid_starts((10, 10), (4, 4), stride=(2, 2, 2)), r"stride has 3 values, the grid has 2 axes"),
    (lambda: grid_starts((10, 10), (4, 4), stride=2, overlap=0.5), "give stride or window_overlap, not both"),
    (lambda: grid_starts((10, 10), (4, 4), overlap=(0.5, 1.0)), r"window_overlap must be a number in \[0, 1\)"),
    (lambda: grid_starts((10, 10), (4, 4), edge="wrap"), "edge must be one of 'shift', 'pad', 'overshoot', 'drop'"),
    (lambda: grid_starts((10, 10), (4, 4), pad_direction="left"), "pad_direction must be one of"),
    (lambda: grid_starts((10, 10), (4, 4), edge="overshoot", padding=-1), "padding must be a whole number"),
])
def test_bad_grid_settings_say_what_is_wrong(call, message):
    with pytest.raises(TargetError, match=message):
        call()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("grids"), [{"shape": (50, 70, 3)}, {"shape": (20, 30, 3)}])


def test_new_sample_grid_takes_the_grid_options(dataset):
    regions = ndpatch.CocoSampler(dataset).regions
    grid = regions.new_sample_grid(window_dims=(16, 16), stride=(20, 25), edge="drop")
    windows = sorted((tr["gid"], tr["space_slice"][0].start, tr["space_slice"][1].start)
                     for tr in grid["positives"] + grid["negatives"])
    expected = sorted([(1, r, c) for r in (0, 20) for c in (0, 25, 50)] + [(2, 0, 0)])
    assert windows == expected
    padded = regions.new_sample_grid(window_dims=(32, 32), edge="pad", pad_direction="start", gids=[2])
    assert [tr["space_slice"] for tr in padded["positives"] + padded["negatives"]] == \
        [(slice(-12, 20), slice(-2, 30))]
    empty = regions.new_sample_grid(window_dims=(32, 32), edge="drop", gids=[2])
    assert empty["positives"] == empty["negatives"] == empty["targets"] == []
    with pytest.raises(TargetError, match="window size"):
        regions.new_sample_grid(window_dims=(0, 16))


def test_export_grid_options_from_the_library_and_the_cli(dataset, tmp_path, capsys):
    summary = export(dataset.fpath, tmp_path / "lib", window="16", stride=(20, 25), edge="drop",
                     format="kwcoco", workers=0, progress=False)
    assert summary["chips"] == 7
    out = kwcoco.CocoDataset(str(tmp_path / "lib" / "data.kwcoco.json"))
    origins = sorted((img["ndpatch_source"]["image_id"], img["ndpatch_source"]["row_start"],
                      img["ndpatch_source"]["col_start"]) for img in out.imgs.values())
    assert origins == sorted([(1, r, c) for r in (0, 20) for c in (0, 25, 50)] + [(2, 0, 0)])
    assert main(["export", dataset.fpath, str(tmp_path / "cli"), "--window", "16", "--stride", "20x25",
                 "--edge", "drop", "--format", "kwcoco", "--workers", "1", "-q"]) == 0
    assert "7 chips" in capsys.readouterr().out
    assert main(["export", dataset.fpath, str(tmp_path / "cli2"), "--window", "32", "--overlap", "0.5x0.25",
                 "--edge", "overshoot", "--padding", "8", "--workers", "1", "-q"]) == 0
    rows = len(GridRule(overlap=(0.5, 0.25), edge="overshoot", padding=8).starts((50, 70), (32, 32)))
    rows += len(GridRule(overlap=(0.5, 0.25), edge="overshoot", padding=8).starts((20, 30), (32, 32)))
    assert f"{rows} chips" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--stride", "16", "--overlap", "0.5"], "--stride and --overlap exclude each other"),
    (["--stride", "16", "--targets", "positives"], "--stride place grid windows: they need --targets grid"),
    (["--stride", "0"], "argument --stride: 0 is not an integer >= 1"),
    (["--overlap", "0.5x1"], "argument --overlap: 1 is not a number >= 0 and < 1"),
    (["--edge", "wrap"], "argument --edge: invalid choice"),
])
def test_export_grid_options_are_checked_before_any_work(dataset, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", dataset.fpath, str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
