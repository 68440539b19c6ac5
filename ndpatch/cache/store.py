"""The cache directory: keys, sidecars, locks, atomic publishing, verify, info and clear.

Layout under the cache root::

    entries/<key>.<ext>    a converted image (``.npy``, ``.tif``)
    entries/<key>.json     its sidecar: source identity, shape, dtype, settings, versions
    locks/<key>.lock       the cross-process lock of that key (filelock)

A key is a hash of the source identity (resolved path or URI, size,
mtime_ns, optionally a content hash) and the backend settings, so an edited
source or a same-named file elsewhere never maps to an existing entry. Names
under the root derive from the key only. The sidecar is published last: an
entry exists once its sidecar does. :func:`atomic_publish` is the one way
ndpatch writes a file.

Example:
    >>> import tempfile, os
    >>> store = CacheStore(tempfile.mkdtemp())
    >>> dest = store.data_path("abc", ".txt")
    >>> atomic_publish(dest, lambda tmp: Path(tmp).write_text("hi"))
    2
    >>> open(dest).read(), os.listdir(os.path.dirname(dest))
    ('hi', ['abc.txt'])
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock

from ndpatch.errors import CorruptCacheError, SourceReadError

#: Bumped when the layout of cache files or sidecars changes (part of every key).
CACHE_FORMAT = 2
TEMP_MARK = ".tmp-"
#: Permissions of published files (mkstemp's 0600 would hide a shared cache from other users).
PUBLISHED_MODE = 0o644


def cache_root(workdir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``workdir``, else ``$NDPATCH_CACHE``, else the per-user cache dir."""
    if workdir is not None:
        return Path(workdir)
    if os.environ.get("NDPATCH_CACHE"):
        return Path(os.environ["NDPATCH_CACHE"])
    import ubelt
    return Path(ubelt.ensure_app_cache_dir("ndpatch"))


def source_identity(path: str, content_hash: bool = False, what: str | None = None) -> dict:
    """What identifies a source's bytes: resolved path or URI, size, mtime_ns (and a sha256).

    Example:
        >>> import tempfile
        >>> fpath = tempfile.mktemp()
        >>> _ = open(fpath, "wb").write(b"abc")
        >>> ident = source_identity(fpath, content_hash=True)
        >>> ident["size"], ident["sha256"][:8]
        (3, 'ba7816bf')
    """
    what = what or path
    if path.startswith("/vsi"):
        from osgeo import gdal
        stat = gdal.VSIStatL(path)
        if stat is None:
            raise SourceReadError(f"{what}: GDAL cannot stat it")
        ident = {"path": path, "size": int(stat.size), "mtime_ns": int(stat.mtime) * 10**9}
    else:
        resolved = os.path.realpath(path)
        try:
            stat = os.stat(resolved)
        except OSError as err:
            raise SourceReadError(f"{what}: file does not exist or cannot be read: {err}") from err
        ident = {"path": resolved, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if content_hash:
        from osgeo import gdal
        digest = hashlib.sha256()
        handle = gdal.VSIFOpenL(path, "rb")
        try:
            while chunk := gdal.VSIFReadL(1, 1 << 22, handle):
                digest.update(chunk)
        finally:
            gdal.VSIFCloseL(handle)
        ident["sha256"] = digest.hexdigest()
    return ident


def entry_key(identity: dict, kind: str, settings: dict) -> str:
    """The key of a source converted by backend ``kind`` with ``settings`` (32 hex digits).

    Example:
        >>> ident = {"path": "/a/img.png", "size": 1, "mtime_ns": 2}
        >>> entry_key(ident, "npy", {}) == entry_key({**ident, "path": "/b/img.png"}, "npy", {})
        False
    """
    blob = json.dumps({"format": CACHE_FORMAT, "source": identity, "kind": kind,
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_publish(dest: str | os.PathLike, write: Callable[[str], object],
                   validate: Callable[[str], object] | None = None, sync_dir: bool = True) -> int:
    """Write ``dest`` through a temp file beside it: write, fsync, validate, rename.

    ``write(tmp_path)`` fills the temp file; ``validate(tmp_path)`` may raise.
    On any failure the temp file is removed and nothing appears at ``dest``.
    ``sync_dir=False`` leaves the fsync of the folder (which makes the rename
    durable) to a caller publishing many files into it. Returns the number of
    bytes published.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f"{dest.stem}{TEMP_MARK}", suffix=dest.suffix)
    os.close(fd)
    os.chmod(tmp, PUBLISHED_MODE)
    try:
        write(tmp)
        fsync_path(tmp)
        if validate is not None:
            validate(tmp)
        size = os.path.getsize(tmp)
        os.replace(tmp, dest)
    except BaseException:
        for leftover in glob.glob(glob.escape(tmp) + "*"):  # also GDAL's side files (.ovr.tmp ...)
            os.unlink(leftover)
        raise
    if sync_dir:
        fsync_path(dest.parent)
    return size


def write_json(dest: str | os.PathLike, data: dict) -> int:
    """Publish ``data`` as a json file atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as file:
            json.dump(data, file, indent=1, sort_keys=True)
    return atomic_publish(dest, write)


@dataclass(frozen=True)
class VerifyResult:
    """One entry's verdict: ``ok``, ``stale`` (source edited or gone) or ``corrupt``."""

    key: str
    status: str
    reason: str
    source: str


class CacheStore:
    """The files of one cache root, and the lock of each key."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.entries_dir = self.root / "entries"
        self.locks_dir = self.root / "locks"

    def data_path(self, key: str, ext: str) -> Path:
        return self.entries_dir / f"{key}{ext}"

    def sidecar_path(self, key: str) -> Path:
        return self.entries_dir / f"{key}.json"

    def lock(self, key: str) -> filelock.BaseFileLock:
        """The cross-process lock of ``key`` (fcntl: released by the kernel if the holder dies)."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(self.locks_dir / f"{key}.lock", thread_local=False)

    def read_sidecar(self, key: str) -> dict | None:
        """The sidecar of ``key``; None when absent; CorruptCacheError when unreadable."""
        path = self.sidecar_path(key)
        try:
            with open(path) as file:
                data = json.load(file)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise CorruptCacheError(f"cache sidecar {path} is unreadable: {err}") from err
        if not isinstance(data, dict) or data.get("key") != key:
            raise CorruptCacheError(f"cache sidecar {path} does not describe entry {key}")
        return data

    def ensure(self, key: str, record: dict, validate: Callable[[Path | None, dict], None],
               build: Callable[[], dict], what: str) -> tuple[dict, bool]:
        """The valid sidecar of ``key``, building the entry under its lock if needed.

        ``record`` (source identity, settings) goes into the sidecar as is.
        ``validate(data_path, sidecar)`` raises CorruptCacheError for a bad
        entry (``data_path`` is None for entries that read the source in
        place); ``build()`` publishes the data file(s) and returns the sidecar
        fields. A bad entry is rebuilt with a warning. Returns ``(sidecar,
        converted)``; of N processes racing on one key exactly one converts.
        """
        try:
            sidecar = self.read_sidecar(key)
            if sidecar is not None:
                validate(self.data_file(sidecar), sidecar)
                return sidecar, False
        except CorruptCacheError:
            pass  # checked again, and reported, under the lock
        with self.lock(key):
            try:
                sidecar = self.read_sidecar(key)
                if sidecar is not None:
                    validate(self.data_file(sidecar), sidecar)
                    return sidecar, False
            except CorruptCacheError as err:
                warnings.warn(f"{what}: rebuilding cache entry {key}: {err}", RuntimeWarning, stacklevel=3)
            self.remove(key)
            self.remove_temps(key)
            started = time.perf_counter()
            sidecar = {**build(), **record, "key": key, "versions": versions(), "created": time.time(),
                       "convert_seconds": time.perf_counter() - started}
            write_json(self.sidecar_path(key), sidecar)
            return sidecar, True

    def data_file(self, sidecar: dict) -> Path | None:
        """The data file of an entry, None when it reads its source in place."""
        return None if sidecar.get("file") is None else self.entries_dir / sidecar["file"]

    def remove_temps(self, key: str) -> int:
        """Delete temp files a killed writer of ``key`` left behind (call under its lock)."""
        leftovers = glob.glob(str(self.entries_dir / f"{glob.escape(key)}*{TEMP_MARK}*"))
        for path in leftovers:
            os.unlink(path)
        return len(leftovers)

    def remove(self, key: str) -> None:
        """Delete an entry's sidecar first (so it stops existing), then its data files."""
        self.sidecar_path(key).unlink(missing_ok=True)
        for path in self.entries_dir.glob(f"{key}.*"):
            path.unlink(missing_ok=True)

    def keys(self) -> list[str]:
        """Keys of every entry with a sidecar, and of every temp file's owner."""
        if not self.entries_dir.is_dir():
            return []
        return sorted({p.name.split(".")[0].split(TEMP_MARK)[0] for p in self.entries_dir.iterdir()})

    def sidecars(self) -> Iterator[tuple[str, dict | None]]:
        """``(key, sidecar)`` for each key; sidecar None when missing or unreadable."""
        for key in self.keys():
            try:
                yield key, self.read_sidecar(key)
            except CorruptCacheError:
                yield key, None

    def info(self) -> dict:
        """Entry counts and bytes, per kind, plus temp files and orphans.

        Example:
            >>> import tempfile
            >>> CacheStore(tempfile.mkdtemp()).info()["entries"]
            0
        """
        by_kind: dict[str, dict] = {}
        total = 0
        orphans = 0
        for key, sidecar in self.sidecars():
            if sidecar is None:
                orphans += 1
                continue
            size = sum(p.stat().st_size for p in self.entries_dir.glob(f"{key}.*"))
            stats = by_kind.setdefault(sidecar["kind"], {"entries": 0, "bytes": 0, "in_place": 0})
            stats["entries"] += 1
            stats["bytes"] += size
            stats["in_place"] += bool(sidecar.get("in_place"))
            total += size
        temps = len(list(self.entries_dir.glob(f"*{TEMP_MARK}*"))) if self.entries_dir.is_dir() else 0
        return {"root": str(self.root), "entries": sum(s["entries"] for s in by_kind.values()),
                "bytes": total, "by_kind": by_kind, "orphans": orphans, "temp_files": temps}

    def verify(self, validate: Callable[[Path, dict], None], delete: bool = False) -> list[VerifyResult]:
        """Re-validate every entry with ``validate(data_path, sidecar)``; optionally delete bad ones."""
        results = []
        for key in self.keys():
            with self.lock(key):
                try:
                    sidecar = self.read_sidecar(key)
                    if sidecar is None:
                        raise CorruptCacheError("no sidecar (an interrupted or orphaned write)")
                    source = sidecar["source"]["path"]
                    validate(self.data_file(sidecar), sidecar)
                    result = VerifyResult(key, "ok", "", source)
                    try:
                        current = source_identity(source, "sha256" in sidecar["source"])
                        if current != sidecar["source"]:
                            result = VerifyResult(key, "stale", "the source changed since caching", source)
                    except SourceReadError:
                        result = VerifyResult(key, "stale", "the source no longer exists", source)
                except (CorruptCacheError, KeyError, TypeError) as err:
                    result = VerifyResult(key, "corrupt", str(err), "?")
                if delete and result.status != "ok":
                    self.remove(key)
                    self.remove_temps(key)
                results.append(result)
        return results

    def clear(self) -> int:
        """Remove every entry and temp file (each under its key's lock); returns entries removed."""
        removed = 0
        for key in self.keys():
            with self.lock(key):
                removed += self.sidecar_path(key).exists()
                self.remove(key)
                self.remove_temps(key)
        return removed


class KeyedCache:
    """What every cache backend shares: a store, settings, and one key per source version.

    A subclass sets ``name``, ``ext`` (of its data files), ``settings`` and
    ``validate(data_path, sidecar)``, and converts through :meth:`publish`.
    """

    name: str
    ext: str
    settings: dict
    validate: Callable[[Path | None, dict], None]

    def __init__(self, workdir: str | os.PathLike | None = None, content_hash: bool = False):
        self.store = CacheStore(cache_root(workdir))
        self.content_hash = content_hash

    def record(self, source) -> dict:
        """What identifies a source's entry: source identity and settings (hashed into its key)."""
        return {"source": source_identity(source.path, self.content_hash, source.describe()),
                "settings": self.settings}

    def key(self, record: dict) -> str:
        return entry_key(record["source"], self.name, record["settings"])

    def cached(self, source) -> bool:
        """Whether ``source`` has a valid entry already (no conversion needed)."""
        try:
            sidecar = self.store.read_sidecar(self.key(self.record(source)))
            if sidecar is None:
                return False
            self.validate(self.store.data_file(sidecar), sidecar)
            return True
        except CorruptCacheError:
            return False

    def publish(self, source, build: Callable[[Path], dict]) -> tuple[Path, dict, bool]:
        """``(data_path, sidecar, converted)`` of ``source``; ``build(data_path)`` converts it."""
        record = self.record(source)
        key = self.key(record)
        dest = self.store.data_path(key, self.ext)
        sidecar, converted = self.store.ensure(key, record, self.validate,
                                               lambda: build(dest), source.describe())
        return dest, sidecar, converted


def versions() -> dict:
    """Library versions recorded in each sidecar."""
    import numpy
    from osgeo import gdal

    import ndpatch
    return {"ndpatch": ndpatch.__version__, "numpy": numpy.__version__, "gdal": gdal.__version__}
