"""Resampled window reads: a window of an entry on another pixel grid (scale + translation).

``tf`` is an axis-aligned ``kwimage.Affine`` from output pixel coordinates to
source pixel coordinates (corner convention: output pixel ``(r, c)`` covers
source ``[tf(c), tf(c + 1)) × [tf(r), tf(r + 1))``). GDAL does the resampling
(``RasterIO`` with a floating-point source window and a smaller or larger
buffer), so downsampling reads from the source's overviews when it has them,
never full resolution resized in Python. A unit scale with an integer
translation is the exact :func:`~ndpatch.cache.base.read_window` path.

An output pixel whose centre is not strictly inside the image gets the fill value,
like :func:`read_window`; pixels cut by the image edge are interpolated from
the part of their footprint inside the image (centred on the true centre).

Backends: entries of kind ``'gdal'``/``'cog'`` are read through the GDAL
handle pool; a backend may instead offer ``gdal_dataset(entry) -> gdal.Dataset``
(e.g. a memmap wrapped as a MEM dataset); any other backend's in-bounds
footprint is read with ``read_into`` and resampled by GDAL in memory.

Example:
    >>> import kwimage, numpy as np
    >>> from ndpatch.cache.base import CacheEntry
    >>> pixels = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    >>> class Memory:
    ...     def read_into(self, entry, rows, cols, bands, out):
    ...         out[...] = pixels[rows, cols]
    >>> entry = CacheEntry(gid=1, source="mem", path="mem", kind="memory", height=4, width=4,
    ...                    bands=1, dtype=np.dtype("uint8"), nodata=None, band_names=("gray",))
    >>> half = kwimage.Affine.coerce(scale=2)          # output pixel = 2×2 source pixels
    >>> read_resampled(Memory(), entry, half, (2, 2), None, None, interpolation="average")[..., 0]
    array([[ 3,  5],
           [11, 13]], dtype=uint8)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from osgeo import gdal, gdal_array

from ndpatch import gdalio
from ndpatch.cache.base import Backend, CacheEntry, fill_value, read_window
from ndpatch.errors import SourceReadError, TargetError

#: Interpolation names (kwimage's and GDAL's) → (GDAL RasterIO algorithm, gdalwarp name).
INTERPOLATIONS = {
    "nearest": (gdal.GRIORA_NearestNeighbour, "near"),
    "linear": (gdal.GRIORA_Bilinear, "bilinear"),
    "bilinear": (gdal.GRIORA_Bilinear, "bilinear"),
    "cubic": (gdal.GRIORA_Cubic, "cubic"),
    "cubicspline": (gdal.GRIORA_CubicSpline, "cubicspline"),
    "lanczos": (gdal.GRIORA_Lanczos, "lanczos"),
    "area": (gdal.GRIORA_Average, "average"),
    "average": (gdal.GRIORA_Average, "average"),
    "mode": (gdal.GRIORA_Mode, "mode"),
    "gauss": (gdal.GRIORA_Gauss, "bilinear"),
}
#: Interpolations whose kernel GDAL widens when downsampling (what ``antialias`` switches).
_KERNEL_METHODS = {"linear", "bilinear", "cubic", "cubicspline", "lanczos", "gauss"}
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class GridMap:
    """An axis-aligned map from output pixels to source pixels: ``src = scale * out + offset``."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    @classmethod
    def from_affine(cls, tf: Any, what: str = "window") -> "GridMap":
        """Check that ``tf`` (kwimage.Affine or 3×3 matrix) is scale + translation only."""
        m = np.asarray(getattr(tf, "matrix", tf), dtype=np.float64)
        if m.shape != (3, 3) or abs(m[0, 1]) > _EPS or abs(m[1, 0]) > _EPS:
            raise TargetError(f"{what}: only scale + translation warps are supported, got {m.tolist()}")
        if not (m[0, 0] > 0 and m[1, 1] > 0):
            raise TargetError(f"{what}: warp scales must be positive, got {m[0, 0]}, {m[1, 1]}")
        return cls(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]))

    def integer_window(self, shape: tuple[int, int]) -> tuple[slice, slice] | None:
        """The source (rows, cols) when this is a unit scale with an integer shift, else None."""
        if self.scale_x != 1 or self.scale_y != 1:
            return None
        if self.offset_x != round(self.offset_x) or self.offset_y != round(self.offset_y):
            return None
        r0, c0 = int(round(self.offset_y)), int(round(self.offset_x))
        return slice(r0, r0 + shape[0]), slice(c0, c0 + shape[1])


def axis_segments(offset: float, scale: float, n_out: int, n_src: int) -> list[tuple[int, int, float, float]]:
    """Runs of output pixels with their source interval, for pixels whose centre is in the image.

    Returns ``(out_start, out_stop, src_start, src_stop)``: one run of pixels
    wholly inside ``[0, n_src)`` with their exact source span, plus single
    pixels cut by the image edge, whose span is shrunk symmetrically about
    their centre. Every span is one GDAL's Python bindings accept (they round
    a floating-point window to integers, and that must stay inside the image).

    Example:
        >>> axis_segments(-0.5, 2.0, 4, 6)
        [(0, 1, 0.0, 1.0), (1, 3, 1.5, 5.5)]
    """
    lo = max(math.ceil(-offset / scale - _EPS), 0)
    hi = min(math.floor((n_src - offset) / scale + _EPS), n_out)
    singles = [j for j in (lo - 1, hi) if 0 <= j < n_out and not lo <= j < hi]
    while hi > lo and not _binding_accepts(offset + scale * lo, scale * (hi - lo), n_src):
        hi -= 1
        singles.append(hi)
    segments = [(lo, hi, offset + scale * lo, offset + scale * hi)] if hi > lo else []
    for j in set(singles):
        centre = offset + scale * (j + 0.5)
        if not 0 < centre < n_src:
            continue
        wanted = 2 * min(centre, n_src - centre, scale / 2)
        width = next(w for w in (wanted, wanted - 0.5, wanted - 1, 1.0)
                     if w > 0 and _binding_accepts(centre - w / 2, w, n_src))
        segments.append((j, j + 1, centre - width / 2, centre + width / 2))
    return sorted(segments)


def _binding_accepts(start: float, size: float, n_src: int) -> bool:
    """Whether GDAL's numpy bindings turn this float span into a non-empty in-image integer window."""
    n_start, n_size = int(start + 0.5), int(size + 0.5)  # what gdal_array does (C truncation)
    return n_size >= 1 and 0 <= n_start and n_start + n_size <= n_src


def gdal_source(backend: Backend, entry: CacheEntry) -> gdal.Dataset | None:
    """The GDAL dataset to resample ``entry`` from, or None when only ``read_into`` can read it."""
    opener = getattr(backend, "gdal_dataset", None)
    if opener is not None:
        return opener(entry)
    if entry.kind in ("gdal", "cog"):
        return gdalio.POOL.get(entry.path, entry.describe(), entry.identity)
    return None


def read_resampled(backend: Backend, entry: CacheEntry, tf: Any, shape: tuple[int, int],
                   bands: list[int] | None, fill: float | None, dtype: np.dtype | None = None, *,
                   interpolation: str = "linear", antialias: bool = True,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Read the output grid ``shape`` (H, W) whose pixels map to the source through ``tf``.

    Same contract as :func:`read_window` (H×W×C, writable, C-contiguous, fill
    outside the image). ``antialias=False`` stops GDAL from widening the
    interpolation kernel when downsampling (point interpolation, which aliases).
    """
    grid = GridMap.from_affine(tf, entry.describe())
    window = grid.integer_window(shape)
    if window is not None:
        return read_window(backend, entry, *window, bands, fill, dtype, out)
    if interpolation not in INTERPOLATIONS:
        raise TargetError(f"{entry.describe()}: unknown interpolation {interpolation!r}; "
                          f"expected one of {sorted(INTERPOLATIONS)}")
    height, width = shape
    n_bands = entry.bands if bands is None else len(bands)
    dtype = entry.dtype if dtype is None else np.dtype(dtype)
    if out is None:
        out = np.empty((height, width, n_bands), dtype=dtype)
    elif out.shape != (height, width, n_bands) or out.dtype != dtype:
        raise TargetError(f"{entry.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the window needs {(height, width, n_bands)} {dtype}")
    out[...] = fill_value(entry, fill, dtype)
    rows = axis_segments(grid.offset_y, grid.scale_y, height, entry.height)
    cols = axis_segments(grid.offset_x, grid.scale_x, width, entry.width)
    if rows and cols:
        point_sampled = (not antialias and interpolation in _KERNEL_METHODS
                         and max(grid.scale_x, grid.scale_y) > 1)
        ds = gdal_source(backend, entry)
        origin = (0, 0)
        if ds is None:
            ds, origin = _footprint_dataset(backend, entry, grid, rows, cols, bands)
            bands = None
        with gdalio.corrupt_data_errors(entry.describe(), ds):
            if point_sampled:
                _warp_point_sampled(ds, entry, grid, origin, bands, out, interpolation)
            else:
                _read_segments(ds, entry, rows, cols, origin, bands, out, INTERPOLATIONS[interpolation][0])
    if fill is not None and math.isnan(fill) and entry.nodata is not None:
        out[out == entry.nodata] = np.nan
    return out


def _read_segments(ds: gdal.Dataset, entry: CacheEntry, rows: list, cols: list,
                   origin: tuple[int, int], bands: list[int] | None, out: np.ndarray,
                   alg: int) -> None:
    band_list = list(range(1, ds.RasterCount + 1)) if bands is None else [b + 1 for b in bands]
    oy, ox = origin
    for r0, r1, y0, y1 in rows:
        for c0, c1, x0, x1 in cols:
            buf = out[r0:r1, c0:c1]
            try:
                if len(band_list) == 1:
                    ds.GetRasterBand(band_list[0]).ReadAsArray(
                        x0 - ox, y0 - oy, x1 - x0, y1 - y0, buf_xsize=c1 - c0, buf_ysize=r1 - r0,
                        buf_obj=buf[..., 0], resample_alg=alg)
                else:
                    ds.ReadAsArray(x0 - ox, y0 - oy, x1 - x0, y1 - y0, buf_obj=buf,
                                   buf_xsize=c1 - c0, buf_ysize=r1 - r0, resample_alg=alg,
                                   interleave="pixel", band_list=band_list)
            except (RuntimeError, ValueError) as err:
                raise SourceReadError(f"{entry.describe()}: resampled read of x={x0:g}..{x1:g} "
                                      f"y={y0:g}..{y1:g} failed: {err}") from err


def _footprint_dataset(backend: Backend, entry: CacheEntry, grid: GridMap, rows: list, cols: list,
                       bands: list[int] | None) -> tuple[gdal.Dataset, tuple[int, int]]:
    """The in-bounds source footprint (plus a kernel margin) read by the backend, as a MEM dataset."""
    margin_y = math.ceil(4 * max(grid.scale_y, 1))
    margin_x = math.ceil(4 * max(grid.scale_x, 1))
    y0 = max(math.floor(rows[0][2]) - margin_y, 0)
    y1 = min(math.ceil(rows[-1][3]) + margin_y, entry.height)
    x0 = max(math.floor(cols[0][2]) - margin_x, 0)
    x1 = min(math.ceil(cols[-1][3]) + margin_x, entry.width)
    n_bands = entry.bands if bands is None else len(bands)
    pixels = np.empty((y1 - y0, x1 - x0, n_bands), dtype=entry.dtype)
    backend.read_into(entry, slice(y0, y1), slice(x0, x1), bands, pixels)
    ds = gdal_array.OpenArray(pixels, interleave="pixel")
    ds.pixels = pixels  # keep the memory alive as long as the dataset
    if entry.nodata is not None:
        for i in range(n_bands):
            ds.GetRasterBand(i + 1).SetNoDataValue(entry.nodata)
    return ds, (y0, x0)


def _warp_point_sampled(ds: gdal.Dataset, entry: CacheEntry, grid: GridMap, origin: tuple[int, int],
                        bands: list[int] | None, out: np.ndarray, interpolation: str) -> None:
    """Interpolate at output pixel centres without widening the kernel (gdalwarp XSCALE=YSCALE=1).

    Reads the coarsest overview that is still at least as fine as the output grid.
    """
    oy, ox = origin
    factor_x = factor_y = 1.0
    level = _overview_level(ds, min(grid.scale_x, grid.scale_y)) if entry.kind in ("gdal", "cog") else None
    if level is not None:
        overview = gdal.Translate("", ds, format="VRT", overviewLevel=level)
        overview.source = ds  # the VRT reads from ds: keep it open as long as the VRT
        ds = overview
        factor_x = entry.width / ds.RasterXSize
        factor_y = entry.height / ds.RasterYSize
    # a VRT does not own its source dataset: keep ``ds`` referenced while ``src`` is used
    src = ds if bands is None else gdal.Translate("", ds, format="VRT", bandList=[b + 1 for b in bands])
    target = out if out.flags.c_contiguous else out.copy()
    dst = gdal_array.OpenArray(target, interleave="pixel")
    dst.SetGeoTransform(((grid.offset_x - ox) / factor_x, grid.scale_x / factor_x, 0.0,
                         (grid.offset_y - oy) / factor_y, 0.0, grid.scale_y / factor_y))
    try:
        gdal.Warp(dst, src, resampleAlg=INTERPOLATIONS[interpolation][1],
                  warpOptions=["XSCALE=1", "YSCALE=1", "SKIP_NOSOURCE=YES"],
                  transformerOptions=["SRC_METHOD=NO_GEOTRANSFORM"])
    except RuntimeError as err:
        raise SourceReadError(f"{entry.describe()}: point-sampled warp failed: {err}") from err
    if target is not out:
        out[...] = target


def _overview_level(ds: gdal.Dataset, scale: float) -> int | None:
    """The coarsest overview whose decimation is at most ``scale`` (None: full resolution)."""
    band = ds.GetRasterBand(1)
    best = None
    for level in range(band.GetOverviewCount()):
        factor = ds.RasterXSize / band.GetOverview(level).XSize
        if factor <= scale + _EPS:
            best = level
    return best


def read_aligned(backend: Backend, parts: list[tuple[CacheEntry, Any, list[int], list[int]]],
                 tf: Any, shape: tuple[int, int], n_channels: int, fill: float | None,
                 dtype: np.dtype | None = None, *, interpolation: str = "linear",
                 antialias: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """Read several rasters (e.g. bands at 10, 20 and 60 m) onto one output grid.

    ``parts`` holds ``(entry, warp, bands, positions)``: ``warp`` maps that
    entry's pixels to the common (image) pixels, ``bands`` are its bands to read
    and ``positions`` their channel positions in the output. ``tf`` maps output
    pixels to image pixels. Returns H×W×``n_channels`` (``out`` when given).
    """
    if dtype is None:
        dtype = np.result_type(*[entry.dtype for entry, *_ in parts])
    dtype = np.dtype(dtype)
    if out is None:
        out = np.empty((*shape, n_channels), dtype=dtype)
    elif out.shape != (*shape, n_channels) or out.dtype != dtype:
        raise TargetError(f"{parts[0][0].describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the window needs {(*shape, n_channels)} {dtype}")
    for entry, warp, bands, positions in parts:
        to_entry = warp.inv() @ tf
        if list(positions) == list(range(positions[0], positions[0] + len(positions))):
            read_resampled(backend, entry, to_entry, shape, bands, fill, dtype, interpolation=interpolation,
                           antialias=antialias, out=out[..., positions[0]:positions[0] + len(positions)])
        else:
            out[..., positions] = read_resampled(backend, entry, to_entry, shape, bands, fill, dtype,
                                                 interpolation=interpolation, antialias=antialias)
    return out
