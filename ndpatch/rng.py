"""Random streams: one seed, one sequence; separate workers and ranks, separate streams.

Every random strategy in ndpatch takes ``rng``: ``None``, an int seed, a
``numpy.random.SeedSequence``, a ``numpy.random.Generator`` (used as is) or a
legacy ``numpy.random.RandomState``. :func:`coerce_rng` turns it into a
``Generator``.

Seeds are spawned per *stream*: the (distributed rank, DataLoader worker id)
of the calling process, read from torch only when torch is already imported.
In a plain process the stream key is empty, so ``coerce_rng(7)`` is exactly
``numpy.random.default_rng(7)``; in DataLoader worker 1 of rank 0 it is
``default_rng(SeedSequence(7, spawn_key=(0, 2)))``: reproducible from run to
run, and independent of every other worker's stream.

``rng=None`` means this process's default stream (:func:`default_generator`):
seeded from ``torch.initial_seed()`` inside a DataLoader worker (torch seeds
each worker from the loader's base seed, so ``torch.manual_seed`` makes it
reproducible), else from OS entropy; rebuilt after a fork so a child never
replays its parent.

Example:
    >>> import numpy as np
    >>> int(coerce_rng(7).integers(1000)) == int(np.random.default_rng(7).integers(1000))
    True
    >>> gen = np.random.default_rng(0)
    >>> coerce_rng(gen) is gen
    True
    >>> stream_key()
    ()
"""
from __future__ import annotations

import os
import sys
from typing import Union

import numpy as np

RngLike = Union[None, int, np.integer, np.random.SeedSequence, np.random.Generator,
                np.random.RandomState]

_DEFAULT: dict[tuple, np.random.Generator] = {}


def worker_id() -> int | None:
    """The torch DataLoader worker id of this process, or None outside a worker."""
    data = sys.modules.get("torch.utils.data")
    if data is None:
        return None
    info = data.get_worker_info()
    return None if info is None else int(info.id)


def rank() -> int:
    """The distributed rank: torch.distributed's when initialised, else ``$RANK``, else 0."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", 0))


def stream_key() -> tuple[int, ...]:
    """``()`` in a plain process, else ``(rank, worker id + 1)`` (0 for a rank's main process)."""
    worker, rank_ = worker_id(), rank()
    if worker is None and rank_ == 0:
        return ()
    return (rank_, 0 if worker is None else worker + 1)


def default_generator() -> np.random.Generator:
    """This process's (and worker's) default stream, created on first use."""
    key = (os.getpid(), worker_id(), rank())
    gen = _DEFAULT.get(key)
    if gen is None:
        entropy = None
        if key[1] is not None:
            entropy = sys.modules["torch"].initial_seed()
        gen = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=stream_key()))
        _DEFAULT.clear()  # entries of a parent process or an earlier worker are stale
        _DEFAULT[key] = gen
    return gen


def coerce_rng(rng: RngLike = None) -> np.random.Generator:
    """A ``Generator`` for ``rng``: a seed is spawned for this process's stream (see module doc)."""
    if rng is None:
        return default_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.RandomState):
        return np.random.default_rng(rng.randint(0, 2**63 - 1, dtype=np.int64))
    if isinstance(rng, np.random.SeedSequence):
        seq = np.random.SeedSequence(rng.entropy, spawn_key=tuple(rng.spawn_key) + stream_key())
        return np.random.default_rng(seq)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(np.random.SeedSequence(int(rng), spawn_key=stream_key()))
    raise TypeError(f"rng must be None, an int seed, a SeedSequence or a numpy Generator, "
                    f"got {type(rng).__name__}")


class ProcessStream:
    """A strategy's default stream: seeded from ``seed`` anew in each process and DataLoader worker.

    A forked or spawned worker must not replay the stream (or the epoch state)
    it inherited: :meth:`renewed` says, once per new process or worker, that
    the owner should reset such state; :meth:`generator` gives ``rng`` coerced,
    or the stream when ``rng`` is None.

    Example:
        >>> stream = ProcessStream(3)
        >>> stream.renewed(), stream.renewed()
        (True, False)
        >>> stream.generator() is stream.generator()
        True
    """

    def __init__(self, seed: RngLike = None):
        self.seed = seed
        self._owner: tuple | None = None
        self._generator: np.random.Generator | None = None

    def renewed(self) -> bool:
        """True the first time this is asked in a new process or worker (the stream restarts)."""
        owner = (os.getpid(), worker_id())
        if owner == self._owner:
            return False
        self._owner, self._generator = owner, None
        return True

    def generator(self, rng: RngLike = None) -> np.random.Generator:
        if rng is not None:
            return coerce_rng(rng)
        if self._generator is None:
            self._generator = coerce_rng(self.seed)
        return self._generator

    def __getstate__(self) -> dict:
        return {"seed": self.seed}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["seed"])
