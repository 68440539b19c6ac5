"""Space-time sampling (ndpatch.video.VideoRegions) and video batches, on kwcoco's vidshapes demo data."""
import pickle

import kwcoco
import kwimage
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndpatch
from ndpatch.video import VideoRegions

#: warp_img_to_vid of the frames of video 1: identity, whole-pixel shift, scale, rotation.
FRAME_WARPS = {
    2: {"type": "affine", "offset": (3, -2)},
    3: {"type": "affine", "scale": 1.5, "offset": (-10.5, 2.0)},
    4: {"type": "affine", "scale": 0.9, "theta": 0.3, "offset": (8, -4)},
}


@pytest.fixture(scope="module")
def video_dset(tmp_path_factory):
    dset = kwcoco.CocoDataset.demo("vidshapes2-frames6-tracks4", image_size=(64, 64), verbose=0,
                                   dpath=str(tmp_path_factory.mktemp("vidshapes")), rng=5)
    assert dset.anns[7]["segmentation"][0]["exterior"][2:] == []   # a two-point "polygon"
    assert dset.anns[19]["segmentation"] == []                     # no polygon at all
    for gid, warp in FRAME_WARPS.items():
        dset.imgs[gid]["warp_img_to_vid"] = warp
    return dset


@pytest.fixture(scope="module")
def sampler(video_dset):
    return ndpatch.CocoSampler(video_dset)


def frame_gids(dset, vidid):
    return sorted(dset.index.vidid_to_gids[vidid], key=lambda gid: dset.imgs[gid]["frame_index"])


def polygon(segmentation, warp):
    """The shapely polygon of a segmentation warped into video pixels; None when it has no area."""
    segmentation = kwimage.Segmentation.coerce(segmentation)
    try:
        return None if segmentation is None else segmentation.to_multi_polygon().warp(warp).to_shapely()
    except ValueError:  # fewer than three points
        return None


def expected_hits(dset, vidid, time_slice, rows, cols):
    """Annotations whose box, warped by kwcoco's own transform, meets the window's interior, and
    whose polygon (where it has an area) does too: by frame, then id."""
    x0, y0, x1, y1 = cols.start, rows.start, cols.stop, rows.stop
    window = shapely.box(x0, y0, x1, y1)
    aids = []
    for gid in frame_gids(dset, vidid)[time_slice]:
        warp = dset.coco_image(gid).warp_vid_from_img
        for aid in sorted(dset.index.gid_to_aids[gid]):
            ann = dset.anns[aid]
            bx0, by0, bx1, by1 = kwimage.Boxes([ann["bbox"]], "xywh").warp(warp).to_ltrb().data[0]
            # a zero-size side reaches to the next float: a point counts in the pixel that holds it
            reach_x, reach_y = max(bx1, np.nextafter(bx0, np.inf)), max(by1, np.nextafter(by0, np.inf))
            if not (bx0 < x1 and reach_x > x0 and by0 < y1 and reach_y > y0):
                continue
            geom = polygon(ann["segmentation"], warp)
            if geom is None or (geom.intersects(window) and not geom.touches(window)):
                aids.append(aid)
    return aids


def assert_no_annotation_meets(sample):
    """Every annotation a sample reports (by box) has a polygon that stays off the window's interior."""
    height, width = sample["im"].shape[1:3]
    window = shapely.box(0, 0, width, height)
    for dets in sample["annots"]["frame_dets"]:
        for sseg in dets.data["segmentations"]:
            geom = polygon(sseg, kwimage.Affine.eye())
            assert geom is not None and (not geom.intersects(window) or geom.touches(window)), \
                dets.data["aids"]


# -- grid ----------------------------------------------------------------------------------
@pytest.mark.parametrize("window_dims,time_stride,overlap,edge", [
    ((3, 24, 24), None, 0.0, "shift"),
    ((4, 32, 20), 3, 0.25, "shift"),
    ((2, 40, 40), 1, 0.0, "pad"),
    ((8, 64, 64), None, 0.0, "shift"),       # longer than the video: one window of all 6 frames
])
def test_grid_covers_every_pixel_of_every_frame_and_labels_exactly(video_dset, sampler, window_dims,
                                                                    time_stride, overlap, edge):
    n_time, height, width = window_dims
    grid = VideoRegions(sampler, window_dims).new_sample_grid(time_stride, overlap, edge)
    targets = grid["positives"] + grid["negatives"]
    assert grid["positives"] and all(t["label"] == "positive" for t in grid["positives"])
    for vidid, video in video_dset.index.videos.items():
        n_frames = len(frame_gids(video_dset, vidid))
        covered = np.zeros((n_frames, video["height"], video["width"]), dtype=np.int64)
        for target in (t for t in targets if t["vidid"] == vidid):
            time_slice, (rows, cols) = target["time_slice"], target["space_slice"]
            assert (rows.stop - rows.start, cols.stop - cols.start) == (height, width)
            assert time_slice.stop - time_slice.start == min(n_time, n_frames)
            assert 0 <= time_slice.start and time_slice.stop <= n_frames
            if edge == "shift":
                assert rows.start >= 0 and cols.start >= 0
                assert rows.stop <= video["height"] and cols.stop <= video["width"]
            covered[time_slice, max(rows.start, 0):rows.stop, max(cols.start, 0):cols.stop] += 1
            assert target["aids"] == expected_hits(video_dset, vidid, time_slice, rows, cols)
            assert target["label"] == ("positive" if target["aids"] else "negative")
        assert covered.min() >= 1
        if edge == "pad" and time_stride == n_time and overlap == 0:
            assert covered.max() == 1


def test_grid_targets_load_as_samples(sampler):
    grid = VideoRegions(sampler, (3, 32, 32)).new_sample_grid(time_stride=2)
    for target in grid["positives"][:3] + grid["negatives"][:3]:
        sample = sampler.load_sample(target)
        assert sample["im"].shape == (3, 32, 32, 3)
        assert set(target["aids"]) <= set(sample["annots"]["aids"].tolist())
        if target["label"] == "negative":
            assert_no_annotation_meets(sample)


def test_regions_routes_three_dimensional_window_dims(sampler):
    routed = sampler.regions.new_sample_grid(window_dims=(3, 32, 32), time_stride=2, vidids=[2])
    direct = VideoRegions(sampler, (3, 32, 32)).new_sample_grid(time_stride=2, vidids=[2])
    assert routed == direct and {t["vidid"] for t in routed["positives"]} == {2}
    assert len(routed["positives"]) + len(routed["negatives"]) == 3 * 2 * 2  # t0 in {0, 2, 3}


@pytest.mark.parametrize("kwargs,error,match", [
    ({"time_stride": 4}, ndpatch.TargetError, "leave gaps"),
    ({"time_stride": 0}, ndpatch.TargetError, "leave gaps"),
    ({"vidids": [9]}, ndpatch.UnknownVideoError, "unknown video id 9"),
])
def test_bad_grid_requests_raise_clear_errors(sampler, kwargs, error, match):
    with pytest.raises(error, match=match):
        VideoRegions(sampler, (3, 16, 16)).new_sample_grid(**kwargs)


def test_bad_window_dims_raise(sampler):
    with pytest.raises(ndpatch.TargetError, match="time, height, width"):
        VideoRegions(sampler, (16, 16))


# -- positives -----------------------------------------------------------------------------
def test_every_positive_holds_its_track_at_the_chosen_frame(video_dset, sampler):
    regions = VideoRegions(sampler, (3, 24, 20))
    table = regions.targets
    assert sorted(table["aid"].tolist()) == sorted(video_dset.anns)
    for row in range(len(table["aid"])):
        target = regions.get_positive(row)
        ann = video_dset.anns[target["aid"]]
        gids = frame_gids(video_dset, target["vidid"])
        t = gids.index(ann["image_id"])
        expected_t0 = min(max(t - 1, 0), len(gids) - 3)
        assert target["time_slice"] == slice(expected_t0, expected_t0 + 3)
        assert target["rel_frame_index"] == t - expected_t0 and target["track_id"] == ann["track_id"]
        sample = sampler.load_sample(target)
        assert sample["im"].shape == (3, 24, 20, 3)
        dets = sample["annots"]["frame_dets"][target["rel_frame_index"]]
        assert dets.meta["gid"] == ann["image_id"]
        k = dets.data["aids"].tolist().index(target["aid"])
        assert dets.data["track_ids"][k] == ann["track_id"]
        box = kwimage.Boxes([ann["bbox"]], "xywh").warp(video_dset.coco_image(ann["image_id"]).warp_vid_from_img)
        cx, cy = box.to_cxywh().data[0, :2]
        np.testing.assert_allclose([target["cx"], target["cy"]], [cx, cy], atol=1e-4)
        rows, cols = sample["target"]["space_slice"]
        assert (rows.start, cols.start) == (np.floor(target["cy"] - 12), np.floor(target["cx"] - 10))
        np.testing.assert_allclose(dets.boxes.to_cxywh().data[k, :2], [cx - cols.start, cy - rows.start],
                                   atol=1e-4)


def test_drawn_positives_cover_every_annotation_once_per_epoch(sampler):
    regions = VideoRegions(sampler, (2, 16, 16), rng=3)
    n = len(regions.targets["aid"])
    first, second = ([regions.get_positive()["aid"] for _ in range(n)] for _ in range(2))
    assert sorted(first) == sorted(second) == sorted(regions.targets["aid"].tolist())
    assert first != second


# -- negatives -----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), tries=st.sampled_from([1, 16]),
       dims=st.sampled_from([(2, 16, 16), (3, 24, 12), (6, 20, 30)]))
def test_negatives_meet_no_annotation_in_any_frame(video_dset, sampler, seed, tries, dims):
    regions = VideoRegions(sampler, dims, negative_tries=tries)
    target = regions.get_negative(rng=seed)
    rows, cols = target["space_slice"]
    assert expected_hits(video_dset, target["vidid"], target["time_slice"], rows, cols) == []
    sample = sampler.load_sample(target)
    assert sample["im"].shape == (*dims, 3)
    assert_no_annotation_meets(sample)


def test_same_seed_same_targets(sampler):
    def draws(seed):
        regions = VideoRegions(sampler, (3, 20, 20), rng=seed)
        return [regions.get_positive() for _ in range(5)] + [regions.get_negative() for _ in range(5)]
    assert draws(11) == draws(11)
    clone = pickle.loads(pickle.dumps(VideoRegions(sampler, (3, 20, 20), rng=11)))
    assert [clone.get_positive() for _ in range(5)] + [clone.get_negative() for _ in range(5)] == draws(11)
    assert draws(11) != draws(12)
    regions = VideoRegions(sampler, (3, 20, 20))
    assert regions.get_negative(rng=4) == regions.get_negative(rng=4)


def test_no_room_raises_sampling_error_naming_the_video(video_dset, sampler):
    regions = VideoRegions(sampler, (2, 64, 64))   # every frame has annotations inside the video
    with pytest.raises(ndpatch.SamplingError, match=r"video 1 'toy_video_1' of dataset .*: no room"):
        regions.get_negative(rng=0, vidid=1)
    with pytest.raises(ndpatch.SamplingError, match="no video of dataset"):
        regions.get_negative(rng=0)
    with pytest.raises(LookupError):
        regions.get_negative(rng=1)


def test_no_annotations_no_positives(video_dset, tmp_path):
    empty = video_dset.copy()
    empty.remove_annotations(list(empty.anns))
    regions = VideoRegions(ndpatch.CocoSampler(empty), (2, 16, 16))
    with pytest.raises(ndpatch.SamplingError, match="no video annotations"):
        regions.get_positive()
    assert regions.hits(1, slice(0, 6), *regions.get_negative(rng=0)["space_slice"]) == []


# -- batches ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,threads", [(None, 1), (None, 3), ("npy", 2)])
def test_load_batch_stacks_video_targets_like_load_sample(video_dset, tmp_path, backend, threads):
    sampler = ndpatch.CocoSampler(video_dset, backend=backend, workdir=str(tmp_path))
    regions = VideoRegions(sampler, (3, 24, 24), rng=0)
    targets = [regions.get_positive() for _ in range(3)] + [regions.get_negative() for _ in range(2)]
    targets.append({"gids": [12, 7, 9], "space_slice": (slice(-5, 19), slice(50, 74)),
                    "interpolation": "nearest"})
    batch = sampler.load_batch(targets, threads=threads)
    assert batch["im"].shape == (6, 3, 24, 24, 3)
    for i, target in enumerate(targets):
        sample = sampler.load_sample(target)
        np.testing.assert_array_equal(batch["im"][i], sample["im"])
        assert batch["params"][i]["gids"] == sample["params"]["gids"]
        np.testing.assert_array_equal(batch["annots"][i]["aids"], sample["annots"]["aids"])
        np.testing.assert_array_equal(batch["annots"][i]["track_ids"], sample["annots"]["track_ids"])
    again = sampler.load_batch(batch["targets"], with_annots=False,
                               out=np.zeros_like(batch["im"]))
    np.testing.assert_array_equal(again["im"], batch["im"])
    assert "annots" not in again


def test_load_batch_rejects_mixed_or_unequal_video_targets(sampler):
    video = {"vidid": 1, "time_slice": slice(0, 2), "space_slice": (slice(0, 8), slice(0, 8))}
    with pytest.raises(ndpatch.TargetError, match="mixes video targets"):
        sampler.load_batch([video, {"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))}])
    with pytest.raises(ndpatch.TargetError, match=r"image 7 \(.*\): its window is \(3, 8, 8, 3\)"):
        sampler.load_batch([video, {**video, "vidid": 2, "time_slice": slice(0, 3)}])
    with pytest.raises(ndpatch.TargetError, match="out buffer"):
        sampler.load_batch([video], out=np.zeros((1, 2, 8, 8, 3), np.float32))
