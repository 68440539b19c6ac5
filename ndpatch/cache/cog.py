"""The Cloud-Optimized GeoTIFF backend, and ``auto``, which picks npy or COG per image.

``backend='cog'`` converts each source on first touch with GDAL's COG driver:
tiled (``blocksize``, 128 by default: chosen by measurement, docs/cache.md), lossless by default (ZSTD, else
DEFLATE, with a predictor; JPEG only when asked for), internal overviews,
and the source's geotransform, CRS, nodata, band descriptions, colour
interpretation and mask (internal mask or alpha band) kept. A window read
decodes only the tiles it touches.

A local source that is already a tiled GeoTIFF (or COG) with a lossless codec
(or none) and tiles of at most 1024 pixels is read in place; its sidecar
records that decision, so it is made once per source version (a remote one
is copied into the cache: reading it in place would fetch every window).

``backend='auto'`` applies, per image: (1) a tiled lossless GeoTIFF is read in
place; (2) else an image whose decoded size is at most ``npy_max_mb`` (default
1024 MB) goes to npy, the fastest to read; (3) else to COG, which is compact.

Example:
    >>> import tempfile, numpy as np
    >>> from ndpatch.demo import write_raster
    >>> from ndpatch.cache.base import ImageSource
    >>> tmp = tempfile.mkdtemp()
    >>> path = write_raster(f"{tmp}/a.tif", np.zeros((300, 400, 3), np.uint8))
    >>> entry = CogBackend(f"{tmp}/cache").ensure(ImageSource(gid=1, path=path))
    >>> entry.kind, entry.meta["sidecar"]["in_place"], entry.meta["sidecar"]["settings"]["compress"]
    ('cog', False, 'ZSTD')
"""
from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from osgeo import gdal
from tqdm import tqdm

from ndpatch import gdalio, remote
from ndpatch.cache.base import CacheEntry, ImageSource
from ndpatch.cache.direct import DirectBackend
from ndpatch.cache.npy import PROGRESS_DELAY, NpyBackend, check_size, entry_from_sidecar, raster_fields
from ndpatch.cache.store import KeyedCache, atomic_publish, file_checksum
from ndpatch.cache.validity import raster_mask_kind
from ndpatch.errors import CacheConversionError, CorruptCacheError, NdpatchError, SourceReadError

#: Codecs that never change a pixel: a tiled GeoTIFF using one of these is read in place.
LOSSLESS_CODECS = {None, "NONE", "LZW", "DEFLATE", "ZSTD", "PACKBITS", "LZMA"}
#: The largest tile read in place (bigger tiles make small windows decode too much).
MAX_IN_PLACE_TILE = 1024
PREDICTOR_CODECS = {"LZW", "DEFLATE", "ZSTD"}
#: The default COG tile size, chosen by benchmarks/bench_cog_tiles.py (docs/cache.md, "COG settings"):
#: a 256² window at a random offset decodes 9 tiles of 128² (2.25× its pixels) instead of 4 of 256²
#: (4×): faster to read, for a cache of about the same size (ZSTD + predictor; measured figures there).
DEFAULT_BLOCKSIZE = 128


def default_compress() -> str:
    """ZSTD when this GDAL's COG driver has it, else DEFLATE."""
    options = gdal.GetDriverByName("COG").GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    return "ZSTD" if "<Value>ZSTD</Value>" in options else "DEFLATE"


def readable_in_place(info: gdalio.RasterInfo) -> bool:
    """Whether a raster is a tiled, losslessly coded GeoTIFF that reads windows efficiently.

    Example:
        >>> info = gdalio.RasterInfo(4096, 4096, 3, np.dtype("uint8"), None, ("", "", ""),
        ...                          None, None, (512, 512), "DEFLATE", "GTiff")
        >>> import dataclasses
        >>> striped = dataclasses.replace(info, block_size=(4096, 1))
        >>> readable_in_place(info), readable_in_place(striped)
        (True, False)
    """
    block_w, block_h = info.block_size
    tiled = block_w != info.width or block_w == block_h  # strips span the full width
    return (info.driver in ("GTiff", "COG") and tiled and info.compression in LOSSLESS_CODECS
            and max(block_w, block_h) <= MAX_IN_PLACE_TILE)


def cog_options(settings: dict, dtype: np.dtype, bands: int) -> list[str]:
    """The COG driver's creation options for ``settings`` (also what ``gdal_translate`` gets)."""
    compress = settings["compress"]
    options = [f"BLOCKSIZE={settings['blocksize']}", f"COMPRESS={compress}",
               f"OVERVIEWS={'AUTO' if settings['overviews'] else 'NONE'}",
               f"NUM_THREADS={settings['threads']}", "BIGTIFF=IF_SAFER"]
    if compress in PREDICTOR_CODECS and settings.get("predictor", True):
        options.append("PREDICTOR=YES")
    if settings.get("level") is not None:
        options.append(f"LEVEL={settings['level']}")
    if compress == "JPEG":
        if dtype != np.uint8 or bands not in (1, 3):
            raise NdpatchError(f"JPEG compression needs 1 or 3 uint8 bands, not {bands} {dtype}")
        options.append(f"QUALITY={settings['quality']}")
    return options


def convert_to_cog(source: ImageSource, dest: Path, settings: dict, info: gdalio.RasterInfo,
                   ds: gdal.Dataset, progress: bool = True, room: Callable[..., None] | None = None) -> dict:
    """Translate ``source`` into a COG at ``dest`` atomically; returns the sidecar fields.

    The source's mask band (per-dataset mask, alpha) is kept: GDAL writes the
    first as the COG's internal mask, the second stays a band. With a cache
    budget (``room``, :meth:`KeyedCache.publish`), room is made before GDAL
    writes, and a COG that turns out larger than the budget is not published.
    """
    what = source.describe()
    try:
        options = cog_options(settings, info.dtype, info.bands)
    except NdpatchError as err:
        raise CacheConversionError(f"{what}: {err}") from None
    mask = raster_mask_kind(ds)
    checksum = None

    def write(tmp: str) -> None:
        nonlocal checksum
        with tqdm(total=100, unit="%", desc=f"cog {remote.display(source.path)}", delay=PROGRESS_DELAY,
                  disable=not progress, leave=False) as bar:
            def report(complete: float, message, data) -> int:
                bar.update(round(100 * complete) - bar.n)
                return 1
            with gdalio.cache_file_config(), gdalio.corrupt_data_errors(what, ds):
                out = gdal.Translate(tmp, ds, format="COG", creationOptions=options, callback=report)
        if out is None:
            raise CacheConversionError(f"{what}: GDAL's COG driver returned nothing")
        out.FlushCache()
        del out
        checksum = file_checksum(tmp)

    def validate(tmp: str) -> None:
        check_cog(Path(tmp), info.height, info.width, info.bands, mask)
        if room is not None:
            written = sum(os.path.getsize(side) for side in glob.glob(glob.escape(tmp) + "*"))
            room(written, on_disk=written)

    try:
        if room is not None:
            room(0)
        nbytes = atomic_publish(dest, write, validate)
    except CacheConversionError:
        raise
    except (RuntimeError, OSError) as err:
        raise CacheConversionError(f"{what}: converting to COG {dest} failed: {err}") from err
    return {**raster_fields(info), "kind": "cog", "file": dest.name, "nbytes": nbytes, "checksum": checksum,
            "in_place": False, "creation_options": options,
            "mask": {"kind": mask, "file": None, "nbytes": 0, "checksum": None}}


def check_cog(path: Path, height: int, width: int, bands: int, mask: str) -> None:
    """Raise CorruptCacheError unless ``path`` opens as a tiled GeoTIFF of the given size and mask kind."""
    try:
        ds = gdalio.open_cache_file(str(path))
        found = (ds.RasterYSize, ds.RasterXSize, ds.RasterCount)
        found_mask = raster_mask_kind(ds)
        ds.GetRasterBand(ds.RasterCount).GetOverview(0)  # reads the last IFD: fails if truncated
        del ds
    except (RuntimeError, OSError) as err:
        raise CorruptCacheError(f"cache file {path} does not open as a GeoTIFF: {err}") from err
    if found != (height, width, bands):
        raise CorruptCacheError(f"cache file {path} is {found}, expected {(height, width, bands)}")
    if found_mask != mask:
        raise CorruptCacheError(f"cache file {path} has a {found_mask} mask, expected {mask}")


def validate_cog(path: Path | None, sidecar: dict) -> None:
    """Check a COG entry against its sidecar (size, header, mask kind); in-place entries need nothing."""
    if sidecar["in_place"]:
        return
    if path is None:
        raise CorruptCacheError(f"cog sidecar {sidecar['key']} names no data file")
    check_size(path, sidecar["nbytes"])
    check_cog(path, sidecar["height"], sidecar["width"], sidecar["bands"], sidecar["mask"]["kind"])


class CogBackend(KeyedCache):
    """Serve windows from tiled COGs converted on first touch (``backend='cog'``).

    Args:
        workdir: the cache root (default ``$NDPATCH_CACHE``, else the per-user cache dir).
        blocksize: tile size in pixels (a multiple of 16, ≥ 128; default :data:`DEFAULT_BLOCKSIZE`).
        compress: ``'ZSTD'`` / ``'DEFLATE'`` / ``'LZW'`` (lossless, with a predictor) or
            ``'JPEG'`` (lossy, only when asked for); default ZSTD when available.
        predictor: use GDAL's horizontal predictor with ZSTD/DEFLATE/LZW (smaller files).
        level: the codec's compression level (GDAL's default when None: 9 for ZSTD, chosen by the same
            benchmark: it reads as fast as level 1, for a smaller cache on smooth imagery).
        quality: JPEG quality.
        overviews: write internal overviews.
        in_place: read tiled lossless GeoTIFF sources without converting them.
        threads: GDAL compression threads while converting (``'ALL_CPUS'`` or a count).
            Default 1: GDAL's worker threads do not survive a fork, and a forked
            process (a DataLoader worker) that converts after its parent used
            them hangs. ``ndpatch warmup`` gets its parallelism from processes.
        content_hash: also key entries on a sha256 of the source bytes.
        progress: show a progress bar for conversions that take more than a few seconds.
        allow_vrt: also convert GDAL VRTs whose files are all inside the dataset's folder
            (their entries are keyed apart from those of backends that refuse VRTs).
        cache_max_bytes: the cache's size budget (as for ``NpyBackend``).
    """

    name = "cog"
    validate = staticmethod(validate_cog)

    def __init__(self, workdir: str | os.PathLike | None = None, blocksize: int = DEFAULT_BLOCKSIZE,
                 compress: str | None = None, level: int | None = None, quality: int = 90,
                 overviews: bool = True, in_place: bool = True, threads: int | str = 1,
                 content_hash: bool = False, progress: bool = True, allow_vrt: bool = False,
                 cache_max_bytes: int | str | None = None, predictor: bool = True):
        if int(blocksize) < 128 or int(blocksize) % 16:
            raise NdpatchError(f"COG blocksize must be a multiple of 16 and >= 128, not {blocksize}")
        super().__init__(workdir, content_hash, progress, cache_max_bytes)
        self.settings = {"blocksize": int(blocksize), "compress": (compress or default_compress()).upper(),
                         "level": level, "quality": int(quality), "overviews": bool(overviews),
                         "in_place": bool(in_place), **({"allow_vrt": True} if allow_vrt else {}),
                         **({} if predictor else {"predictor": False})}
        self.threads = threads
        self.allow_vrt = bool(allow_vrt)
        self._direct = DirectBackend(allow_vrt)

    def build(self, source: ImageSource, dest: Path, room: Callable[..., None] | None = None) -> dict:
        """Decide in place or convert (making ``room`` under the budget); returns the sidecar fields."""
        ds = gdalio.source_opener(self.allow_vrt, source.bundle_dpath)(source.path, source.describe())
        info = gdalio.raster_info(ds)
        if self.settings["in_place"] and readable_in_place(info) and not remote.is_remote(source.path):
            return {**raster_fields(info), "kind": "cog", "file": None, "nbytes": 0, "checksum": None,
                    "in_place": True, "mask": {"kind": raster_mask_kind(ds), "file": None, "nbytes": 0,
                                               "checksum": None},
                    "source_layout": {"block_size": list(info.block_size), "compression": info.compression}}
        return convert_to_cog(source, dest, {**self.settings, "threads": self.threads}, info, ds, self.progress,
                              room)

    def ensure(self, source: ImageSource, identity: dict | None = None) -> CacheEntry:
        dest, sidecar, converted = self.publish(source, lambda dest, room: self.build(source, dest, room), identity)
        path = source.path if sidecar["in_place"] else str(dest)
        if converted:
            gdalio.POOL.forget(path)
        entry = entry_from_sidecar(source, path, sidecar, converted)
        entry.meta["opener"] = gdalio.SOURCE if sidecar["in_place"] else gdalio.open_cache_file
        return entry

    def gdal_dataset(self, entry: CacheEntry) -> gdal.Dataset:
        try:
            return self._direct.gdal_dataset(entry)
        except SourceReadError as err:  # not open in this thread, and its file evicted since: convert it again
            return self._direct.gdal_dataset(self.evicted(entry, err))

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        try:
            self._direct.read_into(entry, rows, cols, bands, out)
        except SourceReadError as err:
            self._direct.read_into(self.evicted(entry, err), rows, cols, bands, out)

    def read_mask_into(self, entry: CacheEntry, rows: slice, cols: slice, out: np.ndarray) -> None:
        try:
            self._direct.read_mask_into(entry, rows, cols, out)
        except SourceReadError as err:
            self._direct.read_mask_into(self.evicted(entry, err), rows, cols, out)


class AutoBackend:
    """Pick per image: in place (tiled lossless GeoTIFF), npy (≤ ``npy_max_mb`` decoded) or COG.

    Entries are shared with explicit ``'npy'``/``'cog'`` backends of the same settings. Once an
    image has an entry, it is found from the source's identity alone (no GDAL open of the source).
    """

    name = "auto"

    def __init__(self, workdir: str | os.PathLike | None = None, npy_max_mb: float = 1024,
                 content_hash: bool = False, progress: bool = True, allow_vrt: bool = False,
                 cache_max_bytes: int | str | None = None, **cog_options):
        shared = {"content_hash": content_hash, "progress": progress, "allow_vrt": allow_vrt,
                  "cache_max_bytes": cache_max_bytes}
        self.npy = NpyBackend(workdir, **shared)
        self.cog = CogBackend(workdir, **shared, **cog_options)
        self.store = self.npy.store
        self.npy_max_mb = npy_max_mb

    def choose(self, source: ImageSource, identity: dict | None = None) -> NpyBackend | CogBackend:
        """The backend this image goes to, by the rule in the module docstring."""
        identity = identity or self.npy.identity(source)
        if self.npy.cached(source, identity):
            return self.npy
        if self.cog.cached(source, identity):
            return self.cog
        opener = gdalio.source_opener(self.cog.allow_vrt, source.bundle_dpath)
        info = gdalio.raster_info(gdalio.POOL.get(source.path, source.describe(), opener=opener))
        if self.cog.settings["in_place"] and readable_in_place(info) and not remote.is_remote(source.path):
            return self.cog
        decoded_mb = info.height * info.width * info.bands * info.dtype.itemsize / 2**20
        return self.npy if decoded_mb <= self.npy_max_mb else self.cog

    @property
    def max_bytes(self) -> int | None:
        return self.npy.max_bytes

    def touch(self, entry: CacheEntry) -> None:
        self.npy.touch(entry)

    def cached(self, source: ImageSource) -> bool:
        identity = self.npy.identity(source)
        return self.npy.cached(source, identity) or self.cog.cached(source, identity)

    def ensure(self, source: ImageSource) -> CacheEntry:
        identity = self.npy.identity(source)
        return self.choose(source, identity).ensure(source, identity)

    def gdal_dataset(self, entry: CacheEntry) -> gdal.Dataset | None:
        return self.cog.gdal_dataset(entry) if entry.kind == "cog" else None

    def array(self, entry: CacheEntry) -> np.ndarray | None:
        """An npy entry's memory-mapped pixels (None for a COG entry, which GDAL decodes)."""
        return self.npy.array(entry) if entry.kind == "npy" else None

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        (self.npy if entry.kind == "npy" else self.cog).read_into(entry, rows, cols, bands, out)

    def read_mask_into(self, entry: CacheEntry, rows: slice, cols: slice, out: np.ndarray) -> None:
        (self.npy if entry.kind == "npy" else self.cog).read_mask_into(entry, rows, cols, out)
