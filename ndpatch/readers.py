"""The reader threads of a process: one pool for every batch, whatever its ``threads``.

GDAL releases the GIL while it decodes, so a batch of decoded windows is read on
a few threads (memory-mapped windows are copied by torch's threads instead:
:func:`ndpatch.batch._copy_windows`). :data:`READERS` is the process's one pool (a
forked child makes its own): a batch asking for ``k`` threads is worked by the
calling thread and at most ``k - 1`` pool threads, which take its windows one at
a time (:meth:`ReaderPool.share`: the caller never waits for a thread to wake
up), and the pool never holds more threads than the largest ``k`` asked for so
far (at most :data:`MAX_READER_THREADS`). Batches with different ``threads``
share it; none starts a pool of its own.

Example:
    >>> sizes = []
    >>> READERS.share(lambda n: sizes.append(n * n), [1, 2, 3], threads=3)
    >>> sorted(sizes)
    [1, 4, 9]
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

#: Reader threads per batch (the calling thread included) when a caller gives none.
BATCH_THREADS = min(4, os.cpu_count() or 1)
#: The most reader threads a process keeps, whatever a batch asks for.
MAX_READER_THREADS = 32

T = TypeVar("T")


class ReaderPool:
    """One thread pool per process; threads are started only as a batch needs them."""

    def __init__(self, max_threads: int = MAX_READER_THREADS):
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._executor: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        """This process's pool (made on first use, and again in a forked child)."""
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._executor = ThreadPoolExecutor(self.max_threads, thread_name_prefix="ndpatch-read")
                    self._pid = pid
        return self._executor

    def share(self, work: Callable[[T], None], items: Sequence[T], threads: int) -> None:
        """``work(item)`` for every item, on this thread and up to ``threads - 1`` pool threads.

        Each thread takes the next item no thread has taken yet, this one
        included, so it never waits for a pool thread to wake up: on a busy
        machine a helper that starts late finds every item taken and returns.
        The first error stops the handing out and is raised here once the
        items being worked on are done.

        >>> done = []
        >>> READERS.share(done.append, range(5), threads=2)
        >>> sorted(done)
        [0, 1, 2, 3, 4]
        """
        helpers = min(int(threads), len(items)) - 1
        if helpers <= 0:
            for item in items:
                work(item)
            return
        untaken = iter(items)            # next() on it is atomic: each item goes to one thread
        errors: list[BaseException] = []
        busy = threading.Condition()
        working = 0                      # threads inside take(), guarded by busy

        def take() -> None:
            nonlocal working
            with busy:
                working += 1
            try:
                for item in untaken:
                    if errors:
                        break
                    try:
                        work(item)
                    except BaseException as err:  # raised in the calling thread below
                        errors.append(err)
                        break
            finally:
                with busy:
                    working -= 1
                    busy.notify_all()

        for _ in range(helpers):
            self.executor().submit(take)
        take()
        with busy:
            busy.wait_for(lambda: working == 0)
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        """Threads the pool holds now."""
        return 0 if self._executor is None or self._pid != os.getpid() else len(self._executor._threads)


#: The process-wide reader pool.
READERS = ReaderPool()
