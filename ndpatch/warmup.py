"""Convert every image of a dataset into the cache ahead of training, in parallel processes or on Dask.

Images already cached are skipped without starting workers; the others are
converted by a pool of processes on this machine, or by the workers of a Dask
cluster (``client=``: :mod:`ndpatch.distributed`), each running the plain
function :func:`convert_one` (each conversion is locked and atomic, so
concurrent warmups, workers and samplers are safe). Failures are collected with their
reasons rather than stopping the run: an image that does not fit on the disk
says how many bytes it needs and how many are free, and a worker process that
dies (killed, out of memory) fails the images it had, naming them (Dask runs
such an image again on another worker first). The local workers exit when the
warmup process dies, even by SIGKILL (:mod:`ndpatch.workers`).

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
from ndpatch.distributed import completed, connect
from ndpatch.errors import NdpatchError
from ndpatch.index import DatasetIndex
from ndpatch.workers import default_workers, process_pool


@dataclass
class WarmupSummary:
    """What a warmup did: counts of files (an image of several files counts each), failures by image id, bytes
    written, seconds."""

    backend: str
    root: str
    images: int = 0
    total: int = 0
    converted: int = 0
    cached: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    bytes_written: int = 0
    elapsed: float = 0.0

    def __str__(self) -> str:
        files = "" if self.total == self.images else f" ({self.total} files)"
        head = f"warmup ({self.backend}, cache {self.root}): {self.images} images{files}"
        if self.converted == 0 and not self.failed:
            return f"{head}: nothing to do, all already cached ({self.elapsed:.1f} s)"
        lines = [f"{head}: {self.converted} converted, {self.cached} already cached, "
                 f"{len(self.failed)} failed; {human_bytes(self.bytes_written)} written "
                 f"in {self.elapsed:.1f} s"]
        lines += [f"  failed: {reason}" for reason in self.failed.values()]
        return "\n".join(lines)

    def fail(self, gid: int, reason: str) -> None:
        """Record why one of image ``gid``'s files failed; a second file's reason is added after ``; ``."""
        self.failed[gid] = reason if gid not in self.failed else f"{self.failed[gid]}; {reason}"


#: What the fork server imports once, so that every worker forked from it converts at once (this module
#: brings the cache backends, GDAL and kwcoco: about 0.5 s in each fresh process otherwise).
WORKER_MODULES = ("ndpatch.warmup",)
#: This process's backends by (name, cache folder, settings): a worker builds each once.
_BACKENDS: dict[tuple, Any] = {}


def convert_one(source: ImageSource, backend: str, workdir: str, options: dict) -> tuple[int, bool, int, str | None]:
    """Ensure one image in the cache at ``workdir``: what every worker runs, in a local pool or on Dask.

    A plain function of (source, backend settings, cache folder); returns
    ``(gid, converted, bytes_written, error)``. The cache's lock makes N workers
    given one image convert it once.
    """
    key = (backend, workdir, tuple(sorted(options.items())))
    if key not in _BACKENDS:
        _BACKENDS[key] = make_backend(backend, workdir=workdir, progress=False, **options)  # the leader's bar counts
    return _convert(source, _BACKENDS[key])


def _convert(source: ImageSource, backend) -> tuple[int, bool, int, str | None]:
    """Ensure one image; returns ``(gid, converted, bytes_written, error)``."""
    try:
        entry = backend.ensure(source)
    except (NdpatchError, OSError) as err:
        return source.gid, False, 0, str(err)
    return source.gid, entry.meta["converted"], entry.meta["bytes_written"], None


def warmup(dset: Any, backend: str = "auto", workers: int | None = None,
           workdir: str | None = None, progress: bool = True, client: Any = None, **options) -> WarmupSummary:
    """Convert every image of ``dset`` not yet cached by ``backend``.

    Args:
        dset: a ``kwcoco.CocoDataset`` or the path of a dataset json.
        backend: ``'npy'``, ``'cog'`` or ``'auto'``.
        workers: worker processes (default: one per CPU; 0 converts in this process).
        workdir: the cache root (default ``$NDPATCH_CACHE``, else the per-user cache dir).
        progress: show a tqdm progress bar (and, converting in this process, one per long conversion).
        client: convert on a Dask cluster instead (``workers`` is then unused): a
            ``distributed.Client``, a scheduler address, or ``'local:N'`` (a local
            cluster of N processes). The cache folder must be one every worker sees.
        options: backend settings (e.g. ``blocksize``, ``cache_max_bytes``), as for ``CocoSampler``.
    """
    started = time.perf_counter()
    index = DatasetIndex(dset)
    if backend not in CACHE_BACKENDS:
        raise NdpatchError(f"warmup needs a cache backend ({', '.join(CACHE_BACKENDS)}), not {backend!r}")
    cache = make_backend(backend, workdir=workdir, progress=progress, **options)
    root = str(cache.store.root)  # absolute: the one path every worker writes to
    summary = WarmupSummary(backend=backend, root=root, images=len(index.dset.imgs))
    pending = []
    for gid in sorted(index.dset.imgs):
        try:
            sources = index.sources(gid)  # a multi-file image: each of its files
        except (NdpatchError, OSError) as err:
            summary.total += 1
            summary.fail(gid, str(err))
            continue
        for source in sources:
            summary.total += 1
            try:
                if remote.is_remote(source.path):
                    remote.refresh(source.path)  # ask the server: a rewritten object is converted again
                if cache.cached(source):
                    summary.cached += 1
                else:
                    pending.append(source)
            except (NdpatchError, OSError) as err:
                summary.fail(gid, str(err))
    workers = default_workers() if workers is None else workers
    with tqdm(total=len(pending), desc=f"warmup {backend}", unit="file", disable=not (progress and pending)) as bar:
        if client is not None and pending:
            with connect(client, preload=WORKER_MODULES) as dask_client:
                outcomes = completed(dask_client, convert_one, pending, backend, root, options)
                _collect((_outcome(source, result, error) for source, result, error in outcomes), summary, bar)
        elif workers == 0 or len(pending) <= 1:
            _collect((_convert(source, cache) for source in pending), summary, bar)
        else:
            with process_pool(min(workers, len(pending)), preload=WORKER_MODULES) as pool:
                futures = {pool.submit(convert_one, source, backend, root, options): source for source in pending}
                _collect((_result(future, futures[future]) for future in as_completed(futures)), summary, bar)
    summary.elapsed = time.perf_counter() - started
    return summary


def _outcome(source: ImageSource, result, error: BaseException | None) -> tuple[int, bool, int, str | None]:
    """A Dask task's result; a task that kept losing its worker, or raised, fails its image with the reason."""
    if error is None:
        return result
    if type(error).__name__ == "KilledWorker":
        return source.gid, False, 0, (f"{source.describe()}: not converted: every Dask worker that ran it died "
                                      "(killed by a signal, or out of memory)")
    return source.gid, False, 0, f"{source.describe()}: not converted: {type(error).__name__}: {error}"


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
            summary.fail(gid, error)
        elif converted:
            summary.converted += 1
            summary.bytes_written += nbytes
        else:
            summary.cached += 1  # another process converted it meanwhile
        bar.update()
