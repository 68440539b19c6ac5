"""Running an export: plan, blocks of chips in worker processes, resume, the dataset-level files.

The plan's chips are cut into fixed blocks (a shard, or ``CHIPS_PER_BLOCK``
chips). A worker reads a block's windows with ``load_batch``, builds label
maps and chip-frame annotations, lets the writer publish the block's files
atomically, and then publishes the block's *part file* (its provenance
records) under ``OUT_DIR/.ndpatch-export/parts/``. A block is done exactly
when its part file exists, so an export killed at any instant resumes by
redoing only the blocks without one: their files are rewritten under the
same names, never doubled. Memory holds one block per worker plus the plan
(three integers per chip); the final ``chips.csv`` and ``data.kwcoco.json``
are streamed from the part files.

Example:
    >>> import tempfile, ndpatch
    >>> from ndpatch.demo import make_dataset
    >>> tmp = tempfile.mkdtemp()
    >>> dset = make_dataset(tmp + "/src", [{"shape": (40, 50, 3), "dtype": "uint8"}])
    >>> summary = export(dset, tmp + "/out", format="chips", window=32, progress=False)
    >>> summary["chips"], sorted(summary["class_pixels"])
    (4, ['background', 'box', 'point', 'triangle'])
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
from tqdm import tqdm

from ndpatch import gdalio
from ndpatch.cache.store import TEMP_MARK, fsync_path
from ndpatch.errors import ExportError, OutputExistsError
from ndpatch.export.base import Chip, Writer, publish, window_geotransform
from ndpatch.export.chips import ChipsWriter
from ndpatch.export.coco import KwcocoWriter, shift_annotation
from ndpatch.export.labels import chip_label
from ndpatch.export.plan import Plan, make_plan, parse_window
from ndpatch.export.tar_shards import WebdatasetWriter
from ndpatch.export.tfrecord_shards import TfrecordWriter
from ndpatch.masks import label_dtype

#: ``--format`` name → writer class.
WRITERS: dict[str, type] = {w.name: w for w in (ChipsWriter, KwcocoWriter, WebdatasetWriter, TfrecordWriter)}
#: Chips per block for the per-chip formats (chips, kwcoco).
CHIPS_PER_BLOCK = 16
#: Where an export keeps its plan, settings and part files.
STATE_DIR = ".ndpatch-export"
#: Dataset-level files every export writes.
INDEX_FILES = ("chips.csv", "classes.json", "summary.json", "data.kwcoco.json")
CSV_COLUMNS = ("chip", "image_id", "file_name", "row_start", "row_stop", "col_start", "col_stop",
               "split", "aids", "files")


def chip_name(index: int) -> str:
    """The file stem of chip ``index``: ``chip_000012``."""
    return f"chip_{index:06d}"


@dataclass
class Job:
    """Everything a worker needs to write any block of one export."""

    sampler: Any
    plan: Plan
    writer: Writer
    out_dir: Path
    block_size: int
    label_dtype: np.dtype
    channels: Any = None

    def blocks(self) -> int:
        return -(-len(self.plan) // self.block_size)

    def part_path(self, block: int) -> Path:
        return self.out_dir / STATE_DIR / "parts" / f"{block:06d}.json"

    def write_block(self, block: int) -> int:
        """Write one block's files, then its part file; returns the number of chips."""
        first = block * self.block_size
        indices = range(first, min(len(self.plan), first + self.block_size))
        windows = [self.plan.slices(i) for i in indices]
        targets = [{"gid": gid, "space_slice": (rows, cols)} for gid, rows, cols in windows]
        if self.channels is not None:
            targets = [{**tr, "channels": self.channels} for tr in targets]
        pixels, annots = [], []
        for _, run in itertools.groupby(targets, key=lambda tr: tr["gid"]):  # one dtype/bands per image
            batch = self.sampler.load_batch(list(run), with_annots=True, threads=1)
            pixels += list(batch["im"])
            annots += batch["annots"]
        chips = [self._chip(i, gid, rows, cols, pixels[k], annots[k])
                 for k, (i, (gid, rows, cols)) in enumerate(zip(indices, windows))]
        records = self.writer.write_block(self.out_dir, block, chips)
        for folder in {(self.out_dir / name).parent for record in records for name in record["files"]}:
            fsync_path(folder)  # the chips' renames are durable before the part file says "done"
        publish(self.part_path(block), lambda tmp: Path(tmp).write_text(json.dumps(records)))
        return len(chips)

    def _chip(self, index: int, gid: int, rows: slice, cols: slice, im: np.ndarray, annots) -> Chip:
        index_ = self.sampler.index
        image = index_.image(gid)
        geotransform, crs_wkt = _georeference(index_.source(gid).path, index_.source(gid).describe())
        anns = index_.dset.anns
        return Chip(
            index=index, name=chip_name(index), gid=gid,
            file_name=image.get("file_name") or index_.source(gid).path, rows=rows, cols=cols,
            im=im, label=chip_label(self.sampler, gid, rows, cols, annots, self.label_dtype),
            annots=annots, split=image.get("split", ""),
            geotransform=None if geotransform is None else window_geotransform(geotransform, rows.start, cols.start),
            crs_wkt=crs_wkt,
            coco_annots=[shift_annotation(anns[int(aid)], cols.start, rows.start) for aid in annots["aids"]],
        )


_GEOREF: dict[str, tuple] = {}


def _georeference(path: str, what: str) -> tuple[tuple | None, str | None]:
    """(geotransform, CRS WKT) of a source raster, None for each it lacks; cached per process."""
    if path not in _GEOREF:
        info = gdalio.raster_info(gdalio.POOL.get(path, what))
        georeferenced = info.geotransform is not None and (info.crs_wkt or info.geotransform != (0, 1, 0, 0, 0, 1))
        _GEOREF[path] = (info.geotransform if georeferenced else None, info.crs_wkt)
    return _GEOREF[path]


_WORKER_JOB: Job | None = None


def _init_worker(job: Job) -> None:
    global _WORKER_JOB
    gdalio.configure()
    _WORKER_JOB = job


def _run_block(block: int) -> int:
    return _WORKER_JOB.write_block(block)


def iter_records(out_dir: Path, blocks: int):
    """All chip records of a finished export, in chip order, one part file at a time."""
    for block in range(blocks):
        yield from json.loads((out_dir / STATE_DIR / "parts" / f"{block:06d}.json").read_text())


def _prepare_out_dir(out_dir: Path, settings: dict, resume: bool, overwrite: bool) -> bool:
    """Check OUT_DIR against the flags; returns True when a previous export is resumed."""
    state = out_dir / STATE_DIR
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    if resume:
        if not (state / "settings.json").is_file():
            raise OutputExistsError(f"{out_dir} is not empty and holds no ndpatch export to resume")
        previous = json.loads((state / "settings.json").read_text())
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise ExportError(f"{out_dir}: cannot resume, the export settings differ in {', '.join(changed)}")
        for leftover in out_dir.rglob(f"*{TEMP_MARK}*"):  # temp files of writes cut short by the kill
            leftover.unlink()
        return True
    if not overwrite:
        raise OutputExistsError(f"output folder {out_dir} exists and is not empty; "
                                "pass resume=True (--resume) or overwrite=True (--overwrite)")
    if (state / "settings.json").is_file():  # remove what the previous export wrote, nothing else
        for part in sorted((state / "parts").glob("*.json")):
            for record in json.loads(part.read_text()):
                for name in record["files"]:
                    (out_dir / name).unlink(missing_ok=True)
        for name in INDEX_FILES:
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(state)
    return False


def _write_index_files(job: Job, summary: dict, context: dict) -> None:
    blocks = job.blocks()

    def records():
        return iter_records(job.out_dir, blocks)

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            for r in records():
                writer.writerow([r["chip"], r["image_id"], r["file_name"], r["row_start"], r["row_stop"],
                                 r["col_start"], r["col_stop"], r["split"], " ".join(map(str, r["aids"])),
                                 " ".join(r["files"])])

    class_pixels: dict[str, int] = {}
    total_bytes = 0
    for r in records():
        total_bytes += r["bytes"]
        for value, n in r["class_pixels"].items():
            class_pixels[value] = class_pixels.get(value, 0) + n
    names = context["class_names"]
    summary.update(bytes=total_bytes,
                   class_pixels={names.get(v, f"class_{v}"): n for v, n in sorted(class_pixels.items(),
                                                                                   key=lambda kv: int(kv[0]))})
    publish(job.out_dir / "chips.csv", write_csv)
    publish(job.out_dir / "classes.json", lambda tmp: Path(tmp).write_text(json.dumps(names, indent=1)))
    job.writer.finish(job.out_dir, records, context)
    publish(job.out_dir / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))


def export(dataset: Any, out_dir: str | os.PathLike, format: str = "chips", window: Any = 256,
           overlap: float = 0.0, targets: str = "grid", count: int | None = None, channels: Any = None,
           workers: int = 1, seed: int = 0, resume: bool = False, overwrite: bool = False,
           shard_size: int = 256, backend: Any = None, workdir: str | None = None,
           progress: bool = True) -> dict:
    """Export a dataset's windows as a fixed training set; returns the summary.

    ``dataset`` is a ``CocoSampler`` (its backend is used), a ``CocoDataset`` or
    a dataset path. See docs/export.md for the formats and the CLI.
    """
    from ndpatch.sampler import CocoSampler

    if format not in WRITERS:
        raise ExportError(f"unknown export format {format!r}; expected one of {', '.join(WRITERS)}")
    if int(workers) < 1 or int(shard_size) < 1:
        raise ExportError(f"workers and shard_size must be >= 1, got {workers} and {shard_size}")
    sampler = dataset if isinstance(dataset, CocoSampler) else CocoSampler(dataset, backend=backend,
                                                                            workdir=workdir)
    window = parse_window(window)
    out_dir = Path(out_dir)
    writer = WRITERS[format]()
    categories = list(sampler.dset.dataset.get("categories", []))
    max_cid = max((int(c["id"]) for c in categories), default=0)
    settings = {"format": format, "window": list(window), "overlap": overlap, "targets": targets,
                "count": count, "channels": channels, "seed": seed,
                "block_size": int(shard_size) if writer.sharded else CHIPS_PER_BLOCK,
                "label_dtype": label_dtype(max_cid).name, "dataset": str(sampler.dset.fpath)}
    started = time.perf_counter()
    resumed = _prepare_out_dir(out_dir, settings, resume, overwrite)
    state = out_dir / STATE_DIR
    plan = None if resumed else make_plan(sampler, window, targets, overlap, count, seed)
    (state / "parts").mkdir(parents=True, exist_ok=True)
    try:
        lock = filelock.FileLock(str(state / "lock")).acquire(timeout=0)
    except filelock.Timeout:
        raise OutputExistsError(f"another export is writing into {out_dir}") from None
    with lock:
        if resumed:
            plan = Plan(window, np.load(state / "plan.npy"))
        else:
            publish(state / "plan.npy", lambda tmp: np.save(open(tmp, "wb"), plan.table))
            publish(state / "settings.json", lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1)))
        job = Job(sampler, plan, writer, out_dir, settings["block_size"], np.dtype(settings["label_dtype"]),
                  channels)
        todo = [b for b in range(job.blocks()) if not job.part_path(b).exists()]
        done_chips = len(plan) - sum(len(range(b * job.block_size, min(len(plan), (b + 1) * job.block_size)))
                                     for b in todo)
        with tqdm(total=len(plan), initial=done_chips, unit="chip", disable=not progress,
                  desc=f"export {format}") as bar:
            if workers == 1 or len(todo) <= 1:
                for block in todo:
                    bar.update(job.write_block(block))
            else:
                context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                      else "spawn")
                with ProcessPoolExecutor(int(workers), mp_context=context, initializer=_init_worker,
                                         initargs=(job,)) as pool:
                    for n in pool.map(_run_block, todo):
                        bar.update(n)
        summary = {"format": format, "chips": len(plan), "blocks": job.blocks(),
                   "resumed_blocks": job.blocks() - len(todo), "workers": int(workers)}
        names = {"0": "background", **{str(c["id"]): c["name"] for c in categories}}
        context = {"categories": categories, "class_names": names, "channels": channels,
                   "keypoint_categories": sampler.dset.dataset.get("keypoint_categories", [])}
        summary["elapsed_s"] = round(time.perf_counter() - started, 3)
        _write_index_files(job, summary, context)
    return summary


def format_summary(summary: dict) -> str:
    """The summary as a few human lines (what the CLI prints)."""
    out = io.StringIO()
    out.write(f"{summary['chips']} chips ({summary['format']}), {summary['bytes'] / 1e6:.1f} MB, "
              f"{summary['elapsed_s']:.1f} s")
    if summary["resumed_blocks"]:
        out.write(f", {summary['resumed_blocks']} of {summary['blocks']} blocks already done")
    out.write("\npixels per class: " + ", ".join(f"{k}={v}" for k, v in summary["class_pixels"].items()))
    return out.getvalue()
