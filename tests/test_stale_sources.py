"""A source rewritten in place or replaced by ``mv`` is served fresh, never mixed with the old one.

A new sampler resolves every image afresh; a live one re-stats an image's files
at most once per ``ndpatch.record.RECHECK_SECONDS`` (set to 0 here, or driven by
a fake clock: no sleeps) and resolves the image again when a file changed.
Pixels are compared bit-exactly with an independent GDAL read of the new file.
(The new file's mtime is set apart from the old one's: cache keys that survive
a preserved mtime are the cache store's own tests.)
"""
import os
import shutil

import kwcoco
import numpy as np
import pytest
from conftest import reference_window

import ndpatch
from ndpatch import record
from ndpatch.demo import write_raster

SHAPE = (48, 40, 3)
WINDOW = (slice(-5, 30), slice(10, 50))
LAYOUTS = {"striped": None, "tiled": ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]}  # tiled: cog reads in place


def pixels(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def replace(path, new_pixels, how: str, options=None) -> None:
    """Give ``path`` new content: rewritten through the same inode, or a new file moved over it."""
    old = os.stat(path)
    staging = path.with_name(f"new-{path.name}")
    write_raster(staging, new_pixels, options=options)
    if how == "in_place":
        shutil.copyfile(staging, path)          # truncates and rewrites the same inode
        os.unlink(staging)
        assert os.stat(path).st_ino == old.st_ino
    else:
        os.replace(staging, path)               # what `mv new.tif img.tif` does
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 10**10))


def one_image(root, layout="striped"):
    root.mkdir(parents=True, exist_ok=True)
    path = root / "img.tif"
    write_raster(path, pixels(1), options=LAYOUTS[layout])
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "data.kwcoco.json")
    dset.add_image(file_name="img.tif", width=SHAPE[1], height=SHAPE[0])
    dset.dump(dset.fpath)
    return dset.fpath, path


def window(sampler, target=None):
    return sampler.load_sample(target or {"gid": 1, "space_slice": WINDOW}, with_annots=False)["im"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("how", ["in_place", "mv"])
@pytest.mark.parametrize("backend", [None, "npy", "cog", "auto"])
def test_new_and_live_samplers_serve_the_new_pixels(tmp_path, monkeypatch, backend, how, layout):
    dset, path = one_image(tmp_path / "data", layout)
    workdir = str(tmp_path / "cache")
    live = ndpatch.CocoSampler(dset, backend=backend, workdir=workdir)
    old = reference_window(str(path), *WINDOW)
    np.testing.assert_array_equal(window(live), old)
    replace(path, pixels(2), how, LAYOUTS[layout])
    expected = reference_window(str(path), *WINDOW)
    assert not np.array_equal(expected, old)
    fresh = ndpatch.CocoSampler(dset, backend=backend, workdir=workdir)
    np.testing.assert_array_equal(window(fresh), expected)
    monkeypatch.setattr(record, "RECHECK_SECONDS", 0.0)
    np.testing.assert_array_equal(window(live), expected)
    batch = live.load_batch([{"gid": 1, "space_slice": WINDOW}] * 3, with_annots=False, threads=2)["im"]
    np.testing.assert_array_equal(batch, np.stack([expected] * 3))


def test_a_live_sampler_stats_each_image_at_most_once_per_interval(tmp_path, monkeypatch):
    dset, path = one_image(tmp_path)
    now = [0.0]
    sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=str(tmp_path / "cache"))
    sampler.records.clock = lambda: now[0]
    window(sampler)
    stats = []
    state = record.file_state
    monkeypatch.setattr(record, "file_state", lambda p: stats.append(p) or state(p))
    for _ in range(50):
        window(sampler)
    assert stats == []                                   # within the interval: no stat at all
    first = sampler.records.get(1)
    now[0] += record.RECHECK_SECONDS
    window(sampler)
    assert stats == [str(path), first.entry.path] and sampler.records.get(1) is first   # the source, the cache file
    replace(path, pixels(3), "mv")
    window(sampler)                                      # the interval has not passed again: old record
    assert sampler.records.get(1) is first
    now[0] += record.RECHECK_SECONDS
    np.testing.assert_array_equal(window(sampler), reference_window(str(path), *WINDOW))
    assert sampler.records.get(1) is not first


def multi_file_image(root):
    """One image of two files: band 'a' in a.tif, band 'b' in b.tif (half resolution)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, shape in (("a.tif", (32, 32)), ("b.tif", (16, 16))):
        write_raster(root / name, pixels(ord(name[0]), shape))
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "multi.kwcoco.json")
    dset.add_image(name="scene", width=32, height=32, assets=[
        {"file_name": "a.tif", "channels": "a", "width": 32, "height": 32},
        {"file_name": "b.tif", "channels": "b", "width": 16, "height": 16}])
    dset.dump(dset.fpath)
    return dset.fpath


@pytest.mark.parametrize("backend", [None, "npy"])
def test_a_sample_never_mixes_old_and_new_files(tmp_path, monkeypatch, backend):
    dset = multi_file_image(tmp_path / "data")
    a, b = tmp_path / "data" / "a.tif", tmp_path / "data" / "b.tif"
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
    target = {"gid": 1, "space_slice": (slice(0, 32), slice(0, 32)), "channels": "a|b",
              "interpolation": "nearest"}
    first = window(sampler, {**target, "channels": "a"})           # resolves a.tif only
    np.testing.assert_array_equal(first[..., 0], reference_window(str(a), *target["space_slice"])[..., 0])
    monkeypatch.setattr(record, "RECHECK_SECONDS", 1e9)             # no re-check is due
    replace(a, pixels(11, (32, 32)), "mv")
    replace(b, pixels(12, (16, 16)), "in_place")
    both = window(sampler, target)   # b.tif is resolved now: it is not the file the record saw, so a.tif is new too
    np.testing.assert_array_equal(both[..., 0], reference_window(str(a), *target["space_slice"])[..., 0])
    np.testing.assert_array_equal(both[..., 1], np.repeat(np.repeat(
        reference_window(str(b), slice(0, 16), slice(0, 16))[..., 0], 2, axis=0), 2, axis=1))


@pytest.mark.parametrize("backend", [None, "npy"])
def test_video_frames_follow_a_replaced_frame(tmp_path, monkeypatch, backend):
    root = tmp_path / "data"
    root.mkdir()
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "video.kwcoco.json")
    vidid = dset.add_video(name="v", width=SHAPE[1], height=SHAPE[0])
    for t in range(2):
        write_raster(root / f"f{t}.tif", pixels(20 + t))
        dset.add_image(file_name=f"f{t}.tif", width=SHAPE[1], height=SHAPE[0], video_id=vidid, frame_index=t)
    dset.dump(dset.fpath)
    sampler = ndpatch.CocoSampler(dset.fpath, backend=backend, workdir=str(tmp_path / "cache"))
    target = {"vidid": vidid, "space_slice": WINDOW}
    window(sampler, target)
    replace(root / "f1.tif", pixels(30), "mv")
    monkeypatch.setattr(record, "RECHECK_SECONDS", 0.0)
    frames = window(sampler, target)
    for t in range(2):
        np.testing.assert_array_equal(frames[t], reference_window(str(root / f"f{t}.tif"), *WINDOW))
