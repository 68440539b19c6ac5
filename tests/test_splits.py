"""Splits: disjoint and complete; block splits never let a window of one split touch another's block."""
import csv
import json
import os

import kwcoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndpatch.cli import main
from ndpatch.demo import make_dataset
from ndpatch.errors import ExportError, OutputExistsError
from ndpatch.export import export
from ndpatch.splits import split_dataset, window_in_region

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def dset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("split_src"),
                        [{"shape": (40 + 3 * i, 50, 3), "dtype": "uint8"} for i in range(10)])


def load(out):
    return {name: kwcoco.CocoDataset(str(out / f"{name}.kwcoco.json")) for name in SPLITS}


def test_by_image_disjoint_complete_and_readable(dset, tmp_path):
    report = split_dataset(dset, tmp_path, {"train": 0.6, "val": 0.2, "test": 0.2}, by="image", seed=1)
    parts = load(tmp_path)
    names = [{img["file_name"] for img in parts[s].imgs.values()} for s in SPLITS]
    assert [len(n) for n in names] == [6, 2, 2]
    assert sum(len(n) for n in names) == dset.n_images and len(set.union(*names)) == dset.n_images
    assert report["train"]["classes"] == {"box": 6, "triangle": 6, "point": 6}
    for name, part in parts.items():
        assert all(img["split"] == name for img in part.imgs.values())
        assert all(os.path.exists(part.get_image_fpath(gid)) for gid in part.imgs)


def test_by_video_keeps_videos_whole(tmp_path):
    dset = kwcoco.CocoDataset.demo("vidshapes5", num_frames=3, verbose=0)
    split_dataset(dset, tmp_path, {"train": 0.6, "val": 0.2, "test": 0.2}, by="video", seed=0)
    owners = {}
    for name, part in load(tmp_path).items():
        for img in part.imgs.values():
            assert owners.setdefault(img["video_id"], name) == name
    assert len(owners) == dset.n_videos
    assert sum(p.n_images for p in load(tmp_path).values()) == dset.n_images


def test_block_split_owns_each_block_once_and_export_stays_inside(dset, tmp_path):
    split_dataset(dset, tmp_path, by="block", block_size=16, seed=2)
    owner = {}
    for name, part in load(tmp_path).items():
        for img in part.imgs.values():
            region = img["split_region"]
            assert region["split"] == name
            for block in region["blocks"]:
                key = (img["file_name"], *block)
                assert key not in owner
                owner[key] = name
    n_blocks = sum(-(-img["height"] // 16) * -(-img["width"] // 16) for img in dset.imgs.values())
    assert len(owner) == n_blocks
    export(tmp_path / "train.kwcoco.json", tmp_path / "chips", window=16, progress=False)
    train = load(tmp_path)["train"]
    rows = list(csv.DictReader(open(tmp_path / "chips" / "chips.csv")))
    assert rows and all(r["split"] == "train" for r in rows)
    for r in rows:
        region = train.imgs[int(r["image_id"])]["split_region"]
        assert window_in_region(region, slice(int(r["row_start"]), int(r["row_stop"])),
                                slice(int(r["col_start"]), int(r["col_stop"])))


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 12), shape=st.tuples(st.integers(1, 60), st.integers(1, 60)),
       window=st.tuples(st.integers(-20, 70), st.integers(-20, 70), st.integers(1, 30), st.integers(1, 30)),
       seed=st.integers(0, 1000))
def test_windows_of_a_split_never_touch_another_splits_block(size, shape, window, seed):
    from ndpatch.splits import _blocks, assign
    blocks = _blocks(*shape, size)
    parts = assign(len(blocks), {"train": 0.5, "val": 0.25, "test": 0.25}, np.random.default_rng(seed))
    owner = np.full((-(-shape[0] // size), -(-shape[1] // size)), "", dtype=object)
    for name, idxs in parts.items():
        for i in idxs:
            owner[blocks[i]] = name
    r0, c0, h, w = window
    rows, cols = slice(r0, r0 + h), slice(c0, c0 + w)
    for name, idxs in parts.items():
        region = {"split": name, "block_size": size, "image_shape": list(shape),
                  "blocks": [list(blocks[i]) for i in idxs]}
        if window_in_region(region, rows, cols):
            pixels = np.zeros(shape, bool)
            pixels[max(r0, 0):max(r0 + h, 0), max(c0, 0):max(c0 + w, 0)] = True
            touched = {owner[r // size, c // size] for r, c in zip(*np.nonzero(pixels))}
            assert touched == {name}


def test_bad_fractions_and_existing_output(dset, tmp_path):
    with pytest.raises(ExportError, match="sum to 1"):
        split_dataset(dset, tmp_path, {"train": 0.8, "val": 0.1, "test": 0.2})
    with pytest.raises(ExportError, match="unknown split mode"):
        split_dataset(dset, tmp_path, by="pixel")
    split_dataset(dset, tmp_path)
    with pytest.raises(OutputExistsError, match="split files exist"):
        split_dataset(dset, tmp_path)
    assert main(["split", dset.fpath, str(tmp_path), "--train", "0.5"]) == 1


def test_cli_split_reports_class_counts(dset, tmp_path, capsys):
    assert main(["split", dset.fpath, str(tmp_path), "--by", "block", "--block-size", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("train:") and "box=" in out
    assert json.loads((tmp_path / "val.kwcoco.json").read_text())["images"]


def test_positive_export_of_a_block_split_is_one_chip_per_placeable_annotation(dset, tmp_path):
    import ndpatch
    split_dataset(dset, tmp_path, by="block", block_size=16, seed=2)
    train = ndpatch.CocoSampler(str(tmp_path / "train.kwcoco.json"))
    train.regions.configure(window_dims=(16, 16))
    expected = train.regions.epoch_size
    assert 0 < expected <= len(train.regions.targets["aid"])
    export(str(tmp_path / "train.kwcoco.json"), tmp_path / "pos", window=16, targets="positives",
           progress=False)
    rows = list(csv.DictReader(open(tmp_path / "pos" / "chips.csv")))
    windows = {(r["image_id"], r["row_start"], r["col_start"]) for r in rows}
    assert len(rows) == expected and len(windows) == expected
