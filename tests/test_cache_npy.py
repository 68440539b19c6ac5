"""backend='npy': the conformance suite, plus the npy file itself."""
import numpy as np
from conftest import edge_windows

from ndpatch.sampler import CocoSampler
from ndpatch.testing import BackendConformance


class TestNpyBackend(BackendConformance):
    backend = "npy"
    windows = staticmethod(edge_windows)


def test_cache_file_is_a_plain_npy_of_the_source(matrix_dset, tmp_path):
    sampler = CocoSampler(matrix_dset, workdir=str(tmp_path), backend="npy")
    direct = CocoSampler(matrix_dset)
    entry = sampler.entry(1)
    array = np.load(entry.path)
    assert array.shape == (70, 90, 3) and array.dtype == np.uint8
    full = direct.load_sample({"gid": 1, "space_slice": (slice(0, 70), slice(0, 90))})["im"]
    np.testing.assert_array_equal(array, full)
