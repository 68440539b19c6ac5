"""The no-cache backend: windowed reads straight from the source through GDAL.

Works for every raster GDAL opens (GeoTIFF, PNG, JPEG, JP2, ``/vsizip/`` ...);
only the window is read, never the whole image.

Example:
    >>> backend = DirectBackend()
    >>> backend.name
    'direct'
"""
from __future__ import annotations

import numpy as np

from ndpatch import gdalio
from ndpatch.cache.base import CacheEntry, ImageSource
from ndpatch.cache.validity import raster_mask_kind, read_entry_mask


def entry_from_raster(source: ImageSource, path: str, kind: str, **meta) -> CacheEntry:
    """Describe the raster at ``path`` (the source or a cache file), as it is now, as a CacheEntry."""
    identity = gdalio.file_identity(path, source.describe())
    ds = gdalio.POOL.get(path, source.describe(), identity)
    info = gdalio.raster_info(ds)
    return CacheEntry(
        gid=source.gid, source=source.path, path=path, kind=kind,
        height=info.height, width=info.width, bands=info.bands, dtype=info.dtype,
        nodata=info.nodata, band_names=info.band_names, geotransform=info.geotransform,
        crs_wkt=info.crs_wkt, identity=identity, mask=raster_mask_kind(ds), meta={"raster": info, **meta},
    )


class DirectBackend:
    """Read windows from the source raster itself (``backend=None``)."""

    name = "direct"

    def ensure(self, source: ImageSource) -> CacheEntry:
        return entry_from_raster(source, source.path, kind="gdal")

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        ds = gdalio.POOL.get(entry.path, entry.describe(), entry.identity)
        gdalio.read_into(ds, cols.start, rows.start, cols.stop - cols.start,
                         rows.stop - rows.start, bands, out, entry.describe())

    def read_mask_into(self, entry: CacheEntry, rows: slice, cols: slice, out: np.ndarray) -> None:
        read_entry_mask(entry, rows, cols, out)
