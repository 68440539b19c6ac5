"""What an export may and may not do to files: a running export is never disturbed by a second one, deletes
stay inside the export folder, bad annotations are skipped or refused, a full disk is a clear error that
--resume recovers from, and its workers never outlive the leader."""
import errno
import json
import os
import re
import signal
import subprocess
import time

import kwcoco
import psutil
import pytest

from export_compare import assert_same_export, parts, snapshot, start_cli_export, wait_for
from ndpatch.demo import make_dataset
from ndpatch.errors import DatasetError, DiskFullError, ExportError, ExportInProgressError
from ndpatch.export import export


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("safety_src"), [{"shape": (60, 66, 3), "dtype": "uint8"},
                                                               {"shape": (36, 42), "dtype": "uint16"}])


# -- a running export --------------------------------------------------------------------
def test_a_running_export_is_never_disturbed(source, tmp_path):
    running, whole = tmp_path / "running", tmp_path / "whole"
    proc = start_cli_export(source.fpath, str(running), "--window", "6", "--workers", "1")
    try:
        wait_for(lambda: parts(running) >= 1, proc)
        os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-run, holding its lock: the folder cannot move
        before = snapshot(running)
        for flags in ({"overwrite": True}, {"resume": True}, {}):
            with pytest.raises(ExportInProgressError, match=rf"another export is writing into .*running "
                                                            rf"\(pid {proc.pid} on .*, started 20"):
                export(source.fpath, running, window=6, progress=False, **flags)
        assert snapshot(running) == before, "a refused export changed nothing, the lock file included"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(120) == 0, proc.stderr.read().decode()
    export(source.fpath, whole, window=6, progress=False)
    assert_same_export(running, whole)


# -- deletes stay inside the export folder and its naming rule ----------------------------
def test_overwrite_and_resume_delete_nothing_outside_the_export(source, tmp_path):
    out, whole, outside = tmp_path / "out", tmp_path / "whole", tmp_path / "outside"
    outside.mkdir()
    victims = [outside / "x.txt", outside / "chip_000000.tif", tmp_path / "y.txt"]
    for victim in victims:
        victim.write_text("keep me")
    export(source.fpath, out, window=16, progress=False)
    crafted = json.dumps([{"chip": "chip_000000", "files": [
        "../outside/x.txt", str(victims[1]), "images/../../y.txt", "/etc/hostname", "images/notes.txt"]}])
    for part in sorted((out / ".ndpatch-export" / "parts").glob("*.json"))[:2]:
        part.write_text(crafted)
    (out / "images" / "notes.txt").write_text("mine")
    (out / "notes.tmp-1.txt").write_text("mine too")  # a temp-like name the export's rules do not make
    summary = export(source.fpath, out, window=16, resume=True, progress=False)
    assert [b["block"] for b in summary["redone_blocks"]] == [0, 1]
    assert all(v.read_text() == "keep me" for v in victims)
    (out / ".ndpatch-export" / "parts" / "000000.json").write_text(crafted)
    export(source.fpath, out, window=16, overwrite=True, progress=False)
    assert all(v.read_text() == "keep me" for v in victims)
    assert (out / "images" / "notes.txt").read_text() == "mine" and (out / "notes.tmp-1.txt").exists()
    export(source.fpath, whole, window=16, progress=False)
    for name in ("images/notes.txt", "notes.tmp-1.txt"):
        (out / name).unlink()
    assert_same_export(out, whole)


def test_no_export_writes_or_deletes_through_a_link_out_of_its_folder(source, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    export(source.fpath, out, window=16, progress=False)
    for chip in (out / "labels").iterdir():
        (outside / chip.name).write_text("keep me")
        chip.unlink()
    (out / "labels").rmdir()
    (out / "labels").symlink_to(outside)
    before = snapshot(outside)
    for flags in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(ExportError, match=r"out/labels is not a folder inside .*out \(a link out of it\?\)"):
            export(source.fpath, out, window=16, progress=False, **flags)
        assert snapshot(outside) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / ".ndpatch-export").symlink_to(outside)
    with pytest.raises(ExportError, match=r"other/.ndpatch-export is not a folder inside"):
        export(source.fpath, other, window=16, progress=False)
    assert snapshot(outside) == before


# -- bad annotations ---------------------------------------------------------------------
def bad_annotations_dataset(tmp_path):
    """A dataset whose annotations 101-104 cannot be exported and 105 has a polygon but no box."""
    dset = kwcoco.CocoDataset(make_dataset(tmp_path / "bad", [{"shape": (40, 48, 3), "dtype": "uint8"}]).fpath)
    good = dset.copy()
    dset.add_annotation(image_id=1, category_id=1, bbox=[4, 4, 8, 8], id=100)
    good.add_annotation(image_id=1, category_id=1, bbox=[4, 4, 8, 8], id=100)
    records = [{"id": 101, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
               {"id": 102, "image_id": 1, "category_id": 1},
               {"id": 103, "image_id": 1, "category_id": 2, "bbox": [1, 2, 3]},
               {"id": 104, "image_id": 1, "category_id": 2, "segmentation": [[1, 2, 10, 2, 10, 9, 4]]}]
    polygon = {"id": 105, "image_id": 1, "category_id": 2, "segmentation": [[20, 20, 30, 20, 30, 28, 20, 28]]}
    dset.dataset["annotations"] += [*records, polygon]
    good.dataset["annotations"].append({**polygon, "bbox": [20.0, 20.0, 10.0, 8.0]})
    for data, name in ((dset, "bad.kwcoco.json"), (good, "good.kwcoco.json")):
        data.fpath = str(tmp_path / "bad" / name)
        data.dump(data.fpath)
    return dset.fpath, good.fpath


def test_bad_annotations_are_skipped_with_a_counted_warning(tmp_path):
    bad, good = bad_annotations_dataset(tmp_path)
    with pytest.warns(UserWarning, match=r"export skips 4 annotations it cannot use: annotation 101 \(image 1\): "
                                         r"unknown category_id 99; annotation 102"):
        summary = export(bad, tmp_path / "out", window=16, format="kwcoco", progress=False)
    assert summary["skipped_annotations"] == [
        {"aid": 101, "image_id": 1, "reason": "unknown category_id 99"},
        {"aid": 102, "image_id": 1, "reason": "neither bbox nor segmentation"},
        {"aid": 103, "image_id": 1, "reason": "bbox [1, 2, 3] is not [x, y, w, h] of finite numbers with w, h >= 0"},
        {"aid": 104, "image_id": 1, "reason": "segmentation is not a polygon list, a polygon or an RLE mask "
                                                     "(a polygon of 7 numbers: x, y pairs need an even count)"}]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["skipped_annotations"] == \
        summary["skipped_annotations"]
    export(good, tmp_path / "good", window=16, format="kwcoco", progress=False)
    for name in ("data.kwcoco.json", "chips.csv"):
        assert (tmp_path / "out" / name).read_text() == (tmp_path / "good" / name).read_text()
    assert kwcoco.CocoDataset(bad).anns[105].get("bbox") is None, "the user's dataset is not changed"


def test_strict_refuses_bad_annotations_before_writing(tmp_path):
    bad, _ = bad_annotations_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"4 annotations cannot be exported: annotation 101 \(image 1\): "
                                           r"unknown category_id 99; annotation 102 .*neither bbox"):
        export(bad, tmp_path / "out", strict=True, progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_strict_exits_1_naming_the_annotations(tmp_path, capsys):
    from ndpatch.cli import main
    bad, _ = bad_annotations_dataset(tmp_path)
    assert main(["export", bad, str(tmp_path / "out"), "--strict", "-q"]) == 1
    assert re.search(r"ndpatch: error: .*bad.kwcoco.json: 4 annotations cannot be exported: "
                     r"annotation 101 \(image 1\)",
                     capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    assert main(["export", bad, str(tmp_path / "out"), "--window", "16", "-q"]) == 0


# -- a full disk -------------------------------------------------------------------------
def failing_fsync(monkeypatch, name_start: str) -> None:
    """Temp files whose name starts with ``name_start`` fail to reach the disk with ENOSPC (as NFS can say)."""
    from ndpatch.cache import store
    real = store.fsync_path

    def fsync_path(path):
        if os.path.basename(path).startswith(name_start):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(store, "fsync_path", fsync_path)


def test_a_full_disk_names_the_block_and_file_and_resume_completes_exactly(source, tmp_path, monkeypatch):
    out, whole = tmp_path / "out", tmp_path / "whole"
    failing_fsync(monkeypatch, "chip_000017.tmp-")
    with pytest.raises(DiskFullError, match=r"export block 1 \(chips chip_000016 to chip_000031\) stopped: "
                                            r"no space left on device writing .*/images/chip_000017.tif: .* available "
                                            r".*; the finished blocks are kept: free space, then rerun with resume"):
        export(source.fpath, out, window=8, progress=False)
    assert not list(out.rglob("*.tmp-*")), "no temp file is left behind"
    monkeypatch.undo()
    summary = export(source.fpath, out, window=8, resume=True, progress=False)
    assert summary["resumed_blocks"] == 1
    export(source.fpath, whole, window=8, progress=False)
    assert_same_export(out, whole)


def test_a_full_disk_while_writing_the_index_files_is_clear_and_resumable(source, tmp_path, monkeypatch):
    failing_fsync(monkeypatch, "chips.tmp-")
    with pytest.raises(DiskFullError, match=r"export finished its blocks, then: no space left on device writing "
                                            r".*chips.csv.*rerun with resume=True \(--resume\) to write the index"):
        export(source.fpath, tmp_path / "out", window=16, progress=False)
    monkeypatch.undo()
    summary = export(source.fpath, tmp_path / "out", window=16, resume=True, progress=False)
    assert summary["resumed_blocks"] == summary["blocks"] and (tmp_path / "out" / "chips.csv").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 kB tmpfs, remounted with more room by calling the fixture's value (needs root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs mounts")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_a_clear_error_and_resume_completes_exactly(source, tmp_path, small_disk):
    disk, grow = small_disk
    out, whole = disk / "out", tmp_path / "whole"
    with pytest.raises(DiskFullError, match=r"export block \d+ \(chips chip_\d+ to chip_\d+\) stopped: "
                                            r"no space left on device writing .*chip_\d+.tif"):
        export(source.fpath, out, window=8, format="chips", progress=False)
    assert not list(out.rglob("*.tmp-*")), "no temp file is left behind"
    grow()
    summary = export(source.fpath, out, window=8, format="chips", resume=True, progress=False)
    assert summary["resumed_blocks"] >= 1
    export(source.fpath, whole, window=8, format="chips", progress=False)
    assert_same_export(out, whole)


# -- worker processes --------------------------------------------------------------------
def workers_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in processes):
        time.sleep(0.05)
    return [p for p in processes if alive(p)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_workers_end_with_the_leader_and_the_export_resumes(source, tmp_path, sig):
    out, whole = tmp_path / "out", tmp_path / "whole"
    proc = start_cli_export(source.fpath, str(out), "--window", "4", "--workers", "2")
    wait_for(lambda: len(workers_of(proc.pid)) >= 3 and parts(out) >= 2, proc)  # forkserver + 2 workers
    workers = workers_of(proc.pid)
    os.kill(proc.pid, sig)
    proc.wait(30)
    assert proc.returncode != 0 and not (out / "summary.json").exists()
    assert gone_within(workers, 10) == [], "no worker outlives the leader"
    export(source.fpath, out, window=4, resume=True, progress=False)
    export(source.fpath, whole, window=4, progress=False)
    assert_same_export(out, whole)


def test_a_worker_that_cannot_start_says_why(source, tmp_path, monkeypatch):
    from ndpatch.export import job
    sent = []
    monkeypatch.setattr("ndpatch.export.runner.process_pool",
                        lambda workers, initializer, initargs, preload=(): sent.append(initargs) or _stop())
    with pytest.raises(InterruptedError):
        export(source.fpath, tmp_path / "o", window=8, workers=2, progress=False)
    (spec,) = sent[0]
    changed = type(spec)(**{**spec.__dict__, "dataset_identity": (0, 0, 0, 0, 0)})
    job.init_worker(changed)
    try:
        with pytest.raises(ExportError, match=r"data.kwcoco.json changed while the export ran; rerun with resume"):
            job.run_block(0)
    finally:
        monkeypatch.setattr(job, "_WORKER_ERROR", None)


def _stop():
    raise InterruptedError("stop before starting workers")


@pytest.mark.parametrize("bands", [1, 3])
def test_a_chip_is_complete_while_something_else_holds_its_gdal_dataset(tmp_path, bands):
    """A profiler's sampled frame (Dask workers sample every thread) can keep the dataset alive past
    ``ds = None``: the chip must not depend on the dataset being closed (it was a bare TIFF header)."""
    import sys

    import numpy as np

    from ndpatch.export import base

    kept = []  # like a sampling profiler: the frames of GDAL's own methods, alive after they return

    def keep_frames(frame, event, arg):
        if event == "return" and isinstance(frame.f_locals.get("self"), base.gdal.Dataset):
            kept.append(frame)

    pixels = np.random.default_rng(bands).integers(0, 255, (48, 40, bands), dtype=np.uint8)
    chip = pixels[..., 0] if bands == 1 else pixels
    sys.setprofile(keep_frames)
    try:
        size = base.write_geotiff(tmp_path / "chip.tif", chip)
    finally:
        sys.setprofile(None)
    assert kept                                            # the dataset was still open when the file was published
    assert size == (tmp_path / "chip.tif").stat().st_size
    read = base.gdal.Open(str(tmp_path / "chip.tif")).ReadAsArray()
    np.testing.assert_array_equal(read if bands == 1 else np.moveaxis(read, 0, -1), chip)
