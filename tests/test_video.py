"""Space-time samples (ndpatch.video) on kwcoco's vidshapes demo data, against independent reads."""
import re

import kwcoco
import kwimage
import numpy as np
import pytest
from osgeo import gdal

import ndpatch
from ndpatch.cache.direct import DirectBackend
from ndpatch.index import resolve_path

#: warp_img_to_vid given to the frames of the test video: every read path once.
FRAME_WARPS = {
    1: None,                                                        # identity
    2: {"type": "affine", "offset": (3, -2)},                       # integer shift: exact read
    3: {"type": "affine", "scale": 2.0, "offset": (0.5, 1.0)},      # upsampled by GDAL (warp.py)
    4: {"type": "affine", "scale": (0.75, 0.6), "offset": (2.25, 0)},  # downsampled by GDAL
    5: {"type": "affine", "scale": 1.2, "theta": 0.3, "offset": (4, -3)},  # general affine
}
WINDOWS = [(slice(10, 42), slice(-6, 30)), (slice(-9, 20), slice(40, 75))]


@pytest.fixture(scope="module")
def video_dset(tmp_path_factory):
    dset = kwcoco.CocoDataset.demo("vidshapes2-frames5", image_size=(64, 64), verbose=0,
                                   dpath=str(tmp_path_factory.mktemp("vidshapes")))
    for gid, warp in FRAME_WARPS.items():
        dset.imgs[gid]["warp_img_to_vid"] = warp
    return dset


@pytest.fixture(scope="module")
def msi_dset(tmp_path_factory):
    return kwcoco.CocoDataset.demo("vidshapes1-frames4-msi-multisensor", image_size=(64, 64),
                                   verbose=0, dpath=str(tmp_path_factory.mktemp("msi")))


def whole_raster(path):
    """The whole raster as H×W×C, read by GDAL."""
    data = gdal.Open(path).ReadAsArray()
    return np.moveaxis(data[None] if data.ndim == 2 else data, 0, -1)


def asset_from_vid(dset, gid, asset):
    """Asset pixels from video pixels, composed from kwcoco's own transforms."""
    warp_vid_from_img = dset.coco_image(gid).warp_vid_from_img
    warp_img_from_asset = kwimage.Affine.coerce(asset.get("warp_aux_to_img"))
    return (warp_vid_from_img @ warp_img_from_asset).inv().matrix


def nearest_reference(pixels, matrix, rows, cols, fill):
    """Nearest sampling of a whole asset at each output pixel centre (strictly inside, else fill)."""
    cx, cy = np.meshgrid(np.arange(cols.start, cols.stop) + 0.5, np.arange(rows.start, rows.stop) + 0.5)
    sx = matrix[0, 0] * cx + matrix[0, 1] * cy + matrix[0, 2]
    sy = matrix[1, 0] * cx + matrix[1, 1] * cy + matrix[1, 2]
    inside = (sx > 0) & (sx < pixels.shape[1]) & (sy > 0) & (sy < pixels.shape[0])
    out = np.full(sx.shape + pixels.shape[2:], fill, dtype=pixels.dtype)
    out[inside] = pixels[np.floor(sy[inside]).astype(int), np.floor(sx[inside]).astype(int)]
    return out


def frame_assets(dset, gid):
    img = dset.imgs[gid]
    return [img] if img.get("file_name") else img["auxiliary"]


# -- shapes and frame selection ------------------------------------------------------
def test_frame_selection_and_shapes(video_dset):
    sampler = ndpatch.CocoSampler(video_dset)
    window = (slice(5, 29), slice(-3, 37))
    whole = sampler.load_sample({"vidid": 1, "space_slice": window})
    assert whole["im"].shape == (5, 24, 40, 3)
    assert whole["params"]["gids"] == list(video_dset.index.vidid_to_gids[1])
    part = sampler.load_sample({"vidid": 1, "time_slice": slice(1, 5, 2), "space_slice": window})
    assert part["params"]["gids"] == whole["params"]["gids"][1:5:2]
    np.testing.assert_array_equal(part["im"], whole["im"][1:5:2])
    chosen = sampler.load_sample({"gids": [4, 2], "cx": 17, "cy": 17, "width": 40, "height": 24,
                                  "pad": (2, 1)})
    assert chosen["im"].shape == (2, 28, 42, 3)
    np.testing.assert_array_equal(chosen["im"][:, 2:-2, 1:-1], whole["im"][[3, 1]])
    assert chosen["target"]["space_slice"] == window
    assert chosen["params"]["st_dims"][1:] == [(3, 31), (-4, 38)]
    second = sampler.load_sample({"vidid": 2})
    assert second["im"].shape == (5, 64, 64, 3) and second["target"]["data_dims"] == (5, 64, 64)
    assert whole["im"].flags["C_CONTIGUOUS"] and whole["im"].flags["WRITEABLE"]


# -- pixels ----------------------------------------------------------------------------
@pytest.mark.parametrize("window", WINDOWS, ids=["inside", "corner"])
def test_nearest_pixels_equal_independent_warped_read(video_dset, window):
    sampler = ndpatch.CocoSampler(video_dset)
    sample = sampler.load_sample({"vidid": 1, "space_slice": window, "interpolation": "nearest"})
    for t, gid in enumerate(sample["params"]["gids"]):
        asset = frame_assets(video_dset, gid)[0]
        pixels = whole_raster(resolve_path(video_dset.bundle_dpath, asset["file_name"]))
        expected = nearest_reference(pixels, asset_from_vid(video_dset, gid, asset), *window, 0)
        np.testing.assert_array_equal(sample["im"][t], expected, err_msg=f"frame {gid}")


@pytest.mark.parametrize("origin", [(10, -6), (-9, 40), (3, 17), (21, 2)])
def test_linear_general_affine_agrees_with_whole_image_warp(video_dset, origin):
    """Within one grey level everywhere, and exact almost everywhere.

    Only the asset's bounding window is warped; OpenCV's fixed-point interpolation weights
    are rounded from coordinates relative to that window's origin, so a weight can land on
    the other side of a 1/32 step from the whole-image warp's (about 1 pixel in 7,000 here).
    """
    sampler = ndpatch.CocoSampler(video_dset)
    rows, cols = slice(origin[0], origin[0] + 32), slice(origin[1], origin[1] + 36)
    sample = sampler.load_sample({"gids": [5], "space_slice": (rows, cols), "antialias": False})
    pixels = whole_raster(sampler.index.source(5).path)
    out_from_asset = kwimage.Affine.translate((-cols.start, -rows.start)) @ \
        kwimage.Affine(asset_from_vid(video_dset, 5, video_dset.imgs[5])).inv()
    expected = kwimage.warp_affine(pixels, out_from_asset, dsize=(cols.stop - cols.start,
                                   rows.stop - rows.start), interpolation="linear",
                                   origin_convention="corner")
    difference = np.abs(sample["im"][0].astype(int) - expected)
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= difference.size // 100


def test_unit_frames_are_exact_whatever_the_interpolation(video_dset):
    sampler = ndpatch.CocoSampler(video_dset)
    rows, cols = WINDOWS[1]
    sample = sampler.load_sample({"gids": [1, 2], "space_slice": WINDOWS[1], "fill": 7})
    for t, (dx, dy) in enumerate([(0, 0), (-3, 2)]):
        pixels = whole_raster(sampler.index.source(t + 1).path)
        expected = nearest_reference(pixels, np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]),
                                     rows, cols, 7)
        np.testing.assert_array_equal(sample["im"][t], expected)


@pytest.mark.parametrize("backend", ["npy", "cog"])
def test_cache_backends_serve_frames_like_direct_reads(video_dset, tmp_path, backend):
    direct = ndpatch.CocoSampler(video_dset)
    cached = ndpatch.CocoSampler(video_dset, workdir=str(tmp_path), backend=backend)
    for window in WINDOWS:
        for interpolation in ("nearest", "linear"):
            target = {"vidid": 1, "space_slice": window, "interpolation": interpolation}
            expected, got = direct.load_sample(target)["im"], cached.load_sample(target)["im"]
            exact = [0, 1] if interpolation == "linear" else range(5)
            np.testing.assert_array_equal(got[exact], expected[exact])
            np.testing.assert_allclose(got, expected, atol=1)


class CountingBackend(DirectBackend):
    """The direct backend, recording which images it was asked to open."""

    def __init__(self):
        self.opened = []

    def ensure(self, source):
        self.opened.append(source.gid)
        return super().ensure(source)


def test_only_the_frames_asked_for_are_opened_and_each_once(video_dset, msi_dset):
    backend = CountingBackend()
    sampler = ndpatch.CocoSampler(video_dset, backend=backend)
    sampler.load_sample({"vidid": 1, "time_slice": slice(2, 4), "space_slice": WINDOWS[0]})
    assert backend.opened == [3, 4]
    sampler.load_sample({"gids": [4, 5], "space_slice": WINDOWS[1]})
    assert backend.opened == [3, 4, 5]
    msi = ndpatch.CocoSampler(msi_dset, backend=CountingBackend())
    msi.load_sample({"gids": [2], "channels": "B1|B8"})
    msi.load_sample({"gids": [2], "channels": "B11"})
    assert msi.backend.opened == [2] * len(msi_dset.imgs[2]["auxiliary"])  # each asset once


# -- annotations -------------------------------------------------------------------------
@pytest.mark.parametrize("window", WINDOWS + [(slice(-40, 170), slice(-40, 170))],
                         ids=["inside", "corner", "everything"])
def test_frame_detections_in_window_frame_with_track_ids(video_dset, window):
    sampler = ndpatch.CocoSampler(video_dset)
    rows, cols = window
    sample = sampler.load_sample({"vidid": 1, "space_slice": window})
    frame_dets = sample["annots"]["frame_dets"]
    assert len(frame_dets) == 5
    for t, (gid, dets) in enumerate(zip(sample["params"]["gids"], frame_dets)):
        warp = video_dset.coco_image(gid).warp_vid_from_img
        expected = {}
        for aid in video_dset.index.gid_to_aids[gid]:
            ann = video_dset.anns[aid]
            x, y, w, h = kwimage.Boxes([ann["bbox"]], "xywh").warp(warp).to_xywh().data[0]
            if x < cols.stop and x + w > cols.start and y < rows.stop and y + h > rows.start:
                expected[aid] = ([x - cols.start, y - rows.start, w, h], ann["track_id"])
        assert dets.meta["gid"] == gid and dets.meta["rel_frame_index"] == t
        assert sorted(dets.data["aids"].tolist()) == sorted(expected)
        for k, aid in enumerate(dets.data["aids"].tolist()):
            np.testing.assert_allclose(dets.boxes.to_xywh().data[k], expected[aid][0], atol=1e-6)
            assert dets.data["track_ids"][k] == expected[aid][1]
    annots = sample["annots"]
    assert len(annots["aids"]) == sum(len(d) for d in frame_dets) == len(annots["track_ids"])
    np.testing.assert_array_equal(annots["rel_frame_index"],
                                  np.repeat(np.arange(5), [len(d) for d in frame_dets]))
    if window[0].start == -40:
        assert len(annots["aids"]) == sum(len(video_dset.index.gid_to_aids[gid])
                                          for gid in video_dset.index.vidid_to_gids[1])


def test_aid_centres_the_window_on_the_annotation_in_video_space(video_dset):
    sampler = ndpatch.CocoSampler(video_dset)
    aid = sorted(video_dset.index.gid_to_aids[3])[0]
    sample = sampler.load_sample({"vidid": 1, "aid": aid})
    x, y, w, h = sample["annots"]["frame_dets"][2].boxes.to_xywh().data[
        sample["annots"]["frame_dets"][2].data["aids"].tolist().index(aid)]
    height, width = sample["im"].shape[1:3]
    assert abs(x + w / 2 - width / 2) <= 1 and abs(y + h / 2 - height / 2) <= 1


# -- multi-sensor ---------------------------------------------------------------------------
def test_multisensor_channels_missing_filled_and_reported(msi_dset):
    sampler = ndpatch.CocoSampler(msi_dset)
    window = (slice(-4, 40), slice(20, 70))
    sample = sampler.load_sample({"vidid": 1, "space_slice": window, "channels": "B1|B11|r",
                                  "interpolation": "nearest", "nodata": "float"})
    assert sample["im"].shape == (4, 44, 50, 3) and sample["im"].dtype == np.float32
    assert sample["params"]["channels"] == ("B1", "B11", "r")
    for t, gid in enumerate(sample["params"]["gids"]):
        assets = {name: asset for asset in msi_dset.imgs[gid]["auxiliary"]
                  for name in re.split(r"\|", asset["channels"])}
        missing = tuple(c for c in ("B1", "B11", "r") if c not in assets)
        assert sample["params"]["missing_channels"][t] == missing
        for k, name in enumerate(("B1", "B11", "r")):
            if name in missing:
                assert np.isnan(sample["im"][t, ..., k]).all()
                continue
            asset = assets[name]
            band = asset["channels"].split("|").index(name)
            pixels = whole_raster(resolve_path(msi_dset.bundle_dpath, asset["file_name"]))
            expected = nearest_reference(pixels[..., band:band + 1].astype(np.float32),
                                         asset_from_vid(msi_dset, gid, asset), *window, np.nan)
            np.testing.assert_array_equal(sample["im"][t, ..., k:k + 1], expected,
                                          err_msg=f"frame {gid} channel {name}")


def test_all_channels_is_the_union_in_first_seen_order(msi_dset):
    sampler = ndpatch.CocoSampler(msi_dset)
    sample = sampler.load_sample({"vidid": 1, "space_slice": (slice(0, 8), slice(0, 8))})
    union = []
    for gid in sample["params"]["gids"]:
        for asset in msi_dset.imgs[gid]["auxiliary"]:
            from delayed_image.channel_spec import FusedChannelSpec
            union += [c for c in FusedChannelSpec.coerce(asset["channels"]).normalize().as_list()
                      if c not in union]
    assert sample["params"]["channels"] == tuple(union)
    assert sample["im"].shape == (4, 8, 8, len(union))


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("target,error,match", [
    ({"vidid": 99}, ndpatch.UnknownVideoError, "unknown video id 99"),
    ({"gids": [1, 6]}, ndpatch.TargetError, "different videos"),
    ({"vidid": 1, "time_slice": slice(7, 9)}, ndpatch.TargetError, "no frames"),
    ({"vidid": 1, "interpolation": "cubic"}, ndpatch.TargetError, "interpolation"),
    ({"vidid": 1, "channels": [5]}, ndpatch.ChannelError, r"image 1 \(.*img_00001.png\)"),
    ({"vidid": 1, "space_slice": (slice(3, 3), slice(0, 4))}, ndpatch.TargetError, "empty"),
    ({"gids": [2], "vidid": 2}, ndpatch.TargetError, "belongs to video 1"),
])
def test_bad_video_targets_raise_clear_errors(video_dset, target, error, match):
    sampler = ndpatch.CocoSampler(video_dset)
    with pytest.raises(error, match=match):
        sampler.load_sample(target)
    assert issubclass(ndpatch.UnknownVideoError, KeyError)
