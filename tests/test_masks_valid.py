"""Valid-pixel masks (ndpatch.cache.validity): what each cache keeps, and the direct backend.

(Every cache backend's windows are checked against GDAL in BackendConformance.)
"""
import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from ndpatch.cache import CacheStore, ImageSource, make_backend, read_valid_mask, valid_fraction, validate_entry
from ndpatch.testing import gdal_valid_mask, masked_rasters

KINDS = {"internal_mask": "per_dataset", "alpha_rgba": "alpha", "alpha_rgba_uint16": "alpha", "nodata": "nodata"}


@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    return masked_rasters(tmp_path_factory.mktemp("masked"))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_direct_reads_give_gdals_mask(rasters, name):
    backend = make_backend(None)
    entry = backend.ensure(ImageSource(1, rasters[name]))
    assert entry.mask == KINDS[name]
    for rows, cols in [(slice(0, 150), slice(0, 130)), (slice(-20, 40), slice(100, 170)), (slice(60, 61), slice(3, 90))]:
        expected = gdal_valid_mask(rasters[name], rows, cols)
        np.testing.assert_array_equal(read_valid_mask(backend, entry, rows, cols), expected)
        assert valid_fraction(backend, entry, rows, cols) == expected.mean()


def test_the_issues_alpha_case_is_no_longer_all_valid(rasters):
    backend = make_backend(None)
    entry = backend.ensure(ImageSource(1, rasters["alpha_rgba_uint16"]))
    whole = (slice(0, 150), slice(0, 130))
    assert valid_fraction(backend, entry, *whole) == gdal_valid_mask(rasters["alpha_rgba_uint16"], *whole).mean() < 0.5


@pytest.mark.parametrize("name", sorted(KINDS))
def test_npy_keeps_mask_bands_in_a_mask_file_and_recomputes_nodata(rasters, name, tmp_path):
    entry = make_backend("npy", workdir=str(tmp_path)).ensure(ImageSource(1, rasters[name]))
    sidecar = entry.meta["sidecar"]
    assert sidecar["mask"]["kind"] == KINDS[name]
    mask_file = Path(entry.path).with_name(sidecar["key"] + ".mask.npy")
    if KINDS[name] == "nodata":
        assert sidecar["mask"]["file"] is None and not mask_file.exists()
        return
    assert sidecar["mask"]["file"] == mask_file.name
    ds = gdal.Open(rasters[name])
    np.testing.assert_array_equal(np.load(mask_file), ds.GetRasterBand(1).GetMaskBand().ReadAsArray())


@pytest.mark.parametrize("name", ["internal_mask", "alpha_rgba"])
def test_cog_keeps_the_mask_as_gdal_reads_it(rasters, name, tmp_path):
    entry = make_backend("cog", workdir=str(tmp_path)).ensure(ImageSource(1, rasters[name]))
    cog, src = gdal.Open(entry.path), gdal.Open(rasters[name])
    assert not entry.meta["sidecar"]["in_place"]
    assert cog.GetRasterBand(1).GetMaskFlags() == src.GetRasterBand(1).GetMaskFlags()
    np.testing.assert_array_equal(cog.GetRasterBand(1).GetMaskBand().ReadAsArray(),
                                  src.GetRasterBand(1).GetMaskBand().ReadAsArray())


def test_checksums_cover_the_mask_file(rasters, tmp_path):
    source = ImageSource(1, rasters["internal_mask"])
    entry = make_backend("npy", workdir=str(tmp_path)).ensure(source)
    mask_file = Path(entry.path).with_name(entry.meta["sidecar"]["key"] + ".mask.npy")
    damaged = np.load(mask_file)
    damaged[75, 50] ^= 0xFF
    with open(mask_file, "r+b") as file:  # same size, same header: only the checksum can tell
        file.seek(mask_file.stat().st_size - damaged.size)
        file.write(damaged.tobytes())
    store = CacheStore(tmp_path)
    assert [r.status for r in store.verify(validate_entry, quick=True)] == ["ok"]
    [result] = store.verify(validate_entry)
    assert result.status == "corrupt" and result.reason.startswith(mask_file.name)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = make_backend("npy", workdir=str(tmp_path)).ensure(source)
    np.testing.assert_array_equal(read_valid_mask(make_backend("npy", workdir=str(tmp_path)), rebuilt,
                                                  slice(0, 150), slice(0, 130)),
                                  gdal_valid_mask(rasters["internal_mask"], slice(0, 150), slice(0, 130)))


def test_a_missing_mask_file_is_rebuilt_on_open(rasters, tmp_path):
    source = ImageSource(1, rasters["alpha_rgba"])
    entry = make_backend("npy", workdir=str(tmp_path)).ensure(source)
    Path(entry.path).with_name(entry.meta["sidecar"]["key"] + ".mask.npy").unlink()
    with pytest.warns(RuntimeWarning, match=r"rebuilding.*mask.npy is None bytes"):
        assert make_backend("npy", workdir=str(tmp_path)).ensure(source).meta["converted"]
    assert json.loads(Path(tmp_path, "entries", entry.meta["sidecar"]["key"] + ".json").read_text())["mask"]["kind"] == "alpha"
