"""backend='auto': the conformance suite, plus the per-image choice."""
import numpy as np
from conftest import edge_windows

from ndpatch.cache import make_backend
from ndpatch.cache.base import ImageSource
from ndpatch.demo import write_raster
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
