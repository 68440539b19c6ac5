"""ndpatch.warp: resampled window reads against independent GDAL / numpy references."""
import kwimage
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from osgeo import gdal

from ndpatch.cache.base import read_window
from ndpatch.cache.direct import DirectBackend
from ndpatch.cache.base import ImageSource
from ndpatch.demo import random_pixels, write_raster
from ndpatch.errors import TargetError
from ndpatch.warp import _binding_accepts, axis_segments, read_resampled

RNG = np.random.default_rng(7)
PIXELS = random_pixels((48, 40, 3), "uint16", RNG)


class MemoryBackend:
    """A non-GDAL backend: only ``read_into`` over an in-memory array."""

    name = "memory"

    def __init__(self, pixels):
        self.pixels = pixels

    def read_into(self, entry, rows, cols, bands, out):
        data = self.pixels[rows, cols]
        out[...] = data if bands is None else data[..., bands]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A tiled GeoTIFF without overviews, its entry and backend."""
    path = write_raster(tmp_path_factory.mktemp("warp") / "plain.tif", PIXELS,
                        options=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    backend = DirectBackend()
    return backend, backend.ensure(ImageSource(gid=1, path=path))


@pytest.fixture(scope="module")
def with_overviews(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("warp") / "ovr.tif")
    write_raster(path, PIXELS, options=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    ds = gdal.Open(path, gdal.GA_Update)
    ds.BuildOverviews("AVERAGE", [2, 4])
    del ds
    backend = DirectBackend()
    return backend, backend.ensure(ImageSource(gid=2, path=path))


def nearest_reference(pixels, offset, scale, shape, fill):
    """Nearest-neighbour sampling at output pixel centres; centres not strictly inside → fill."""
    (oy, ox), (sy, sx), (h, w) = offset, scale, shape
    cy = oy + sy * (np.arange(h) + 0.5)
    cx = ox + sx * (np.arange(w) + 0.5)
    in_y = (cy > 0) & (cy < pixels.shape[0])
    in_x = (cx > 0) & (cx < pixels.shape[1])
    iy = np.clip(np.floor(cy).astype(int), 0, pixels.shape[0] - 1)
    ix = np.clip(np.floor(cx).astype(int), 0, pixels.shape[1] - 1)
    out = pixels[iy][:, ix].copy()
    out[~(in_y[:, None] & in_x[None, :])] = fill
    return out


@pytest.mark.parametrize("offset", [(0, 0), (5, -3), (-10, 30), (45, 38)])
def test_identity_is_exact_read_window(plain, offset):
    backend, entry = plain
    tf = kwimage.Affine.translate((offset[1], offset[0]))
    got = read_resampled(backend, entry, tf, (13, 11), [2, 0], 9)
    rows, cols = slice(offset[0], offset[0] + 13), slice(offset[1], offset[1] + 11)
    np.testing.assert_array_equal(got, read_window(backend, entry, rows, cols, [2, 0], 9))


@settings(max_examples=60, deadline=None)
@given(oy=st.integers(-60, 60), ox=st.integers(-60, 60), half_y=st.booleans(), half_x=st.booleans(),
       sy=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), sx=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]),
       h=st.integers(1, 20), w=st.integers(1, 20))
def test_nearest_matches_centre_sampling(plain, oy, ox, half_y, half_x, sy, sx, h, w):
    backend, entry = plain
    offset = (oy / 2 + 0.25 * half_y, ox / 2 + 0.25 * half_x)
    tf = kwimage.Affine.translate((offset[1], offset[0])) @ kwimage.Affine.scale((sx, sy))
    got = read_resampled(backend, entry, tf, (h, w), None, 5, interpolation="nearest")
    np.testing.assert_array_equal(got, nearest_reference(PIXELS, offset, (sy, sx), (h, w), 5))


def test_half_scale_reads_the_overview(with_overviews):
    backend, entry = with_overviews
    tf = kwimage.Affine.translate((8, 12)) @ kwimage.Affine.scale(2)
    got = read_resampled(backend, entry, tf, (10, 12), None, None, interpolation="linear")
    ds = gdal.Open(entry.path)
    ovr = np.stack([ds.GetRasterBand(b + 1).GetOverview(0).ReadAsArray(4, 6, 12, 10) for b in range(3)], -1)
    np.testing.assert_array_equal(got, ovr)


def test_memory_backend_equals_gdal_path(plain):
    backend, entry = plain
    memory = MemoryBackend(PIXELS)
    tf = kwimage.Affine.translate((-3.5, 7.25)) @ kwimage.Affine.scale((1.5, 0.75))
    for interpolation in ("nearest", "linear", "cubic", "average"):
        expected = read_resampled(backend, entry, tf, (30, 33), [1], 0, interpolation=interpolation)
        got = read_resampled(memory, entry, tf, (30, 33), [1], 0, interpolation=interpolation)
        np.testing.assert_array_equal(got, expected)


def test_antialias_switch_changes_downsampling():
    """A one-pixel checkerboard: filtered downsampling averages it, point sampling aliases."""
    board = (np.indices((64, 64)).sum(0) % 2 * 200).astype(np.uint8)[..., None]
    from ndpatch.cache.base import CacheEntry
    entry = CacheEntry(gid=3, source="mem", path="mem", kind="memory", height=64, width=64, bands=1,
                       dtype=np.dtype("uint8"), nodata=None, band_names=("gray",))
    tf = kwimage.Affine.scale(3)  # output centres land on source pixel centres
    smooth = read_resampled(MemoryBackend(board), entry, tf, (21, 21), None, None,
                            interpolation="linear", antialias=True)
    aliased = read_resampled(MemoryBackend(board), entry, tf, (21, 21), None, None,
                             interpolation="linear", antialias=False)
    assert np.abs(smooth.astype(int) - 100).max() <= 25
    assert set(np.unique(aliased)) <= {0, 200}


def test_nan_fill_and_nodata(tmp_path):
    pixels = np.arange(100, dtype=np.float32).reshape(10, 10)
    pixels[4, 4] = -1
    path = write_raster(tmp_path / "nd.tif", pixels, nodata=-1)
    backend = DirectBackend()
    entry = backend.ensure(ImageSource(gid=4, path=path))
    tf = kwimage.Affine.translate((-2, 0)) @ kwimage.Affine.scale(0.5)
    got = read_resampled(backend, entry, tf, (20, 20), None, float("nan"), interpolation="nearest")[..., 0]
    assert np.isnan(got[:, :4]).all() and np.isnan(got[8:10, 8 + 4:10 + 4]).all()
    assert got[0, 4] == 0 and got[1, 5] == 0 and got[0, 6] == 1


def test_rejects_rotation_and_unknown_interpolation(plain):
    backend, entry = plain
    with pytest.raises(TargetError, match="image 1"):
        read_resampled(backend, entry, kwimage.Affine.rotate(0.3), (4, 4), None, None)
    with pytest.raises(TargetError, match="interpolation"):
        read_resampled(backend, entry, kwimage.Affine.scale(2), (4, 4), None, None, interpolation="bogus")


def test_axis_segments_cover_centres_inside():
    for offset in np.arange(-5, 5, 0.25):
        for scale in (0.3, 0.5, 1, 2.5, 7):
            segs = axis_segments(offset, scale, 9, 6)
            covered = [j for a, b, _, _ in segs for j in range(a, b)]
            centres = offset + scale * (np.arange(9) + 0.5)
            assert covered == [j for j in range(9) if 0 < centres[j] < 6]
            for a, b, s0, s1 in segs:
                assert s0 < s1 and _binding_accepts(s0, s1 - s0, 6)


def test_point_sampling_reads_the_overview(with_overviews):
    """antialias=False at scale 2 interpolates overview level 0 at its pixel centres: exact overview pixels."""
    backend, entry = with_overviews
    tf = kwimage.Affine.translate((8, 12)) @ kwimage.Affine.scale(2)
    got = read_resampled(backend, entry, tf, (10, 12), [1], None, interpolation="cubic", antialias=False)
    ds = gdal.Open(entry.path)
    ovr = ds.GetRasterBand(2).GetOverview(0).ReadAsArray(4, 6, 12, 10)
    np.testing.assert_array_equal(got[..., 0], ovr)
