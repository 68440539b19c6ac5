"""Work spread over a Dask cluster (``dask.distributed``): warmup conversions and export blocks as tasks.

ndpatch brings no cluster code of its own: a task is a plain function of
picklable arguments (a source, the backend settings, the cache folder; an
export's job spec and a block number), submitted to the cluster's scheduler,
which places it on a worker, and re-runs it elsewhere when its worker dies
(up to ``distributed.scheduler.allowed-failures`` times, then the task fails
with ``KilledWorker``). Everything a task writes goes through the cache's and
the export's atomic publishing and per-entry locks, so a killed task leaves
nothing that is served and concurrent workers convert each image once. The
cache folder and the export folder must be paths every worker sees (a shared
filesystem); sources are local paths that every worker sees too, or URIs.

:func:`connect` gives a client for ``'local:N'`` (a ``LocalCluster`` of N
worker processes on this machine, closed afterwards), a scheduler address
(``tcp://host:8786``), or a ``distributed.Client`` the caller made (used as
is, left open). :func:`completed` yields each task's outcome as it finishes,
whatever order they end in.

Example:
    >>> parse_local("local:2"), parse_local("tcp://10.0.0.5:8786")
    (2, None)
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ndpatch.errors import NdpatchError
from ndpatch.workers import START_METHOD, start_fork_server

_LOCAL = re.compile(r"local:(?P<workers>\d+)")


def parse_local(address: str) -> int | None:
    """The worker count of a ``'local:N'`` address, None for a scheduler address; bad text raises NdpatchError."""
    match = _LOCAL.fullmatch(address.strip())
    if match is None:
        if address.strip().startswith("local"):
            raise NdpatchError(f"--dask {address!r}: a local cluster is 'local:N' with N worker processes, e.g. local:4")
        return None
    workers = int(match.group("workers"))
    if workers < 1:
        raise NdpatchError(f"--dask {address!r}: a local cluster needs at least one worker process")
    return workers


#: Dask settings of the ``'local:N'`` cluster's worker processes, for as long as it runs.
#: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's
#: adaptive allocation thresholds: GDAL's large conversion buffers are then mapped and faulted in
#: afresh each time, and COG conversions ran 2.2-3.5x slower. Dask's statistical profiler (a
#: thread sampling every task's stack every 10 ms, for the dashboard's profile page) cost
#: conversions ~10% more CPU. An idle cluster of two workers and its scheduler used 13% of one
#: core, mostly on Dask's 20 ms event-loop tick (it only measures how late the loop runs, for
#: the dashboard and the "unresponsive" warning) and its 0.5 s system monitor: at 1 s and 2 s,
#: 4.6%. Workers start as ndpatch's pools do (forkserver: a fork of a clean, warm server process).
LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                        "distributed.worker.profile.enabled": False,
                        "distributed.admin.tick.interval": "1s",
                        "distributed.admin.system-monitor.interval": "2s",
                        "distributed.worker.multiprocessing-method": START_METHOD}


@contextlib.contextmanager
def connect(target: Any, preload: Sequence[str] = ()) -> Iterator[Any]:
    """A ``distributed.Client`` for ``target``: ``'local:N'``, a scheduler address, or a client (kept open).

    A local cluster runs N single-threaded worker processes (GDAL handles are
    per thread, and conversions get their parallelism from processes), forked
    from a server that imported ``distributed`` and ``preload`` (the modules the
    tasks need: :func:`ndpatch.workers.start_fork_server`), binds
    to 127.0.0.1 (its HTTP server too, on a free port: no clash with a cluster
    already on Dask's default 8787), is configured by :data:`LOCAL_CLUSTER_CONFIG`,
    and is closed when the block ends; the variables Dask's nanny puts in this
    process's environment are then put back.
    """
    try:
        import dask
        import distributed
    except ImportError as err:
        raise NdpatchError("--dask needs dask.distributed: pip install 'ndpatch[dask]'") from err
    if isinstance(target, distributed.Client):
        yield target
        return
    workers = parse_local(str(target))
    with contextlib.ExitStack() as stack:
        if workers is not None:
            start_fork_server(("distributed", *preload))  # before Dask starts the server with its own list
            stack.enter_context(environ_kept())
            stack.enter_context(dask.config.set(LOCAL_CLUSTER_CONFIG))
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR))
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(str(target), timeout="30s"))
            except OSError as err:
                raise NdpatchError(f"--dask {target}: no Dask scheduler answers there: {err}") from err
        yield client


@contextlib.contextmanager
def environ_kept() -> Iterator[None]:
    """Put ``os.environ`` back as it was when the block ends (Dask's nanny writes its workers' variables into it).

    >>> with environ_kept():
    ...     os.environ["NDPATCH_EXAMPLE"] = "1"
    >>> "NDPATCH_EXAMPLE" in os.environ
    False
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def completed(client, function: Callable, items: Iterable, *args) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Run ``function(item, *args)`` on the cluster for each item; yield ``(item, result, error)`` as each ends.

    ``error`` is the exception a task raised (or ``KilledWorker`` once the
    scheduler gave up re-running it after worker deaths), ``result`` None then.
    Closing the generator early (an error the caller will not go past, Ctrl-C)
    cancels the tasks not yet done. Small ``args`` (an export's job spec for a
    dataset path) go with every task, so a worker dying as the run starts costs
    nothing; large ones (a dataset object) are sent to each worker once
    (``client.scatter``), tried again when a worker dies while they are sent.
    """
    import distributed

    shared = [arg if _cheap(arg) else _scatter(client, arg) for arg in args]
    futures = {client.submit(function, item, *shared, pure=False): item for item in items}
    try:
        for future in distributed.as_completed(futures):
            error = future.exception() if future.status == "error" else None
            yield futures[future], None if error is not None else future.result(), error
    finally:
        client.cancel([future for future in futures if not future.done()])


#: Pickled size up to which a task argument travels with each task rather than being scattered.
SEND_WITH_TASK_BYTES = 64 << 10
#: Tries of a scatter whose worker connections close (a worker died meanwhile).
SCATTER_TRIES = 3


def _cheap(value: Any) -> bool:
    """Whether a task argument is small enough to send with each task (no scatter).

    >>> _cheap("a path"), _cheap(list(range(10))), _cheap(bytes(1 << 20))
    (True, True, False)
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) <= SEND_WITH_TASK_BYTES
    except (pickle.PicklingError, TypeError, AttributeError):  # cloudpickle (Dask's) may still send it
        return False


def _scatter(client, value: Any):
    """``value`` on every worker (a future); tried again when a worker's connection closes during it."""
    for attempt in range(1, SCATTER_TRIES + 1):
        try:
            return client.scatter([value], broadcast=True, hash=False)[0]
        except OSError:  # distributed's CommClosedError: a worker died while receiving it
            if attempt == SCATTER_TRIES:
                raise
            time.sleep(attempt)
