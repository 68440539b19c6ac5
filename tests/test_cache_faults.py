"""Faults injected into the cache: damaged npy headers and swapped entries, full disks, huge sources.

(Faults every backend must survive are in ndpatch.testing.BackendConformance.)
"""
import errno
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from ndpatch.cache import CacheStore, ImageSource, make_backend, read_window, validate_entry
from ndpatch.cache import cog as cog_module
from ndpatch.cache import npy as npy_module
from ndpatch.cache import store as store_module
from ndpatch.cli import main
from ndpatch.demo import make_dataset, random_pixels, write_raster
from ndpatch.errors import CacheConversionError, DiskFullError
from ndpatch.sampler import CocoSampler
from ndpatch.warmup import warmup

SPECS = [{"shape": (60, 70, 3), "dtype": "uint8"}, {"shape": (60, 70, 3), "dtype": "uint8"},
         {"shape": (40, 50), "dtype": "uint16"}]
WHOLE = (slice(0, 60), slice(0, 70))


@pytest.fixture
def dset(tmp_path):
    return make_dataset(tmp_path / "data", SPECS)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MB tmpfs (needs root; the patched-statvfs test below runs everywhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:  # lazily: a memmap or GDAL handle of this process may still hold a file there
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill_disk(mount: Path, leave: int) -> Path:
    """Fill ``mount`` until only ``leave`` bytes are free; returns the filler file."""
    filler = mount / "filler"
    with open(filler, "wb") as file:
        file.write(b"\0" * max(0, store_module.free_bytes(mount) - leave))
    return filler


def only_ours(entries: Path) -> list[str]:
    return sorted(p.name for p in entries.iterdir()) if entries.is_dir() else []


# -- damaged entries ---------------------------------------------------------------------------
def test_npy_header_bit_flip_is_a_bad_entry_not_a_crash(dset, tmp_path, capsys):
    workdir = str(tmp_path / "cache")
    entry = CocoSampler(dset, workdir=workdir, backend="npy").entry(1)
    with open(entry.path, "r+b") as file:  # the dict's opening brace: numpy's parser raises TokenError
        file.seek(10)
        file.write(b"\xfb")
    assert main(["cache", "verify", "--workdir", workdir]) == 1
    out = capsys.readouterr().out
    assert f"corrupt: {entry.meta['sidecar']['key']}" in out and "bad header: TokenError" in out
    with pytest.warns(RuntimeWarning, match="rebuilding.*bad header"):
        im = CocoSampler(dset, workdir=workdir, backend="npy").load_sample({"gid": 1, "space_slice": WHOLE})["im"]
    np.testing.assert_array_equal(im, CocoSampler(dset).load_sample({"gid": 1, "space_slice": WHOLE})["im"])


def test_npy_entry_swapped_for_another_images_entry_is_found_and_rebuilt(dset, tmp_path):
    workdir = str(tmp_path / "cache")
    sampler = CocoSampler(dset, workdir=workdir, backend="npy")
    first, second = sampler.entry(1), sampler.entry(2)
    assert os.path.getsize(first.path) == os.path.getsize(second.path)
    shutil.copyfile(second.path, first.path)
    verdicts = {r.key: r for r in CacheStore(workdir).verify(validate_entry)}
    assert verdicts[first.meta["sidecar"]["key"]].status == "corrupt"
    assert verdicts[second.meta["sidecar"]["key"]].status == "ok"
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        im = CocoSampler(dset, workdir=workdir, backend="npy").load_sample({"gid": 1, "space_slice": WHOLE})["im"]
    np.testing.assert_array_equal(im, CocoSampler(dset).load_sample({"gid": 1, "space_slice": WHOLE})["im"])


def test_old_format_entries_are_stale_and_removed_on_request(dset, tmp_path):
    workdir = tmp_path / "cache"
    entry = CocoSampler(dset, workdir=str(workdir), backend="npy").entry(3)
    old_key = "f" * 32
    sidecar = json.loads(Path(workdir, "entries", entry.meta["sidecar"]["key"] + ".json").read_text())
    del sidecar["format"]
    Path(workdir, "entries", f"{old_key}.json").write_text(json.dumps({**sidecar, "key": old_key}))
    shutil.copyfile(entry.path, workdir / "entries" / f"{old_key}.npy")
    verdicts = {r.key: r for r in CacheStore(workdir).verify(validate_entry, delete=True)}
    assert (verdicts[old_key].status, verdicts[old_key].reason) == \
        ("stale", "written by an older ndpatch (cache format before 3, now 3)")
    assert only_ours(workdir / "entries") == sorted(Path(p).name for p in (entry.path, entry.path[:-4] + ".json"))


# -- full disks ----------------------------------------------------------------------------------
def test_npy_conversion_that_cannot_fit_is_refused_before_writing(dset, tiny_disk):
    backend = make_backend("npy", workdir=str(tiny_disk / "cache"))
    small = CocoSampler(dset).index.source(3)
    kept = backend.ensure(small)  # something already cached, which must survive
    big = write_raster(tiny_disk.parent / "big.tif", np.zeros((1200, 1000, 3), np.uint8))
    needed = npy_module.npy_nbytes((1200, 1000, 3), np.dtype("uint8")) + npy_module.SIDECAR_ROOM
    fill_disk(tiny_disk, leave=1 << 20)
    with pytest.raises(CacheConversionError, match=rf"image 9 \(.*big.tif\): .*not enough free space .*"
                                                   rf"needs {store_module.human_bytes(needed)} \({needed} bytes\), "
                                                   r".* \(\d+ bytes\) available in"):
        backend.ensure(ImageSource(9, big))
    assert only_ours(tiny_disk / "cache" / "entries") == sorted([Path(kept.path).name, Path(kept.path).stem + ".json"])
    again = make_backend("npy", workdir=str(tiny_disk / "cache")).ensure(small)
    assert not again.meta["converted"]
    np.testing.assert_array_equal(read_window(backend, again, slice(0, 40), slice(0, 50), None, None)[..., 0],
                                  gdal.Open(small.path).ReadAsArray())


def test_sparse_huge_source_is_refused_at_once(tiny_disk, tmp_path):
    path = str(tmp_path / "sparse.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 100_000, 100_000, 3, gdal.GDT_Byte,
                                              ["SPARSE_OK=TRUE", "TILED=YES", "BIGTIFF=YES"])
    del ds
    assert os.path.getsize(path) < 10 << 20
    with pytest.raises(CacheConversionError, match=r"needs 27.9 GB \(30000065664 bytes\)"):
        make_backend("npy", workdir=str(tiny_disk / "cache")).ensure(ImageSource(1, path))
    assert only_ours(tiny_disk / "cache" / "entries") == []


def test_cog_conversion_on_a_full_disk_is_a_clear_error_and_leaves_nothing(tiny_disk, tmp_path):
    noise = random_pixels((1500, 1500, 3), "uint8", np.random.default_rng(0))  # ~6.4 MB even compressed
    path = write_raster(tmp_path / "noise.tif", noise)
    with pytest.raises(CacheConversionError, match=r"image 4 .*noise.tif.*no space left on device .*available"):
        make_backend("cog", workdir=str(tiny_disk / "cache")).ensure(ImageSource(4, path))
    assert only_ours(tiny_disk / "cache" / "entries") == []


def test_atomic_publish_on_a_full_disk_raises_disk_full_and_leaves_no_temp_file(tiny_disk):
    dest = tiny_disk / "out" / "chip.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"the previous version")
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*chip.bin: it needs more than 4.0 MB "
                                            r"\(\d+ bytes written when the disk filled\), 4.0 MB \(\d+ bytes\) "
                                            r"available in .*No space left on device"):
        store_module.atomic_publish(dest, lambda tmp: Path(tmp).write_bytes(b"x" * (8 << 20)))
    assert sorted(p.name for p in dest.parent.iterdir()) == ["chip.bin"]
    assert dest.read_bytes() == b"the previous version"


def test_sidecar_write_on_a_full_disk_is_a_clear_error_and_leaves_no_data_file(dset, tmp_path, monkeypatch):
    workdir = tmp_path / "cache"
    CocoSampler(dset, workdir=str(workdir), backend="npy").entry(3)
    before = only_ours(workdir / "entries")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.json, "dump", no_space)
    with pytest.raises(CacheConversionError, match=r"image 1 .*: writing cache entry \w+ failed: no space left"):
        CocoSampler(dset, workdir=str(workdir), backend="npy").entry(1)
    assert only_ours(workdir / "entries") == before


def test_free_space_is_checked_with_statvfs(dset, tmp_path, monkeypatch):
    """The same refusal without root: a disk that statvfs says has 1 MB left."""
    real = os.statvfs

    class Tiny:
        def __init__(self, stat):
            self.f_frsize, self.f_bavail = 4096, 256

    monkeypatch.setattr(store_module.os, "statvfs", lambda path: Tiny(real(path)))
    big = write_raster(tmp_path / "big.tif", np.zeros((1000, 1000, 3), np.uint8))
    with pytest.raises(CacheConversionError, match=r"needs 2.9 MB .* 1.0 MB \(1048576 bytes\) available"):
        make_backend("npy", workdir=str(tmp_path / "cache")).ensure(ImageSource(1, big))
    assert only_ours(tmp_path / "cache" / "entries") == []


def test_warmup_on_a_full_disk_reports_each_image_clearly(dset, tiny_disk):
    fill_disk(tiny_disk, leave=20 << 10)
    summary = warmup(dset, backend="npy", workdir=str(tiny_disk / "cache"), workers=2, progress=False)
    assert (summary.converted, sorted(summary.failed)) == (0, [1, 2, 3])
    assert all("not enough free space" in reason and "available in" in reason for reason in summary.failed.values())
    assert only_ours(tiny_disk / "cache" / "entries") == []


# -- what a conversion shows --------------------------------------------------------------------
def test_first_conversion_logs_one_line_and_long_ones_show_progress(dset, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(store_module, "_conversion_logged", False)
    monkeypatch.setattr(npy_module, "PROGRESS_DELAY", 0)
    with caplog.at_level(logging.INFO, logger="ndpatch"):
        sampler = CocoSampler(dset, workdir=str(tmp_path / "cache"), backend="npy")
        for gid in (1, 2, 3):
            sampler.entry(gid)
    lines = [r.getMessage() for r in caplog.records if r.name == "ndpatch"]
    assert len(lines) == 1 and "npy cache at" in lines[0] and "first touch" in lines[0]
    assert "npy " in capsys.readouterr().err  # tqdm's bar, on stderr
    monkeypatch.setattr(cog_module, "PROGRESS_DELAY", 0)
    CocoSampler(dset, workdir=str(tmp_path / "cog"), backend="cog").entry(1)
    assert "cog " in capsys.readouterr().err
