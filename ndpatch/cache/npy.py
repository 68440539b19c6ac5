"""The ``.npy`` memmap backend: the first touch decodes the image into an uncompressed array file.

The cache file is a plain ``.npy`` (H×W×C, the source dtype), written in
row strips through GDAL and published atomically; a window read is a memmap
slice copied into the caller's array, so it costs little more than the copy.
Memmaps are opened once per process (never inherited across a fork) and
dropped when the backend is pickled.

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

import os
from pathlib import Path

import numpy as np

from ndpatch import gdalio
from ndpatch.cache.base import CacheEntry, ImageSource
from ndpatch.cache.store import KeyedCache, atomic_publish
from ndpatch.errors import CacheConversionError, CorruptCacheError

#: Bytes decoded per strip while converting (bounds the conversion's memory).
STRIP_BYTES = 64 << 20


class MemmapPool:
    """Read-only memmaps (as plain ndarrays) by path and file identity, per process, at most ``capacity`` open.

    A cache file rebuilt at the same path (a corrupt entry replaced) gets a new
    map, never the old file's. A forked child starts empty; the oldest opened
    map is dropped first.

    Example:
        >>> MemmapPool(capacity=8).capacity
        8
    """

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._arrays: dict[str, tuple[tuple | None, np.ndarray]] = {}
        os.register_at_fork(after_in_child=self._arrays.clear)

    def get(self, path: str, identity: tuple | None = None) -> np.ndarray:
        held = self._arrays.get(path)
        if held is not None and held[0] == identity:
            return held[1]
        array = np.asarray(np.load(path, mmap_mode="r"))  # a plain view: cheaper slicing
        self._arrays.pop(path, None)
        if len(self._arrays) >= self.capacity:
            self._arrays.pop(next(iter(self._arrays)), None)
        self._arrays[path] = (identity, array)
        return array

    def forget(self, path: str) -> None:
        self._arrays.pop(path, None)


#: The process-wide pool of open cache memmaps.
MEMMAPS = MemmapPool()


def convert_to_npy(source: ImageSource, dest: Path) -> dict:
    """Decode ``source`` into ``dest`` (an H×W×C ``.npy``) atomically; returns the sidecar fields."""
    what = source.describe()
    ds = gdalio.open_dataset(source.path, what)
    info = gdalio.raster_info(ds)
    shape = (info.height, info.width, info.bands)

    def write(tmp: str) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=info.dtype, shape=shape)
        step = max(1, STRIP_BYTES // max(1, info.width * info.bands * info.dtype.itemsize))
        for row in range(0, info.height, step):
            n_rows = min(step, info.height - row)
            gdalio.read_into(ds, 0, row, info.width, n_rows, None, array[row:row + n_rows], what)
        array.flush()
        del array

    try:
        nbytes = atomic_publish(dest, write, lambda tmp: check_npy(Path(tmp), shape, info.dtype))
    except OSError as err:  # unreadable source, full disk, invalid result
        raise CacheConversionError(f"{what}: converting to npy {dest} failed: {err}") from err
    return {**raster_fields(info), "kind": "npy", "file": dest.name, "nbytes": nbytes, "in_place": False}


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
    except (OSError, ValueError) as err:
        raise CorruptCacheError(f"cache file {path} is missing or has a bad header: {err}") from err
    if tuple(found_shape) != tuple(shape) or found_dtype != np.dtype(dtype) or fortran:
        raise CorruptCacheError(f"cache file {path} holds {found_shape} {found_dtype}, "
                                f"expected {tuple(shape)} {np.dtype(dtype)}")
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != expected:
        raise CorruptCacheError(f"cache file {path} is {size} bytes, expected {expected} (truncated?)")


def validate_npy(path: Path | None, sidecar: dict) -> None:
    """Check an npy entry against its sidecar (size and header)."""
    if path is None:
        raise CorruptCacheError(f"npy sidecar {sidecar.get('key')} names no data file")
    size = path.stat().st_size if path.exists() else None
    if size != sidecar["nbytes"]:
        raise CorruptCacheError(f"cache file {path} is {size} bytes, its sidecar says {sidecar['nbytes']}")
    check_npy(path, (sidecar["height"], sidecar["width"], sidecar["bands"]), np.dtype(sidecar["dtype"]))


def entry_from_sidecar(source: ImageSource, path: str, sidecar: dict, converted: bool) -> CacheEntry:
    """The CacheEntry an entry's sidecar describes (nodata and band names as in the source)."""
    return CacheEntry(
        identity=gdalio.file_identity(path, source.describe()),
        gid=source.gid, source=source.path, path=path, kind=sidecar["kind"],
        height=sidecar["height"], width=sidecar["width"], bands=sidecar["bands"],
        dtype=np.dtype(sidecar["dtype"]), nodata=sidecar["nodata"],
        band_names=tuple(sidecar["band_names"]),
        geotransform=None if sidecar["geotransform"] is None else tuple(sidecar["geotransform"]),
        crs_wkt=sidecar["crs_wkt"],
        meta={"sidecar": sidecar, "converted": converted,
              "bytes_written": sidecar.get("nbytes", 0) if converted else 0})


class NpyBackend(KeyedCache):
    """Serve windows from ``.npy`` memmaps converted on first touch (``backend='npy'``).

    Args:
        workdir: the cache root (default ``$NDPATCH_CACHE``, else the per-user cache dir).
        content_hash: also key entries on a sha256 of the source bytes.
    """

    name = "npy"
    ext = ".npy"
    settings: dict = {}
    validate = staticmethod(validate_npy)

    def ensure(self, source: ImageSource) -> CacheEntry:
        dest, sidecar, converted = self.publish(source, lambda dest: convert_to_npy(source, dest))
        if converted:
            MEMMAPS.forget(str(dest))
        return entry_from_sidecar(source, str(dest), sidecar, converted)

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        window = MEMMAPS.get(entry.path, entry.identity)[rows, cols]
        np.copyto(out, window if bands is None else window[..., bands])
