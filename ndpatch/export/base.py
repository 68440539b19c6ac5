"""What every export writer shares: the chip value, the writer protocol, atomic files.

A :class:`Chip` is one exported window: its pixels, its label map, its
annotations (in chip pixels) and where it came from. A :class:`Writer` turns a
block of chips into files and returns one provenance record per chip; the
runner (:mod:`ndpatch.export.runner`) decides which blocks to write, where,
and in how many processes. Every file goes through the cache store's atomic
publish (temp file beside it, fsync, rename), so a killed export leaves no
partial file.

Example:
    >>> import numpy as np, tempfile, os
    >>> dest = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> write_geotiff(dest.replace(".bin", ".tif"), np.zeros((2, 3), np.uint8)) > 0
    True
    >>> window_geotransform((100.0, 2.0, 0.0, 50.0, 0.0, -2.0), row=3, col=4)
    (108.0, 2.0, 0.0, 44.0, 0.0, -2.0)
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from osgeo import gdal, gdal_array, osr

from ndpatch import gdalio  # noqa: F401  (GDAL settings, exceptions on)
from ndpatch.cache.store import atomic_publish as publish

#: Lossless compression of every GeoTIFF an export writes.
GEOTIFF_OPTIONS = ("COMPRESS=DEFLATE", "ZLEVEL=1", "PREDICTOR=1")


def window_geotransform(geotransform: tuple[float, ...], row: int, col: int) -> tuple[float, ...]:
    """The GDAL geotransform of a window whose pixel (0, 0) is source pixel (row, col)."""
    c, a, b, f, d, e = geotransform
    return (c + col * a + row * b, a, b, f + col * d + row * e, d, e)


def write_geotiff(dest: str | os.PathLike, pixels: np.ndarray, geotransform: tuple | None = None,
                  crs_wkt: str | None = None) -> int:
    """Publish an H×W or H×W×C array as a DEFLATE-compressed GeoTIFF; returns its bytes.

    The folder is not fsynced here: the runner does that once per block,
    before the block's part file marks it done.
    """
    data = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, n_bands = data.shape

    def write(tmp: str) -> None:
        options = [*GEOTIFF_OPTIONS, f"INTERLEAVE={'PIXEL' if n_bands > 1 else 'BAND'}"]
        ds = gdal.GetDriverByName("GTiff").Create(
            tmp, width, height, n_bands, gdal_array.NumericTypeCodeToGDALTypeCode(data.dtype),
            options=options)
        if geotransform is not None:
            ds.SetGeoTransform(geotransform)
        if crs_wkt:
            ds.SetProjection(crs_wkt)
        if n_bands == 1:
            ds.GetRasterBand(1).WriteArray(data[..., 0])
        else:
            ds.WriteArray(data, interleave="pixel")
        ds.FlushCache()
        ds = None

    return publish(dest, write, sync_dir=False)


def crs_of(wkt: str | None) -> str | None:
    """A short CRS name (``EPSG:32633``) when the WKT has one, else the WKT itself."""
    if not wkt:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    code = srs.GetAuthorityCode(None)
    name = srs.GetAuthorityName(None)
    return f"{name}:{code}" if code and name else wkt


@dataclass(eq=False)
class Chip:
    """One exported window: pixels, label map, annotations, provenance."""

    index: int
    name: str
    gid: int
    file_name: str
    rows: slice
    cols: slice
    im: np.ndarray
    label: np.ndarray
    annots: Mapping
    split: str = ""
    geotransform: tuple | None = None
    crs_wkt: str | None = None
    coco_annots: list[dict] = field(default_factory=list)

    def record(self) -> dict:
        """The provenance row of this chip (``chips.csv`` columns and what the summary needs)."""
        counts = np.bincount(self.label.ravel())
        values = np.flatnonzero(counts)
        return {
            "chip": self.name, "image_id": int(self.gid), "file_name": self.file_name,
            "row_start": self.rows.start, "row_stop": self.rows.stop,
            "col_start": self.cols.start, "col_stop": self.cols.stop, "split": self.split,
            "aids": [int(a) for a in self.annots["aids"]],
            "class_pixels": {str(int(v)): int(counts[v]) for v in values},
        }


class Writer(Protocol):
    """One output format: writes blocks of chips, then the dataset-level files."""

    #: the ``--format`` name
    name: str
    #: True when a block is one file (a shard) rather than one or more files per chip
    sharded: bool

    def write_block(self, out_dir: Path, block: int, chips: list[Chip]) -> list[dict]:
        """Write the chips of one block; returns each chip's record plus ``files`` and ``bytes``."""

    def finish(self, out_dir: Path, records: Callable[[], object], context: dict) -> None:
        """Write dataset-level files from all records (``records()`` iterates them in chip order)."""
