"""The sampler's valid-pixel fraction and nodata-limited negatives follow GDAL's masks; VRTs by opt-in."""
import os

import kwcoco
import numpy as np
import pytest
from osgeo import gdal

import ndpatch
from ndpatch.demo import write_raster
from ndpatch.errors import NdpatchError, SourceReadError
from ndpatch.testing import gdal_valid_mask, masked_rasters

BACKENDS = [None, "npy", "cog"]
NAMES = ["internal_mask", "msk_file", "alpha_rgba", "alpha_rgba_uint16", "nodata"]


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masked")
    rasters = masked_rasters(folder)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(folder / "masked.kwcoco.json")
    dset.add_category("thing")
    gids = {name: dset.add_image(file_name=os.path.relpath(rasters[name], folder), width=130, height=150)
            for name in NAMES}
    return dset, rasters, gids


WINDOWS = [(slice(0, 150), slice(0, 130)), (slice(-20, 40), slice(100, 170)), (slice(60, 61), slice(3, 90)),
           (slice(10, 74), slice(5, 69))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_valid_fraction_is_gdals_mask_fraction(masked, backend, tmp_path):
    dset, rasters, gids = masked
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path))
    for name in NAMES:
        for rows, cols in WINDOWS:
            expected = gdal_valid_mask(rasters[name], rows, cols).mean()
            target = {"gid": gids[name], "space_slice": (rows, cols)}
            assert sampler.load_sample(target, with_annots=False)["params"]["valid_fraction"] == expected, name
            assert sampler.valid_fraction(target) == expected
            one_band = {**target, "channels": [0]}
            assert sampler.load_sample(one_band, with_annots=False)["params"]["valid_fraction"] == expected
            cast = {**target, "dtype": "float32"}
            assert sampler.load_sample(cast, with_annots=False)["params"]["valid_fraction"] == expected
    whole = {"gid": gids["alpha_rgba_uint16"], "space_slice": WINDOWS[0]}
    assert sampler.valid_fraction(whole) < 0.5   # the case: 1.0 before


def test_valid_fraction_of_scaled_windows_samples_the_mask(masked):
    dset, rasters, gids = masked
    sampler = ndpatch.CocoSampler(dset)
    for name in ("internal_mask", "alpha_rgba", "msk_file"):
        mask = gdal_valid_mask(rasters[name], slice(0, 150), slice(0, 130))
        for scale, (y0, x0) in [(0.5, (0, 0)), (2.0, (30, 20)), (0.25, (-16, 8))]:
            sample = sampler.load_sample({"gid": gids[name], "space_slice": (slice(y0, y0 + 32), slice(x0, x0 + 32)),
                                          "scale": scale}, with_annots=False)
            h, w = sample["im"].shape[:2]
            rows = np.floor(y0 + (np.arange(h) + 0.5) / scale).astype(int)
            cols = np.floor(x0 + (np.arange(w) + 0.5) / scale).astype(int)
            inside = (rows[:, None] >= 0) & (rows[:, None] < 150) & (cols[None] >= 0) & (cols[None] < 130)
            expected = np.zeros((h, w), bool)
            expected[inside] = mask[np.broadcast_to(rows[:, None], (h, w))[inside],
                                    np.broadcast_to(cols[None], (h, w))[inside]]
            assert sample["params"]["valid_fraction"] == expected.mean(), (name, scale)


def test_all_valid_sources_cost_no_reads(masked, tmp_path, monkeypatch):
    path = write_raster(tmp_path / "plain.tif", np.ones((20, 30), np.uint8))
    dset = kwcoco.CocoDataset()
    dset.add_image(file_name=path, width=30, height=20)
    sampler = ndpatch.CocoSampler(dset)
    assert sampler.entry(1).mask == "all_valid"
    monkeypatch.setattr(type(sampler.backend), "read_into", lambda *a: pytest.fail("read pixels"))
    monkeypatch.setattr(type(sampler.backend), "read_mask_into", lambda *a: pytest.fail("read a mask"))
    assert sampler.valid_fraction({"gid": 1, "space_slice": (slice(-5, 15), slice(20, 40))}) == 0.75 * 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_negatives_with_max_nodata_avoid_masked_areas(masked, backend, tmp_path):
    dset, rasters, gids = masked
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path))
    regions = sampler.regions
    regions.configure(window_dims=(16, 16), max_nodata=0.1, negative_tries=20)
    for name in ("internal_mask", "alpha_rgba", "msk_file"):
        mask = gdal_valid_mask(rasters[name], slice(0, 150), slice(0, 130))
        for seed in range(4):
            neg = regions.get_negative(gid=gids[name], rng=seed)
            rows, cols = regions.window(neg)
            window = mask[max(rows.start, 0):rows.stop, max(cols.start, 0):cols.stop]
            invalid = 1 - window.sum() / (16 * 16)
            assert invalid <= 0.1, (name, seed, rows, cols)
    mostly_masked = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path)).regions
    mostly_masked.configure(window_dims=(100, 100), max_nodata=0.05, negative_tries=5)
    with pytest.raises(ndpatch.SamplingError, match=r"with at most 0.05 nodata"):
        mostly_masked.get_negative(gid=gids["alpha_rgba"], rng=0)


@pytest.fixture
def vrt_bundle(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    write_raster(tmp_path / "a.tif", pixels, geotransform=(1000.0, 2.0, 0.0, 5000.0, 0.0, -2.0), crs_epsg=32631)
    gdal.Translate(str(tmp_path / "a.vrt"), str(tmp_path / "a.tif"), format="VRT")
    dset = kwcoco.CocoDataset()
    dset.fpath = str(tmp_path / "d.kwcoco.json")
    vid = dset.add_video(name="v", width=16, height=12)
    dset.add_image(file_name="a.vrt", width=16, height=12, video_id=vid, frame_index=0)
    dset.add_image(file_name="a.tif", width=16, height=12, video_id=vid, frame_index=1)
    dset.dump()
    return dset.fpath, pixels, vid


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vrt_image_samples_with_allow_vrt_only(vrt_bundle, backend, tmp_path):
    path, pixels, vid = vrt_bundle
    window = {"gid": 1, "space_slice": (slice(2, 10), slice(3, 13))}
    allowing = ndpatch.CocoSampler(path, backend=backend, workdir=str(tmp_path / "cache"), allow_vrt=True)
    np.testing.assert_array_equal(allowing.load_sample(window)["im"], pixels[2:10, 3:13])
    frames = allowing.load_sample({"vidid": vid, "time_slice": slice(0, 2), "space_slice": (slice(0, 6), slice(0, 6))})
    np.testing.assert_array_equal(frames["im"][0], pixels[:6, :6])
    np.testing.assert_array_equal(frames["im"][1], pixels[:6, :6])
    refusing = ndpatch.CocoSampler(path, backend=backend, workdir=str(tmp_path / "cache2"))
    with pytest.raises(SourceReadError, match=r"image 1 \(.*a.vrt\): is a GDAL VRT .*allow_vrt=True"):
        refusing.load_sample(window)
    with pytest.raises(SourceReadError, match="is a GDAL VRT"):
        refusing.load_sample({"vidid": vid, "time_slice": slice(0, 2), "space_slice": (slice(0, 6), slice(0, 6))})


def test_georeferencing_outside_a_sampler_follows_allow_vrt(vrt_bundle):
    path, _, _ = vrt_bundle
    index = ndpatch.CocoSampler(path).index
    assert index.georef(1, allow_vrt=True).geotransform() == (1000.0, 2.0, 0.0, 5000.0, 0.0, -2.0)
    with pytest.raises(SourceReadError, match="is a GDAL VRT"):
        index.georef(1)


def test_allow_vrt_with_a_backend_that_refuses_vrts_is_an_error(vrt_bundle):
    path, _, _ = vrt_bundle
    with pytest.raises(NdpatchError, match="make the backend with allow_vrt=True"):
        ndpatch.CocoSampler(path, backend=ndpatch.cache.make_backend(None), allow_vrt=True)


def test_cli_allow_vrt(vrt_bundle, tmp_path, capsys):
    from ndpatch.cli import main
    path, pixels, _ = vrt_bundle
    out = tmp_path / "show.tif"
    assert main(["show", path, "--gid", "1", "--out", str(out)]) == 1
    assert "is a GDAL VRT" in capsys.readouterr().err
    assert main(["show", path, "--gid", "1", "--out", str(out), "--allow-vrt"]) == 0
    np.testing.assert_array_equal(np.moveaxis(gdal.Open(str(out)).ReadAsArray(), 0, -1), pixels)
    assert main(["export", path, str(tmp_path / "export"), "--window", "8", "--allow-vrt", "--workers", "1",
                 "-q"]) == 0
    assert main(["warmup", path, "--backend", "npy", "--workdir", str(tmp_path / "cache"), "--workers", "0",
                 "--allow-vrt", "-q"]) == 0
