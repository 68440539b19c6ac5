"""A size budget for the cache: least-recently-used entries are evicted to stay under it.

The budget is ``cache_max_bytes`` (a backend's, or ``CocoSampler(...,
cache_max_bytes=...)``), else ``$NDPATCH_CACHE_MAX``, else none; sizes are
bytes or text such as ``'50G'``, ``'500M'``, ``'1.5T'`` (powers of 1024).

Use is recorded cheaply: an entry's *access stamp* is its sidecar's mtime,
set when the entry is written and touched again when a process uses it, at
most once per :data:`STAMP_SECONDS` per entry and process
(:meth:`CacheStore.stamp`; a live sampler's once-a-second re-check calls it).
Eviction (:func:`evict`) removes whole entries, oldest stamp first, through
the store's naming rule only, and skips every entry whose lock another writer
holds (an entry being written or rebuilt is never removed). A process that
has an evicted entry open keeps reading it (POSIX keeps an unlinked file's
pages and descriptors alive), and the next resolution of that image rebuilds
it. Before a conversion writes anything, :func:`reserve` refuses an entry
larger than the budget and makes room for the rest.

Example:
    >>> parse_size("50G"), parse_size("1.5k"), parse_size("4096"), parse_size(None)
    (53687091200, 1536, 4096, None)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import filelock

from ndpatch.errors import CacheConversionError, NdpatchError

#: Seconds between two access stamps of one entry by one process.
STAMP_SECONDS = 60.0
#: The environment variable that sets the budget when none is given.
BUDGET_ENV = "NDPATCH_CACHE_MAX"
_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(value: int | str | None) -> int | None:
    """Bytes from ``4096``, ``'4096'``, ``'500M'``, ``'50G'``, ``'1.5TiB'`` (powers of 1024); None stays None."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value < 0:
            raise NdpatchError(f"a cache size must be >= 0 bytes, not {value}")
        return value
    match = _SIZE.fullmatch(str(value))
    if match is None:
        raise NdpatchError(f"{value!r} is not a size: give bytes, or a number with K, M, G or T (e.g. 50G)")
    return int(float(match.group("number")) * 1024 ** _UNITS[match.group("unit").lower()])


def max_bytes(value: int | str | None = None) -> int | None:
    """The budget in bytes: ``value``, else ``$NDPATCH_CACHE_MAX``, else None (no budget).

    Example:
        >>> max_bytes("2G"), max_bytes(None) is None or BUDGET_ENV in os.environ
        (2147483648, True)
    """
    if value is None:
        value = os.environ.get(BUDGET_ENV) or None
    try:
        return parse_size(value)
    except NdpatchError as err:
        raise NdpatchError(f"cache budget ({BUDGET_ENV} or cache_max_bytes): {err}") from None


@dataclass(frozen=True)
class Eviction:
    """What :func:`evict` did: entries removed (oldest first), bytes freed, bytes left, entries it skipped."""

    removed: list
    freed: int
    total: int
    busy: list


def evict(store, limit: int, needed: int = 0, keep: frozenset | set = frozenset()) -> Eviction:
    """Remove least-recently-used entries of ``store`` until its files and ``needed`` more bytes fit in ``limit``.

    Entries in ``keep`` and entries whose lock is held (being written, rebuilt,
    verified) are skipped; each removal happens under the entry's lock, through
    the store's naming rule (``store.remove``, ``store.remove_temps``).
    """
    usage = sorted(store.usage(), key=lambda entry: entry.last_used)
    total = sum(entry.nbytes for entry in usage)
    removed, busy, freed = [], [], 0
    for entry in usage:
        if total + needed <= limit:
            break
        if entry.key in keep:
            continue
        lock = store.lock(entry.key)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            busy.append(entry)
            continue
        try:
            store.remove(entry.key)
            store.remove_temps(entry.key)
        finally:
            lock.release()
        total -= entry.nbytes
        freed += entry.nbytes
        removed.append(entry)
    return Eviction(removed=removed, freed=freed, total=total, busy=busy)


def reserve(store, limit: int | None, needed: int, key: str, what: str, on_disk: int = 0) -> None:
    """Make room under ``limit`` for a ``needed``-byte entry ``key`` (``on_disk`` of them already written).

    Raises CacheConversionError when the entry alone is larger than the budget,
    or when entries in use keep the cache too full for it; a conversion calls
    this before it writes, and its temp files are removed on the error.
    """
    if limit is None:
        return
    if needed > limit:
        raise CacheConversionError(f"{what}: its cache entry needs {human(needed)}, more than the cache budget "
                                   f"of {human(limit)} ({BUDGET_ENV} or cache_max_bytes); raise the budget "
                                   "or read this image with backend=None")
    result = evict(store, limit, needed - on_disk, keep={key})
    if result.total + needed - on_disk > limit:
        raise CacheConversionError(f"{what}: its cache entry needs {human(needed)}, and the cache holds "
                                   f"{human(result.total)} of its {human(limit)} budget in entries being "
                                   f"written by other processes ({len(result.busy)}); try again when they finish")


def human_bytes(n: int) -> str:
    """``1536`` → ``'1.5 kB'`` (powers of 1024).

    Example:
        >>> human_bytes(0), human_bytes(1536), human_bytes(50 * 2**20)
        ('0 B', '1.5 kB', '50.0 MB')
    """
    if n < 1024:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"


def human(n: int) -> str:
    """Bytes for a message: ``'1.5 kB (1536 bytes)'``."""
    return f"{human_bytes(n)} ({n} bytes)"
