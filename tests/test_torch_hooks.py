"""ndpatch.torch hooks: transform, batch_transform, output_dims, contiguous, and the missing-collate_fn error."""
import kwimage
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import ndpatch
from ndpatch.demo import make_dataset
from ndpatch.errors import NdpatchError
from ndpatch.torch import PatchDataset, PatchStream, collate

SPECS = [{"shape": (48, 64, 3), "dtype": "uint8"}, {"shape": (40, 40, 3), "dtype": "uint8"}]


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    return ndpatch.CocoSampler(make_dataset(tmp_path_factory.mktemp("hooks"), SPECS, seed=5), backend="npy",
                               workdir=str(tmp_path_factory.mktemp("cache")))


TARGETS = [{"gid": 1, "space_slice": (slice(-3, 29), slice(5, 45))},
           {"gid": 2, "space_slice": (slice(4, 36), slice(-6, 34))},
           {"gid": 1, "space_slice": (slice(20, 52), slice(30, 70))}]


def hflip(sample: dict) -> dict:
    """Mirror a sample left-right, boxes with it; drop the annotations of odd ids (boxes, labels, aids together)."""
    width = sample["im"].shape[1]
    x0, y0, x1, y1 = np.asarray(sample["boxes"]).reshape(-1, 4).T
    keep = np.asarray(sample["aids"]) % 2 == 0
    boxes = np.stack([width - x1, y0, width - x0, y1], axis=1)[keep]
    return {**sample, "im": sample["im"][:, ::-1], "boxes": boxes, "labels": sample["labels"][keep],
            "aids": sample["aids"][keep]}


def test_transform_is_applied_to_each_sample_with_its_boxes(sampler):
    plain = PatchDataset(sampler, TARGETS, task="detection").__getitems__([0, 1, 2])
    seen = []

    def spy(sample):
        seen.append((sample["gid"], sample["origin"], sample["im"].shape, sample["im"].dtype, sorted(sample)))
        return hflip(sample)
    flipped = PatchDataset(sampler, TARGETS, task="detection", transform=spy).__getitems__([0, 1, 2])
    assert seen == [(1, (5, -3), (32, 40, 3), np.uint8, ["aids", "boxes", "gid", "im", "labels", "origin"]),
                    (2, (-6, 4), (32, 40, 3), np.uint8, ["aids", "boxes", "gid", "im", "labels", "origin"]),
                    (1, (30, 20), (32, 40, 3), np.uint8, ["aids", "boxes", "gid", "im", "labels", "origin"])]
    assert torch.equal(flipped["im"], plain["im"].flip(-1))
    assert any(len(t["aids"]) for t in plain["targets"])
    for before, after in zip(plain["targets"], flipped["targets"]):
        keep = before["aids"] % 2 == 0
        assert after["aids"].tolist() == before["aids"][keep].tolist()
        assert after["labels"].tolist() == before["labels"][keep].tolist()
        x0, y0, x1, y1 = before["boxes"][keep].T
        assert torch.equal(after["boxes"], torch.stack([40 - x1, y0, 40 - x0, y1], dim=1))


def test_transform_runs_before_normalisation_and_bad_results_are_named(sampler):
    def invert(sample):
        return {**sample, "im": 255 - sample["im"]}
    raw = PatchDataset(sampler, TARGETS).__getitems__([0])["im"]
    inverted = PatchDataset(sampler, TARGETS, transform=invert, mean=127.5, std=2.0).__getitems__([0])["im"]
    assert torch.equal(inverted, ((255 - raw).float() - 127.5) / 2.0)
    with pytest.raises(NdpatchError, match="transform must return the sample dict.*target 0"):
        PatchDataset(sampler, TARGETS, transform=lambda s: s["im"]).__getitems__([0])
    with pytest.raises(NdpatchError, match="images of different shapes"):
        PatchDataset(sampler, TARGETS, transform=lambda s: {**s, "im": s["im"][:s["gid"] * 4]}).__getitems__([0, 1])
    with pytest.raises(NdpatchError, match="boxes and labels of different lengths"):
        PatchDataset(sampler, TARGETS, task="detection",
                     transform=lambda s: {**s, "boxes": s["boxes"][:0]}).__getitems__([0, 1, 2])
    with pytest.raises(NdpatchError, match="transform must be a callable"):
        PatchDataset(sampler, TARGETS, transform="flip")


def test_batch_transform_gets_the_finished_batch(sampler):
    def darken(batch):
        batch["im"] = batch["im"] * 0.5
        batch["seen"] = sorted(batch)
        return batch
    plain = PatchDataset(sampler, TARGETS, task="detection", dtype=torch.float32).__getitems__([0, 1])
    dataset = PatchDataset(sampler, TARGETS, task="detection", dtype=torch.float32, batch_transform=darken)
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert torch.equal(batch["im"], plain["im"] * 0.5)
    assert batch["seen"] == ["gid", "im", "index", "origin", "targets"]
    stream = PatchStream(sampler, batch_size=3, window_dims=(16, 16), rng=0, batch_transform=darken)
    assert "seen" in next(iter(stream))


def test_output_dims_resizes_windows_and_scales_their_boxes(sampler):
    targets = [{"gid": 1, "space_slice": (slice(0, 24), slice(0, 32))},   # 24x32 -> 12x16: scale 0.5
               {"gid": 2, "space_slice": (slice(4, 16), slice(8, 16))},   # 12x8 -> 12x16: scale 2 across
               {"gid": 1, "space_slice": (slice(10, 34), slice(20, 52))}]  # the first size again
    dataset = PatchDataset(sampler, targets, task="segmentation", output_dims=(12, 16))
    batch = dataset.__getitems__([0, 1, 2])
    assert batch["im"].shape == (3, 3, 12, 16) and batch["class_map"].shape == (3, 12, 16)
    plain = PatchDataset(sampler, targets, task="segmentation")
    for k, target in enumerate(targets):
        item = plain[k]
        height, width = item["im"].shape[1:]
        expected = kwimage.imresize(item["im"].permute(1, 2, 0).numpy(), dsize=(16, 12), interpolation="linear")
        np.testing.assert_array_equal(batch["im"][k].permute(1, 2, 0).numpy(), expected)
        scale = torch.tensor([16 / width, 12 / height] * 2)
        assert torch.allclose(batch["targets"][k]["boxes"], item["target"]["boxes"] * scale)
        assert batch["targets"][k]["aids"].tolist() == item["target"]["aids"].tolist()
        assert batch["targets"][k]["masks"].shape == (len(item["target"]["aids"]), 12, 16)
        np.testing.assert_array_equal(batch["class_map"][k].numpy(), kwimage.imresize(
            item["class_map"].numpy().astype(np.uint8), dsize=(16, 12), interpolation="nearest"))
    assert batch["gid"].tolist() == [1, 2, 1] and batch["origin"].tolist() == [[0, 0], [8, 4], [20, 10]]
    with pytest.raises(NdpatchError, match="output_dims must be"):
        PatchDataset(sampler, targets, output_dims=(0, 16))


def test_channels_last_by_default_contiguous_on_request(sampler):
    default = PatchDataset(sampler, TARGETS).__getitems__([0, 1])["im"]
    assert not default.is_contiguous() and default.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError):
        default.view(2, -1)
    flat = PatchDataset(sampler, TARGETS, contiguous=True).__getitems__([0, 1])["im"]
    assert flat.is_contiguous() and torch.equal(flat, default)
    assert flat.view(2, -1).shape == (2, 3 * 32 * 40)


def test_default_collate_fn_gets_a_clear_error(sampler):
    loader = DataLoader(PatchDataset(sampler, TARGETS, task="detection"), batch_size=2)
    with pytest.raises(NdpatchError, match=r"collate_fn=ndpatch\.torch\.collate"):
        next(iter(loader))
    with pytest.raises(KeyError, match="nothing"):
        PatchDataset(sampler, TARGETS).__getitems__([0])["nothing"]
