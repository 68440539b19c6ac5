"""Resumes are exact: an interrupted (or finished) export resumed after its chips, sources or annotations
changed equals an uninterrupted export of the current inputs, file for file."""
import csv
import os
import signal

import kwcoco
import numpy as np
import pytest

from export_compare import assert_same_export, parts, start_cli_export, wait_for
from ndpatch.cli import main
from ndpatch.demo import make_dataset, random_pixels, write_raster
from ndpatch.export import export
from ndpatch.export.job import Job


@pytest.fixture
def source(tmp_path):
    """Two images (RGB uint8 and one-band uint16) with boxes, polygons and keypoints."""
    return make_dataset(tmp_path / "src", [{"shape": (40, 44, 3), "dtype": "uint8"},
                                           {"shape": (32, 36), "dtype": "uint16"}])


def read_rows(out):
    with open(out / "chips.csv") as file:
        return list(csv.DictReader(file))


def interrupted(dataset, out, stop_after: int, **kwargs) -> None:
    """An export stopped by Ctrl-C (KeyboardInterrupt) after ``stop_after`` blocks."""
    real, written = Job.write_block, []

    def write_block(self, block):
        if len(written) == stop_after:
            raise KeyboardInterrupt
        written.append(block)
        return real(self, block)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Job, "write_block", write_block)
        with pytest.raises(KeyboardInterrupt):
            export(dataset, out, progress=False, **kwargs)
    assert parts(out) == stop_after and not (out / "summary.json").exists()


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    dset = make_dataset(tmp_path / "src", [{"shape": (72, 78, 3), "dtype": "uint8"},
                                           {"shape": (48, 54), "dtype": "uint16"}])
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = start_cli_export(dset.fpath, str(killed), "--window", "6", "--workers", "1")
    wait_for(lambda: parts(killed) >= 3, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists(), "the export finished before it could be killed"
    assert main(["export", dset.fpath, str(killed), "--window", "6", "--resume"]) == 0
    assert main(["export", dset.fpath, str(whole), "--window", "6"]) == 0
    assert_same_export(killed, whole)
    assert not [p for p in killed.rglob("*.tmp-*")], "temp files of the killed run are removed on resume"


def test_resume_redoes_blocks_whose_chips_were_deleted_or_changed(source, tmp_path):
    out, whole = tmp_path / "out", tmp_path / "whole"
    export(source.fpath, out, window=8, progress=False)
    (out / "images" / "chip_000005.tif").unlink()
    changed = out / "labels" / "chip_000040.tif"
    changed.write_bytes(bytes(len(changed.read_bytes())))  # same size, other bytes
    summary = export(source.fpath, out, window=8, resume=True, progress=False)
    assert summary["redone_blocks"] == [
        {"block": 0, "reason": "images/chip_000005.tif is missing"},
        {"block": 2, "reason": "labels/chip_000040.tif was changed after the block wrote it"}]
    assert summary["resumed_blocks"] == summary["blocks"] - 2
    export(source.fpath, whole, window=8, progress=False)
    assert_same_export(out, whole)


@pytest.mark.parametrize("format", ["chips", "webdataset"])
def test_resume_after_a_source_was_replaced_keeping_size_and_mtime(source, tmp_path, format):
    out, whole = tmp_path / "out", tmp_path / "whole"
    options = {"format": format, "window": 8, "shard_size": 8}
    interrupted(source.fpath, out, stop_after=3, **options)  # blocks 0-2: image 1
    path = source.get_image_fpath(1)
    before = os.stat(path)
    write_raster(path, random_pixels((40, 44, 3), "uint8", np.random.default_rng(99)))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p / rsync -t leave it
    assert os.stat(path).st_size == before.st_size
    summary = export(source.fpath, out, resume=True, progress=False, **options)
    export(source.fpath, whole, progress=False, **options)
    assert_same_export(out, whole)
    block_size = 8 if format == "webdataset" else 16
    image1_blocks = sorted({i // block_size for i, row in enumerate(read_rows(whole)) if row["image_id"] == "1"})
    assert [b["block"] for b in summary["redone_blocks"]] == [b for b in image1_blocks if b < 3]
    assert all(b["reason"].startswith("image 1: ") for b in summary["redone_blocks"])


def edit_annotations(dset_path: str) -> None:
    dset = kwcoco.CocoDataset(dset_path)
    first, second = sorted(dset.anns)[:2]
    ann = dset.anns[first]
    x, y, w, h = ann["bbox"]
    ann["bbox"] = [x + 3, y + 2, w, h]
    ann.pop("segmentation", None)
    dset.anns[second]["category_id"] = max(dset.cats)
    dset.add_annotation(image_id=1, category_id=1, bbox=[1, 30, 6, 5])
    dset.dump(dset_path)


@pytest.mark.parametrize("targets", ["grid", "positives"])
def test_resume_after_annotations_were_edited(source, tmp_path, targets):
    out, whole = tmp_path / "out", tmp_path / "whole"
    options = {"window": 8, "targets": targets, "count": 40 if targets == "positives" else None}
    interrupted(source.fpath, out, stop_after=2, **options)
    edit_annotations(source.fpath)
    summary = export(source.fpath, out, resume=True, progress=False, **options)
    assert summary["redone_blocks"], "finished blocks made from the old annotations are redone"
    export(source.fpath, whole, progress=False, **options)
    assert_same_export(out, whole)


def test_resume_after_an_image_shrank_removes_the_chips_beyond_the_plan(source, tmp_path):
    out, whole = tmp_path / "out", tmp_path / "whole"
    before = export(source.fpath, out, window=8, format="kwcoco", progress=False)["chips"]
    dset = kwcoco.CocoDataset(source.fpath)
    write_raster(dset.get_image_fpath(2), random_pixels((16, 12), "uint16", np.random.default_rng(1)))
    dset.imgs[2].update(height=16, width=12)
    dset.dump(source.fpath)
    summary = export(source.fpath, out, window=8, format="kwcoco", resume=True, progress=False)
    assert summary["chips"] == before - 20 + 4  # image 2: 4x5 windows of 8 -> 2x2
    export(source.fpath, whole, window=8, format="kwcoco", progress=False)
    assert_same_export(out, whole)
