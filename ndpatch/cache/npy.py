"""The ``.npy`` memmap backend: the first touch decodes the image into an uncompressed array file.

The cache file is a plain ``.npy`` (H×W×C, the source dtype), decoded in
row strips through GDAL and written with ordinary writes (a full disk is an
error, never a SIGBUS), hashed while written, and published atomically;
sources with a mask band (alpha, per-dataset mask) also get ``<key>.mask.npy``
(H×W uint8, GDAL's mask values). A window read is a memmap slice copied into
the caller's array, so it costs little more than the copy. Memmaps are
opened once per process (never inherited across a fork) and dropped when the
backend is pickled.

Example:
    >>> import tempfile, numpy as np
    >>> from ndpatch.demo import write_raster
    >>> from ndpatch.cache.base import ImageSource, read_window
    >>> tmp = tempfile.mkdtemp()
    >>> path = write_raster(f"{tmp}/a.tif", np.arange(12, dtype=np.uint8).reshape(3, 4))
    >>> backend = NpyBackend(f"{tmp}/cache")
    >>> entry = backend.ensure(ImageSource(gid=1, path=path))
    >>> entry.kind, entry.meta["converted"]
    ('npy', True)
    >>> read_window(backend, entry, slice(1, 3), slice(2, 5), None, fill=None)[..., 0]
    array([[ 6,  7,  0],
           [10, 11,  0]], dtype=uint8)
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ndpatch import gdalio, remote
from ndpatch.cache.base import CacheEntry, ImageSource
from ndpatch.cache.store import KeyedCache, atomic_publish, require_space
from ndpatch.cache.validity import MASK_BAND_KINDS, raster_mask_kind, read_raster_mask
from ndpatch.errors import CacheConversionError, CorruptCacheError

#: Bytes decoded per strip while converting (bounds the conversion's memory).
STRIP_BYTES = 16 << 20
#: Seconds a conversion runs before it shows a progress bar.
PROGRESS_DELAY = 3.0
#: Room kept for the sidecar when checking free space before a conversion.
SIDECAR_ROOM = 64 << 10


class MemmapPool:
    """Read-only memmaps (as plain ndarrays) of npy entries, per process, at most ``capacity`` open.

    Maps are keyed by path and file identity: a cache file rebuilt at the same
    path (a corrupt entry replaced) gets a new map, never the old file's. Each
    map holds a descriptor (numpy's mmap keeps a duplicate of the file's), so
    the pool takes its share of the process budget
    (:data:`ndpatch.gdalio.OPEN_FILES_BUDGET`, the half the handle pool does not
    take); the oldest map is dropped first (a caller still holding its array
    keeps it alive). Before each new map the file's size is checked against its
    ``.npy`` header and the entry's shape and dtype, so a truncated entry raises
    CorruptCacheError naming the image instead of crashing the reader. The
    window that remains: a file truncated *after* it was mapped kills the
    process with SIGBUS on the first read of a missing page (ndpatch only ever
    replaces cache files, never truncates them). A forked child starts empty.

    Example:
        >>> MemmapPool(capacity=8).capacity
        8
    """

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self._arrays: dict[str, tuple[tuple | None, np.ndarray]] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._arrays.clear()

    def get(self, entry: CacheEntry, mask: bool = False) -> np.ndarray:
        """The pixels (or, ``mask=True``, the mask) array of an npy entry, mapped on first use."""
        path, identity = (entry.meta["mask_path"], entry.meta["mask_identity"]) if mask else (entry.path, entry.identity)
        held = self._arrays.get(path)
        if held is not None and held[0] == identity:
            return held[1]
        shape = (entry.height, entry.width) if mask else (entry.height, entry.width, entry.bands)
        array = map_npy(Path(path), shape, np.dtype(np.uint8) if mask else entry.dtype, entry.describe())
        with self._lock:
            self._arrays.pop(path, None)
            while len(self._arrays) >= self.capacity:
                self._arrays.pop(next(iter(self._arrays)))
            self._arrays[path] = (identity, array)
        return array

    def forget(self, path: str) -> None:
        with self._lock:
            self._arrays.pop(path, None)

    def __len__(self) -> int:
        return len(self._arrays)


def map_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    """Map a cache ``.npy`` read-only after checking it is complete; CorruptCacheError names ``what``."""
    try:
        check_npy(path, shape, dtype)
        return np.asarray(np.load(path, mmap_mode="r"))  # a plain view: cheaper slicing
    except CorruptCacheError as err:
        raise CorruptCacheError(f"{what}: {err}") from None
    except (OSError, ValueError) as err:  # changed between the check and the map
        raise CorruptCacheError(f"{what}: cache file {path} cannot be mapped: {err}") from err


#: The process-wide pool of open cache memmaps: the half of the budget the handle pool leaves.
MEMMAPS = MemmapPool(gdalio.OPEN_FILES_BUDGET - gdalio.POOL.capacity)


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The bytes of a ``.npy`` header (format 1.0, C order) for an array of ``shape`` and ``dtype``.

    Example:
        >>> len(npy_header((3, 4, 2), np.dtype("uint16")))
        128
    """
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


def npy_nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The size of a ``.npy`` file of ``shape`` and ``dtype``."""
    return len(npy_header(shape, dtype)) + int(np.prod(shape)) * np.dtype(dtype).itemsize


def publish_npy(dest: Path, shape: tuple[int, ...], dtype: np.dtype,
                read_rows: Callable[[int, np.ndarray], None], desc: str, progress: bool) -> tuple[int, str]:
    """Write a ``.npy`` at ``dest`` atomically, strip by strip; returns ``(nbytes, sha256)``.

    ``read_rows(row, strip)`` fills ``strip`` with rows ``row, row + 1, ...``.
    The checksum is of the bytes as written.
    """
    header = npy_header(shape, dtype)
    row_bytes = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    step = max(1, STRIP_BYTES // max(1, row_bytes))
    digest = hashlib.sha256()

    def write(tmp: str) -> None:
        buffer = np.empty((min(step, shape[0]),) + tuple(shape[1:]), dtype)
        with open(tmp, "wb") as file, tqdm(total=shape[0], unit="row", desc=desc, delay=PROGRESS_DELAY,
                                           disable=not progress, leave=False) as bar:
            file.write(header)
            digest.update(header)
            for row in range(0, shape[0], step):
                strip = buffer[:min(step, shape[0] - row)]
                read_rows(row, strip)
                file.write(strip.data)
                digest.update(strip.data)
                bar.update(len(strip))

    nbytes = atomic_publish(dest, write, lambda tmp: check_npy(Path(tmp), shape, dtype))
    return nbytes, digest.hexdigest()


def mask_path(dest: Path) -> Path:
    """The mask file beside an npy entry's data file (``<key>.mask.npy``)."""
    return dest.with_name(dest.name.removesuffix(".npy") + ".mask.npy")


def convert_to_npy(source: ImageSource, dest: Path, progress: bool = True, opener=gdalio.SOURCE,
                   room: Callable[[int], None] | None = None) -> dict:
    """Decode ``source`` (opened with ``opener``) into ``dest`` (an H×W×C ``.npy``, and its mask) atomically.

    Returns the sidecar fields.

    The cache budget (``room(nbytes)``, :meth:`KeyedCache.publish`) and the
    free space are checked first: a conversion that cannot fit raises
    CacheConversionError giving the bytes needed and available, before
    anything is written.
    """
    what = source.describe()
    ds = opener(source.path, what)
    info = gdalio.raster_info(ds)
    shape = (info.height, info.width, info.bands)
    kind = raster_mask_kind(ds)
    has_mask_file = kind in MASK_BAND_KINDS
    needed = npy_nbytes(shape, info.dtype) + (npy_nbytes(shape[:2], np.uint8) if has_mask_file else 0)

    def read_pixels(row: int, strip: np.ndarray) -> None:
        gdalio.read_into(ds, 0, row, info.width, len(strip), None, strip, what)

    def read_mask(row: int, strip: np.ndarray) -> None:
        read_raster_mask(ds, slice(row, row + len(strip)), slice(0, info.width), strip, what)

    mask = {"kind": kind, "file": None, "nbytes": 0, "checksum": None}
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if room is not None:
            room(needed)
        require_space(dest.parent, needed + SIDECAR_ROOM, f"the npy cache entry of {what}")
        if has_mask_file:
            nbytes, checksum = publish_npy(mask_path(dest), shape[:2], np.dtype(np.uint8), read_mask,
                                           f"npy mask {remote.display(source.path)}", progress)
            mask = {"kind": kind, "file": mask_path(dest).name, "nbytes": nbytes, "checksum": checksum}
        nbytes, checksum = publish_npy(dest, shape, info.dtype, read_pixels, f"npy {remote.display(source.path)}", progress)
    except OSError as err:  # unreadable source, full disk, invalid result
        mask_path(dest).unlink(missing_ok=True)
        raise CacheConversionError(f"{what}: converting to npy {dest} failed: {err}") from err
    return {**raster_fields(info), "kind": "npy", "file": dest.name, "nbytes": nbytes, "checksum": checksum,
            "in_place": False, "mask": mask}


def raster_fields(info: gdalio.RasterInfo) -> dict:
    """The sidecar fields that describe a source raster (what a reader needs without opening it)."""
    return {"height": info.height, "width": info.width, "bands": info.bands, "dtype": info.dtype.str,
            "nodata": info.nodata, "band_names": list(info.band_names),
            "geotransform": None if info.geotransform is None else list(info.geotransform),
            "crs_wkt": info.crs_wkt}


def check_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise CorruptCacheError unless ``path`` is a complete ``.npy`` of ``shape`` and ``dtype``."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            found_shape, fortran, found_dtype = header(file)
            offset = file.tell()
    except Exception as err:  # any damage to the header bytes (numpy raises ValueError, TokenError, ...)
        raise CorruptCacheError(f"cache file {path} is missing or has a bad header: "
                                f"{type(err).__name__}: {err}") from err
    if tuple(found_shape) != tuple(shape) or found_dtype != np.dtype(dtype) or fortran:
        raise CorruptCacheError(f"cache file {path} holds {found_shape} {found_dtype}, "
                                f"expected {tuple(shape)} {np.dtype(dtype)}")
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != expected:
        raise CorruptCacheError(f"cache file {path} is {size} bytes, expected {expected} (truncated?)")


def check_size(path: Path, nbytes: int) -> None:
    """Raise CorruptCacheError unless the file at ``path`` has ``nbytes`` bytes (what its sidecar says)."""
    size = path.stat().st_size if path.exists() else None
    if size != nbytes:
        raise CorruptCacheError(f"cache file {path} is {size} bytes, its sidecar says {nbytes}")


def validate_npy(path: Path | None, sidecar: dict) -> None:
    """Check an npy entry against its sidecar: sizes and headers of its data and mask files."""
    if path is None:
        raise CorruptCacheError(f"npy sidecar {sidecar.get('key')} names no data file")
    check_size(path, sidecar["nbytes"])
    check_npy(path, (sidecar["height"], sidecar["width"], sidecar["bands"]), np.dtype(sidecar["dtype"]))
    mask = sidecar["mask"]
    if (mask["file"] is not None) != (mask["kind"] in MASK_BAND_KINDS):
        raise CorruptCacheError(f"npy sidecar {sidecar['key']}: a {mask['kind']} mask "
                                f"{'needs' if mask['file'] is None else 'has no'} mask file")
    if mask["file"] is not None:
        check_size(mask_path(path), mask["nbytes"])
        check_npy(mask_path(path), (sidecar["height"], sidecar["width"]), np.dtype(np.uint8))


def entry_from_sidecar(source: ImageSource, path: str, sidecar: dict, converted: bool) -> CacheEntry:
    """The CacheEntry an entry's sidecar describes (nodata, band names and mask as in the source)."""
    meta = {"sidecar": sidecar, "converted": converted, "image_source": source,
            "bytes_written": sidecar["nbytes"] + sidecar["mask"]["nbytes"] if converted else 0}
    if sidecar["mask"]["file"] is not None:
        mask_file = str(mask_path(Path(path)))
        meta.update(mask_path=mask_file, mask_identity=gdalio.file_identity(mask_file, source.describe()))
    return CacheEntry(
        identity=gdalio.file_identity(path, source.describe()),
        gid=source.gid, source=remote.display(source.path), path=path, kind=sidecar["kind"],
        height=sidecar["height"], width=sidecar["width"], bands=sidecar["bands"],
        dtype=np.dtype(sidecar["dtype"]), nodata=sidecar["nodata"],
        band_names=tuple(sidecar["band_names"]),
        geotransform=None if sidecar["geotransform"] is None else tuple(sidecar["geotransform"]),
        crs_wkt=sidecar["crs_wkt"], mask=sidecar["mask"]["kind"], meta=meta)


class NpyBackend(KeyedCache):
    """Serve windows from ``.npy`` memmaps converted on first touch (``backend='npy'``).

    Args:
        workdir: the cache root (default ``$NDPATCH_CACHE``, else the per-user cache dir).
        content_hash: also key entries on a sha256 of the source bytes.
        progress: show a progress bar for conversions that take more than a few seconds.
        allow_vrt: also convert GDAL VRTs whose files are all inside the dataset's folder
            (their entries are keyed apart from those of backends that refuse VRTs).
        cache_max_bytes: the cache's size budget (bytes or ``'50G'``; default
            ``$NDPATCH_CACHE_MAX``, else none): least recently used entries are
            evicted to stay under it (:mod:`ndpatch.cache.budget`).
    """

    name = "npy"
    validate = staticmethod(validate_npy)

    def __init__(self, workdir: str | os.PathLike | None = None, content_hash: bool = False,
                 progress: bool = True, allow_vrt: bool = False, cache_max_bytes: int | str | None = None):
        super().__init__(workdir, content_hash, progress, cache_max_bytes)
        self.allow_vrt = bool(allow_vrt)
        self.settings = {"allow_vrt": True} if allow_vrt else {}

    def ensure(self, source: ImageSource, identity: dict | None = None) -> CacheEntry:
        opener = gdalio.source_opener(self.allow_vrt, source.bundle_dpath)
        dest, sidecar, converted = self.publish(
            source, lambda dest, room: convert_to_npy(source, dest, self.progress, opener, room), identity)
        if converted:
            MEMMAPS.forget(str(dest))
            MEMMAPS.forget(str(mask_path(dest)))
        return entry_from_sidecar(source, str(dest), sidecar, converted)

    def array(self, entry: CacheEntry) -> np.ndarray:
        """The entry's H×W×C pixels, memory-mapped (read-only): what batches copy windows from."""
        return MEMMAPS.get(entry)

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        try:
            array = MEMMAPS.get(entry)
        except CorruptCacheError as err:  # not mapped here, and its file evicted since: convert it again
            array = MEMMAPS.get(self.evicted(entry, err))
        window = array[rows, cols]
        out[...] = window if bands is None else window[..., bands]   # faster than np.copyto for small windows

    def read_mask_into(self, entry: CacheEntry, rows: slice, cols: slice, out: np.ndarray) -> None:
        try:
            array = MEMMAPS.get(entry, mask=True)
        except CorruptCacheError as err:
            array = MEMMAPS.get(self.evicted(entry, err), mask=True)
        np.copyto(out, array[rows, cols])
