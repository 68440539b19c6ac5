"""Which pixels of a window hold data: GDAL's mask semantics, on every backend.

An entry's ``mask`` kind is what GDAL's ``GetMaskFlags`` says of band 1 of
its source (``CacheEntry.mask``, recorded in cache sidecars):

=============== ===============================================================
``all_valid``    every pixel inside the image is valid
``nodata``       a pixel is invalid when all its bands equal the nodata value
                 (NaN nodata: are NaN); recomputed from the pixels
``alpha``        GDAL's mask band from the alpha band: valid where alpha > 0
``per_dataset``  a mask band shared by all bands (an internal TIFF mask, ``.msk``)
``per_band``     band 1's own mask band
=============== ===============================================================

Pixels outside the image are never valid. The npy cache keeps mask bands in
``<key>.mask.npy``, the COG keeps them as its internal mask or alpha band,
direct reads ask GDAL: :func:`read_valid_mask` and :func:`valid_fraction`
give the same answer on every backend.

Example (the ``params['valid_fraction']`` of a sample, and ``max_nodata`` for
negatives, are this function on the sample's window):
    >>> import tempfile, numpy as np
    >>> from ndpatch.demo import write_raster
    >>> from ndpatch.cache import ImageSource, make_backend
    >>> tmp = tempfile.mkdtemp()
    >>> pixels = np.full((4, 6, 2), 9, np.uint8)
    >>> pixels[:2] = 0                                  # the top half is nodata in both bands
    >>> path = write_raster(f"{tmp}/a.tif", pixels, nodata=0)
    >>> backend = make_backend("npy", workdir=f"{tmp}/cache")
    >>> entry = backend.ensure(ImageSource(gid=1, path=path))
    >>> entry.mask
    'nodata'
    >>> valid_fraction(backend, entry, slice(0, 4), slice(0, 6))
    0.5
    >>> valid_fraction(backend, entry, slice(2, 6), slice(0, 6))   # half of it below the image
    0.5
    >>> read_valid_mask(backend, entry, slice(1, 3), slice(5, 7)).astype(int)
    array([[0, 0],
           [1, 0]])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from osgeo import gdal

from ndpatch import gdalio
from ndpatch.cache.base import Backend, CacheEntry
from ndpatch.errors import SourceReadError
from ndpatch.target import clip_window

#: Mask kinds read from a GDAL mask band (the others are computed).
MASK_BAND_KINDS = frozenset({"alpha", "per_dataset", "per_band"})


def raster_mask_kind(ds: gdal.Dataset) -> str:
    """The mask kind of an open dataset, from band 1's ``GetMaskFlags``.

    Example:
        >>> ds = gdalio.mem_dataset(np.zeros((2, 2), np.uint8))
        >>> raster_mask_kind(ds), raster_mask_kind(gdalio.mem_dataset(np.zeros((2, 2), np.uint8), nodata=0))
        ('all_valid', 'nodata')
    """
    flags = ds.GetRasterBand(1).GetMaskFlags()
    if flags & gdal.GMF_ALL_VALID:
        return "all_valid"
    if flags & gdal.GMF_ALPHA:
        return "alpha"
    if flags & gdal.GMF_PER_DATASET:
        return "per_dataset"
    if flags & gdal.GMF_NODATA:
        return "nodata"
    return "per_band"


def read_raster_mask(ds: gdal.Dataset, rows: slice, cols: slice, out: np.ndarray, what: str) -> None:
    """Read band 1's GDAL mask band (uint8, 0 = invalid) over an in-bounds rectangle into ``out``."""
    try:
        ds.GetRasterBand(1).GetMaskBand().ReadAsArray(
            cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start, buf_obj=out)
    except RuntimeError as err:
        raise SourceReadError(f"{what}: reading the mask of rows {rows.start}:{rows.stop} "
                              f"cols {cols.start}:{cols.stop} failed: {err}") from err


def read_valid_mask(backend: Backend, entry: CacheEntry, rows: slice, cols: slice,
                    pixels: np.ndarray | None = None) -> np.ndarray:
    """An H×W bool array: True where the window's pixel is inside the image and valid.

    ``pixels`` (optional, ``nodata`` entries only): the in-bounds part of
    the window, all bands, in the entry's dtype, when the caller has read it.
    """
    valid = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
    inner_rows, inner_cols = clip_window(rows, cols, entry.height, entry.width)
    if inner_rows.stop <= inner_rows.start or inner_cols.stop <= inner_cols.start:
        return valid
    inside = valid[inner_rows.start - rows.start:inner_rows.stop - rows.start,
                   inner_cols.start - cols.start:inner_cols.stop - cols.start]
    if entry.mask == "all_valid":
        inside[...] = True
    elif entry.mask == "nodata":
        if pixels is None:
            pixels = np.empty(inside.shape + (entry.bands,), entry.dtype)
            backend.read_into(entry, inner_rows, inner_cols, None, pixels)
        nodata = np.isnan(pixels) if np.isnan(entry.nodata) else pixels == entry.nodata
        np.logical_not(nodata.all(axis=-1), out=inside)
    else:
        mask = np.empty(inside.shape, np.uint8)
        backend.read_mask_into(entry, inner_rows, inner_cols, mask)
        np.greater(mask, 0, out=inside)
    return valid


def valid_fraction(backend: Backend, entry: CacheEntry, rows: slice, cols: slice,
                   pixels: np.ndarray | None = None) -> float:
    """The fraction of the window's pixels that are inside the image and valid (see the module).

    Costs no read for ``all_valid`` entries; ``pixels`` as for :func:`read_valid_mask`.
    """
    if entry.mask == "all_valid":
        inner_rows, inner_cols = clip_window(rows, cols, entry.height, entry.width)
        inside = max(0, inner_rows.stop - inner_rows.start) * max(0, inner_cols.stop - inner_cols.start)
        return inside / ((rows.stop - rows.start) * (cols.stop - cols.start))
    return float(read_valid_mask(backend, entry, rows, cols, pixels).mean())


def resampled_valid_fraction(backend: Backend, parts: Sequence[tuple], tf_rel_to_abs, im: np.ndarray,
                              dims: tuple[int, int]) -> float:
    """The fraction of a resampled or multi-file sample's pixels that hold data.

    ``parts`` are the files read (``(entry, warp to image pixels, bands,
    output positions)``, :meth:`ndpatch.record.ImageRecord.parts`);
    ``tf_rel_to_abs`` maps sample pixels to image pixels; ``dims`` is the image
    (H, W). A sample pixel holds data when its centre is in the image and, for
    at least one file, valid by that file's mask (see the module):
    an ``all_valid`` file wherever it covers the centre (arithmetic only, when
    every file is so); a ``nodata`` file where the sample's channels from it
    are not all nodata; a file with a mask band (alpha, ``.msk``, internal) by
    the mask of the file pixel under the centre. Windows read at scale 1 from
    one file take :func:`valid_fraction` instead (exact).
    """
    m = np.asarray(tf_rel_to_abs.matrix, dtype=np.float64)
    height, width = im.shape[:2]
    cy = m[1, 1] * (np.arange(height) + 0.5) + m[1, 2]
    cx = m[0, 0] * (np.arange(width) + 0.5) + m[0, 2]
    rows_in = (cy > 0) & (cy < dims[0])
    cols_in = (cx > 0) & (cx < dims[1])
    if all(entry.mask == "all_valid" for entry, *_ in parts):
        return float(rows_in.mean() * cols_in.mean())
    valid = np.zeros((height, width), bool)
    for entry, warp, _, positions in parts:
        if entry.mask == "nodata":
            values = im[..., positions]
            nodata = np.isnan(values) if np.isnan(entry.nodata) else values == entry.nodata
            if im.dtype.kind == "f" and not np.isnan(entry.nodata):
                nodata |= np.isnan(values)  # nodata turned into NaN by a 'float' fill
            valid |= ~nodata.all(axis=-1)
        else:
            valid |= _file_valid(backend, entry, np.asarray(warp.inv().matrix) @ m, (height, width))
    valid &= rows_in[:, None] & cols_in[None, :]
    return float(valid.mean())


def _file_valid(backend: Backend, entry: CacheEntry, file_from_sample: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whether each sample pixel's centre falls on a valid pixel of ``entry``'s file (outside it: not)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    f = file_from_sample
    rows = np.floor(f[1, 0] * xs + f[1, 1] * ys + f[1, 2]).astype(np.int64)
    cols = np.floor(f[0, 0] * xs + f[0, 1] * ys + f[0, 2]).astype(np.int64)
    inside = (rows >= 0) & (rows < entry.height) & (cols >= 0) & (cols < entry.width)
    valid = np.zeros(shape, bool)
    if entry.mask == "all_valid" or not inside.any():
        valid[inside] = entry.mask == "all_valid"
        return valid
    r0, c0 = int(rows[inside].min()), int(cols[inside].min())
    mask = read_valid_mask(backend, entry, slice(r0, int(rows[inside].max()) + 1),
                           slice(c0, int(cols[inside].max()) + 1))
    valid[inside] = mask[rows[inside] - r0, cols[inside] - c0]
    return valid
