"""The cache's size budget: LRU eviction, entries in use and being written, conversions that cannot fit."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndpatch
from ndpatch.cache import CacheStore, make_backend
from ndpatch.cache import store as store_module
from ndpatch.cache.budget import BUDGET_ENV, evict, parse_size
from ndpatch.cli import main
from ndpatch.demo import make_dataset
from ndpatch.errors import CacheConversionError, NdpatchError
from ndpatch.record import RECHECK_SECONDS, ImageRecords

from conftest import reference_window

SHAPE = (100, 100, 3)  # an npy entry of 30 kB
N_IMAGES = 6


@pytest.fixture
def dset(tmp_path):
    return make_dataset(tmp_path / "data", [{"shape": SHAPE, "dtype": "uint8"}] * N_IMAGES)


def entry_bytes(tmp_path, dset) -> int:
    """At least the bytes one entry takes in the cache (data file and sidecar, whose size varies a little)."""
    root = tmp_path / "probe"
    ndpatch.CocoSampler(dset, backend="npy", workdir=str(root)).entry(1)
    return sum(u.nbytes for u in CacheStore(root).usage()) + 64


def whole(gid: int) -> dict:
    return {"gid": gid, "space_slice": (slice(0, SHAPE[0]), slice(0, SHAPE[1]))}


def set_stamps(store: CacheStore, keys_oldest_first: list[str]) -> None:
    for age, key in enumerate(reversed(keys_oldest_first), start=1):
        stamp = 1_000_000_000 - 3600 * age
        os.utime(store.sidecar_path(key), (stamp, stamp))


def keys_by_gid(sampler, gids) -> dict[int, str]:
    return {gid: sampler.entry(gid).meta["sidecar"]["key"] for gid in gids}


def test_filling_past_the_budget_evicts_the_least_recently_used(dset, tmp_path):
    one = entry_bytes(tmp_path, dset)
    budget = int(3.5 * one)
    workdir = str(tmp_path / "cache")
    store = CacheStore(workdir)
    sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=workdir, cache_max_bytes=budget)
    keys = keys_by_gid(sampler, [1, 2, 3])
    set_stamps(store, [keys[1], keys[2], keys[3]])           # 1 oldest
    again = ndpatch.CocoSampler(dset, backend="npy", workdir=workdir, cache_max_bytes=budget)
    assert not again.entry(1).meta["converted"]              # a use: 1 is now the most recent
    keys.update(keys_by_gid(again, [4]))                      # 4 does not fit: the oldest, 2, goes
    present = {u.key for u in store.usage()}
    assert keys[2] not in present and {keys[1], keys[3], keys[4]} <= present
    for gid in (5, 6):
        keys.update(keys_by_gid(again, [gid]))
        assert sum(u.nbytes for u in store.usage()) <= budget
    assert {u.key for u in store.usage()} == {keys[4], keys[5], keys[6]}
    for gid in range(1, N_IMAGES + 1):                        # evicted images are converted again on use
        np.testing.assert_array_equal(again.load_sample(whole(gid))["im"], reference_window(
            again.index.source(gid).path, *whole(gid)["space_slice"]))


def test_a_process_holding_an_evicted_memmap_reads_the_same_pixels_and_then_rebuilds(dset, tmp_path):
    workdir = str(tmp_path / "cache")
    now = [0.0]
    sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=workdir)
    sampler.records = ImageRecords(sampler.index, sampler.backend, clock=lambda: now[0])
    expected = reference_window(sampler.index.source(1).path, *whole(1)["space_slice"])
    np.testing.assert_array_equal(sampler.load_sample(whole(1))["im"], expected)
    path = sampler.entry(1).path
    pruned = subprocess.run([sys.executable, "-m", "ndpatch", "cache", "prune", "--max-size", "0",
                             "--workdir", workdir], capture_output=True, text=True, timeout=120)
    assert pruned.returncode == 0 and "evicted 1 entries" in pruned.stdout, pruned.stderr
    assert not os.path.exists(path)                                 # another process unlinked it while mapped here
    for _ in range(3):                                              # POSIX keeps the mapped pages
        np.testing.assert_array_equal(sampler.load_sample(whole(1))["im"], expected)
    now[0] += RECHECK_SECONDS                                       # the re-check sees the cache file gone
    np.testing.assert_array_equal(sampler.load_sample(whole(1))["im"], expected)
    assert os.path.exists(path) and sampler.entry(1).meta["converted"]


def test_an_entry_being_written_is_never_evicted(dset, tmp_path):
    workdir = str(tmp_path / "cache")
    sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=workdir)
    keys = keys_by_gid(sampler, [1, 2])
    store = CacheStore(workdir)
    writing = "f" * 32                                       # another process's conversion: lock held, temp file
    temp = store.entries_dir / f"{writing}.tmp-abc123.npy"
    temp.write_bytes(b"\0" * 50_000)
    foreign = store.entries_dir / "notes.txt"                # not a name the cache makes
    foreign.write_text("mine")
    with store.lock(writing), store.lock(keys[2]):           # and image 2 being rebuilt
        result = evict(store, 0)
    assert [e.key for e in result.removed] == [keys[1]]
    assert sorted(e.key for e in result.busy) == sorted([writing, keys[2]])
    assert temp.exists() and store.sidecar_path(keys[2]).exists() and foreign.read_text() == "mine"
    assert not store.sidecar_path(keys[1]).exists()


def test_a_conversion_larger_than_the_budget_fails_before_writing(dset, tmp_path):
    workdir = tmp_path / "cache"
    for backend in ("npy", "cog"):
        sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(workdir), cache_max_bytes="2k")
        with pytest.raises(CacheConversionError, match=r"image 1 \(.*img_000.tif\): its cache entry needs .* "
                                                       r"more than the cache budget of 2.0 kB \(2048 bytes\)"):
            sampler.entry(1)
        assert list((workdir / "entries").iterdir()) == []   # no temp file, no entry


def test_a_conversion_larger_than_the_free_space_fails_cleanly(dset, tmp_path, monkeypatch):
    workdir = tmp_path / "cache"
    monkeypatch.setattr(store_module, "free_bytes", lambda folder: 10_000)
    with pytest.raises(CacheConversionError, match=r"image 1 .*not enough free space.*needs .*\(10000 bytes\) available"):
        ndpatch.CocoSampler(dset, backend="npy", workdir=str(workdir)).entry(1)
    assert list((workdir / "entries").iterdir()) == []


def test_the_budget_comes_from_the_environment(dset, tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "5M")
    assert make_backend("npy", workdir=str(tmp_path)).max_bytes == 5 << 20
    assert make_backend("auto", workdir=str(tmp_path), cache_max_bytes=1024).max_bytes == 1024
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(NdpatchError, match="NDPATCH_CACHE_MAX or cache_max_bytes.*'lots' is not a size"):
        make_backend("npy", workdir=str(tmp_path))


def test_warmup_max_size_and_cache_info_and_prune(dset, tmp_path, capsys, monkeypatch):
    one = entry_bytes(tmp_path, dset)
    workdir = str(tmp_path / "cache")
    assert main(["warmup", dset.fpath, "--backend", "npy", "--workers", "0", "--workdir", workdir,
                 "--max-size", str(4 * one)]) == 0
    assert "6 converted" in capsys.readouterr().out
    store = CacheStore(workdir)
    assert len(store.usage()) == 4 and sum(u.nbytes for u in store.usage()) <= 4 * one
    assert main(["cache", "info", "--workdir", workdir, "--max-size", str(8 * one)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"4 entries, .* of its .* budget \(50%\)", out), out
    assert "least recently used (evicted first):" in out and out.count("img_00") == 4
    assert main(["cache", "prune", "--workdir", workdir, "--max-size", str(2 * one)]) == 0
    assert "evicted 2 entries" in capsys.readouterr().out
    assert len(store.usage()) == 2
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert main(["cache", "prune", "--workdir", workdir]) == 1
    assert "cache prune needs a budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cache", "prune", "--max-size", "12 parsecs"])


def test_use_stamps_an_entry_at_most_once_a_minute(dset, tmp_path, monkeypatch):
    workdir = str(tmp_path / "cache")
    sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=workdir)
    key = sampler.entry(1).meta["sidecar"]["key"]
    stamps = []
    monkeypatch.setattr(store_module.os, "utime", lambda path, *a, **k: stamps.append(Path(path).name))
    reader = ndpatch.CocoSampler(dset, backend="npy", workdir=workdir)
    now = [0.0]
    reader.records = ImageRecords(reader.index, reader.backend, clock=lambda: now[0])
    for _ in range(120):                     # two minutes of sampling at one sample a second
        reader.load_sample(whole(1))
        now[0] += 1.0
    assert stamps == [f"{key}.json"]         # the store's own clock: once per minute per process at most


@given(st.integers(0, 10**6), st.sampled_from(["", "K", "M", "G", "T", "KiB", "MB", "gb"]))
def test_parse_size_powers_of_1024(number, unit):
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[:1].lower()]
    assert parse_size(f"{number}{unit}") == number * 1024 ** power
