"""GDAL access: how ndpatch opens rasters, reads windows from them, and keeps them open.

Importing this module calls ``gdal.UseExceptions()`` and sets the only two
process-wide settings ndpatch makes, neither of which changes what GDAL sees of
a file: a bounded block cache (``GDAL_CACHEMAX``, 64 MB, ``NDPATCH_GDAL_CACHEMAX``)
and one decode thread per read (``GDAL_NUM_THREADS=1``). The rest is per open:

- :func:`open_source` opens a dataset's raster as GDAL normally does (``.ovr``,
  ``.msk``, ``.aux.xml``, world files and ENVI ``.hdr`` are read), with the
  drivers in :data:`SOURCE_DRIVERS` only, regular files only, and every further
  file GDAL pulls in checked (:func:`check_source_files`). VRTs only when the
  caller allows them, and only when every file they reference is inside the
  dataset's folder.
- :func:`open_cache_file` opens ndpatch's own cache GeoTIFFs without a directory
  scan or ``.aux.xml`` lookup (:func:`cache_file_config`, thread-local).
- :class:`corrupt_data_errors` turns GDAL's warnings about corrupt or truncated
  data (a truncated JPEG decodes "fine", with a warning) into SourceReadError.
- :class:`HandlePool` keeps open datasets per thread, bounded per process
  (:func:`max_open_files`).

Example:
    >>> import numpy as np
    >>> ds = gdal.GetDriverByName("MEM").Create("", 4, 3, 2, gdal.GDT_Byte)
    >>> ds.GetRasterBand(2).Fill(7)
    0
    >>> out = np.zeros((3, 4, 2), np.uint8)
    >>> read_into(ds, 0, 0, 4, 3, None, out, "example")
    >>> int(out[..., 1].sum())
    84
"""
from __future__ import annotations

import itertools
import os
import posixpath
import re
import resource
import threading
import weakref
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import lru_cache
from stat import S_ISREG
from typing import Sequence

import numpy as np
from osgeo import gdal, gdal_array

from ndpatch import remote
from ndpatch.errors import NdpatchError, SourceReadError
from ndpatch.sidecars import refuse_special_sidecars

gdal.UseExceptions()

#: The process-wide settings (neither changes what GDAL sees of a file).
GDAL_SETTINGS = {
    "GDAL_CACHEMAX": os.environ.get("NDPATCH_GDAL_CACHEMAX", "64"),  # MB, per process
    "GDAL_NUM_THREADS": "1",
}

#: Raster drivers a dataset's source may be read with: formats that are one file plus,
#: at most, sidecars GDAL finds beside it. Everything else is refused (see docs/geo.md).
SOURCE_DRIVERS = (
    "GTiff",        # GeoTIFF, COG, BigTIFF (+ .ovr, .msk, .aux.xml, .tfw)
    "PNG", "JPEG", "WEBP", "GIF", "BIGGIF", "BMP", "PNM",  # photos and label images (+ world files)
    "JP2OpenJPEG",  # JPEG 2000 (Sentinel-2 bands)
    "NITF",         # National Imagery Transmission Format
    "HFA",          # Erdas Imagine .img
    "ENVI", "EHdr",  # raw binary with a .hdr beside it (hyperspectral cubes, .bil DEMs)
)
#: Drivers that read the source's bytes raw, laid out by a header file beside it: the
#: header must sit beside the data file's real location (a symlinked data file with a
#: header of its own would read any file on the machine as pixels).
RAW_DRIVERS = ("ENVI", "EHdr")
#: How deep VRTs may reference VRTs.
MAX_VRT_DEPTH = 8

#: Thread-local settings for ndpatch's own cache files: no directory listing (a cache
#: folder holds thousands of files, and a cache file has no sidecars) and no .aux.xml.
CACHE_FILE_CONFIG = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_PAM_ENABLED": "NO"}

#: GDAL warnings that mean the pixels just decoded are not the file's (libjpeg, libpng, libtiff).
CORRUPT_DATA_WARNING = re.compile(
    r"corrupt|truncat|premature end|unexpected end|bad huffman|bad arithmetic|crc error|"
    r"read error|not enough data", re.IGNORECASE)


def configure(cachemax_mb: int | None = None) -> None:
    """Apply ndpatch's process-wide GDAL settings (call again in new workers).

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
    size and mtime, e.g. ``cp -p``, but not inode and ctime). Objects in storage
    or on a web server: ``(size, version)``, the ETag (else Last-Modified) as
    :func:`ndpatch.remote.stat` last fetched it (no request once known). Other
    GDAL virtual paths (``/vsi...``): ``(size, mtime)`` as ``VSIStatL`` reports
    them. A missing file, or one that is not a regular file (a FIFO would hang
    any reader, a key prefix is a folder), raises SourceReadError.

    Example:
        >>> import tempfile
        >>> fpath = tempfile.mktemp()
        >>> _ = open(fpath, "wb").write(b"abc")
        >>> file_identity(fpath)[2]
        3
    """
    if path.startswith("/vsi"):
        if remote.is_remote(path):
            return remote.stat(path, what).identity()
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


class thread_config:
    """Set GDAL config options for this thread only, inside a ``with`` block (restored after).

    Example:
        >>> with thread_config({"GDAL_PAM_ENABLED": "NO"}):
        ...     gdal.GetConfigOption("GDAL_PAM_ENABLED")
        'NO'
        >>> gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED") is None
        True
    """

    def __init__(self, options: dict[str, str]):
        self.options = options
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> "thread_config":
        for key, value in self.options.items():
            self.saved[key] = gdal.GetThreadLocalConfigOption(key)
            gdal.SetThreadLocalConfigOption(key, value)
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self.saved.items():
            gdal.SetThreadLocalConfigOption(key, value)


def cache_file_config() -> thread_config:
    """The thread-local settings under which ndpatch opens and writes its own cache files."""
    return thread_config(CACHE_FILE_CONFIG)


class corrupt_data_errors:
    """Within the block, a GDAL warning about corrupt or truncated data raises SourceReadError.

    The handler is pushed on this thread's GDAL error stack only. Other
    warnings are passed on as GDAL would have reported them. ``dataset``, when
    given, is the dataset being decoded: on corrupt data this process's pooled
    handles on its file are closed (its block cache would serve the bad pixels
    again, without the warning).

    Example:
        >>> with corrupt_data_errors("image 1 (a.jpg)"):
        ...     gdal.Error(gdal.CE_Warning, 1, "libjpeg: Premature end of JPEG file")
        Traceback (most recent call last):
        ndpatch.errors.SourceReadError: image 1 (a.jpg): corrupt or truncated data: libjpeg: Premature end of JPEG file
    """

    __slots__ = ("what", "dataset", "messages")

    def __init__(self, what: str, dataset: gdal.Dataset | None = None):
        self.what = what
        self.dataset = dataset
        self.messages: list[tuple[int, int, str]] = []

    def _collect(self, err_class: int, err_no: int, message: str) -> None:
        self.messages.append((err_class, err_no, message))

    def __enter__(self) -> "corrupt_data_errors":
        gdal.PushErrorHandler(self._collect)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        gdal.PopErrorHandler()
        if not self.messages:
            return
        corrupt = None
        for err_class, err_no, message in self.messages:
            if corrupt is None and is_corrupt_data_warning(err_class, message):
                corrupt = message
            elif err_class in (gdal.CE_Warning, gdal.CE_Debug):
                gdal.Error(err_class, err_no, message)
        if corrupt is not None and exc_type is None:
            raise corrupt_data_error(self.what, self.dataset, corrupt)


def is_corrupt_data_warning(err_class: int, message: str) -> bool:
    """Whether a GDAL message is a warning that the data just decoded is corrupt or truncated."""
    return err_class == gdal.CE_Warning and CORRUPT_DATA_WARNING.search(message) is not None


def corrupt_data_error(what: str, dataset: gdal.Dataset | None, message: str) -> SourceReadError:
    """The error for corrupt data in ``dataset``, whose pooled handles are closed first.

    A handle's block cache would serve the bad pixels again, without the warning.
    """
    if dataset is not None:
        POOL.forget(dataset.GetDescription())
    return SourceReadError(f"{what}: corrupt or truncated data: {message.strip()}")


def open_source(path: str, what: str | None = None, *, allow_vrt: bool = False,
                bundle_dpath: str | None = None, open_options: Sequence[str] = ()) -> gdal.Dataset:
    """Open a dataset's source raster read-only, as GDAL normally opens it, within ndpatch's rules.

    Only regular files (or ``/vsi`` paths: objects, not key prefixes, in storage),
    only :data:`SOURCE_DRIVERS` (plus
    ``VRT`` when ``allow_vrt``), and every further file GDAL pulls in must pass
    :func:`check_source_files` (``bundle_dpath`` is the dataset's folder). A
    missing, unreadable or refused file raises SourceReadError naming ``what``.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> vrt = '<VRTDataset rasterXSize="1" rasterYSize="1"></VRTDataset>'
        >>> _ = open(f"{tmp}/a.png", "w").write(vrt)
        >>> open_source(f"{tmp}/a.png", "image 1")
        Traceback (most recent call last):
        ndpatch.errors.SourceReadError: image 1: is a GDAL VRT (it can reference any file on the machine); ndpatch reads VRTs only with allow_vrt=True, and only when every file they reference is inside the dataset's folder
    """
    return _open_source(path, what or path, allow_vrt, bundle_dpath, open_options, depth=0)


def _open_source(path: str, what: str, allow_vrt: bool, bundle_dpath: str | None,
                 open_options: Sequence[str], depth: int) -> gdal.Dataset:
    file_identity(path, what)
    refuse_special_sidecars(path, what)
    drivers = [*SOURCE_DRIVERS, "VRT"] if allow_vrt else list(SOURCE_DRIVERS)
    try:
        with corrupt_data_errors(what):
            ds = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY, allowed_drivers=drivers,
                             open_options=list(open_options))
    except RuntimeError as err:
        raise SourceReadError(f"{what}: {refusal(path, allow_vrt, err)}") from err
    if ds is None or ds.RasterCount == 0:
        raise SourceReadError(f"{what}: GDAL finds no raster bands in it")
    check_source_files(ds, path, what, allow_vrt, bundle_dpath, depth)
    return ds


def refusal(path: str, allow_vrt: bool, err: Exception) -> str:
    """Why GDAL did not open ``path`` with the source drivers, for an error message."""
    try:
        driver = gdal.IdentifyDriverEx(path, gdal.OF_RASTER)
    except RuntimeError:
        driver = None
    name = driver.ShortName if driver is not None else None
    if name == "VRT" and not allow_vrt:
        return ("is a GDAL VRT (it can reference any file on the machine); ndpatch reads VRTs only "
                "with allow_vrt=True, and only when every file they reference is inside the dataset's folder")
    if name is not None and name not in SOURCE_DRIVERS and name != "VRT":
        return (f"is a {name} raster, a format ndpatch does not read from datasets (it reads "
                f"{', '.join(SOURCE_DRIVERS)}); convert it, e.g. with gdal_translate to GeoTIFF")
    return f"GDAL cannot open it as a raster: {err}"


def check_source_files(ds: gdal.Dataset, path: str, what: str, allow_vrt: bool,
                       bundle_dpath: str | None, depth: int = 0) -> None:
    """Refuse a source that makes GDAL read files it should not.

    - A VRT (``allow_vrt`` only): the dataset's folder must be known, and every
      file it references (``SourceFilename``/``SourceDataset``, recursively,
      each opened with these same rules) must resolve inside it.
    - Every other file GDAL lists for the source (sidecars such as ``.ovr``,
      ``.msk``, ``.aux.xml``, and what they reference) must resolve beside the
      source (its folder, or its real file's folder) or inside the dataset's
      folder, and a sidecar GDAL reads as a raster must be of an allowed driver
      (an ``.ovr`` that is a VRT is a VRT). For raw drivers (:data:`RAW_DRIVERS`)
      only the data file's real folder counts.
    """
    driver = ds.GetDriver().ShortName
    checked = {path}
    if driver == "VRT":
        if bundle_dpath is None:
            raise SourceReadError(f"{what}: {path} is a VRT and the dataset's folder is not known, "
                                  "so the files it references cannot be checked")
        checked |= _check_vrt_references(ds, path, what, bundle_dpath, depth)
    real = _resolved(path)
    roots = [posixpath.dirname(real) if path.startswith("/vsi") else os.path.dirname(real)]
    if driver not in RAW_DRIVERS:
        roots.append(_resolved(os.path.dirname(path) or "."))
        if bundle_dpath is not None:
            roots.append(_resolved(bundle_dpath))
    for other in ds.GetFileList() or []:
        if other in checked:
            continue
        checked.add(other)
        if not _inside(_resolved(other), roots):
            raise SourceReadError(f"{what}: GDAL would also read {other}, which is not beside {path} "
                                  "nor in the dataset's folder; ndpatch refuses such sources")
        _check_sidecar_driver(other, what, allow_vrt, bundle_dpath, depth)


def _check_sidecar_driver(other: str, what: str, allow_vrt: bool, bundle_dpath: str | None,
                          depth: int) -> None:
    try:
        sidecar_driver = gdal.IdentifyDriverEx(other, gdal.OF_RASTER)
    except RuntimeError:  # e.g. an ENVI .hdr: a header, not a raster GDAL opens on its own
        return
    if sidecar_driver is None:
        return
    name = sidecar_driver.ShortName
    if name == "VRT" and allow_vrt:
        _open_vrt_reference(other, what, bundle_dpath, depth)
    elif name not in SOURCE_DRIVERS:
        raise SourceReadError(f"{what}: GDAL would also read {other} as a {name} raster, which ndpatch "
                              f"does not read from datasets{' without allow_vrt=True' if name == 'VRT' else ''}")


def _check_vrt_references(ds: gdal.Dataset, path: str, what: str, bundle_dpath: str,
                          depth: int) -> set[str]:
    """Check every file a VRT references; returns them (as GDAL will name them)."""
    if depth >= MAX_VRT_DEPTH:
        raise SourceReadError(f"{what}: VRTs nest deeper than {MAX_VRT_DEPTH} levels at {path}")
    bundle = _resolved(bundle_dpath)
    references = set()
    for reference in vrt_references(ds, path):
        if not _inside(_resolved(reference), [bundle]):
            raise SourceReadError(f"{what}: VRT {path} references {reference}, which is outside the "
                                  f"dataset's folder {bundle_dpath}; ndpatch refuses such VRTs")
        _open_vrt_reference(reference, what, bundle_dpath, depth)
        references.add(reference)
    return references


def _open_vrt_reference(reference: str, what: str, bundle_dpath: str | None, depth: int) -> None:
    """Check a file a VRT reads: a raster must open under these rules; other files are raw bytes."""
    file_identity(reference, what)
    try:
        driver = gdal.IdentifyDriverEx(reference, gdal.OF_RASTER)
    except RuntimeError:
        driver = None
    if driver is not None:  # not a raw data file (VRTRawRasterBand): it must pass the source rules
        _open_source(reference, what, True, bundle_dpath, (), depth + 1)


def vrt_references(ds: gdal.Dataset, path: str) -> list[str]:
    """The files an open VRT names (``SourceFilename`` and ``SourceDataset``), resolved as GDAL does.

    Example:
        >>> xml = ('<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Byte" band="1">'
        ...        '<SimpleSource><SourceFilename relativeToVRT="1">b.tif</SourceFilename></SimpleSource>'
        ...        '</VRTRasterBand></VRTDataset>')
        >>> vrt_references(gdal.Open(xml), "/data/a.vrt")
        ['/data/b.tif']
    """
    return vrt_references_in("".join(ds.GetMetadata("xml:VRT") or []), path)


def vrt_references_in(text: str, path: str) -> list[str]:
    """The files a VRT's XML ``text`` names, relative names resolved beside ``path``."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        raise SourceReadError(f"{path}: VRT XML does not parse: {err}") from err
    references = []
    for node in root.iter():
        if str(node.tag).lower() not in ("sourcefilename", "sourcedataset") or not (node.text or "").strip():
            continue
        name = node.text.strip()
        relative = {key.lower(): value for key, value in node.attrib.items()}.get("relativetovrt", "0")
        if relative.strip() == "1" and not os.path.isabs(name) and not name.startswith("/vsi"):
            name = os.path.join(os.path.dirname(path), name)
        references.append(name)
    return references


def _resolved(path: str) -> str:
    """A path with links and ``..`` resolved (GDAL virtual paths: lexically)."""
    return posixpath.normpath(path) if path.startswith("/vsi") else os.path.realpath(path)


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def open_cache_file(path: str, what: str | None = None, open_options: Sequence[str] = ()) -> gdal.Dataset:
    """Open one of ndpatch's own cache GeoTIFFs read-only (no directory scan, no ``.aux.xml``).

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/a.tif"
        >>> gdal.GetDriverByName("GTiff").Create(path, 3, 2).FlushCache()
        >>> open_cache_file(path).RasterXSize
        3
    """
    what = what or path
    file_identity(path, what)
    try:
        with cache_file_config():
            return gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_READONLY, allowed_drivers=["GTiff"],
                               open_options=list(open_options))
    except RuntimeError as err:
        raise SourceReadError(f"{what}: cache file {path} does not open as a GeoTIFF: {err}") from err


@dataclass(frozen=True, slots=True, eq=False)
class SourceOpener:
    """:func:`open_source` with fixed rules, as a value the handle pool keys on.

    Get one from :func:`source_opener` (equal rules give the same object).
    """

    allow_vrt: bool = False
    bundle_dpath: str | None = None

    def __call__(self, path: str, what: str | None = None, open_options: Sequence[str] = ()) -> gdal.Dataset:
        return open_source(path, what, allow_vrt=self.allow_vrt, bundle_dpath=self.bundle_dpath,
                           open_options=open_options)

    def __reduce__(self):
        return source_opener, (self.allow_vrt, self.bundle_dpath)


def source_opener(allow_vrt: bool = False, bundle_dpath: str | None = None) -> SourceOpener:
    """The opener of sources under these rules (the folder only matters when VRTs are allowed).

    Example:
        >>> source_opener(False, "/data") is source_opener() is SOURCE
        True
    """
    return _interned_opener(bool(allow_vrt), bundle_dpath if allow_vrt else None)


@lru_cache(maxsize=None)
def _interned_opener(allow_vrt: bool, bundle_dpath: str | None) -> SourceOpener:
    return SourceOpener(allow_vrt, bundle_dpath)


#: The default source opener (no VRTs).
SOURCE = source_opener()


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


def band_dtype(band: gdal.Band) -> np.dtype:
    """The numpy dtype of a band's pixels: ``int8`` for GDAL 3.6's signed bytes, as GDAL's own reads give.

    Example:
        >>> ds = gdal.GetDriverByName("MEM").Create("", 1, 1, 1, gdal.GDT_Byte)
        >>> _ = ds.GetRasterBand(1).SetMetadataItem("PIXELTYPE", "SIGNEDBYTE", "IMAGE_STRUCTURE")
        >>> band_dtype(ds.GetRasterBand(1))
        dtype('int8')
    """
    if band.DataType == gdal.GDT_Byte and band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE":
        return np.dtype(np.int8)
    return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(band.DataType))


def raster_info(ds: gdal.Dataset) -> RasterInfo:
    """Read the header facts ndpatch needs from an open dataset."""
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    dtype = np.result_type(*[band_dtype(b) for b in bands])
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
    the window touches are decoded. An ``int8`` buffer receives a byte band's
    bytes as they are (GDAL 3.6 has no signed byte type). A warning about
    corrupt data during the read raises SourceReadError: this hot path checks
    this thread's GDAL error counter, which each GDAL call resets, after the
    read (0.1 µs, where a pushed handler costs 1.3 µs); it sees the read's last
    message, :class:`corrupt_data_errors` sees them all.
    """
    band_list = list(range(1, ds.RasterCount + 1)) if bands is None else [b + 1 for b in bands]
    try:
        if len(band_list) == 1:  # GDAL reads one band through the band API only
            ds.GetRasterBand(band_list[0]).ReadAsArray(x0, y0, width, height, buf_obj=out[..., 0])
        else:
            ds.ReadAsArray(x0, y0, width, height, buf_obj=out, interleave="pixel", band_list=band_list)
    except (RuntimeError, ValueError) as err:
        raise SourceReadError(f"{what}: reading window x={x0} y={y0} w={width} h={height} failed: {err}") from err
    if gdal.GetErrorCounter() and is_corrupt_data_warning(gdal.GetLastErrorType(), gdal.GetLastErrorMsg()):
        raise corrupt_data_error(what, ds, gdal.GetLastErrorMsg())


def mem_dataset(pixels: np.ndarray, nodata: float | None = None, band_names=None,
                geotransform: tuple | None = None, crs_wkt: str | None = None) -> gdal.Dataset:
    """An H×W or H×W×C array as an in-memory GDAL dataset (to ``CreateCopy`` into any format).

    ``int8`` arrays become byte bands marked ``PIXELTYPE=SIGNEDBYTE``, which
    GeoTIFF copies keep.

    Example:
        >>> ds = mem_dataset(np.zeros((3, 4, 2), np.uint16), nodata=9, band_names=["a", "b"])
        >>> ds.RasterYSize, ds.RasterXSize, ds.GetRasterBand(2).GetDescription()
        (3, 4, 'b')
    """
    data = pixels if pixels.ndim == 3 else pixels[..., None]
    height, width, n_bands = data.shape
    type_code = gdal_array.NumericTypeCodeToGDALTypeCode(data.dtype)
    mem = gdal.GetDriverByName("MEM").Create("", width, height, n_bands, type_code)
    for i in range(n_bands):
        band = mem.GetRasterBand(i + 1)
        if data.dtype == np.int8 and type_code == gdal.GDT_Byte:
            band.SetMetadataItem("PIXELTYPE", "SIGNEDBYTE", "IMAGE_STRUCTURE")
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


def max_open_files() -> int:
    """How many files ndpatch's pools keep open per process, in total (handles + memmaps).

    ``NDPATCH_MAX_OPEN_FILES`` when set, else a quarter of the soft
    ``RLIMIT_NOFILE`` (at most 1024): the rest stays for GDAL's sidecars
    (``.ovr``, ``.msk``), conversions, DataLoader pipes and the user's own files.
    Read once, when ndpatch is imported.

    Example:
        >>> max_open_files() >= 2
        True
    """
    value = os.environ.get("NDPATCH_MAX_OPEN_FILES")
    if value:
        try:
            budget = int(value)
        except ValueError:
            budget = 0
        if budget < 2:
            raise NdpatchError(f"NDPATCH_MAX_OPEN_FILES must be an integer >= 2, not {value!r}")
        return budget
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(2, min(1024, soft // 4))


class _ThreadToken:
    """Lives exactly as long as one thread's handles (its finalizer closes them)."""

    __slots__ = ("__weakref__",)


class HandlePool:
    """Open GDAL datasets, one per thread and file, at most ``capacity`` open in the whole process.

    Handles are keyed by path, the rules they were opened with (the opener)
    *and* file identity (:func:`file_identity`): a file rewritten or replaced
    at the same path gets a new handle, never the old file's. GDAL handles are
    not thread-safe, so each thread gets its own; when the process total
    reaches ``capacity``, the least recently used handle of any thread is
    dropped (a dataset a caller still holds closes when the caller lets go of
    it). A thread's handles close when the thread ends. A forked child starts
    with an empty pool; the pool pickles as empty.

    Example:
        >>> pool = HandlePool(capacity=2)
        >>> pool.capacity, len(pool)
        (2, 0)
    """

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self._reset()
        _POOLS.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[int, dict] = {}  # id(table) -> one thread's {(path, opener): [identity, ds, used]}
        self._count = 0
        self._clock = itertools.count()
        self._local = threading.local()

    def _handles(self) -> dict:
        try:
            return self._local.handles
        except AttributeError:
            handles: dict = {}
            token = _ThreadToken()
            weakref.finalize(token, _close_thread_handles, weakref.ref(self), handles)
            with self._lock:
                self._tables[id(handles)] = handles
            self._local.handles, self._local.token = handles, token
            return handles

    def get(self, path: str, what: str | None = None, identity: tuple | None = None,
            opener=SOURCE) -> gdal.Dataset:
        """This thread's open dataset for ``path``, opened with ``opener`` on first use.

        ``opener(path, what)`` is :data:`SOURCE` (a dataset's rasters, the
        default), another :func:`source_opener`, or :func:`open_cache_file`.
        ``identity`` is the :func:`file_identity` the caller resolved the file
        as (one ``stat`` is made when it is not given).
        """
        if identity is None:
            identity = file_identity(path, what)
        handles = self._handles()
        key = (path, opener)
        held = handles.get(key)
        if held is not None and held[0] == identity:
            held[2] = next(self._clock)
            return held[1]
        dataset = opener(path, what)
        dropped = []
        with self._lock:
            if handles.pop(key, None) is not None:
                self._count -= 1
            while self._count >= self.capacity:
                dropped.append(self._drop_least_recent())
            handles[key] = [identity, dataset, next(self._clock)]
            self._count += 1
        return dataset

    def _drop_least_recent(self):
        """Remove the least recently used handle of any thread (call under the lock)."""
        _, table, key = min(((held[2], id(table), key) for table in self._tables.values()
                             for key, held in table.items()), key=lambda item: item[0])
        self._count -= 1
        return self._tables[table].pop(key)

    def forget(self, path: str) -> None:
        """Close every thread's handles on ``path`` (e.g. after its cache file was rebuilt)."""
        with self._lock:
            dropped = [table.pop(key) for table in self._tables.values()
                       for key in [key for key in table if key[0] == path]]
            self._count -= len(dropped)

    def _close_table(self, handles: dict) -> None:
        with self._lock:
            if self._tables.get(id(handles)) is not handles:
                return
            del self._tables[id(handles)]
            self._count -= len(handles)
            dropped = list(handles.values())  # closed outside the lock
            handles.clear()

    def __len__(self) -> int:
        """Handles open in this process (all threads)."""
        return self._count

    def __getstate__(self) -> dict:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["capacity"])


def _close_thread_handles(pool_ref: weakref.ref, handles: dict) -> None:
    pool = pool_ref()
    if pool is not None:
        pool._close_table(handles)


_POOLS: weakref.WeakSet = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [pool._reset() for pool in list(_POOLS)])

#: The budget of files ndpatch keeps open in this process (handles + npy memmaps).
OPEN_FILES_BUDGET = max_open_files()
#: The process-wide pool every GDAL-backed reader uses: half the budget.
POOL = HandlePool(OPEN_FILES_BUDGET // 2)
