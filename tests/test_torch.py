"""ndpatch.torch: PatchDataset through DataLoader (workers, fork/spawn), tasks, streams, samplers."""
import functools
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from osgeo import gdal
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import ndpatch
from ndpatch import masks
from ndpatch.demo import make_dataset
from ndpatch.errors import NdpatchError
from ndpatch.torch import (BalancedSampler, PatchDataset, PatchStream, ShardedSampler, collate,
                           main_class, worker_init)

ROOT = Path(__file__).resolve().parents[1]
SPECS = [{"shape": (48, 64, 3), "dtype": "uint8"},
         {"shape": (40, 40, 3), "dtype": "uint8", "options": ["TILED=YES", "BLOCKXSIZE=16",
                                                               "BLOCKYSIZE=16", "COMPRESS=DEFLATE"]},
         {"shape": (30, 70, 3), "dtype": "uint8"}]


@pytest.fixture(scope="module")
def dset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("torch"), SPECS, seed=5)


@pytest.fixture(scope="module")
def targets(dset):
    """16x20 windows over each image, some past its edges, plus one around an annotation."""
    out = []
    for gid, spec in enumerate(SPECS, start=1):
        height, width = spec["shape"][:2]
        out += [{"gid": gid, "space_slice": (slice(r, r + 16), slice(c, c + 20))}
                for r in (-6, height // 2, height - 10) for c in (-8, width - 12)]
    x, y, w, h = dset.anns[2]["bbox"]
    out.append({"aid": 2, "cx": x + w / 2, "cy": y + h / 2, "width": 20, "height": 16})
    return out


def expected_item(sampler, target):
    sample = sampler.load_sample(target)
    return torch.from_numpy(sample["im"]).permute(2, 0, 1), sample["annots"]


LOADERS = [pytest.param(None, 0, None, id="direct-w0"),
           pytest.param(None, 2, "fork", id="direct-w2-fork"),
           pytest.param(None, 2, "spawn", id="direct-w2-spawn"),
           pytest.param("npy", 0, None, id="npy-w0"),
           pytest.param("npy", 2, "fork", id="npy-w2-fork")]


@pytest.mark.parametrize("backend,num_workers,context", LOADERS)
def test_loader_delivers_every_target_once_with_exact_pixels(dset, targets, tmp_path, backend,
                                                              num_workers, context):
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path))
    dataset = PatchDataset(sampler, targets, task="detection")
    loader = DataLoader(dataset, batch_size=4, sampler=ShardedSampler(dataset, seed=3), collate_fn=collate,
                        num_workers=num_workers, multiprocessing_context=context,
                        worker_init_fn=worker_init, timeout=60 if num_workers else 0)
    seen = []
    for batch in loader:
        assert batch["im"].shape[1:] == (3, 16, 20) and batch["im"].dtype == torch.uint8
        for k, index in enumerate(batch["index"].tolist()):
            im, annots = expected_item(sampler, targets[index])
            assert torch.equal(batch["im"][k], im)
            target = batch["targets"][k]
            assert target["image_id"] == batch["gid"][k] == sampler.parse(targets[index]).gid
            np.testing.assert_array_equal(target["aids"].numpy(), annots["aids"])
            np.testing.assert_array_equal(target["labels"].numpy(), annots["cids"])
            np.testing.assert_array_equal(target["boxes"].numpy(),
                                          annots["rel_boxes"].to_ltrb().data.astype(np.float32))
            seen.append(index)
    assert sorted(seen) == list(range(len(targets)))


def test_detection_boxes_are_exact_window_coordinates(dset):
    sampler = ndpatch.CocoSampler(dset)
    batch = PatchDataset(sampler, [{"gid": 1, "space_slice": (slice(-3, 45), slice(5, 69))}],
                         task="detection").__getitems__([0])
    assert batch["origin"].tolist() == [[5, -3]]
    for k, aid in enumerate(batch["targets"][0]["aids"].tolist()):
        x, y, w, h = dset.anns[aid]["bbox"]
        assert batch["targets"][0]["boxes"][k].tolist() == pytest.approx([x - 5, y + 3, x + w - 5, y + h + 3])


def test_segmentation_and_classification_labels(dset, targets):
    sampler = ndpatch.CocoSampler(dset)
    seg = PatchDataset(sampler, targets, task="segmentation").__getitems__(range(len(targets)))
    cls = PatchDataset(sampler, targets, task="classification").__getitems__(range(len(targets)))
    assert seg["class_map"].shape == (len(targets), 16, 20) and seg["class_map"].dtype == torch.int64
    assert cls["multi_hot"].shape == (len(targets), 4)
    for i, target in enumerate(targets):
        annots = sampler.load_sample(target)["annots"]
        np.testing.assert_array_equal(seg["class_map"][i].numpy(), masks.class_map(annots, (16, 20)))
        np.testing.assert_array_equal(seg["targets"][i]["masks"].numpy(),
                                      masks.instance_masks(annots, (16, 20)).astype(np.uint8))
        present = sorted(set(annots["cids"].tolist()))
        assert torch.nonzero(cls["multi_hot"][i]).flatten().tolist() == present
        tr = sampler.parse(target)
        assert cls["label"][i] == main_class(tr.aid, annots["aids"], annots["cids"],
                                             annots["rel_boxes"].to_ltrb().data, (16, 20))
    assert cls["label"][-1] == dset.anns[2]["category_id"]  # the aid target's own class
    assert 0 in cls["label"].tolist()  # some windows hold no annotation: background


def test_main_class_is_the_annotation_covering_most_of_the_window(dset):
    sampler = ndpatch.CocoSampler(dset)
    # image 1 (48x64): a box at the top-left corner (aid 1), a triangle in the middle (aid 2)
    for window, winner in [((slice(0, 20), slice(0, 24)), 1), ((slice(8, 40), slice(10, 50)), 2)]:
        annots = sampler.load_sample({"gid": 1, "space_slice": window})["annots"]
        assert sorted(annots["aids"].tolist()) == [1, 2]
        shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
        assert main_class(None, annots["aids"], annots["cids"], annots["rel_boxes"].to_ltrb().data,
                          shape) == dset.anns[winner]["category_id"]


def test_getitem_and_collate_equal_the_batched_path(dset, targets):
    dataset = PatchDataset(ndpatch.CocoSampler(dset), targets, task="segmentation")
    indices = [3, 0, 12, 7]
    batched = dataset.__getitems__(indices)
    collated = collate([dataset[i] for i in indices])
    assert collate(batched) is batched
    assert sorted(collated) == sorted(batched)
    for key in ("im", "index", "gid", "origin", "class_map"):
        assert torch.equal(collated[key], batched[key]), key
    for a, b in zip(collated["targets"], batched["targets"]):
        assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)


def test_float_dtype_and_normalisation(dset, targets):
    sampler = ndpatch.CocoSampler(dset)
    raw = PatchDataset(sampler, targets).__getitems__([0, 1])["im"]
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    norm = PatchDataset(sampler, targets, mean=mean, std=std).__getitems__([0, 1])["im"]
    assert norm.dtype == torch.float32
    expected = (raw.float() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(norm, expected)
    as_f64 = PatchDataset(sampler, targets, dtype=torch.float64).__getitems__([0])["im"]
    assert torch.equal(as_f64, raw[:1].double())
    with pytest.raises(NdpatchError, match="unknown task"):
        PatchDataset(sampler, targets, task="keypoints")
    with pytest.raises(NdpatchError, match="both mean and std"):
        PatchDataset(sampler, targets, mean=mean)


def test_dataset_pickles_without_handles_after_reading(dset, targets):
    dataset = PatchDataset(ndpatch.CocoSampler(dset), targets, task="detection")
    before = dataset.__getitems__([0, 5])
    restored = pickle.loads(pickle.dumps(dataset))  # an open GDAL handle would not pickle
    after = restored.__getitems__([0, 5])
    assert torch.equal(before["im"], after["im"])


def stream_windows(stream, seed, num_workers, n_batches=4):
    loader = DataLoader(stream, batch_size=None, collate_fn=collate, num_workers=num_workers,
                        multiprocessing_context="fork" if num_workers else None,
                        generator=torch.Generator().manual_seed(seed), timeout=60 if num_workers else 0)
    windows = []
    for batch, _ in zip(loader, range(n_batches)):
        assert batch["im"].shape == (3, 3, 12, 12)
        windows.append(torch.cat([batch["gid"][:, None], batch["origin"]], 1).tolist())
    return windows


@pytest.mark.parametrize("rng", [None, 11])
def test_streams_differ_per_worker_and_repeat_per_seed(dset, rng):
    stream = PatchStream(ndpatch.CocoSampler(dset), batch_size=3, window_dims=(12, 12), task="detection",
                         rng=rng, neg_to_pos_ratio=1.0)
    first = stream_windows(stream, seed=1, num_workers=2)
    assert first[0] != first[1] and first[2] != first[3]  # batches alternate between the two workers
    assert stream_windows(stream, seed=1, num_workers=2) == first
    if rng is None:
        assert stream_windows(stream, seed=2, num_workers=2) != first
    else:
        assert stream_windows(stream, seed=2, num_workers=2) == first


class _WorkerProbe(Dataset):
    """Reports what each worker's init left behind: a legacy numpy draw and a GDAL setting."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return int(np.random.randint(2**30)), gdal.GetConfigOption("GDAL_CACHEMAX")


def test_worker_init_configures_gdal_and_seeds_workers():
    loader = DataLoader(_WorkerProbe(), batch_size=2, num_workers=2, multiprocessing_context="fork",
                        worker_init_fn=functools.partial(worker_init, gdal_cachemax_mb=17),
                        generator=torch.Generator().manual_seed(0), timeout=60)
    (draws_a, caches_a), (draws_b, caches_b) = list(loader)
    assert list(caches_a) + list(caches_b) == ["17"] * 4
    assert draws_a[0] != draws_b[0]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), replicas=st.integers(1, 5), seed=st.integers(0, 99), epoch=st.integers(0, 3),
       shuffle=st.booleans(), drop_last=st.booleans())
def test_sharded_sampler_matches_distributed_sampler(n, replicas, seed, epoch, shuffle, drop_last):
    if drop_last and n < replicas:
        return
    for rank in range(replicas):
        ours = ShardedSampler(n, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed,
                              drop_last=drop_last)
        theirs = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=shuffle,
                                    seed=seed, drop_last=drop_last)
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), cut=st.integers(0, 30), epoch=st.integers(0, 2), balanced=st.booleans())
def test_resume_yields_exactly_the_remaining_samples(n, cut, epoch, balanced):
    def make():
        if balanced:
            return BalancedSampler([i % 3 for i in range(n)], num_samples=n + 5, num_replicas=2, rank=1, seed=4)
        return ShardedSampler(n, num_replicas=2, rank=1, seed=4)
    sampler = make()
    sampler.set_epoch(epoch)
    full = list(sampler)
    sampler.set_epoch(epoch)
    cut = min(cut, len(full))
    it = iter(sampler)
    head = [next(it) for _ in range(cut)]
    state = sampler.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    resumed.set_epoch(epoch)  # a training loop calls it again for the resumed epoch
    assert head + list(resumed) == full
    resumed.set_epoch(epoch + 1)
    assert len(list(resumed)) == len(full)


def test_state_dict_with_consumed_count_and_mismatches():
    sampler = ShardedSampler(10, num_replicas=1, rank=0, seed=1)
    order = list(sampler)
    resumed = ShardedSampler(10, num_replicas=1, rank=0, seed=1)
    resumed.load_state_dict(sampler.state_dict(consumed=4))
    assert list(resumed) == order[4:]
    with pytest.raises(NdpatchError, match="seed=1, this one 2"):
        ShardedSampler(10, seed=2).load_state_dict(sampler.state_dict())
    with pytest.raises(NdpatchError, match="rank 2 is not in"):
        ShardedSampler(10, num_replicas=2, rank=2)


def test_balanced_sampler_balances_and_shards_one_sequence():
    classes = [0] * 90 + [1] * 9 + [2] * 1
    whole = list(BalancedSampler(classes, num_samples=3000, num_replicas=1, rank=0, seed=5))
    ranks = [list(BalancedSampler(classes, num_samples=3000, num_replicas=3, rank=r, seed=5)) for r in range(3)]
    assert [i for triple in zip(*ranks) for i in triple] == whole
    counts = np.bincount(np.asarray(classes)[whole], minlength=3)
    assert all(900 < c < 1100 for c in counts)


def test_target_classes_feed_the_balanced_sampler(dset, targets):
    dataset = PatchDataset(ndpatch.CocoSampler(dset), targets, task="classification")
    classes = dataset.target_classes()
    labels = dataset.__getitems__(range(len(targets)))["label"].numpy()
    np.testing.assert_array_equal(classes, labels)


def test_example_training_loop_runs_and_its_loss_decreases(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "train_detector.py"),
                             "--workdir", str(tmp_path), "--iterations", "30"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", result.stdout)]
    assert len(losses) >= 2 and losses[-1] < losses[0], result.stdout


def test_video_targets_are_refused_with_a_clear_error():
    sampler = ndpatch.CocoSampler.demo("vidshapes2")
    gids = sampler.dset.index.vidid_to_gids[1][:2]
    dataset = PatchDataset(sampler, [{"gids": list(gids), "space_slice": (slice(0, 8), slice(0, 8))}])
    with pytest.raises(NdpatchError, match="serves image windows"):
        dataset.__getitems__([0])
