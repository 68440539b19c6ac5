"""Convert every image of a dataset into the cache ahead of training, in parallel processes.

Images already cached are skipped without starting workers; the others are
converted by a pool of processes (each conversion is locked and atomic, so
concurrent warmups and samplers are safe). Failures are collected with their
reasons rather than stopping the run: an image that does not fit on the disk
says how many bytes it needs and how many are free, and a worker process that
dies (killed, out of memory) fails the images it had, naming them. The
workers exit when the warmup process dies, even by SIGKILL
(:mod:`ndpatch.workers`).

Example:
    >>> import tempfile
    >>> from ndpatch.demo import make_dataset
    >>> tmp = tempfile.mkdtemp()
    >>> dset = make_dataset(tmp, [{"shape": (40, 50, 3), "dtype": "uint8"}] * 2)
    >>> summary = warmup(dset, backend="npy", workdir=f"{tmp}/cache", workers=0, progress=False)
    >>> summary.converted, summary.cached, summary.failed
    (2, 0, {})
    >>> warmup(dset, backend="npy", workdir=f"{tmp}/cache", workers=0, progress=False).converted
    0
"""
from __future__ import annotations

import time
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ndpatch import remote
from ndpatch.cache import CACHE_BACKENDS, make_backend
from ndpatch.cache.base import ImageSource
from ndpatch.cache.store import human_bytes
from ndpatch.errors import NdpatchError
from ndpatch.index import DatasetIndex
from ndpatch.workers import default_workers, process_pool


@dataclass
class WarmupSummary:
    """What a warmup did: counts, failures by image id, bytes written, seconds."""

    backend: str
    root: str
    total: int = 0
    converted: int = 0
    cached: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    bytes_written: int = 0
    elapsed: float = 0.0

    def __str__(self) -> str:
        head = f"warmup ({self.backend}, cache {self.root}): {self.total} images"
        if self.converted == 0 and not self.failed:
            return f"{head}: nothing to do, all already cached ({self.elapsed:.1f} s)"
        lines = [f"{head}: {self.converted} converted, {self.cached} already cached, "
                 f"{len(self.failed)} failed; {human_bytes(self.bytes_written)} written "
                 f"in {self.elapsed:.1f} s"]
        lines += [f"  failed: {reason}" for reason in self.failed.values()]
        return "\n".join(lines)


_WORKER_BACKEND = None


def _init_worker(backend: str, workdir: str | None, options: dict) -> None:
    global _WORKER_BACKEND
    _WORKER_BACKEND = make_backend(backend, workdir=workdir, progress=False, **options)  # the leader's bar counts


def _convert(source: ImageSource, backend=None) -> tuple[int, bool, int, str | None]:
    """Ensure one image; returns ``(gid, converted, bytes_written, error)``."""
    try:
        entry = (backend or _WORKER_BACKEND).ensure(source)
    except (NdpatchError, OSError) as err:
        return source.gid, False, 0, str(err)
    return source.gid, entry.meta["converted"], entry.meta["bytes_written"], None


def warmup(dset: Any, backend: str = "auto", workers: int | None = None,
           workdir: str | None = None, progress: bool = True, **options) -> WarmupSummary:
    """Convert every image of ``dset`` not yet cached by ``backend``.

    Args:
        dset: a ``kwcoco.CocoDataset`` or the path of a dataset json.
        backend: ``'npy'``, ``'cog'`` or ``'auto'``.
        workers: worker processes (default: one per CPU; 0 converts in this process).
        workdir: the cache root (default ``$NDPATCH_CACHE``, else the per-user cache dir).
        progress: show a tqdm progress bar (and, converting in this process, one per long conversion).
        options: backend settings (e.g. ``blocksize``), as for ``CocoSampler``.
    """
    started = time.perf_counter()
    index = DatasetIndex(dset)
    if backend not in CACHE_BACKENDS:
        raise NdpatchError(f"warmup needs a cache backend ({', '.join(CACHE_BACKENDS)}), not {backend!r}")
    cache = make_backend(backend, workdir=workdir, progress=progress, **options)
    summary = WarmupSummary(backend=backend, root=str(cache.store.root), total=len(index.dset.imgs))
    pending = []
    for gid in sorted(index.dset.imgs):
        try:
            source = index.source(gid)
            if remote.is_remote(source.path):
                remote.refresh(source.path)  # ask the server: a rewritten object is converted again
            if cache.cached(source):
                summary.cached += 1
            else:
                pending.append(source)
        except (NdpatchError, OSError) as err:
            summary.failed[gid] = str(err)
    workers = default_workers() if workers is None else workers
    with tqdm(total=len(pending), desc=f"warmup {backend}", unit="img", disable=not (progress and pending)) as bar:
        if workers == 0 or len(pending) <= 1:
            results = (_convert(source, cache) for source in pending)
            _collect(results, summary, bar)
        else:
            with process_pool(min(workers, len(pending)), _init_worker, (backend, workdir, options)) as pool:
                futures = {pool.submit(_convert, source): source for source in pending}
                _collect((_result(future, futures[future]) for future in as_completed(futures)), summary, bar)
    summary.elapsed = time.perf_counter() - started
    return summary


def _result(future, source: ImageSource) -> tuple[int, bool, int, str | None]:
    """A worker's result; a dead worker process fails its images with that reason."""
    try:
        return future.result()
    except BrokenProcessPool:
        return source.gid, False, 0, (f"{source.describe()}: not converted: a warmup worker process died "
                                      "(killed by a signal, or out of memory)")


def _collect(results, summary: WarmupSummary, bar: tqdm) -> None:
    for gid, converted, nbytes, error in results:
        if error is not None:
            summary.failed[gid] = error
        elif converted:
            summary.converted += 1
            summary.bytes_written += nbytes
        else:
            summary.cached += 1  # another process converted it meanwhile
        bar.update()
