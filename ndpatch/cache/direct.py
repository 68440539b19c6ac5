"""The no-cache backend: windowed reads straight from the source through GDAL.

Works for every raster ndpatch opens (:data:`ndpatch.gdalio.SOURCE_DRIVERS`:
GeoTIFF, PNG, JPEG, JP2, ... and ``/vsizip/`` paths to them; VRTs with
``allow_vrt=True``); only the window is read, never the whole image.

Example:
    >>> backend = DirectBackend()
    >>> backend.name
    'direct'
"""
from __future__ import annotations

import numpy as np
from osgeo import gdal

from ndpatch import gdalio, remote
from ndpatch.cache.base import CacheEntry, ImageSource
from ndpatch.cache.validity import raster_mask_kind, read_raster_mask


def entry_from_raster(source: ImageSource, path: str, kind: str, opener=gdalio.SOURCE, **meta) -> CacheEntry:
    """Describe the raster at ``path``, as it is now, as a CacheEntry read through ``opener``.

    ``opener`` is how the pool opens ``path`` (:func:`ndpatch.gdalio.source_opener`'s
    rules, or :func:`ndpatch.gdalio.open_cache_file`); it is kept in ``meta``.
    """
    identity = gdalio.file_identity(path, source.describe())
    ds = gdalio.POOL.get(path, source.describe(), identity, opener)
    info = gdalio.raster_info(ds)
    return CacheEntry(
        gid=source.gid, source=remote.display(source.path), path=path, kind=kind,
        height=info.height, width=info.width, bands=info.bands, dtype=info.dtype,
        nodata=info.nodata, band_names=info.band_names, geotransform=info.geotransform,
        crs_wkt=info.crs_wkt, identity=identity, mask=raster_mask_kind(ds),
        meta={"raster": info, "opener": opener, **meta},
    )


class DirectBackend:
    """Read windows from the source raster itself (``backend=None``).

    Args:
        allow_vrt: also read GDAL VRTs, when every file they reference is
            inside the dataset's folder (``ImageSource.bundle_dpath``).
    """

    name = "direct"
    allow_vrt = False

    def __init__(self, allow_vrt: bool = False):
        self.allow_vrt = bool(allow_vrt)

    def ensure(self, source: ImageSource) -> CacheEntry:
        opener = gdalio.source_opener(self.allow_vrt, source.bundle_dpath)
        return entry_from_raster(source, source.path, kind="gdal", opener=opener)

    def gdal_dataset(self, entry: CacheEntry) -> gdal.Dataset:
        """This thread's open dataset of a GDAL-read entry, opened as the entry says (warp reads it)."""
        return gdalio.POOL.get(entry.path, entry.describe(), entry.identity,
                               entry.meta.get("opener", gdalio.SOURCE))

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        gdalio.read_into(self.gdal_dataset(entry), cols.start, rows.start, cols.stop - cols.start,
                         rows.stop - rows.start, bands, out, entry.describe())

    def read_mask_into(self, entry: CacheEntry, rows: slice, cols: slice, out: np.ndarray) -> None:
        read_raster_mask(self.gdal_dataset(entry), rows, cols, out, entry.describe())
