"""Reproducible, worker-aware random streams (ndpatch.rng)."""
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ndpatch.rng import coerce_rng, stream_key


def test_same_seed_same_sequence_in_plain_process():
    assert stream_key() == ()
    a = coerce_rng(3).integers(0, 2**32, size=20)
    b = coerce_rng(3).integers(0, 2**32, size=20)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.random.default_rng(3).integers(0, 2**32, size=20))
    assert not np.array_equal(a, coerce_rng(4).integers(0, 2**32, size=20))


def test_generator_passes_through_and_legacy_state_is_deterministic():
    gen = np.random.default_rng(1)
    assert coerce_rng(gen) is gen
    x = coerce_rng(np.random.RandomState(5)).random(4)
    np.testing.assert_array_equal(x, coerce_rng(np.random.RandomState(5)).random(4))
    with pytest.raises(TypeError, match="rng must be"):
        coerce_rng("seed")


def test_default_stream_continues_and_is_per_process():
    gen = coerce_rng(None)
    assert coerce_rng(None) is gen
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a fresh default stream, never the parent's
        os.write(w, b"1" if coerce_rng(None) is not gen else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"


def test_stream_key_from_worker_and_rank(monkeypatch):
    class Info:
        id = 2
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: Info())
    assert stream_key() == (0, 3)
    monkeypatch.setenv("RANK", "4")
    assert stream_key() == (4, 3)
    seeded = coerce_rng(9).random(3)
    expected = np.random.default_rng(np.random.SeedSequence(9, spawn_key=(4, 3))).random(3)
    np.testing.assert_array_equal(seeded, expected)


class Draws(Dataset):
    """Each item: a draw from a fixed seed, and one from the default stream."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.array([coerce_rng(123).integers(2**31), coerce_rng(None).integers(2**31)])


def _worker_draws(seed):
    torch.manual_seed(seed)
    loader = DataLoader(Draws(), batch_size=2, num_workers=2, multiprocessing_context="fork")
    return [batch.numpy() for batch in loader]  # batch 0 from worker 0, batch 1 from worker 1


def test_dataloader_workers_get_independent_reproducible_streams():
    first = _worker_draws(0)
    again = _worker_draws(0)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    (w0, w1) = first
    assert w0[0, 0] != w1[0, 0]          # same seed, different workers: different draws
    assert w0[0, 1] != w1[0, 1]          # default streams differ too
    assert w0[0, 1] != w0[1, 1]          # and the default stream advances within a worker
