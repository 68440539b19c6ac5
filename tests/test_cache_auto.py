"""backend='auto': the conformance suite, the per-image choice, and auto as CocoSampler's default."""
import logging

import kwcoco
import numpy as np
from conftest import edge_windows, reference_window

from ndpatch import CocoSampler
from ndpatch.cache import make_backend
from ndpatch.cache import store as store_module
from ndpatch.cache.base import ImageSource
from ndpatch.demo import make_dataset, write_raster
from ndpatch.testing import BackendConformance


class TestAutoBackend(BackendConformance):
    backend = "auto"
    windows = staticmethod(edge_windows)


def test_auto_rule(tmp_path):
    pixels = np.ones((400, 300, 3), np.uint8)
    tiled = write_raster(tmp_path / "tiled.tif", pixels, options=["TILED=YES", "COMPRESS=ZSTD"])
    striped = write_raster(tmp_path / "striped.tif", pixels, options=["COMPRESS=DEFLATE"])
    small = make_backend("auto", workdir=str(tmp_path / "a"))
    assert small.ensure(ImageSource(1, tiled)).meta["sidecar"]["in_place"]
    assert small.ensure(ImageSource(2, striped)).kind == "npy"
    big = make_backend("auto", workdir=str(tmp_path / "b"), npy_max_mb=0.1)
    entry = big.ensure(ImageSource(2, striped))
    assert entry.kind == "cog" and not entry.meta["sidecar"]["in_place"]


# -- the default backend ------------------------------------------------------------------------
PHOTOS = [{"shape": (60, 80, 3), "dtype": "uint8", "driver": "PNG"},
          {"shape": (48, 50, 3), "dtype": "uint8", "driver": "PNG"}]


def entry_files(root):
    return sorted(p.name for p in (root / "entries").glob("*") if not p.name.endswith(".json"))


def test_default_backend_converts_photos_on_first_touch_logs_once_and_reads_bit_exact(tmp_path, monkeypatch,
                                                                                      caplog):
    dset = make_dataset(tmp_path / "photos", PHOTOS, seed=4)
    root = tmp_path / "user-cache"
    monkeypatch.setenv("NDPATCH_CACHE", str(root))
    monkeypatch.setattr(store_module, "_conversion_logged", False)
    sampler = CocoSampler(dset)
    assert sampler.backend.name == "auto" and not root.exists()     # nothing converted before a read
    with caplog.at_level(logging.INFO, logger="ndpatch"):
        for gid, spec in enumerate(PHOTOS, start=1):
            height, width = spec["shape"][:2]
            for window in edge_windows(height, width):
                im = sampler.load_sample({"gid": gid, "space_slice": window}, with_annots=False)["im"]
                np.testing.assert_array_equal(im, reference_window(sampler.index.source(gid).path, *window))
            entry = sampler.entry(gid)
            assert entry.kind == "npy" and entry.meta["converted"] and entry.path.startswith(str(root))
    lines = [r.getMessage() for r in caplog.records if r.name == "ndpatch"]
    assert len(lines) == 1 and f"npy cache at {root}" in lines[0] and "first touch" in lines[0]
    assert len([name for name in entry_files(root) if name.endswith(".npy")]) == 2
    again = CocoSampler(dset).entry(1)                                 # a later run reuses the entry
    assert again.path == sampler.entry(1).path and not again.meta["converted"]


def test_default_backend_reads_a_tiled_geotiff_in_place(tmp_path, monkeypatch):
    pixels = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    path = write_raster(tmp_path / "tiled.tif", pixels, options=["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=32",
                                                                   "COMPRESS=DEFLATE"])
    dset = kwcoco.CocoDataset()
    dset.add_image(file_name=path, width=90, height=70)
    root = tmp_path / "user-cache"
    monkeypatch.setenv("NDPATCH_CACHE", str(root))
    sampler = CocoSampler(dset)
    entry = sampler.entry(1)
    assert entry.path == path and entry.meta["sidecar"]["in_place"] and entry_files(root) == []
    for window in edge_windows(70, 90):
        np.testing.assert_array_equal(sampler.load_sample({"gid": 1, "space_slice": window})["im"],
                                      reference_window(path, *window))


def test_backend_none_still_reads_sources_directly(tmp_path, monkeypatch):
    dset = make_dataset(tmp_path / "photos", PHOTOS[:1], seed=4)
    monkeypatch.setenv("NDPATCH_CACHE", str(tmp_path / "user-cache"))
    sampler = CocoSampler(dset, backend=None)
    entry = sampler.entry(1)
    assert sampler.backend.name == "direct" and entry.path == sampler.index.source(1).path
    assert not (tmp_path / "user-cache").exists()
