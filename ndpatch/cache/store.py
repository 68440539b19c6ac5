"""The cache directory: keys, sidecars, checksums, locks, atomic publishing, verify, info and clear.

Layout under the cache root (the naming rule: nothing else is ever written,
read as an entry, or deleted there)::

    entries/<key>.npy | <key>.tif   a converted image
    entries/<key>.mask.npy          its valid-pixel mask, when the source has a mask band (npy)
    entries/<key>.json              its sidecar: source identity, shape, dtype, mask, settings,
                                    checksums of the data files and of the sidecar itself
    entries/<key>[.mask].tmp-*      a file being written (never served; removed by the next writer)
    locks/<key>.lock                the cross-process lock of that key (filelock)

``<key>`` is 32 hex digits: a hash of the source identity (resolved path or
URI, size, mtime_ns, inode, ctime_ns, a fingerprint of a few fixed blocks of
its bytes, optionally a sha256 of all of them) and the backend settings, so an
edited or replaced source, or a same-named file elsewhere, never maps to an
existing entry. Entry paths derive from the key only: a sidecar that names any
other file is refused. The sidecar is published last: an entry exists once its
sidecar does. :func:`atomic_publish` is the one way ndpatch writes a file.

Example:
    >>> import tempfile, os
    >>> store = CacheStore(tempfile.mkdtemp())
    >>> dest = store.path("0" * 32, "npy")
    >>> atomic_publish(dest, lambda tmp: Path(tmp).write_text("hi"))
    2
    >>> open(dest).read(), os.listdir(os.path.dirname(dest))
    ('hi', ['00000000000000000000000000000000.npy'])
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock

from ndpatch import gdalio, remote
from ndpatch.cache import budget
from ndpatch.cache.budget import human_bytes
from ndpatch.errors import CacheConversionError, CorruptCacheError, DiskFullError, NdpatchError, SourceReadError
from ndpatch.sidecars import sidecar_states

#: Bumped when the layout of cache files or sidecars changes (part of every key).
CACHE_FORMAT = 3
TEMP_MARK = ".tmp-"
#: Permissions of published files (mkstemp's 0600 would hide a shared cache from other users).
PUBLISHED_MODE = 0o644
#: The file name suffix of each part of an entry.
SUFFIXES = {"sidecar": ".json", "npy": ".npy", "cog": ".tif", "mask": ".mask.npy"}
ENTRY_NAME = re.compile(r"(?P<key>[0-9a-f]{32})(?:\.json|\.npy|\.tif|\.mask\.npy)")
#: A temp file of :func:`atomic_publish` (mkstemp's random part), plus any side file GDAL adds to it.
TEMP_NAME = re.compile(r"(?P<key>[0-9a-f]{32})(?:\.mask)?\.tmp-[a-z0-9_]+(?:\.json|\.npy|\.tif)(?:\.[\w.]+)?")
#: Bytes hashed at the start and at the end of a source for its fingerprint.
FINGERPRINT_EDGE = 64 << 10
#: Bytes hashed at each of FINGERPRINT_BLOCKS fixed offsets inside a source.
FINGERPRINT_BLOCK = 4 << 10
FINGERPRINT_BLOCKS = 8
#: Files beside a source that change what GDAL reads from it (a mask, PAM metadata such as nodata).
#: A write that fails with less free space than this left is reported as a full disk
#: (GDAL's write errors carry no errno).
DISK_FULL_MARGIN = 8 << 20

logger = logging.getLogger("ndpatch")
_conversion_logged = False


def cache_root(workdir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``workdir``, else ``$NDPATCH_CACHE``, else the per-user cache dir."""
    if workdir is not None:
        return Path(workdir)
    if os.environ.get("NDPATCH_CACHE"):
        return Path(os.environ["NDPATCH_CACHE"])
    import ubelt
    return Path(ubelt.ensure_app_cache_dir("ndpatch"))


# -- source identity ---------------------------------------------------------------------------
def fingerprint_spans(size: int) -> list[tuple[int, int]]:
    """The ``(offset, length)`` spans of a ``size``-byte file that its fingerprint hashes.

    The first and last FINGERPRINT_EDGE bytes (headers, TIFF directories) and
    FINGERPRINT_BLOCKS blocks at fixed fractions of the file: at most 160 kB.

    Example:
        >>> fingerprint_spans(100)
        [(0, 100)]
        >>> len(fingerprint_spans(10**9)), sum(n for _, n in fingerprint_spans(10**9))
        (10, 163840)
    """
    if size <= 2 * FINGERPRINT_EDGE + FINGERPRINT_BLOCKS * FINGERPRINT_BLOCK:
        return [(0, size)]
    inner = [(size * k // (FINGERPRINT_BLOCKS + 1), FINGERPRINT_BLOCK) for k in range(1, FINGERPRINT_BLOCKS + 1)]
    return [(0, FINGERPRINT_EDGE), *inner, (size - FINGERPRINT_EDGE, FINGERPRINT_EDGE)]


def content_fingerprint(path: str, size: int, what: str | None = None) -> str:
    """A hash of the size and a few fixed blocks of a file (:func:`fingerprint_spans`).

    Catches a replaced source that kept its size and mtime (``cp -p``,
    ``rsync -t``) without reading the whole file. Local files are read with
    plain reads, ``/vsi`` paths through GDAL's virtual file API.

    Example:
        >>> import tempfile
        >>> fpath = tempfile.mktemp()
        >>> _ = open(fpath, "wb").write(b"abc")
        >>> content_fingerprint(fpath, 3) == content_fingerprint(fpath, 3)
        True
    """
    digest = hashlib.sha256(str(size).encode())
    try:
        for offset, data in _read_spans(path, fingerprint_spans(size)):
            digest.update(offset.to_bytes(8, "little"))
            digest.update(data)
    except (OSError, RuntimeError) as err:
        raise SourceReadError(f"{what or path}: cannot read it: {err}") from err
    return digest.hexdigest()[:32]


def _read_spans(path: str, spans: list[tuple[int, int]]) -> Iterator[tuple[int, bytes]]:
    if path.startswith("/vsi"):
        from osgeo import gdal
        handle = gdal.VSIFOpenL(path, "rb")
        if handle is None:
            raise OSError(f"GDAL cannot open {path}")
        try:
            for offset, length in spans:
                gdal.VSIFSeekL(handle, offset, 0)
                yield offset, gdal.VSIFReadL(1, length, handle)
        finally:
            gdal.VSIFCloseL(handle)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset, length in spans:
            yield offset, os.pread(fd, length, offset)
    finally:
        os.close(fd)


def source_identity(path: str, content_hash: bool = False, what: str | None = None, *,
                    vrt: bool = False, depth: int = 0) -> dict:
    """What identifies a source's bytes: where it is, its stat, a fingerprint (and a sha256).

    Local files: resolved path, size, mtime_ns, inode and ctime_ns (a copy
    with ``cp -p`` keeps size and mtime, never inode and ctime), the
    :func:`content_fingerprint`, the stat of the sidecars GDAL reads beside it
    (:func:`ndpatch.sidecars.sidecar_states`) and, with ``vrt`` (backends that
    read VRTs), the identity of every file a VRT references. Objects in storage and on web
    servers (``s3://``, ``/vsicurl/``, ...): their URI (credentials and query
    values left out), size and version (ETag, else Last-Modified; else GDAL's
    mtime and a fingerprint), from one request (:func:`ndpatch.remote.stat`).
    Other GDAL virtual paths: path, size, mtime and fingerprint.
    ``content_hash`` adds a sha256 of every byte.

    Example:
        >>> import tempfile
        >>> fpath = tempfile.mktemp()
        >>> _ = open(fpath, "wb").write(b"abc")
        >>> ident = source_identity(fpath, content_hash=True)
        >>> ident["size"], ident["sha256"][:8], sorted(ident)
        (3, 'ba7816bf', ['ctime_ns', 'fingerprint', 'inode', 'mtime_ns', 'path', 'sha256', 'size'])
    """
    path = remote.gdal_path(path)
    what = what or remote.display(path)
    if remote.is_remote(path):
        stat = remote.stat(path, what)
        ident = {"path": remote.display(path), "size": stat.size, "version": stat.version}
        if stat.version.startswith("mtime:"):  # no ETag nor Last-Modified: also hash a few blocks
            ident["fingerprint"] = content_fingerprint(path, stat.size, what)
        if content_hash:
            ident["sha256"] = content_sha256(path)
        return ident
    if path.startswith("/vsi"):
        size, mtime = gdalio.file_identity(path, what)
        ident = {"path": path, "size": size, "mtime_ns": mtime * 10**9}
    else:
        resolved = os.path.realpath(path)
        _, inode, size, mtime_ns, ctime_ns = gdalio.file_identity(resolved, what)
        ident = {"path": resolved, "size": size, "mtime_ns": mtime_ns, "inode": inode, "ctime_ns": ctime_ns}
        companions = sidecar_states(resolved, what)
        if companions:
            ident["companions"] = companions
        references = vrt_reference_identities(resolved, what, content_hash, depth) if vrt else {}
        if references:
            ident["vrt_references"] = references
    ident["fingerprint"] = content_fingerprint(path, ident["size"], what)
    if content_hash:
        ident["sha256"] = content_sha256(path)
    return ident


def vrt_reference_identities(path: str, what: str, content_hash: bool, depth: int) -> dict:
    """The :func:`source_identity` of each file a VRT at ``path`` references; ``{}`` for other files.

    A VRT's pixels come from the files it names, so they belong in its cache key
    (one small read tells a VRT from other files). References that are not
    files (``MEM:::``, a missing file) are left to the open, which refuses them.
    """
    with open(path, "rb") as handle:
        if not handle.read(64).lstrip().lower().startswith(b"<vrtdataset"):
            return {}
    if depth >= gdalio.MAX_VRT_DEPTH:
        raise SourceReadError(f"{what}: VRTs nest deeper than {gdalio.MAX_VRT_DEPTH} levels at {path}")
    with open(path, encoding="utf-8", errors="replace") as handle:
        references = gdalio.vrt_references_in(handle.read(), path)
    return {reference: source_identity(reference, content_hash, what, vrt=True, depth=depth + 1)
            for reference in references if reference.startswith("/vsi") or os.path.isfile(reference)}


def content_sha256(path: str) -> str:
    """The sha256 (hex) of every byte of a source (local, ``/vsi`` or remote), read through GDAL."""
    from osgeo import gdal
    digest = hashlib.sha256()
    handle = gdal.VSIFOpenL(path, "rb")
    try:
        while chunk := gdal.VSIFReadL(1, 1 << 22, handle):
            digest.update(chunk)
    finally:
        gdal.VSIFCloseL(handle)
    return digest.hexdigest()


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


# -- writing files -----------------------------------------------------------------------------
def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still write into ``folder``'s filesystem."""
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def require_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raise DiskFullError unless ``needed`` bytes fit into ``folder`` (checked before writing).

    Example:
        >>> import tempfile
        >>> require_space(tempfile.gettempdir(), 1, "a small file")
        >>> require_space(tempfile.gettempdir(), 10**15, "a huge file")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ndpatch.errors.DiskFullError: not enough free space for a huge file: needs 909.5 TB (1000000000000000 bytes), ... available in ...
    """
    available = free_bytes(folder)
    if needed > available:
        raise DiskFullError(f"not enough free space for {what}: needs {human_bytes(needed)} ({needed} bytes), "
                            f"{human_bytes(available)} ({available} bytes) available in {folder}")


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space (GDAL's write errors carry no errno: ask the disk)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(err, NdpatchError) or not isinstance(err, (OSError, RuntimeError)):
        return False
    try:
        return free_bytes(folder) < DISK_FULL_MARGIN
    except OSError:
        return False


def file_checksum(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes: what sidecars record for each data file."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def atomic_publish(dest: str | os.PathLike, write: Callable[[str], object],
                   validate: Callable[[str], object] | None = None, sync_dir: bool = True) -> int:
    """Write ``dest`` through a temp file beside it: write, fsync, validate, rename.

    ``write(tmp_path)`` fills the temp file; ``validate(tmp_path)`` may raise.
    On any failure the temp file (and any side file GDAL made beside it) is
    removed and nothing appears at ``dest``; a failure for lack of space
    raises :class:`~ndpatch.errors.DiskFullError` giving the free space.
    ``sync_dir=False`` leaves the fsync of the folder (which makes the rename
    durable) to a caller publishing many files into it. Returns the number of
    bytes published.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f"{dest.stem}{TEMP_MARK}", suffix=dest.suffix)
    except OSError as err:
        if _is_disk_full(err, dest.parent):
            raise _disk_full(dest, err) from err
        raise
    os.close(fd)
    try:
        os.chmod(tmp, PUBLISHED_MODE)
        write(tmp)
        fsync_path(tmp)
        if validate is not None:
            validate(tmp)
        size = os.path.getsize(tmp)
        os.replace(tmp, dest)
    except BaseException as err:
        full = _is_disk_full(err, dest.parent)  # asked before the temp file frees its space
        written = 0
        for leftover in glob.glob(glob.escape(tmp) + "*"):  # also GDAL's side files (.ovr.tmp ...)
            written += os.path.getsize(leftover)
            os.unlink(leftover)
        if full:
            raise _disk_full(dest, err, written) from err
        raise
    if sync_dir:
        fsync_path(dest.parent)
    return size


def _disk_full(dest: Path, err: BaseException, written: int = 0) -> DiskFullError:
    try:
        available = free_bytes(dest.parent)
        space = f"{human_bytes(available)} ({available} bytes) available in {dest.parent}"
    except OSError:
        space = f"free space in {dest.parent} unknown"
    return DiskFullError(f"no space left on device writing {dest}: it needs more than {human_bytes(written)} "
                         f"({written} bytes written when the disk filled), {space} ({err})")


def write_json(dest: str | os.PathLike, data: dict) -> int:
    """Publish ``data`` as a json file atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as file:
            json.dump(data, file, indent=1, sort_keys=True)
    return atomic_publish(dest, write)


# -- sidecars ----------------------------------------------------------------------------------
def sidecar_checksum(data: dict) -> str:
    """The sha256 of a sidecar's canonical json, without its own ``sidecar_checksum`` field."""
    body = {name: value for name, value in data.items() if name != "sidecar_checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


#: Sidecar fields and their json types (None allowed where listed).
SIDECAR_FIELDS = {
    "format": (int,), "key": (str,), "kind": (str,), "in_place": (bool,), "nbytes": (int,),
    "file": (str, type(None)), "checksum": (str, type(None)), "height": (int,), "width": (int,),
    "bands": (int,), "dtype": (str,), "nodata": (int, float, type(None)), "band_names": (list,),
    "geotransform": (list, type(None)), "crs_wkt": (str, type(None)), "mask": (dict,),
    "source": (dict,), "settings": (dict,), "sidecar_checksum": (str,),
}
MASK_FIELDS = {"kind": (str,), "file": (str, type(None)), "nbytes": (int,), "checksum": (str, type(None))}


def check_sidecar(key: str, data: object) -> dict:
    """Raise CorruptCacheError unless ``data`` is a sound sidecar of entry ``key``.

    Checked: its own checksum (an edited sidecar, e.g. its ``nodata``, is
    refused), field types, and the file names it gives: exactly the names
    the key gives (``<key>.npy`` ...), nothing else.
    """
    if not isinstance(data, dict):
        raise CorruptCacheError(f"cache sidecar of {key} is not a json object")
    if data.get("format") != CACHE_FORMAT:
        raise CorruptCacheError(f"cache sidecar of {key} has cache format {data.get('format', 'before 3')}, "
                                f"this ndpatch reads {CACHE_FORMAT}")
    if data.get("sidecar_checksum") != sidecar_checksum(data):
        raise CorruptCacheError(f"cache sidecar of {key} fails its checksum (edited or damaged)")
    for fields, value, where in ((SIDECAR_FIELDS, data, "sidecar"), (MASK_FIELDS, data.get("mask"), "mask")):
        for name, types in fields.items():
            if not isinstance(value, dict) or not isinstance(value.get(name), types):
                raise CorruptCacheError(f"cache sidecar of {key}: {where} field {name!r} is missing or malformed")
    if data["key"] != key:
        raise CorruptCacheError(f"cache sidecar of {key} describes entry {data['key']}")
    expected = {"file": None if data["in_place"] else f"{key}{SUFFIXES.get(data['kind'], '?')}",
                "mask": None if data["mask"]["file"] is None else f"{key}{SUFFIXES['mask']}"}
    for name, found in (("file", data["file"]), ("mask", data["mask"]["file"])):
        if found != expected[name]:
            raise CorruptCacheError(f"cache sidecar of {key} names {name} {found!r}, not {expected[name]!r}: "
                                    "refused (entry files are named by their key only)")
    return data


@dataclass(frozen=True)
class VerifyResult:
    """One entry's verdict: ``ok``, ``stale`` (source edited or gone, older format) or ``corrupt``."""

    key: str
    status: str
    reason: str
    source: str


@dataclass(frozen=True)
class EntryUsage:
    """The disk use of one key: bytes of all its files (temp files too), and when it was last used."""

    key: str
    nbytes: int
    last_used: float  # epoch seconds: its sidecar's mtime (the access stamp), else its newest file's
    complete: bool    # it has a sidecar (else: being written, or left by a killed writer)


class CacheStore:
    """The files of one cache root, and the lock of each key."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()  # one place, whatever the current folder later (or a worker's)
        self.entries_dir = self.root / "entries"
        self.locks_dir = self.root / "locks"
        self._stamped: dict[str, float] = {}  # key -> monotonic time of this process's last access stamp

    def path(self, key: str, part: str) -> Path:
        """The file of ``part`` (``'sidecar'``, ``'npy'``, ``'cog'``, ``'mask'``) of entry ``key``."""
        return self.entries_dir / f"{key}{SUFFIXES[part]}"

    def sidecar_path(self, key: str) -> Path:
        return self.path(key, "sidecar")

    def data_file(self, key: str, sidecar: dict) -> Path | None:
        """The data file of a checked sidecar's entry, None when it reads its source in place."""
        return None if sidecar["in_place"] else self.path(key, sidecar["kind"])

    def entry_files(self, key: str, sidecar: dict) -> list[tuple[Path, int, str | None]]:
        """``(path, nbytes, checksum)`` of every data file of a checked sidecar's entry."""
        files = []
        if not sidecar["in_place"]:
            files.append((self.path(key, sidecar["kind"]), sidecar["nbytes"], sidecar["checksum"]))
        if sidecar["mask"]["file"] is not None:
            files.append((self.path(key, "mask"), sidecar["mask"]["nbytes"], sidecar["mask"]["checksum"]))
        return files

    def lock(self, key: str) -> filelock.BaseFileLock:
        """The cross-process lock of ``key`` (fcntl: released by the kernel if the holder dies)."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(self.locks_dir / f"{key}.lock", thread_local=False)

    def read_sidecar(self, key: str) -> dict | None:
        """The checked sidecar of ``key`` (:func:`check_sidecar`); None when absent; else CorruptCacheError."""
        path = self.sidecar_path(key)
        try:
            with open(path) as file:
                data = json.load(file)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise CorruptCacheError(f"cache sidecar {path} is unreadable: {err}") from err
        return check_sidecar(key, data)

    def open_entry(self, key: str, validate: Callable[[Path | None, dict], None]) -> dict | None:
        """The sidecar of a sound entry (the cheap checks of every open); None when there is none.

        Raises CorruptCacheError for a bad sidecar, an entry ``verify`` found
        corrupt, or data files that fail ``validate(data_path, sidecar)``
        (sizes and headers).
        """
        sidecar = self.read_sidecar(key)
        if sidecar is None:
            return None
        if sidecar.get("corrupt"):
            raise CorruptCacheError(f"`ndpatch cache verify` found it corrupt: {sidecar['corrupt']}")
        validate(self.data_file(key, sidecar), sidecar)
        return sidecar

    def ensure(self, key: str, record: dict, validate: Callable[[Path | None, dict], None],
               build: Callable[[], dict], what: str) -> tuple[dict, bool]:
        """The sound sidecar of ``key``, building the entry under its lock if needed.

        ``record`` (source identity, settings) goes into the sidecar as is.
        ``validate(data_path, sidecar)`` raises CorruptCacheError for a bad
        entry (``data_path`` is None for entries that read the source in
        place); ``build()`` publishes the data file(s) and returns the sidecar
        fields. A bad entry is rebuilt with a warning. Returns ``(sidecar,
        converted)``; of N processes racing on one key exactly one converts.
        """
        try:
            sidecar = self.open_entry(key, validate)
            if sidecar is not None:
                self.stamp(key)
                return sidecar, False
        except CorruptCacheError:
            pass  # checked again, and reported, under the lock
        with self.lock(key):
            try:
                sidecar = self.open_entry(key, validate)
                if sidecar is not None:
                    return sidecar, False
            except CorruptCacheError as err:
                warnings.warn(f"{what}: rebuilding cache entry {key}: {err}", RuntimeWarning, stacklevel=3)
            self.remove(key)
            self.remove_temps(key)
            started = time.perf_counter()
            try:
                sidecar = {**build(), **record, "key": key, "format": CACHE_FORMAT, "versions": versions(),
                           "created": time.time(), "convert_seconds": time.perf_counter() - started}
                sidecar["sidecar_checksum"] = sidecar_checksum(sidecar)
                write_json(self.sidecar_path(key), sidecar)
            except BaseException as err:
                self.remove(key)  # data files already published are nobody's without a sidecar
                if isinstance(err, DiskFullError):
                    raise CacheConversionError(f"{what}: writing cache entry {key} failed: {err}") from err
                raise
            return sidecar, True

    def mark_corrupt(self, key: str, sidecar: dict, reason: str) -> None:
        """Record in an entry's sidecar that its data is corrupt: the next open rebuilds it (call under its lock)."""
        marked = {**sidecar, "corrupt": reason}
        marked["sidecar_checksum"] = sidecar_checksum(marked)
        write_json(self.sidecar_path(key), marked)

    def _names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.entries_dir))
        except FileNotFoundError:
            return []

    def temp_files(self, key: str | None = None) -> list[Path]:
        """Temp files of interrupted writers (of ``key``, or of every key)."""
        found = [TEMP_NAME.fullmatch(name) for name in self._names()]
        return [self.entries_dir / m.group(0) for m in found if m and key in (None, m.group("key"))]

    def remove_temps(self, key: str) -> int:
        """Delete temp files a killed writer of ``key`` left behind (call under its lock)."""
        leftovers = self.temp_files(key)
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def remove(self, key: str) -> None:
        """Delete an entry's sidecar first (so it stops existing), then its data files."""
        for part in ("sidecar", "npy", "cog", "mask"):
            self.path(key, part).unlink(missing_ok=True)

    def keys(self) -> list[str]:
        """Keys of every entry file and temp file (names the naming rule makes; others are not ours)."""
        found = [ENTRY_NAME.fullmatch(name) or TEMP_NAME.fullmatch(name) for name in self._names()]
        return sorted({m.group("key") for m in found if m})

    def sidecars(self) -> Iterator[tuple[str, dict | None]]:
        """``(key, sidecar)`` for each key; sidecar None when missing or unsound."""
        for key in self.keys():
            try:
                yield key, self.read_sidecar(key)
            except CorruptCacheError:
                yield key, None

    def usage(self) -> list[EntryUsage]:
        """The bytes and access stamp of every key (one directory scan: no sidecar is read).

        Example:
            >>> import tempfile
            >>> store = CacheStore(tempfile.mkdtemp())
            >>> _ = write_json(store.sidecar_path("a" * 32), {})
            >>> [(u.nbytes, u.complete) for u in store.usage()]
            [(2, True)]
        """
        found: dict[str, list] = {}  # key -> [bytes, stamp, newest mtime, complete]
        try:
            scan = os.scandir(self.entries_dir)
        except FileNotFoundError:
            return []
        with scan:
            for item in scan:
                named = ENTRY_NAME.fullmatch(item.name) or TEMP_NAME.fullmatch(item.name)
                if named is None:
                    continue
                try:
                    stat = item.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed meanwhile
                    continue
                held = found.setdefault(named.group("key"), [0, None, 0.0, False])
                held[0] += stat.st_size
                held[2] = max(held[2], stat.st_mtime)
                if item.name == f"{named.group('key')}{SUFFIXES['sidecar']}":
                    held[1], held[3] = stat.st_mtime, True
        return [EntryUsage(key, nbytes, newest if stamp is None else stamp, complete)
                for key, (nbytes, stamp, newest, complete) in sorted(found.items())]

    def stamp(self, key: str) -> None:
        """Record that entry ``key`` was used now (its sidecar's mtime), at most once per STAMP_SECONDS here.

        The stamp only orders evictions: an entry removed meanwhile, or a
        shared cache's sidecar this user may not touch, is left as it is.
        """
        now = time.monotonic()
        if now - self._stamped.get(key, -budget.STAMP_SECONDS) < budget.STAMP_SECONDS:
            return
        self._stamped[key] = now
        try:
            os.utime(self.sidecar_path(key))
        except OSError as err:
            logger.debug("access stamp of cache entry %s not updated: %s", key, err)

    def prune(self, max_bytes: int) -> budget.Eviction:
        """Evict least-recently-used entries until the cache holds at most ``max_bytes`` (entries being written stay)."""
        return budget.evict(self, max_bytes)

    def info(self, lru: int = 5) -> dict:
        """Entry counts and bytes per kind, total bytes on disk, the ``lru`` least recently used entries.

        ``bytes`` counts every file the naming rule makes (what a budget
        counts: temp files and orphans too); each of ``least_recently_used``
        is ``{key, source, bytes, last_used}`` (epoch seconds), oldest first.

        Example:
            >>> import tempfile
            >>> info = CacheStore(tempfile.mkdtemp()).info()
            >>> info["entries"], info["bytes"], info["least_recently_used"]
            (0, 0, [])
        """
        usage = {entry.key: entry for entry in self.usage()}
        by_kind: dict[str, dict] = {}
        sources: dict[str, str] = {}
        orphans = 0
        for key, sidecar in self.sidecars():
            if sidecar is None:
                orphans += 1
                continue
            sources[key] = str(sidecar["source"].get("path", "?"))
            stats = by_kind.setdefault(sidecar["kind"], {"entries": 0, "bytes": 0, "in_place": 0})
            stats["entries"] += 1
            stats["bytes"] += usage[key].nbytes if key in usage else 0
            stats["in_place"] += sidecar["in_place"]
        oldest = sorted((u for u in usage.values() if u.key in sources), key=lambda u: u.last_used)[:lru]
        return {"root": str(self.root), "entries": sum(s["entries"] for s in by_kind.values()),
                "bytes": sum(u.nbytes for u in usage.values()), "by_kind": by_kind, "orphans": orphans,
                "temp_files": len(self.temp_files()),
                "least_recently_used": [{"key": u.key, "source": sources[u.key], "bytes": u.nbytes,
                                         "last_used": u.last_used} for u in oldest]}

    def verify(self, validate: Callable[[Path | None, dict], None], delete: bool = False,
               quick: bool = False) -> list[VerifyResult]:
        """Re-check every entry: sidecar, sizes and headers, data checksums, source identity.

        ``quick=True`` skips the data checksums (which read every byte). An
        entry whose data fails its checksum is marked corrupt in its sidecar,
        so it is never served again (the next open rebuilds it, with a
        warning); ``delete=True`` removes corrupt and stale entries instead.
        """
        results = []
        for key in self.keys():
            with self.lock(key):
                result, sidecar = self._verify_one(key, validate, quick)
                if delete and result.status != "ok":
                    self.remove(key)
                    self.remove_temps(key)
                elif result.status == "corrupt" and sidecar is not None and not sidecar.get("corrupt"):
                    self.mark_corrupt(key, sidecar, result.reason)
                results.append(result)
        return results

    def _verify_one(self, key: str, validate, quick: bool) -> tuple[VerifyResult, dict | None]:
        """The verdict on one entry, and its sidecar when that is sound but its data is not."""
        try:
            with open(self.sidecar_path(key)) as file:
                raw = json.load(file)
            source = str(raw["source"]["path"]) if isinstance(raw, dict) and isinstance(raw.get("source"), dict) else "?"
        except FileNotFoundError:
            return VerifyResult(key, "corrupt", "no sidecar (an interrupted or orphaned write)", "?"), None
        except (OSError, ValueError) as err:
            return VerifyResult(key, "corrupt", f"unreadable sidecar: {err}", "?"), None
        if isinstance(raw, dict) and raw.get("format") != CACHE_FORMAT:
            return VerifyResult(key, "stale", f"written by an older ndpatch (cache format "
                                              f"{raw.get('format', 'before 3')}, now {CACHE_FORMAT})", source), None
        try:
            sidecar = self.open_entry(key, validate)
        except CorruptCacheError as err:
            return VerifyResult(key, "corrupt", str(err), source), None
        if not quick:
            for path, _, checksum in self.entry_files(key, sidecar):
                if file_checksum(path) != checksum:
                    return VerifyResult(key, "corrupt", f"{path.name} fails its checksum "
                                                        "(its bytes changed since it was written)", source), sidecar
        try:
            current = source_identity(source, "sha256" in sidecar["source"],
                                      vrt=bool(sidecar.get("settings", {}).get("allow_vrt")))
        except SourceReadError:
            return VerifyResult(key, "stale", "the source no longer exists", source), None
        if current != sidecar["source"]:
            return VerifyResult(key, "stale", "the source changed since caching", source), None
        return VerifyResult(key, "ok", "", source), None

    def clear(self) -> int:
        """Remove every entry and temp file (each under its key's lock); returns entries removed."""
        removed = 0
        for key in self.keys():
            with self.lock(key):
                removed += self.sidecar_path(key).exists()
                self.remove(key)
                self.remove_temps(key)
        return removed


def log_first_conversion(kind: str, root: Path, what: str) -> None:
    """Log one line (``logging.getLogger("ndpatch")``, INFO) at the first conversion of this process."""
    global _conversion_logged
    if not _conversion_logged:
        _conversion_logged = True
        logger.info("ndpatch converts each image into the %s cache at %s on first touch "
                    "(later reads and runs reuse it); first: %s", kind, root, what)


class KeyedCache:
    """What every cache backend shares: a store, settings, and one key per source version.

    A subclass sets ``name`` (also its data files' part in :data:`SUFFIXES`),
    ``settings`` and ``validate(data_path, sidecar)``, and converts through
    :meth:`publish`. ``progress`` shows a progress bar (stderr) for
    conversions that take more than a few seconds.
    """

    name: str
    settings: dict
    validate: Callable[[Path | None, dict], None]

    def __init__(self, workdir: str | os.PathLike | None = None, content_hash: bool = False,
                 progress: bool = True, cache_max_bytes: int | str | None = None):
        self.store = CacheStore(cache_root(workdir))
        self.content_hash = content_hash
        self.progress = progress
        self.max_bytes = budget.max_bytes(cache_max_bytes)

    def identity(self, source) -> dict:
        """The source's identity (:func:`source_identity`): a stat and a fingerprint read, no GDAL open."""
        return source_identity(source.path, self.content_hash, source.describe(),
                               vrt=bool(self.settings.get("allow_vrt")))

    def record(self, source, identity: dict | None = None) -> dict:
        """What identifies a source's entry: source identity and settings (hashed into its key)."""
        return {"source": identity or self.identity(source), "settings": self.settings}

    def key(self, record: dict) -> str:
        return entry_key(record["source"], self.name, record["settings"])

    def cached(self, source, identity: dict | None = None) -> bool:
        """Whether ``source`` has a sound entry already (no conversion needed)."""
        try:
            return self.store.open_entry(self.key(self.record(source, identity)), self.validate) is not None
        except CorruptCacheError:
            return False

    def publish(self, source, build: Callable[[Path, Callable], dict],
                identity: dict | None = None) -> tuple[Path, dict, bool]:
        """``(data_path, sidecar, converted)`` of ``source``; ``build(data_path, room)`` converts it.

        ``build`` calls ``room(nbytes, on_disk=0)`` before it writes (and may
        again before it publishes): with a budget, that refuses an entry larger
        than the budget and evicts least-recently-used entries to make room
        (``on_disk``: bytes of this entry already written, which the cache
        already counts).
        """
        record = self.record(source, identity)
        key = self.key(record)
        dest = self.store.path(key, self.name)
        what = source.describe()

        def room(nbytes: int, on_disk: int = 0) -> None:
            budget.reserve(self.store, self.max_bytes, nbytes, key, what, on_disk)

        def convert() -> dict:
            log_first_conversion(self.name, self.store.root, what)
            return build(dest, room)

        sidecar, converted = self.store.ensure(key, record, self.validate, convert, what)
        if converted and self.max_bytes is not None:
            budget.evict(self.store, self.max_bytes, keep={key})  # others converting meanwhile
        return dest, sidecar, converted

    def evicted(self, entry, err: Exception):
        """``entry`` converted again when its cache file was evicted (deleted) after it was resolved; else raise ``err``.

        A reader that had the file open keeps reading it; this is for one that
        had not (or whose pool closed it): the same key, so the same file name.
        """
        source = entry.meta.get("image_source")
        if source is None or entry.meta["sidecar"]["in_place"] or os.path.exists(entry.path):
            raise err
        again = self.ensure(source)
        if again.path != entry.path:  # the source changed meanwhile: its record resolves again
            raise err
        return again

    def touch(self, entry) -> None:
        """Record a use of ``entry`` (its access stamp, at most once a minute): what a live sampler calls."""
        sidecar = entry.meta.get("sidecar")
        if sidecar is not None:
            self.store.stamp(sidecar["key"])


def versions() -> dict:
    """Library versions recorded in each sidecar."""
    import numpy
    from osgeo import gdal

    from ndpatch.version import __version__
    return {"ndpatch": __version__, "numpy": numpy.__version__, "gdal": gdal.__version__}
