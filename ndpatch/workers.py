"""Worker processes for ``warmup`` and ``export``: one start method, one default count, no orphans.

Every ndpatch process pool starts its workers with ``forkserver`` (a fork of a
clean server process: no GDAL or torch threads inherited, unlike ``fork``; far
cheaper than ``spawn``), defaults to one worker per usable CPU, and makes each
worker exit when the process that created the pool dies, even by SIGKILL
(a watchdog thread in every worker polls the leader's pid and creation time).
Workers ignore SIGINT: Ctrl-C in a terminal reaches the whole process group,
and it is the leader that stops the pool and reports the interruption.

Example:
    >>> with process_pool(1) as pool:
    ...     pool.submit(abs, -3).result()
    3
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import psutil
from tqdm import tqdm

#: How all ndpatch worker pools start their processes.
START_METHOD = "forkserver"
#: Seconds between a worker's checks that its leader is alive.
WATCHDOG_SECONDS = 0.5


def default_workers() -> int:
    """Worker processes by default: one per CPU this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_pool(workers: int, initializer: Callable | None = None, initargs: tuple = (),
                 preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes that run ``initializer(*initargs)`` first and die with this process.

    ``preload`` names the modules the workers' tasks need: see :func:`start_fork_server`.
    """
    start_fork_server(preload)
    leader = psutil.Process()
    return ProcessPoolExecutor(int(workers), mp_context=multiprocessing.get_context(START_METHOD),
                               initializer=_start_worker,
                               initargs=(leader.pid, leader.create_time(), initializer, initargs))


def start_fork_server(modules: Sequence[str] = ()) -> None:
    """Start this process's fork server now, importing ``__main__`` and ``modules`` in it, unless it runs already.

    Every worker process forked from it (ndpatch's pools and a ``local:N`` Dask
    cluster's) then starts with them imported, instead of importing them itself
    on its first task (about 0.5 s per process for ndpatch's conversion code).
    The server starts in the background: its imports overlap whatever this
    process does until it forks the first worker. Modules that fail to import
    are skipped. The first call of a process decides what its server holds.
    """
    multiprocessing.get_context(START_METHOD).set_forkserver_preload(["__main__", *modules])
    multiprocessing.forkserver.ensure_running()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's worker processes now (Ctrl-C, or a failed task that makes the rest pointless)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((pool._processes or {}).values()):  # no public way before Python 3.14
        process.terminate()


def _start_worker(leader_pid: int, leader_created: float, initializer: Callable | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the leader decides
    tqdm.set_lock(threading.RLock())  # workers draw no bars: no cross-process lock left behind when stopped
    threading.Thread(target=_exit_with_leader, args=(leader_pid, leader_created),
                     name="ndpatch-watchdog", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def leader_alive(pid: int, created: float) -> bool:
    """Whether process ``pid``, created at ``created``, still runs (not a zombie, not a reused pid).

    Example:
        >>> me = psutil.Process()
        >>> leader_alive(me.pid, me.create_time()), leader_alive(me.pid, me.create_time() + 1)
        (True, False)
    """
    try:
        process = psutil.Process(pid)
        return process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _exit_with_leader(pid: int, created: float) -> None:
    event = threading.Event()
    while leader_alive(pid, created):
        event.wait(WATCHDOG_SECONDS)
    os._exit(1)
