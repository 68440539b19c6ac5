"""GDAL access: process settings, a fork-safe pool of open datasets, windowed reads.

Importing this module calls ``gdal.UseExceptions()`` and applies ndpatch's
GDAL settings (bounded block cache, one decode thread per read, no directory
scans, no ``.aux.xml`` side files). GDAL errors are re-raised as
:class:`~ndpatch.errors.SourceReadError` naming the file.

Example:
    >>> import numpy as np
    >>> from osgeo import gdal
    >>> ds = gdal.GetDriverByName("MEM").Create("", 4, 3, 2, gdal.GDT_Byte)
    >>> ds.GetRasterBand(2).Fill(7)
    0
    >>> out = np.zeros((3, 4, 2), np.uint8)
    >>> read_into(ds, 0, 0, 4, 3, None, out, "example")
    >>> int(out[..., 1].sum())
    84
"""
from __future__ import annotations

import os
import threading
from stat import S_ISREG
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, gdal_array

from ndpatch.errors import SourceReadError

gdal.UseExceptions()

#: Settings applied at import and in every worker (override with environment variables).
GDAL_SETTINGS = {
    "GDAL_CACHEMAX": os.environ.get("NDPATCH_GDAL_CACHEMAX", "64"),  # MB, per process
    "GDAL_NUM_THREADS": "1",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
}


def configure(cachemax_mb: int | None = None) -> None:
    """Apply ndpatch's GDAL settings to this process (call again in new workers).

    ``cachemax_mb`` bounds GDAL's block cache, which is per process.
    """
    for key, value in GDAL_SETTINGS.items():
        gdal.SetConfigOption(key, value)
    if cachemax_mb is not None:
        gdal.SetConfigOption("GDAL_CACHEMAX", str(int(cachemax_mb)))
        gdal.SetCacheMax(int(cachemax_mb) * 1024 * 1024)


configure()


def file_identity(path: str, what: str | None = None) -> tuple:
    """What changes whenever the file at ``path`` is rewritten or replaced; one ``stat`` call.

    Local files: ``(device, inode, size, mtime_ns, ctime_ns)`` (a user can preserve
    size and mtime, e.g. ``cp -p``, but not inode and ctime). GDAL virtual paths
    (``/vsi...``): ``(size, mtime)`` as ``VSIStatL`` reports them. A missing file,
    or one that is not a regular file (a FIFO would hang any reader), raises
    SourceReadError.

    Example:
        >>> import tempfile
        >>> fpath = tempfile.mktemp()
        >>> _ = open(fpath, "wb").write(b"abc")
        >>> file_identity(fpath)[2]
        3
    """
    if path.startswith("/vsi"):
        stat = gdal.VSIStatL(path)
        if stat is None:
            raise SourceReadError(f"{what or path}: GDAL cannot stat it")
        return (int(stat.size), int(stat.mtime))
    try:
        stat = os.stat(path)
    except OSError as err:
        raise SourceReadError(f"{what or path}: file does not exist or cannot be read: {err}") from err
    if not S_ISREG(stat.st_mode):
        raise SourceReadError(f"{what or path}: not a regular file (a pipe, device or directory); "
                              "ndpatch reads raster files only")
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class RasterInfo:
    """What a raster's header says: size, bands, type, nodata, georeferencing, layout."""

    height: int
    width: int
    bands: int
    dtype: np.dtype
    nodata: float | None
    band_names: tuple[str, ...]
    geotransform: tuple[float, ...] | None
    crs_wkt: str | None
    block_size: tuple[int, int]
    compression: str | None
    driver: str


def open_dataset(path: str, what: str | None = None) -> gdal.Dataset:
    """Open a raster read-only; a missing or unreadable file raises SourceReadError."""
    what = what or path
    try:
        ds = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY)
    except RuntimeError as err:
        if not path.startswith("/vsi") and not os.path.exists(path):
            raise SourceReadError(f"{what}: file does not exist") from err
        raise SourceReadError(f"{what}: GDAL cannot open it as a raster: {err}") from err
    if ds is None or ds.RasterCount == 0:
        raise SourceReadError(f"{what}: GDAL finds no raster bands in it")
    return ds


def raster_info(ds: gdal.Dataset) -> RasterInfo:
    """Read the header facts ndpatch needs from an open dataset."""
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    dtype = np.result_type(*[gdal_array.GDALTypeCodeToNumericTypeCode(b.DataType) for b in bands])
    gt = ds.GetGeoTransform(can_return_null=True)
    srs = ds.GetProjectionRef() or None
    return RasterInfo(
        height=ds.RasterYSize,
        width=ds.RasterXSize,
        bands=ds.RasterCount,
        dtype=np.dtype(dtype),
        nodata=bands[0].GetNoDataValue(),
        band_names=tuple(b.GetDescription() for b in bands),
        geotransform=tuple(gt) if gt else None,
        crs_wkt=srs,
        block_size=tuple(bands[0].GetBlockSize()),
        compression=ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE"),
        driver=ds.GetDriver().ShortName,
    )


def read_into(ds: gdal.Dataset, x0: int, y0: int, width: int, height: int,
              bands: list[int] | None, out: np.ndarray, what: str) -> None:
    """Read the in-bounds window (x0, y0, width, height) into ``out`` (H×W×C, any strides).

    ``bands`` are 0-based band indices (None: all). Only the blocks/tiles that
    the window touches are decoded.
    """
    band_list = list(range(1, ds.RasterCount + 1)) if bands is None else [b + 1 for b in bands]
    try:
        if len(band_list) == 1:  # GDAL reads one band through the band API only
            ds.GetRasterBand(band_list[0]).ReadAsArray(x0, y0, width, height, buf_obj=out[..., 0])
        else:
            ds.ReadAsArray(x0, y0, width, height, buf_obj=out, interleave="pixel", band_list=band_list)
    except (RuntimeError, ValueError) as err:
        raise SourceReadError(f"{what}: reading window x={x0} y={y0} w={width} h={height} failed: {err}") from err


def mem_dataset(pixels: np.ndarray, nodata: float | None = None, band_names=None,
                geotransform: tuple | None = None, crs_wkt: str | None = None) -> gdal.Dataset:
    """An H×W or H×W×C array as an in-memory GDAL dataset (to ``CreateCopy`` into any format).

    Example:
        >>> ds = mem_dataset(np.zeros((3, 4, 2), np.uint16), nodata=9, band_names=["a", "b"])
        >>> ds.RasterYSize, ds.RasterXSize, ds.GetRasterBand(2).GetDescription()
        (3, 4, 'b')
    """
    data = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, n_bands = data.shape
    mem = gdal.GetDriverByName("MEM").Create(
        "", width, height, n_bands, gdal_array.NumericTypeCodeToGDALTypeCode(data.dtype))
    for i in range(n_bands):
        band = mem.GetRasterBand(i + 1)
        band.WriteArray(data[..., i])
        if nodata is not None:
            band.SetNoDataValue(float(nodata))
        if band_names:
            band.SetDescription(band_names[i])
    if geotransform is not None:
        mem.SetGeoTransform(geotransform)
    if crs_wkt:
        mem.SetProjection(crs_wkt)
    return mem


class HandlePool:
    """Open GDAL datasets kept per thread, at most ``capacity`` each, least recently used closed first.

    Handles are keyed by path *and* file identity (:func:`file_identity`): a file
    rewritten or replaced at the same path gets a new handle, never the old
    file's. GDAL handles are not thread-safe and must never cross a fork: each
    thread of each process gets its own, and a forked child starts with an
    empty pool (checked by pid on every access). The pool pickles as empty.

    Example:
        >>> pool = HandlePool(capacity=2)
        >>> pool.capacity
        2
    """

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._local = threading.local()

    def _handles(self) -> OrderedDict:
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) != pid:
            local.pid = pid
            local.handles = OrderedDict()
        return local.handles

    def get(self, path: str, what: str | None = None, identity: tuple | None = None) -> gdal.Dataset:
        """The open dataset for ``path`` in this thread, opened on first use.

        ``identity`` is the :func:`file_identity` the caller resolved the file
        as (one ``stat`` is made when it is not given, for ``/vsi`` paths too).
        """
        if identity is None:
            identity = file_identity(path, what)
        handles = self._handles()
        held = handles.get(path)
        if held is not None and held[0] == identity:
            handles.move_to_end(path)
            return held[1]
        ds = open_dataset(path, what)
        handles[path] = (identity, ds)
        handles.move_to_end(path)
        if len(handles) > self.capacity:
            handles.popitem(last=False)
        return ds

    def forget(self, path: str) -> None:
        """Close this thread's handle on ``path``."""
        self._handles().pop(path, None)

    def __len__(self) -> int:
        return len(self._handles())

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])


#: The process-wide pool every GDAL-backed reader uses.
POOL = HandlePool()
