"""CocoSampler.load_batch: one (B, H, W, C) array equal to per-target load_sample, every backend."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import MATRIX_SPECS, edge_windows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndpatch
import ndpatch.batch as batch_module
from ndpatch.annots import WindowAnnots
from ndpatch.demo import make_dataset
from ndpatch.errors import TargetError, UnknownImageError

BACKENDS = [None, "npy", "cog"]

#: Same dtype and bands, different sizes and layouts (strips, tiles, compressed tiles).
RGB_SPECS = [
    {"shape": (70, 90, 3), "dtype": "uint8"},
    {"shape": (64, 40, 3), "dtype": "uint8", "options": ["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16",
                                                          "COMPRESS=DEFLATE"]},
    {"shape": (33, 120, 3), "dtype": "uint8", "options": ["COMPRESS=LZW"]},
]


def make_sampler(dset, backend, workdir):
    return ndpatch.CocoSampler(dset, backend=backend, workdir=str(workdir))


@pytest.fixture(scope="module")
def rgb_dset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("rgb"), RGB_SPECS, seed=3)


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda b: str(b))
def samplers(request, matrix_dset, rgb_dset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"cache-{request.param}")
    return (make_sampler(matrix_dset, request.param, workdir),
            make_sampler(rgb_dset, request.param, workdir))


def assert_annots_equal(got, expected):
    assert sorted(got) == sorted(expected)
    np.testing.assert_array_equal(got["aids"], expected["aids"])
    np.testing.assert_array_equal(got["cids"], expected["cids"])
    np.testing.assert_array_equal(got["rel_frame_index"], expected["rel_frame_index"])
    np.testing.assert_array_equal(got["rel_boxes"].to_xywh().data, expected["rel_boxes"].to_xywh().data)
    for a, b in zip(got["rel_ssegs"].data, expected["rel_ssegs"].data):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.to_multi_polygon().to_geojson() == b.to_multi_polygon().to_geojson()
    for a, b in zip(got["rel_kpts"].data, expected["rel_kpts"].data):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.xy, b.xy)
    assert len(got["frame_dets"][0]) == len(expected["frame_dets"][0])


def assert_batch_matches_samples(sampler, targets, batch):
    assert batch["im"].shape[0] == len(targets)
    for i, target in enumerate(targets):
        sample = sampler.load_sample(target)
        assert batch["im"][i].dtype == sample["im"].dtype
        np.testing.assert_array_equal(batch["im"][i], sample["im"])
        assert_annots_equal(batch["annots"][i], sample["annots"])


@pytest.mark.parametrize("gid", range(1, len(MATRIX_SPECS) + 1))
def test_batch_of_edge_windows_equals_load_sample(samplers, gid):
    sampler = samplers[0]
    height, width = MATRIX_SPECS[gid - 1]["shape"][:2]
    windows = [w for w in edge_windows(height, width) if (w[0].stop - w[0].start) == 17]
    targets = [{"gid": gid, "space_slice": w} for w in windows]
    assert_batch_matches_samples(sampler, targets, sampler.load_batch(targets))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_across_images_equals_load_sample(samplers, threads):
    sampler = samplers[1]
    targets = []
    for gid, spec in enumerate(RGB_SPECS, start=1):
        height, width = spec["shape"][:2]
        targets += [{"gid": gid, "space_slice": w} for w in edge_windows(height, width, size=(20, 24))
                    if (w[0].stop - w[0].start) == 20]
    targets = targets[::-1]  # images interleaved out of order
    targets.insert(3, {"gid": 2, "cx": 20, "cy": 30, "width": 24, "height": 20, "pad": 0})
    assert_batch_matches_samples(sampler, targets, sampler.load_batch(targets, threads=threads))


def test_caller_buffer_is_filled_and_returned(samplers):
    sampler = samplers[1]
    targets = [{"gid": 2, "space_slice": (slice(r, r + 16), slice(-4, 12))} for r in (-8, 0, 40, 60)]
    out = np.full((4, 16, 16, 3), 123, dtype=np.uint8)
    batch = sampler.load_batch(targets, with_annots=False, out=out)
    assert batch["im"] is out and "annots" not in batch
    for i, target in enumerate(targets):
        np.testing.assert_array_equal(out[i], sampler.load_sample(target, with_annots=False)["im"])


def test_channels_dtype_and_parsed_targets(samplers):
    sampler = samplers[1]
    targets = [{"gid": g, "space_slice": (slice(-2, 8), slice(5, 15)), "channels": "b|r", "dtype": "float32"}
               for g in (1, 2, 3)]
    parsed = [sampler.parse(t) for t in targets]
    batch = sampler.load_batch(parsed)
    assert batch["im"].shape == (3, 10, 10, 2) and batch["im"].dtype == np.float32
    assert batch["targets"] == parsed
    assert_batch_matches_samples(sampler, targets, batch)


def test_bad_batches_raise_errors_naming_the_image(samplers):
    sampler = samplers[0]
    with pytest.raises(TargetError, match="needs at least one target"):
        sampler.load_batch([])
    mixed = [{"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))},
             {"gid": 2, "space_slice": (slice(0, 8), slice(0, 8))}]
    with pytest.raises(TargetError, match=r"image 2 \(.*img_001.tif\).*one shape and dtype"):
        sampler.load_batch(mixed)
    sizes = [{"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))},
             {"gid": 1, "space_slice": (slice(0, 9), slice(0, 8))}]
    with pytest.raises(TargetError, match="one shape and dtype"):
        sampler.load_batch(sizes)
    with pytest.raises(TargetError, match=r"image 1 .*out buffer is \(1, 8, 8, 3\) uint16"):
        sampler.load_batch(sizes[:1], out=np.zeros((1, 8, 8, 3), np.uint16))


def test_an_error_names_the_bad_target_and_its_position(samplers):
    sampler = samplers[1]
    good = {"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))}
    with pytest.raises(UnknownImageError, match=r"target 2 of the batch \(\{'gid': 99.*\): .*99"):
        sampler.load_batch([good, good, {"gid": 99, "space_slice": (slice(0, 8), slice(0, 8))}])
    with pytest.raises(TargetError, match=r"target 1 of the batch \(\{'gid': 1, 'cx': 5\}\)"):
        sampler.load_batch([good, {"gid": 1, "cx": 5}])
    table = sampler.window_table([good, {**good, "space_slice": (slice(0, 9), slice(0, 8))}])
    with pytest.raises(TargetError, match=r"target 1 of the batch .*one shape and dtype"):
        sampler.load_batch(table)


@pytest.fixture(scope="module")
def rgb_samplers(rgb_dset, tmp_path_factory):
    """One sampler of the RGB dataset per backend (``'auto'``: the default)."""
    workdir = tmp_path_factory.mktemp("rgb-cache")
    return {backend: make_sampler(rgb_dset, backend, workdir) for backend in [*BACKENDS, "auto"]}


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"], ids=str)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_batch_equals_per_target_reads(rgb_samplers, backend, data):
    """In-bounds, edge and outside windows: the columnar path (dicts, or a window table) equals load_sample."""
    sampler = rgb_samplers[backend]
    height = data.draw(st.integers(1, 40), label="height")
    width = data.draw(st.integers(1, 40), label="width")
    n = data.draw(st.integers(1, 6), label="batch")
    targets = []
    for _ in range(n):
        gid = data.draw(st.integers(1, len(RGB_SPECS)))
        h, w = RGB_SPECS[gid - 1]["shape"][:2]
        r = data.draw(st.integers(-height - 2, h + 2))
        c = data.draw(st.integers(-width - 2, w + 2))
        targets.append({"gid": gid, "space_slice": (slice(r, r + height), slice(c, c + width))})
    with pytest.MonkeyPatch.context() as patch:   # small batches take the threaded copy and per-image test too
        if data.draw(st.booleans(), label="threaded copy"):
            patch.setattr(batch_module, "THREADED_COPY_BYTES", 0)
        if data.draw(st.booleans(), label="annotations tested per image"):
            patch.setattr(batch_module, "JOINT_TEST_CELLS", 0)
        assert_batch_matches_samples(sampler, targets, sampler.load_batch(targets, threads=2))
        table = sampler.window_table(targets)
        order = data.draw(st.permutations(range(n)), label="order")
        from_table = sampler.load_batch(table.take(order), threads=1)
        assert_batch_matches_samples(sampler, [targets[i] for i in order], from_table)


def test_window_annots_are_lazy_and_pickle_as_dicts(rgb_dset):
    sampler = ndpatch.CocoSampler(rgb_dset)
    annots = sampler.load_batch([{"gid": 1, "space_slice": (slice(0, 70), slice(0, 90))}])["annots"][0]
    assert isinstance(annots, WindowAnnots) and annots._values == {}
    x, y, w, h = rgb_dset.anns[1]["bbox"]
    assert annots.xyxy[0].tolist() == [x, y, x + w, y + h]
    assert annots._values == {}
    restored = pickle.loads(pickle.dumps(annots))
    assert type(restored) is dict and sorted(restored) == sorted(annots)
    assert_annots_equal(restored, annots)


@pytest.mark.parametrize("joint_test_cells", [batch_module.JOINT_TEST_CELLS, 0], ids=["joint", "per-image"])
def test_scaled_windows_are_resampled_as_in_load_sample(samplers, joint_test_cells, monkeypatch):
    monkeypatch.setattr(batch_module, "JOINT_TEST_CELLS", joint_test_cells)
    sampler = samplers[1]
    targets = [{"gid": g, "space_slice": (slice(-4, 28), slice(6, 38)), "scale": 0.5} for g in (1, 2, 3)]
    targets.append({"gid": 2, "space_slice": (slice(10, 26), slice(0, 16))})  # unscaled, same output size
    batch = sampler.load_batch(targets, threads=2)
    assert batch["im"].shape == (4, 16, 16, 3)
    assert_batch_matches_samples(sampler, targets, batch)


def test_one_reader_pool_whatever_the_thread_counts(rgb_dset, tmp_path):
    import threading

    from ndpatch.readers import READERS
    sampler = make_sampler(rgb_dset, None, tmp_path)   # direct: every window is GDAL-decoded
    targets = [{"gid": 1 + k % 3, "cx": 20 + k, "cy": 16, "width": 16, "height": 12} for k in range(24)]
    expected = sampler.load_batch(targets, threads=1)["im"]
    before = threading.active_count() - len(READERS)
    for k in range(2, 21):
        np.testing.assert_array_equal(sampler.load_batch(targets, threads=k)["im"], expected)
    assert len(READERS) <= 20                                  # never more than the largest batch asked for
    assert threading.active_count() - before <= len(READERS)   # no other pool was started


PARALLEL_COPY_SCRIPT = '''
import sys
import numpy as np
import ndpatch
from ndpatch.demo import make_dataset

dset = make_dataset(sys.argv[1], [{"shape": (600, 600, 3), "dtype": "uint8"}])
sampler = ndpatch.CocoSampler(dset, backend="npy", workdir=sys.argv[1] + "/cache")
targets = [{"gid": 1, "space_slice": (slice(r, r + 256), slice(0, 256))} for r in range(0, 320, 40)]
batch = sampler.load_batch(targets, threads=2, with_annots=False)["im"]
assert batch.nbytes >= ndpatch.batch.THREADED_COPY_BYTES
pixels = np.load(sampler.entry(1).path)
assert all(np.array_equal(batch[k], pixels[r:r + 256, :256]) for k, r in enumerate(range(0, 320, 40)))
'''


def test_a_parallel_copy_of_read_only_memmaps_shows_no_warning(tmp_path):
    """torch's copies warn, once per process, that the read-only memmaps are not writable: a fresh
    process with every warning an error reads a parallel-copied batch bit-exact."""
    script = tmp_path / "parallel_copy.py"
    script.write_text(PARALLEL_COPY_SCRIPT)
    done = subprocess.run([sys.executable, "-W", "error", str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
