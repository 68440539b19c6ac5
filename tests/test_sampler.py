"""CocoSampler.load_sample: exact pixels and annotations, in and out of bounds (backend=None)."""
import json
import multiprocessing
import os
import zipfile

import kwcoco
import numpy as np
import pytest
from conftest import MATRIX_SPECS, edge_windows, reference_window

import ndpatch
from ndpatch import gdalio
from ndpatch.demo import random_pixels, write_raster
from ndpatch.target import window_from_center


@pytest.fixture(scope="module")
def sampler(matrix_dset):
    return ndpatch.CocoSampler(matrix_dset, backend=None)


def _cases():
    for i, spec in enumerate(MATRIX_SPECS):
        height, width = spec["shape"][:2]
        for j, window in enumerate(edge_windows(height, width)):
            yield pytest.param(i + 1, window, id=f"{spec['dtype']}-{spec.get('driver', 'tif')}-w{j}")


@pytest.mark.parametrize("gid,window", list(_cases()))
def test_pixels_equal_independent_read(sampler, gid, window):
    spec = MATRIX_SPECS[gid - 1]
    sample = sampler.load_sample({"gid": gid, "space_slice": window})
    im = sample["im"]
    expected = reference_window(sampler.index.source(gid).path, *window, fill=spec.get("nodata", 0))
    assert im.dtype == np.dtype(spec["dtype"])
    assert im.flags["C_CONTIGUOUS"] and im.flags["WRITEABLE"]
    np.testing.assert_array_equal(im, expected)


@pytest.mark.parametrize("gid,window", list(_cases()))
def test_annotations_in_window_frame(sampler, matrix_dset, gid, window):
    rows, cols = window
    sample = sampler.load_sample({"gid": gid, "space_slice": window})
    annots = sample["annots"]
    x0, y0 = cols.start, rows.start
    expected_aids = []
    for aid in matrix_dset.index.gid_to_aids[gid]:
        x, y, w, h = matrix_dset.anns[aid]["bbox"]
        if x < cols.stop and x + w > cols.start and y < rows.stop and y + h > rows.start:
            expected_aids.append(aid)
    assert sorted(annots["aids"].tolist()) == sorted(expected_aids)
    for k, aid in enumerate(annots["aids"].tolist()):
        ann = matrix_dset.anns[aid]
        x, y, w, h = ann["bbox"]
        np.testing.assert_allclose(annots["rel_boxes"].to_xywh().data[k], [x - x0, y - y0, w, h])
        assert annots["cids"][k] == ann["category_id"]
        if "segmentation" in ann:
            flat = np.array(ann["segmentation"][0]).reshape(-1, 2)
            rel = annots["rel_ssegs"].data[k].to_multi_polygon().data[0].data["exterior"].data
            np.testing.assert_allclose(rel, flat - [x0, y0])
        if "keypoints" in ann:
            rel = annots["rel_kpts"].data[k].xy
            np.testing.assert_allclose(rel, [np.array(ann["keypoints"][0]["xy"]) - [x0, y0]])
    dets = annots["frame_dets"][0]
    assert len(dets) == len(annots["aids"])
    tf = sample["params"]["tf_rel_to_abs"]
    np.testing.assert_allclose(tf.matrix[:2, 2], [x0, y0])


def test_centre_rule_and_params_follow_ndsampler(sampler):
    sample = sampler.load_sample({"gid": 1, "cx": 5, "cy": 2, "width": 6, "height": 6})
    assert sample["target"]["space_slice"] == (slice(-1, 5), slice(2, 8))
    assert window_from_center(5.3, 2.7, 6.6, 6.4) == (slice(-1, 6), slice(1, 8))
    params = sample["params"]
    assert params["offset"].tolist() == [-2, 1]
    assert params["sample_tlbr"].data.tolist() == [2, -1, 8, 5]
    assert params["st_dims"] == [(-1, 5), (2, 8)]
    assert params["data_dims"] == (70, 90)
    assert sample["im"].shape == (6, 6, 3)
    for key in ("im", "target", "tr", "params", "annots", "classes", "kp_classes"):
        assert key in sample


def test_aid_target_with_pad(sampler, matrix_dset):
    aid = sorted(matrix_dset.index.gid_to_aids[1])[1]
    x, y, w, h = matrix_dset.anns[aid]["bbox"]
    sample = sampler.load_sample({"aid": aid, "pad": (2, 3)})
    rows, cols = window_from_center(x + w / 2, y + h / 2, w, h)
    assert sample["target"]["space_slice"] == (rows, cols)
    assert sample["im"].shape == (rows.stop - rows.start + 4, cols.stop - cols.start + 6, 3)
    padded = (slice(rows.start - 2, rows.stop + 2), slice(cols.start - 3, cols.stop + 3))
    np.testing.assert_array_equal(sample["im"], reference_window(sampler.index.source(1).path, *padded))
    k = sample["annots"]["aids"].tolist().index(aid)
    np.testing.assert_allclose(sample["annots"]["rel_boxes"].to_xywh().data[k],
                               [x - padded[1].start, y - padded[0].start, w, h])


def test_whole_image_when_only_gid(sampler):
    assert sampler.load_sample({"image_id": 2})["im"].shape == (64, 80, 1)


def test_channels_by_name_and_index(sampler):
    window = (slice(3, 20), slice(4, 30))
    full = sampler.load_sample({"gid": 1, "space_slice": window})["im"]
    by_name = sampler.load_sample({"gid": 1, "space_slice": window, "channels": "b|r"})["im"]
    by_index = sampler.load_sample({"gid": 3, "space_slice": window, "channels": [8, 0]})["im"]
    np.testing.assert_array_equal(by_name, full[..., [2, 0]])
    ref = reference_window(sampler.index.source(3).path, *window)
    np.testing.assert_array_equal(by_index, ref[..., [8, 0]])
    assert by_name.flags["C_CONTIGUOUS"]


def test_dtype_fill_and_nodata_float(sampler):
    window = (slice(-4, 10), slice(-4, 10))
    as_float = sampler.load_sample({"gid": 1, "space_slice": window, "dtype": "float32"})["im"]
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, reference_window(sampler.index.source(1).path, *window))
    filled = sampler.load_sample({"gid": 1, "space_slice": window, "fill": 9})["im"]
    assert (filled[:4] == 9).all() and (filled[:, :4] == 9).all()
    # image 5 declares nodata -7: it pads with it, and nodata='float' turns it into NaN
    padded = sampler.load_sample({"gid": 5, "space_slice": window})["im"]
    assert (padded[:4] == -7).all()
    as_nan = sampler.load_sample({"gid": 5, "space_slice": window, "nodata": "float"})["im"]
    assert as_nan.dtype == np.float32 and np.isnan(as_nan[:4]).all()
    assert not np.isnan(as_nan[4:, 4:][padded[4:, 4:] != -7]).any()


def test_plain_mscoco_json(tmp_path):
    pixels = random_pixels((30, 40, 3), "uint8", np.random.default_rng(1))
    write_raster(tmp_path / "a.png", pixels, driver="PNG")
    coco = {
        "info": {"description": "plain"}, "licenses": [],
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}],
        "annotations": [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 6, 10, 8],
                         "segmentation": [[5, 6, 15, 6, 15, 14]], "area": 40, "iscrowd": 0,
                         "keypoints": [6, 7, 2], "num_keypoints": 1}],
        "categories": [{"id": 1, "name": "thing", "supercategory": "x", "keypoints": ["tip"]}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    sampler = ndpatch.CocoSampler(str(tmp_path / "coco.json"))
    sample = sampler.load_sample({"aid": 3, "pad": 1})
    np.testing.assert_array_equal(sample["im"], np.pad(pixels, ((0, 0), (0, 0), (0, 0)))[5:15, 4:16])
    assert sample["annots"]["aids"].tolist() == [3]
    np.testing.assert_allclose(sample["annots"]["rel_boxes"].to_xywh().data, [[1, 1, 10, 8]])
    np.testing.assert_allclose(sample["annots"]["rel_kpts"].data[0].xy, [[2, 2]])


def test_gdal_virtual_and_absolute_paths(tmp_path):
    pixels = random_pixels((20, 25, 3), "uint8", np.random.default_rng(2))
    write_raster(tmp_path / "z.tif", pixels)
    with zipfile.ZipFile(tmp_path / "pack.zip", "w") as zf:
        zf.write(tmp_path / "z.tif", "inner/z.tif")
    dset = kwcoco.CocoDataset()
    gid_zip = dset.add_image(file_name=f"/vsizip/{tmp_path}/pack.zip/inner/z.tif", width=25, height=20)
    gid_abs = dset.add_image(file_name=str(tmp_path / "z.tif"), width=25, height=20)
    sampler = ndpatch.CocoSampler(dset)
    for gid in (gid_zip, gid_abs):
        np.testing.assert_array_equal(sampler.load_sample({"gid": gid})["im"], pixels)


def test_reads_only_the_window(tmp_path):
    """A 100k x 100k sparse GeoTIFF (10 GB if read whole) serves a window at once."""
    from osgeo import gdal
    path = str(tmp_path / "huge.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 100_000, 100_000, 1, gdal.GDT_Byte,
                                              options=["SPARSE_OK=TRUE", "TILED=YES"])
    ds.GetRasterBand(1).WriteArray(np.full((8, 8), 5, np.uint8), 50_000, 40_000)
    del ds
    dset = kwcoco.CocoDataset()
    gid = dset.add_image(file_name=path, width=100_000, height=100_000)
    sample = ndpatch.CocoSampler(dset, backend=None).load_sample({"gid": gid, "space_slice": (slice(39_998, 40_004),
                                                                               slice(49_998, 50_004))})
    assert sample["im"][..., 0].tolist() == [[0] * 6] * 2 + [[0, 0, 5, 5, 5, 5]] * 4


def _child_pool_state(path, queue):
    before = len(gdalio.POOL)
    ds = gdalio.POOL.get(path)
    queue.put((before, ds.RasterXSize))


def test_handle_pool_is_fork_safe(matrix_dset):
    path = ndpatch.CocoSampler(matrix_dset).index.source(1).path
    gdalio.POOL.get(path)
    assert len(gdalio.POOL) >= 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_pool_state, args=(path, queue))
    proc.start()
    before, width = queue.get(timeout=60)
    proc.join(60)
    assert before == 0 and width == 90


def test_handle_pool_is_bounded(matrix_dset):
    pool = gdalio.HandlePool(capacity=2)
    sampler = ndpatch.CocoSampler(matrix_dset)
    for gid in (1, 2, 3, 4):
        pool.get(sampler.index.source(gid).path)
    assert len(pool) == 2


# -- bad input: each gets a clear error naming the image id and path ----------------

def test_unknown_ids(sampler):
    with pytest.raises(ndpatch.UnknownImageError, match="99"):
        sampler.load_sample({"gid": 99})
    with pytest.raises(KeyError):
        sampler.load_sample({"gid": 99})
    with pytest.raises(ndpatch.UnknownAnnotationError, match="12345"):
        sampler.load_sample({"aid": 12345})


@pytest.mark.parametrize("target,match", [
    ({"gid": 1, "cx": 5, "cy": 5, "width": 0, "height": 4}, "width must be positive"),
    ({"gid": 1, "cx": 5, "cy": 5, "width": 4, "height": -2}, "height must be positive"),
    ({"gid": 1, "space_slice": (slice(5, 5), slice(0, 3))}, "empty"),
    ({"gid": 1, "cx": 5, "width": 4, "height": 4}, "cx and cy"),
    ({"gid": 1, "pad": -1}, "non-negative"),
    ({"cx": 1, "cy": 1, "width": 2, "height": 2}, "names no image"),
])
def test_impossible_targets(sampler, target, match):
    with pytest.raises(ndpatch.TargetError, match=match):
        sampler.load_sample(target)
    with pytest.raises(ValueError):
        sampler.load_sample(target)


def test_channel_not_present(sampler):
    with pytest.raises(ndpatch.ChannelError, match=r"image 1 \(.*img_000.tif\) has no channel 'nir'"):
        sampler.load_sample({"gid": 1, "channels": "r|nir"})
    with pytest.raises(ndpatch.ChannelError, match="image 2 .* band index 3 is out of range"):
        sampler.load_sample({"gid": 2, "channels": [3]})


def test_missing_and_corrupt_rasters(tmp_path):
    good = write_raster(tmp_path / "good.tif", np.zeros((64, 64), np.uint8))
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00" + os.urandom(200))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(open(good, "rb").read()[:2000])
    dset = kwcoco.CocoDataset()
    dset.fpath = str(tmp_path / "d.json")
    missing = dset.add_image(file_name="missing.tif", width=8, height=8)
    corrupt = dset.add_image(file_name="corrupt.tif", width=8, height=8)
    short = dset.add_image(file_name="truncated.tif", width=64, height=64)
    sampler = ndpatch.CocoSampler(dset)
    with pytest.raises(ndpatch.SourceReadError, match=f"image {missing} .*missing.tif.*does not exist"):
        sampler.load_sample({"gid": missing})
    with pytest.raises(OSError, match=f"image {corrupt} .*corrupt.tif"):
        sampler.load_sample({"gid": corrupt})
    with pytest.raises(ndpatch.SourceReadError, match=f"image {short} .*truncated.tif"):
        sampler.load_sample({"gid": short})


def test_malformed_and_missing_dataset_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(ndpatch.DatasetError, match="bad.json.*malformed json"):
        ndpatch.CocoSampler(str(bad))
    with pytest.raises(ndpatch.DatasetError, match="does not exist"):
        ndpatch.CocoSampler(str(tmp_path / "nope.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ndpatch.DatasetError, match="not a COCO dataset"):
        ndpatch.CocoSampler(str(tmp_path / "list.json"))
