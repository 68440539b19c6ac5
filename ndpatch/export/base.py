"""What every export writer shares: the chip value, the writer protocol, naming rules, atomic files.

A :class:`Chip` is one exported window: its pixels, its label map, its
annotations (in chip pixels) and where it came from. A :class:`Writer` turns a
block of chips into files and returns one provenance record per chip; the
runner (:mod:`ndpatch.export.runner`) decides which blocks to write, where,
and in how many processes. Every file goes through the cache store's atomic
publish (temp file beside it, fsync, rename), so a killed export leaves no
partial file, and a full disk raises :class:`~ndpatch.errors.DiskFullError`. Each writer's
:class:`NamingRule` values say which names it produces: the only files an
export ever deletes.

Example:
    >>> import numpy as np, tempfile, os
    >>> dest = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> write_geotiff(dest.replace(".bin", ".tif"), np.zeros((2, 3), np.uint8)) > 0
    True
    >>> window_geotransform((100.0, 2.0, 0.0, 50.0, 0.0, -2.0), row=3, col=4)
    (108.0, 2.0, 0.0, 44.0, 0.0, -2.0)
    >>> rule = NamingRule("images", "chip_", ".tif")
    >>> rule.name(12), rule.number("chip_000012.tif"), rule.number("chip_12.tif"), rule.number("../x")
    ('images/chip_000012.tif', 12, None, None)
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from osgeo import gdal, gdal_array, osr

from ndpatch import gdalio  # noqa: F401  (GDAL settings, exceptions on)
from ndpatch.cache.store import TEMP_MARK
from ndpatch.cache.store import atomic_publish as publish

#: Lossless compression of every GeoTIFF an export writes.
GEOTIFF_OPTIONS = ("COMPRESS=DEFLATE", "ZLEVEL=1", "PREDICTOR=1")


@dataclass(frozen=True)
class NamingRule:
    """The names of one kind of file a writer publishes: ``<folder>/<prefix><number:06d><suffix>``."""

    folder: str  # relative to the export folder; "" for the folder itself
    prefix: str
    suffix: str

    def name(self, number: int) -> str:
        """The path of file ``number``, relative to the export folder."""
        return f"{self.folder}/{self.file_name(number)}" if self.folder else self.file_name(number)

    def file_name(self, number: int) -> str:
        """The bare name of file ``number`` in :attr:`folder`."""
        return f"{self.prefix}{number:06d}{self.suffix}"

    def number(self, file_name: str) -> int | None:
        """The number of a file called ``file_name`` (no folder) in :attr:`folder`, None if the rule does not make it."""
        match = re.fullmatch(re.escape(self.prefix) + r"(\d{6,})" + re.escape(self.suffix), file_name)
        if match is None or self.file_name(int(match[1])) != file_name:
            return None
        return int(match[1])

    def is_temp(self, file_name: str) -> bool:
        """Whether ``file_name`` is a temp file (or GDAL side file) of publishing one of this rule's files."""
        stem, mark, _ = file_name.partition(TEMP_MARK)
        return bool(mark) and self.number(stem + self.suffix) is not None


def chip_name(index: int) -> str:
    """The file stem of chip ``index``: ``chip_000012``."""
    return f"chip_{index:06d}"


def window_geotransform(geotransform: tuple[float, ...], row: int, col: int) -> tuple[float, ...]:
    """The GDAL geotransform of a window whose pixel (0, 0) is source pixel (row, col)."""
    c, a, b, f, d, e = geotransform
    return (c + col * a + row * b, a, b, f + col * d + row * e, d, e)


def write_geotiff(dest: str | os.PathLike, pixels: np.ndarray, geotransform: tuple | None = None,
                  crs_wkt: str | None = None) -> int:
    """Publish an H×W or H×W×C array as a DEFLATE-compressed GeoTIFF; returns its bytes.

    GDAL encodes the file in memory (``/vsimem/``) and Python writes it out, so a
    failed write (a full disk) is an OSError with its errno and leaves no GDAL
    dataset holding the removed temp file open.
    The folder is not fsynced here: the runner does that once per block,
    before the block's part file marks it done. The bytes are taken after an
    explicit ``FlushCache`` (GDAL 3.6 has no ``Close``): dropping the last name
    of a dataset does not close it while anything else still holds it (a
    profiler's sampled frame does: Dask's workers sample every thread's stack),
    and an unclosed GeoTIFF is only a header, or a directory over unwritten
    (zero) strips.
    """
    data = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, n_bands = data.shape

    def write(tmp: str) -> None:
        memory = f"/vsimem/ndpatch-export-{uuid.uuid4().hex}.tif"
        options = [*GEOTIFF_OPTIONS, f"INTERLEAVE={'PIXEL' if n_bands > 1 else 'BAND'}"]
        try:
            ds = gdal.GetDriverByName("GTiff").Create(
                memory, width, height, n_bands, gdal_array.NumericTypeCodeToGDALTypeCode(data.dtype),
                options=options)
            if geotransform is not None:
                ds.SetGeoTransform(geotransform)
            if crs_wkt:
                ds.SetProjection(crs_wkt)
            if n_bands == 1:
                ds.GetRasterBand(1).WriteArray(data[..., 0])
            else:
                ds.WriteArray(data, interleave="pixel")
            ds.FlushCache()  # the file is complete now, whenever the dataset is closed
            with open(tmp, "wb") as file:
                file.write(gdal.VSIGetMemFileBuffer_unsafe(memory))
            ds = None
        finally:
            gdal.Unlink(memory)

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
    #: the files a block writes: numbered by chip index (per-chip formats) or by block (sharded)
    rules: tuple[NamingRule, ...]
    #: the modules it imports beyond ndpatch's own dependencies (the ``export`` extra)
    needs: tuple[str, ...]

    def write_block(self, out_dir: Path, block: int, chips: list[Chip]) -> list[dict]:
        """Write the chips of one block; returns each chip's record plus ``files`` and ``bytes``."""

    def finish(self, out_dir: Path, records: Callable[[], object], context: dict) -> None:
        """Write dataset-level files from all records (``records()`` iterates them in chip order)."""
