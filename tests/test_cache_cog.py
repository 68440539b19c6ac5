"""backend='cog': the conformance suite, plus COG layout, metadata and the in-place rule."""
import numpy as np
import pytest
from conftest import edge_windows
from osgeo import gdal

from ndpatch.cache import make_backend
from ndpatch.cache.base import ImageSource
from ndpatch.cache.cog import DEFAULT_BLOCKSIZE, cog_options
from ndpatch.demo import write_raster
from ndpatch.errors import CacheConversionError
from ndpatch.testing import BackendConformance


class TestCogBackend(BackendConformance):
    backend = "cog"
    windows = staticmethod(edge_windows)


class TestCogBackendDeflate512(BackendConformance):
    backend = "cog"
    options = {"compress": "DEFLATE", "blocksize": 512, "in_place": False}
    windows = staticmethod(edge_windows)


def test_cog_keeps_georeferencing_and_band_metadata(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 3000, (600, 700, 2), dtype=np.int16)
    path = write_raster(tmp_path / "geo.tif", pixels, nodata=-7, band_names=["red", "nir"],
                        geotransform=(500000.0, 10.0, 0.0, 4600000.0, 0.0, -10.0), crs_epsg=32633)
    entry = make_backend("cog", workdir=str(tmp_path / "cache")).ensure(ImageSource(1, path))
    src, cog = gdal.Open(path), gdal.Open(entry.path)
    assert cog.GetGeoTransform() == src.GetGeoTransform()
    assert cog.GetProjection() == src.GetProjection()
    assert cog.GetMetadata("IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert cog.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] in ("ZSTD", "DEFLATE")
    for i in (1, 2):
        s, c = src.GetRasterBand(i), cog.GetRasterBand(i)
        assert c.GetBlockSize() == [DEFAULT_BLOCKSIZE, DEFAULT_BLOCKSIZE]
        assert c.GetOverviewCount() >= 1
        assert (c.GetNoDataValue(), c.GetDescription(), c.GetColorInterpretation()) == \
            (s.GetNoDataValue(), s.GetDescription(), s.GetColorInterpretation())
    np.testing.assert_array_equal(cog.ReadAsArray(), src.ReadAsArray())


def test_codec_level_and_predictor_reach_gdal(tmp_path):
    def options(**settings):
        backend = make_backend("cog", workdir=str(tmp_path), **settings)
        return cog_options({**backend.settings, "threads": 1}, np.dtype("uint8"), 3)
    assert {"COMPRESS=ZSTD", "PREDICTOR=YES", "BLOCKSIZE=128"} <= set(options(compress="ZSTD"))
    assert not any(o.startswith("LEVEL=") for o in options(compress="ZSTD"))  # GDAL's own default, 9
    assert "LEVEL=1" in options(compress="ZSTD", level=1)
    assert not any(o.startswith("PREDICTOR=") for o in options(compress="ZSTD", predictor=False))


def test_tiled_lossless_source_is_read_in_place(tmp_path):
    pixels = np.arange(300 * 200, dtype=np.uint16).reshape(300, 200)
    tiled = write_raster(tmp_path / "tiled.tif", pixels, options=["TILED=YES", "COMPRESS=DEFLATE"])
    lossy = write_raster(tmp_path / "jpeg.tif", pixels.astype(np.uint8),
                         options=["TILED=YES", "COMPRESS=JPEG"])
    backend = make_backend("cog", workdir=str(tmp_path / "cache"))
    entry = backend.ensure(ImageSource(1, tiled))
    assert entry.path == tiled and entry.meta["sidecar"]["in_place"]
    assert backend.ensure(ImageSource(1, tiled)).meta["converted"] is False
    assert not backend.ensure(ImageSource(2, lossy)).meta["sidecar"]["in_place"]


def test_jpeg_only_when_asked_and_only_for_uint8(tmp_path):
    rgb = write_raster(tmp_path / "rgb.tif", np.full((300, 300, 3), 100, np.uint8))
    gray16 = write_raster(tmp_path / "g16.tif", np.full((300, 300), 100, np.uint16))
    backend = make_backend("cog", workdir=str(tmp_path / "cache"), compress="jpeg", quality=95)
    entry = backend.ensure(ImageSource(1, rgb))
    assert gdal.Open(entry.path).GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"].endswith("JPEG")
    with pytest.raises(CacheConversionError, match=r"image 2 .*g16.tif.*JPEG"):
        backend.ensure(ImageSource(2, gray16))
    assert not list((tmp_path / "cache" / "entries").glob("*.tif.*"))


def test_unreadable_source_raises_with_id_and_path_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    backend = make_backend("cog", workdir=str(tmp_path / "cache"))
    with pytest.raises(OSError, match=r"image 7 .*bad.tif"):
        backend.ensure(ImageSource(7, str(bad)))
    assert not list((tmp_path / "cache" / "entries").glob("*.tif*"))
