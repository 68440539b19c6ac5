"""The image record: what one image is, resolved once through a backend, and kept fresh.

An :class:`ImageRecord` is everything a read of image ``gid`` needs, looked up
in one place: its files (the 2-D view and the video-frame view, with their
warps and declared channels), the file identity of each file when it was
resolved (:func:`ndpatch.gdalio.file_identity`), the cache entry of a
single-file image (size, dtype, nodata, band names, georeferencing: all from
the entry, no source opened for them), its channel names and band lists. The
entries of a multi-file image's files are resolved on first use, so a window
that needs one band converts one file.

:class:`ImageRecords` memoises records per sampler. A live sampler re-stats a
record's files (and its cache file) at most once every :data:`RECHECK_SECONDS`
and stamps the entries it uses (the cache's LRU order); when any identity
changed, the record is resolved again (``backend.ensure`` again: a cache backend
then computes a new key, or rebuilds an evicted entry; the direct backend opens
a new handle). A sample is
read from one record: a file that changed between the record's resolution and a
lazy entry's makes the whole record resolve again (:meth:`ImageRecords.using`),
so old and new pixels never meet in one sample.

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> record = sampler.records.get(1)
    >>> record.dims, record.channels, record.bands("r|b"), record.multi
    ((600, 600), ('r', 'g', 'b'), [0, 2], False)
    >>> sampler.records.get(1) is record          # memoised; re-checked at most once a second
    True
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ndpatch import gdalio, remote
from ndpatch.cache.base import Backend, CacheEntry, ImageSource
from ndpatch.dataset import DEFAULT_CHANNELS, LABEL_CHANNELS, Asset, band_indices, channel_plan
from ndpatch.errors import DatasetError, SourceReadError, TargetError
from ndpatch.geo import Georef, georef_from

#: A live sampler re-stats an image's files at most once per this many seconds.
RECHECK_SECONDS = 1.0
#: Resolutions tried for one sample when its files keep changing under it.
STALE_RETRIES = 3

T = TypeVar("T")


class StaleRecord(Exception):
    """A file of a record changed after the record was resolved (resolve it again)."""


def file_state(path: str) -> tuple | None:
    """The file's identity, or None while it is missing or unreadable (a read then raises the real error)."""
    try:
        return gdalio.file_identity(path)
    except SourceReadError:
        return None


def ask_servers(paths) -> None:
    """Make the next stat of each remote file among ``paths`` ask its server (:func:`ndpatch.remote.refresh`)."""
    for path in paths:
        if remote.is_remote(path):
            remote.refresh(path)


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image as a sampler reads it, resolved at one moment (see the module doc).

    ``entry`` is the cache entry of a single-file image (None for a multi-file
    one); ``identities`` maps each file's path (and the single entry's cache
    file's) to its identity when resolved.
    """

    gid: int
    files: tuple[Asset, ...]          # what a 2-D window reads (one for a single-file image)
    frame_files: tuple[Asset, ...]    # what a video frame reads: file_name, then every asset
    multi: bool
    identities: dict[str, tuple | None]
    entry: CacheEntry | None
    declared_dims: tuple[int, int] | None
    georef: Georef | None             # single-file images: from the entry
    files_error: DatasetError | None = None   # why the 2-D view cannot be read (frames still can)
    frames_error: DatasetError | None = None  # why the video-frame view cannot be read
    backend: Backend = field(default=None, repr=False)
    _entries: dict[str, CacheEntry] = field(default_factory=dict, repr=False)
    _bands: dict[Any, list[int] | None] = field(default_factory=dict, repr=False)

    @property
    def dims(self) -> tuple[int, int]:
        """(height, width) in image pixels: the file's, or the record's for a multi-file image."""
        if self.entry is not None:
            return self.entry.height, self.entry.width
        if self.declared_dims is None:
            raise TargetError(f"image {self.gid}: a multi-file image needs width and height in its record")
        return self.declared_dims

    @property
    def channels(self) -> tuple[str, ...] | None:
        """Channel names: declared, else the defaults for the band count; every file's for a multi-file image."""
        if self.multi:
            return tuple(name for asset in self.files for name in asset.source.channels)
        return self.files[0].source.channels or DEFAULT_CHANNELS.get(self.entry.bands)

    @property
    def entries(self) -> tuple[CacheEntry, ...]:
        """The entries resolved so far, in the order they were resolved."""
        return tuple(self._entries.values())

    __repr__ = remote.redacted_repr  # a URL's user, password and query values never show

    def describe(self) -> str:
        """``image <gid> (<path>, ...)``, the prefix of every error about this image."""
        return f"image {self.gid} ({', '.join(remote.display(a.source.path) for a in self.files or self.frame_files)})"

    def entry_of(self, source: ImageSource) -> CacheEntry:
        """The entry of one of the record's files, resolved on first use.

        Raises :class:`StaleRecord` when the file is no longer the one the record saw.
        """
        entry = self._entries.get(source.path)
        if entry is None:
            if source.path in self.identities and file_state(source.path) != self.identities[source.path]:
                raise StaleRecord(source.path)
            entry = self._entries[source.path] = self.backend.ensure(source)
        return entry

    def bands(self, channels: Any) -> list[int] | None:
        """0-based bands of a single-file image for a channel request (None: all), memoised."""
        if channels is None:
            return None
        key = channels if isinstance(channels, str) else tuple(channels)
        bands = self._bands.get(key, False)
        if bands is False:
            source = self.files[0].source
            bands = self._bands[key] = band_indices(channels, source.channels, self.entry.bands,
                                                    source.describe())
        return bands

    def parts(self, channels: Any) -> list[tuple[CacheEntry, Any, list[int], list[int]]]:
        """``(entry, warp to image pixels, bands, output positions)`` per file a window of ``channels`` reads."""
        if not self.multi:
            bands = self.bands(channels)
            n = self.entry.bands if bands is None else len(bands)
            return [(self.entry, self.files[0].warp, list(range(n)) if bands is None else bands, list(range(n)))]
        what = f"image {self.gid} ({self.files[0].source.path}, ...)"
        return [(self.entry_of(self.files[k].source), self.files[k].warp, bands, positions)
                for k, bands, positions in channel_plan(self.files, channels, what)]

    def parts_georef(self, parts: list) -> Georef | None:
        """The georeferencing of the image grid: the entry's, or the first georeferenced part's, warped."""
        if not self.multi:
            return self.georef
        for entry, warp, *_ in parts:
            georef = georef_from(entry.geotransform, entry.crs_wkt)
            if georef is not None:
                return georef.warped(warp.inv())
        return None

    def label_file(self) -> Asset | None:
        """The file holding the image's label raster (channel ``class_id``), if it has one."""
        if not self.multi:
            return None
        return next((asset for asset in self.files
                     if asset.source.channels and asset.source.channels[0] in LABEL_CHANNELS), None)


def resolve_record(index, backend: Backend, gid: int) -> ImageRecord:
    """Resolve image ``gid`` now: parse its files (``index``), stat them, ensure a single file's entry."""
    files_error = frames_error = None
    try:
        files = index.files(gid)
    except DatasetError as err:
        files, files_error = (), err
    try:
        frame_files = index.frame_files(gid)
    except DatasetError as err:
        frame_files, frames_error = (), err
    paths = dict.fromkeys(asset.source.path for asset in files + frame_files)
    ask_servers(paths)   # a new record sees a rewritten object at once
    identities = {path: file_state(path) for path in paths}   # before ensure: a later change is seen
    multi = len(files) > 1
    entry = backend.ensure(files[0].source) if files and not multi else None
    if entry is not None:
        index.check_file_dims(gid, (entry.height, entry.width))
        if entry.identity is not None:
            identities.setdefault(entry.path, entry.identity)  # the cache file: an evicted entry is rebuilt
    return ImageRecord(gid=gid, files=files, frame_files=frame_files, multi=multi, identities=identities,
                       entry=entry, declared_dims=index.image_dims(gid),
                       georef=None if entry is None else georef_from(entry.geotransform, entry.crs_wkt),
                       files_error=files_error, frames_error=frames_error, backend=backend,
                       _entries={} if entry is None else {files[0].source.path: entry})


class ImageRecords:
    """A sampler's image records: resolved on first touch, re-checked at most once per :data:`RECHECK_SECONDS`.

    Files in object storage or on web servers are asked about (one request each)
    when a record is resolved and at most once per
    :data:`ndpatch.remote.RECHECK_SECONDS` (60 s) after that; the re-checks in
    between compare what was last fetched, so sampling costs no request per sample.

    ``clock`` gives the time in seconds (``time.monotonic``). Pickles empty (a
    new process resolves its own records).
    """

    def __init__(self, index, backend: Backend, clock: Callable[[], float] = time.monotonic):
        self.index = index
        self.backend = backend
        self.clock = clock
        self._held: dict[int, list] = {}  # gid -> [record, time of the last check, of the last server request]

    def get(self, gid: int) -> ImageRecord:
        """The record of image ``gid`` for a 2-D read (its files' parse errors raised)."""
        held = self._held.get(gid)
        if held is not None and self.clock() - held[1] < RECHECK_SECONDS and held[0].files_error is None:
            return held[0]  # the hot path: a dict lookup and a clock read
        record = self.current(gid)
        if record.files_error is not None:
            raise record.files_error
        return record

    def current(self, gid: int) -> ImageRecord:
        """The record of image ``gid``, resolved again when one of its files changed."""
        held = self._held.get(gid)
        if held is not None:
            now = self.clock()
            if now - held[1] < RECHECK_SECONDS:
                return held[0]
            record = held[0]
            if now - held[2] >= remote.RECHECK_SECONDS and any(map(remote.is_remote, record.identities)):
                ask_servers(record.identities)  # a request per object: at most once per remote interval
                held[2] = now
            if all(file_state(path) == identity for path, identity in record.identities.items()):
                held[1] = now
                touch = getattr(self.backend, "touch", None)  # the cache's access stamp (LRU eviction)
                if touch is not None:
                    for entry in record.entries:
                        touch(entry)
                return record
        return self.refresh(gid)

    def refresh(self, gid: int) -> ImageRecord:
        """Resolve image ``gid`` again, now."""
        record = resolve_record(self.index, self.backend, gid)
        now = self.clock()
        self._held[gid] = [record, now, now]
        return record

    def using(self, gid: int, read: Callable[[ImageRecord], T], frames: bool = False) -> T:
        """``read(record)`` on one consistent record: resolved again (once) if a file changed meanwhile.

        ``frames`` reads the video-frame view (a 2-D parse error is not raised).
        """
        record = self.current(gid) if frames else self.get(gid)
        for _ in range(STALE_RETRIES):
            try:
                return read(record)
            except StaleRecord as stale:
                changed = stale.args[0]
                record = self.refresh(gid)
        raise SourceReadError(f"{record.describe()}: {changed} kept changing while it was read "
                              f"({STALE_RETRIES} tries)")

    def __getstate__(self) -> dict:
        return {"index": self.index, "backend": self.backend}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["index"], state["backend"])
