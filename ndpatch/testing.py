"""A conformance test class every cache backend's tests subclass.

A subclass names the backend (and options) and a window generator; it
inherits tests that hold for every backend: bit-exact pixels against
``backend=None`` over the dtype/band/edge matrix (in the ``matrix_dset``
fixture), entries that describe the source, reuse across samplers and
processes, rebuilds of truncated entries and corrupt sidecars, edited
sources, same-named files, N processes converting once, and a conversion
killed half-way.

Example (``tests/test_cache_npy.py``)::

    from conftest import edge_windows
    from ndpatch.testing import BackendConformance

    class TestNpyBackend(BackendConformance):
        backend = "npy"
        windows = staticmethod(edge_windows)
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndpatch.demo import make_dataset, random_pixels, write_raster
from ndpatch.sampler import CocoSampler

#: A small dataset for the process tests: a striped RGB, a striped uint16, a PNG.
PROCESS_SPECS = [{"shape": (300, 260, 3), "dtype": "uint8"},
                 {"shape": (90, 120), "dtype": "uint16"},
                 {"shape": (64, 64), "dtype": "uint8", "driver": "PNG"}]


def _variants(n_bands: int, nodata: float | None) -> list[dict]:
    """Target options that exercise band selection, fill values and dtype conversion."""
    variants = [{}, {"channels": list(range(n_bands))[::-1][:2]}, {"fill": 5}]
    if nodata is not None:
        variants.append({"dtype": "float32", "fill": float("nan")})
    return variants


def _touch_all(dset_path: str, workdir: str, backend: str, options: dict, barrier, queue) -> None:
    """Child process: open the dataset, wait for the others, read every image, report."""
    sampler = CocoSampler(dset_path, workdir=workdir, backend=backend, **options)
    direct = CocoSampler(dset_path)
    barrier.wait()
    report = []
    for gid in sorted(sampler.dset.imgs):
        entry = sampler.entry(gid)
        window = {"gid": gid, "space_slice": (slice(-3, 40), slice(5, 70))}
        exact = np.array_equal(sampler.load_sample(window, with_annots=False)["im"],
                               direct.load_sample(window, with_annots=False)["im"])
        report.append((gid, entry.meta["converted"], exact))
    queue.put(report)


def _stall_before_publish(dset_path: str, workdir: str, backend: str, options: dict,
                          marker: str) -> None:
    """Child process: convert image 1 but stop just before the rename (to be killed there)."""
    from ndpatch.cache import store

    def stall(path):
        Path(marker).write_text(str(path))
        time.sleep(600)

    store.fsync_path = stall
    CocoSampler(dset_path, workdir=workdir, backend=backend, **options).entry(1)


class BackendConformance:
    """Tests every cache backend passes; subclass and set ``backend`` and ``windows``."""

    #: The backend name given to ``CocoSampler``.
    backend: str = ""
    #: Backend options given to ``CocoSampler``.
    options: dict = {}
    #: ``windows(height, width)`` → list of ``(rows, cols)`` slices to compare.
    windows: Callable[[int, int], list[tuple[slice, slice]]]

    @pytest.fixture(scope="class")
    def workdir(self, tmp_path_factory) -> Path:
        return tmp_path_factory.mktemp(f"cache-{self.backend}")

    @pytest.fixture(scope="class")
    def samplers(self, matrix_dset, workdir) -> tuple[CocoSampler, CocoSampler]:
        cached = CocoSampler(matrix_dset, workdir=str(workdir), backend=self.backend, **self.options)
        return CocoSampler(matrix_dset), cached

    @pytest.fixture
    def small_dset(self, tmp_path):
        dset = make_dataset(tmp_path / "data", PROCESS_SPECS)
        return dset, str(tmp_path / "cache")

    def make(self, dset, workdir) -> CocoSampler:
        return CocoSampler(dset, workdir=str(workdir), backend=self.backend, **self.options)

    def test_windows_bit_exact(self, samplers):
        direct, cached = samplers
        for gid in sorted(direct.dset.imgs):
            entry = direct.entry(gid)
            for window in self.windows(entry.height, entry.width):
                for extra in _variants(entry.bands, entry.nodata):
                    target = {"gid": gid, "space_slice": window, **extra}
                    expected = direct.load_sample(target, with_annots=False)["im"]
                    got = cached.load_sample(target, with_annots=False)["im"]
                    assert got.dtype == expected.dtype and got.shape == expected.shape, target
                    assert got.flags["C_CONTIGUOUS"] and got.flags["WRITEABLE"]
                    np.testing.assert_array_equal(got, expected, err_msg=str(target))

    # each subclass (backend) runs this inherited method: intended, not a flaky executor
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    @given(data=st.data())
    def test_any_window_bit_exact(self, samplers, data):
        direct, cached = samplers
        gid = data.draw(st.sampled_from(sorted(direct.dset.imgs)))
        entry = direct.entry(gid)
        r0 = data.draw(st.integers(-2 * entry.height, 2 * entry.height))
        c0 = data.draw(st.integers(-2 * entry.width, 2 * entry.width))
        rows = slice(r0, r0 + data.draw(st.integers(1, 2 * entry.height)))
        cols = slice(c0, c0 + data.draw(st.integers(1, 2 * entry.width)))
        target = {"gid": gid, "space_slice": (rows, cols)}
        np.testing.assert_array_equal(cached.load_sample(target, with_annots=False)["im"],
                                      direct.load_sample(target, with_annots=False)["im"])

    def test_entries_describe_the_source(self, samplers):
        direct, cached = samplers
        for gid in sorted(direct.dset.imgs):
            want, got = direct.entry(gid), cached.entry(gid)
            assert (got.height, got.width, got.bands, got.dtype) == (want.height, want.width,
                                                                     want.bands, want.dtype)
            assert got.nodata == want.nodata and got.band_names == want.band_names
            sidecar = got.meta["sidecar"]
            assert sidecar["source"]["path"] == os.path.realpath(want.path)
            assert {"settings", "versions", "dtype", "height"} <= set(sidecar)

    def test_second_sampler_reuses_entries(self, samplers, matrix_dset, workdir):
        _, cached = samplers
        for gid in cached.dset.imgs:
            cached.entry(gid)
        again = self.make(matrix_dset, workdir)
        assert not any(again.entry(gid).meta["converted"] for gid in again.dset.imgs)

    def test_pickled_sampler_reads_the_same(self, samplers):
        _, cached = samplers
        target = {"gid": 1, "space_slice": (slice(-4, 30), slice(10, 50))}
        expected = cached.load_sample(target, with_annots=False)["im"]
        clone = pickle.loads(pickle.dumps(cached))
        np.testing.assert_array_equal(clone.load_sample(target, with_annots=False)["im"], expected)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            forked = pool.apply(_load_im, (cached, target))
        np.testing.assert_array_equal(forked, expected)

    def test_truncated_file_and_corrupt_sidecar_are_rebuilt(self, small_dset):
        dset, workdir = small_dset
        direct = CocoSampler(dset)
        first = self.make(dset, workdir)
        entry = first.entry(1)
        assert not entry.meta["sidecar"]["in_place"]
        with open(entry.path, "r+b") as file:
            file.truncate(os.path.getsize(entry.path) // 2)
        sidecar_path = Path(workdir, "entries", entry.meta["sidecar"]["key"] + ".json")
        target = {"gid": 1, "space_slice": (slice(100, 200), slice(-10, 90))}
        for damage in ("truncated", "sidecar"):
            if damage == "sidecar":
                sidecar_path.write_text("{not json")
            with pytest.warns(RuntimeWarning, match="rebuilding"):
                sampler = self.make(dset, workdir)
                im = sampler.load_sample(target, with_annots=False)["im"]
            assert sampler.entry(1).meta["converted"]
            np.testing.assert_array_equal(im, direct.load_sample(target, with_annots=False)["im"])
            json.loads(sidecar_path.read_text())

    def test_edited_source_serves_new_pixels(self, small_dset):
        dset, workdir = small_dset
        target = {"gid": 2, "space_slice": (slice(0, 90), slice(0, 120))}
        old = self.make(dset, workdir).load_sample(target, with_annots=False)["im"]
        path = CocoSampler(dset).index.source(2).path
        stat = os.stat(path)
        new_pixels = random_pixels((90, 120), "uint16", np.random.default_rng(99))
        write_raster(path, new_pixels)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        new = self.make(dset, workdir).load_sample(target, with_annots=False)["im"]
        np.testing.assert_array_equal(new[..., 0], new_pixels)
        assert not np.array_equal(old, new)

    def test_same_file_name_in_two_folders(self, tmp_path):
        import kwcoco
        rng = np.random.default_rng(3)
        dset = kwcoco.CocoDataset()
        pixels = []
        for folder in ("a", "b"):
            (tmp_path / folder).mkdir()
            pixels.append(random_pixels((40, 30, 3), "uint8", rng))
            write_raster(tmp_path / folder / "img.png", pixels[-1], driver="PNG")
            dset.add_image(file_name=str(tmp_path / folder / "img.png"), width=30, height=40)
        sampler = self.make(dset, tmp_path / "cache")
        for gid, expected in zip((1, 2), pixels):
            im = sampler.load_sample({"gid": gid, "space_slice": (slice(0, 40), slice(0, 30))},
                                     with_annots=False)["im"]
            np.testing.assert_array_equal(im, expected)

    @pytest.mark.timeout(120)
    def test_four_processes_convert_each_image_once(self, small_dset):
        dset, workdir = small_dset
        ctx = multiprocessing.get_context("fork")
        barrier, queue = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_touch_all, args=(dset.fpath, workdir, self.backend,
                                                      self.options, barrier, queue))
                 for _ in range(4)]
        for proc in procs:
            proc.start()
        reports = [queue.get(timeout=100) for _ in procs]
        for proc in procs:
            proc.join(timeout=10)
            assert proc.exitcode == 0
        conversions = {gid: 0 for gid in dset.imgs}
        for report in reports:
            for gid, converted, exact in report:
                conversions[gid] += converted
                assert exact, gid
        assert conversions == {gid: 1 for gid in dset.imgs}

    @pytest.mark.timeout(120)
    def test_conversion_killed_midway_is_never_served(self, small_dset, tmp_path):
        dset, workdir = small_dset
        marker = tmp_path / "stalled"
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=_stall_before_publish,
                           args=(dset.fpath, workdir, self.backend, self.options, str(marker)))
        proc.start()
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        temp = Path(marker.read_text())
        assert temp.exists() and ".tmp-" in temp.name
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a half-made entry is not "corrupt": it never existed
            sampler = self.make(dset, workdir)
            target = {"gid": 1, "space_slice": (slice(-5, 300), slice(0, 260))}
            im = sampler.load_sample(target, with_annots=False)["im"]
        np.testing.assert_array_equal(im, CocoSampler(dset).load_sample(target, with_annots=False)["im"])
        assert sampler.entry(1).meta["converted"]
        assert not list(Path(workdir, "entries").glob("*.tmp-*"))


def _load_im(sampler: CocoSampler, target: dict) -> np.ndarray:
    return sampler.load_sample(target, with_annots=False)["im"]
