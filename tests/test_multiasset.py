"""Multi-file images: bands at 10, 20 and 60 m and a label raster, aligned on one pixel grid."""
import os
import shutil

import kwcoco
import numpy as np
import pytest

import ndpatch
from ndpatch.cache import CacheStore
from ndpatch.demo import write_raster
from ndpatch.warmup import warmup

UTM = 32631
X0, Y0 = 600000.0, 5000000.0
H, W = 96, 120  # image grid: 10 m


def centre_coords(height, width, res):
    """Per pixel: the x and y of its centre in 10 m image pixels (a ramp every resampling keeps)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return xs * res / 10, ys * res / 10


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    xs10, ys10 = centre_coords(H, W, 10)
    xs20, _ = centre_coords(H // 2, W // 2, 20)
    _, ys60 = centre_coords(H // 6, W // 6, 60)
    labels = np.zeros((H, W), np.uint8)
    labels[10:40, 20:70] = 3
    labels[50:90, 80:110] = 5
    files = {
        "b10.tif": (np.stack([xs10, ys10, xs10 + ys10], -1), 10, "red|green|blue"),
        "b20.tif": (xs20, 20, "nir"),
        "b60.tif": (ys60, 60, "swir"),
        "labels.tif": (labels, 10, "class_id"),
    }
    assets = []
    for name, (pixels, res, channels) in files.items():
        write_raster(root / name, pixels, geotransform=(X0, res, 0, Y0, 0, -res), crs_epsg=UTM,
                     options=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
        assets.append({"file_name": name, "channels": channels, "width": pixels.shape[1],
                       "height": pixels.shape[0], "warp_aux_to_img": {"scale": res / 10}})
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "multi.kwcoco.json")
    dset.add_image(name="scene", width=W, height=H, assets=assets)
    dset.dump(dset.fpath)
    return dset.fpath, labels


@pytest.mark.parametrize("backend", [None, "npy"])
def test_bands_of_different_resolutions_align(multi, backend, tmp_path):
    path, _ = multi
    sampler = ndpatch.CocoSampler(path, backend=backend, workdir=str(tmp_path))
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(8, 80), slice(14, 100)),
                                  "channels": "red|nir|green|swir", "dtype": "float32"})
    im = sample["im"]
    assert im.shape == (72, 86, 4)
    red, nir, green, swir = np.moveaxis(im, -1, 0)
    assert np.abs(nir - red).max() < 0.5     # 20 m band on the 10 m grid
    assert np.abs(swir - green).max() < 0.5  # 60 m band on the 10 m grid
    assert sorted(e.source.rsplit("/", 1)[1] for e in sampler.records.get(1).entries) == \
        ["b10.tif", "b20.tif", "b60.tif"]


def test_only_requested_assets_are_read(multi, tmp_path):
    path, _ = multi
    sampler = ndpatch.CocoSampler(path, backend="npy", workdir=str(tmp_path))
    im = sampler.load_sample({"gid": 1, "cx": 50, "cy": 40, "width": 20, "height": 20, "channels": "nir"})["im"]
    assert im.shape == (20, 20, 1)
    assert [e.source.rsplit("/", 1)[1] for e in sampler.records.get(1).entries] == ["b20.tif"]
    assert [s.channels for s in sampler.index.sources(1)] == [("red", "green", "blue"), ("nir",), ("swir",),
                                                              ("class_id",)]


def test_default_channels_leave_out_labels_and_gsd_uses_the_image_grid(multi):
    path, _ = multi
    sampler = ndpatch.CocoSampler(path)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 60), slice(0, 60)), "gsd": 20})
    assert sample["im"].shape == (30, 30, 5)
    assert sample["params"]["geotransform"] == (X0, 20.0, 0.0, Y0, 0.0, -20.0)
    red, nir = sample["im"][..., 0], sample["im"][..., 3]
    np.testing.assert_allclose(red, nir, atol=0.5)


def test_label_raster_is_the_label_map(multi):
    path, labels = multi
    sampler = ndpatch.CocoSampler(path)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(-5, 50), slice(10, 90)),
                                  "channels": "red"}, with_masks=True)
    expected = np.zeros((55, 80), np.int32)
    expected[5:, :] = labels[0:50, 10:90]
    np.testing.assert_array_equal(sample["label_map"], expected)
    half = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 96), slice(0, 120)), "channels": "red",
                                "scale": 0.5}, with_masks=True)
    np.testing.assert_array_equal(half["label_map"], labels[1::2, 1::2])  # nearest: centres land on odd pixels


def test_unknown_channel_names_the_image(multi):
    path, _ = multi
    sampler = ndpatch.CocoSampler(path)
    with pytest.raises(ndpatch.ChannelError, match="image 1 .*no channel 'red_edge'"):
        sampler.load_sample({"gid": 1, "cx": 5, "cy": 5, "width": 4, "height": 4, "channels": "red|red_edge"})


def test_warmup_converts_every_file_of_a_multi_file_image(multi, tmp_path):
    path, _ = multi
    workdir = str(tmp_path / "cache")
    summary = warmup(path, backend="npy", workdir=workdir, workers=0, progress=False)
    assert (summary.images, summary.total, summary.converted, summary.failed) == (1, 4, 4, {})
    assert "1 images (4 files): 4 converted" in str(summary)
    assert warmup(path, backend="npy", workdir=workdir, workers=0, progress=False).converted == 0
    entries = CacheStore(workdir).info()["entries"]
    target = {"gid": 1, "space_slice": (slice(8, 80), slice(14, 100)), "channels": "red|nir|swir",
              "dtype": "float32"}
    cached = ndpatch.CocoSampler(path, backend="npy", workdir=workdir).load_sample(target)["im"]
    assert CacheStore(workdir).info()["entries"] == entries == 4   # read from the warmed entries, none added
    np.testing.assert_array_equal(cached, ndpatch.CocoSampler(path, backend=None).load_sample(target)["im"])


def test_warmup_names_every_failed_file_of_a_multi_file_image(multi, tmp_path):
    path, _ = multi
    bundle = tmp_path / "bundle"
    shutil.copytree(os.path.dirname(path), bundle)
    (bundle / "b20.tif").unlink()
    (bundle / "b60.tif").write_bytes(b"not a raster")
    moved = str(bundle / os.path.basename(path))
    summary = warmup(moved, backend="npy", workdir=str(tmp_path / "cache"), workers=0, progress=False)
    assert (summary.images, summary.total, summary.converted, list(summary.failed)) == (1, 4, 2, [1])
    assert "b20.tif" in summary.failed[1] and "b60.tif" in summary.failed[1]
