"""Running an export: flags and lock, plan, resume checks, blocks in worker processes, the dataset-level files.

The plan's chips are cut into fixed blocks (a shard, or ``CHIPS_PER_BLOCK``
chips). A worker (:mod:`ndpatch.export.job`) reads a block's windows with
``load_batch``, lets the writer publish the block's files atomically, and then
publishes the block's *part file*, its manifest (:mod:`ndpatch.export.manifest`).
A block is done exactly when its part file exists and still matches: an export
killed at any instant, or whose inputs changed since, resumes by redoing only
the blocks that are missing or no longer match, so the result equals an
uninterrupted export of the current inputs. The folder's lock
(:mod:`ndpatch.export.folder`) is taken before anything is read or removed and
held for the whole run. Workers come from :func:`ndpatch.workers.process_pool`
(forkserver; they exit when the leader dies) and are stopped at once on
Ctrl-C or on the first error; or blocks are tasks on a Dask cluster
(``client=``, :mod:`ndpatch.distributed`), re-run elsewhere when a worker dies. Memory holds one block per worker plus the plan
(three integers per chip); ``chips.csv`` and ``data.kwcoco.json`` are streamed
from the part files.

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
import functools
import importlib.util
import io
import json
import os
import time
import uuid
import warnings
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ndpatch.distributed import completed, connect
from ndpatch.errors import DiskFullError, ExportError
from ndpatch.export.base import publish
from ndpatch.export.folder import ExportFolder
from ndpatch.export.job import (WORKER_MODULES, WRITERS, Job, JobSpec, dataset_file_identity, init_worker,
                                iter_records, open_sampler, run_block)
from ndpatch.export.manifest import block_problem, digest, image_inputs
from ndpatch.export.plan import GRID_DEFAULTS, make_plan, parse_window
from ndpatch.export.screen import refuse
from ndpatch.masks import label_dtype
from ndpatch.workers import default_workers, process_pool, stop_workers

#: Chips per block for the per-chip formats (chips, kwcoco).
CHIPS_PER_BLOCK = 16
CSV_COLUMNS = ("chip", "image_id", "file_name", "row_start", "row_stop", "col_start", "col_stop",
               "split", "aids", "files")
#: Every writer's naming rules: what ``overwrite`` may remove of a previous export of any format.
ALL_RULES = tuple(dict.fromkeys(rule for writer in WRITERS.values() for rule in writer.rules))


def _finished_blocks(job: Job) -> tuple[list[int], list[dict]]:
    """On resume: the finished blocks kept, and those to redo with why; stale parts and files removed."""
    inputs = functools.cache(lambda gid: image_inputs(job.sampler.dset, gid))
    kept, redone = [], []
    for block in job.folder.parts():
        if block >= job.blocks():  # beyond the plan of the current inputs
            job.folder.remove_part(block)
            continue
        problem = block_problem(job.folder.read_part(block), job.expected(block), inputs, job.folder.root)
        if problem is None:
            kept.append(block)
        else:
            job.folder.remove_part(block)  # not done any more, even if this run is cut short
            redone.append({"block": block, "reason": problem})
    limit = job.blocks() if job.writer.sharded else len(job.plan)
    job.folder.remove_files(job.writer.rules, keep={rule: limit for rule in job.writer.rules})
    return kept, redone


def _run(job: Job, todo: list[int], workers: int, progress: bool, client: Any = None) -> None:
    done = len(job.plan) - sum(len(job.chips_of(block)) for block in todo)
    with tqdm(total=len(job.plan), initial=done, unit="chip", disable=not progress,
              desc=f"export {job.spec.format}") as bar:
        if client is not None and todo:
            with connect(client, preload=WORKER_MODULES) as dask_client:
                for block, chips, error in completed(dask_client, _dask_block, todo, job.spec, uuid.uuid4().hex):
                    if error is not None:  # the first failed block ends the export; the rest are cancelled
                        raise _block_error(block, error)
                    bar.update(chips)
            job.folder.remove_temp_files(job.writer.rules)  # left by attempts whose worker died (Dask re-ran them)
            return
        if workers <= 1 or len(todo) <= 1:
            for block in todo:
                bar.update(job.write_block(block))
            return
        with process_pool(min(workers, len(todo)), init_worker, (job.spec,), preload=WORKER_MODULES) as pool:
            futures = []
            try:
                futures += [pool.submit(run_block, block) for block in todo]
                for future in as_completed(futures):
                    bar.update(future.result())
            except BaseException:  # Ctrl-C or a failed block: stop every worker now, keep what is finished
                for future in futures:
                    future.cancel()
                stop_workers(pool)
                raise


_DASK_RUN: str | None = None


def _dask_block(block: int, spec: JobSpec, run: str) -> int:
    """A Dask task: write one block; the worker builds the run's job from ``spec`` once (``run`` names the run)."""
    global _DASK_RUN
    if _DASK_RUN != run:
        init_worker(spec)
        _DASK_RUN = run
    return run_block(block)


def _block_error(block: int, error: BaseException) -> BaseException:
    """What a failed Dask task raises in the leader: the worker's error, or why its workers kept dying."""
    if type(error).__name__ == "KilledWorker":
        return ExportError(f"export block {block}: every Dask worker that ran it died (killed, out of memory); "
                           "the finished blocks are kept: rerun with resume=True (--resume)")
    return error


def _write_index_files(job: Job, summary: dict, context: dict) -> None:
    blocks = job.blocks()

    def records():
        return iter_records(job.folder, blocks)

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
    publish(job.folder.root / "chips.csv", write_csv)
    publish(job.folder.root / "classes.json", lambda tmp: Path(tmp).write_text(json.dumps(names, indent=1)))
    job.writer.finish(job.folder.root, records, context)
    publish(job.folder.root / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))


def export(dataset: Any, out_dir: str | os.PathLike, format: str = "chips", window: Any = 256,
           overlap: float = 0.0, targets: str = "grid", count: int | None = None, channels: Any = None,
           workers: int | None = 1, seed: int = 0, resume: bool = False, overwrite: bool = False,
           shard_size: int = 256, backend: Any = None, workdir: str | None = None,
           progress: bool = True, strict: bool = False, client: Any = None, *, stride=None,
           edge: str = "shift", pad_direction="end", padding=None) -> dict:
    """Export a dataset's windows as a fixed training set; returns the summary.

    ``dataset`` is a dataset path (cheapest for workers: each loads it), a
    ``CocoDataset`` or a ``CocoSampler`` (its backend is used). ``workers``:
    processes (``None``: one per CPU; 0 or 1: this process). ``count``: that
    many windows at random with ``seed``, stratified across images. ``resume``
    keeps the finished blocks that still match the current inputs and redoes
    the rest; ``overwrite`` replaces a previous export (only its own files).
    Annotations an export cannot use are skipped and listed in the summary's
    ``skipped_annotations``, or refused up front with ``strict=True``.
    ``overlap`` (a fraction, or one per axis), ``stride``, ``edge``,
    ``pad_direction`` and ``padding`` place the windows of ``targets='grid'``
    (:class:`~ndpatch.sampling.geometry.GridRule`).
    ``client`` writes the blocks on a Dask cluster instead of ``workers``
    processes (a ``distributed.Client``, a scheduler address or ``'local:N'``;
    the output and cache folders must be paths every worker sees); resumes
    stay exact, since a block is done only when its part file is published.
    See docs/export.md for the formats, the folder layout and the CLI.
    """
    if format not in WRITERS:
        raise ExportError(f"unknown export format {format!r}; expected one of {', '.join(WRITERS)}")
    missing = [module for module in WRITERS[format].needs if importlib.util.find_spec(module) is None]
    if missing:
        raise ExportError(f"export format {format!r} needs {', '.join(missing)}, which is not installed: "
                          "pip install 'ndpatch[export]'")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0 or int(shard_size) < 1:
        raise ExportError(f"workers must be >= 0 and shard_size >= 1, got {workers} and {shard_size}")
    if resume and overwrite:
        raise ExportError("resume and overwrite exclude each other: pick one")
    sampler, bad = open_sampler(dataset, backend, workdir)
    dataset_identity = dataset_file_identity(dataset)  # workers load it again, and check it is the same file
    if bad and strict:
        raise refuse(bad, sampler.dset)
    if bad:
        warnings.warn(f"export skips {len(bad)} annotations it cannot use: " + "; ".join(
            f"annotation {b.aid} (image {b.image_id}): {b.reason}" for b in bad[:5])
            + (" ..." if len(bad) > 5 else "") + " (listed in the summary's skipped_annotations)", stacklevel=2)
    window = parse_window(window)
    grid = {key: value for key, value in (("stride", stride), ("edge", edge), ("pad_direction", pad_direction),
                                          ("padding", padding)) if value != GRID_DEFAULTS[key]}
    writer = WRITERS[format]()
    categories = list(sampler.dset.dataset.get("categories", []))
    labels = label_dtype(max((int(c["id"]) for c in categories), default=0)).name
    settings = json.loads(json.dumps({  # as settings.json gives them back (tuples as lists ...)
        "format": format, "window": list(window), "overlap": overlap, "targets": targets, "count": count,
        "channels": channels, "seed": seed, "block_size": int(shard_size) if writer.sharded else CHIPS_PER_BLOCK,
        "dataset": str(sampler.dset.fpath), **({"grid": grid} if grid else {})}))
    folder = ExportFolder(out_dir)
    folder.check_before_lock(resume, overwrite)
    started = time.perf_counter()
    with folder.locked():
        resumed = folder.prepare(settings, resume, overwrite, ALL_RULES)
        plan = make_plan(sampler, window, targets, overlap, count, seed, **grid)
        folder.remove_temp_files(writer.rules)
        folder.start(settings, plan.table, writer.rules)
        spec = JobSpec(dataset=os.path.abspath(dataset) if dataset_identity is not None else sampler.dset,
                       dataset_identity=dataset_identity, backend=sampler.backend, out_dir=str(folder.root),
                       format=format, window=window, block_size=settings["block_size"], label_dtype=labels,
                       channels=channels, digest=digest({**settings, "label_dtype": labels}))
        job = Job(spec, sampler, plan)
        kept, redone = _finished_blocks(job) if resumed else ([], [])
        todo = sorted(set(range(job.blocks())) - set(kept))
        _run(job, todo, workers, progress, client)
        summary = {"format": format, "chips": len(plan), "blocks": job.blocks(), "resumed_blocks": len(kept),
                   "redone_blocks": redone, "skipped_annotations": [b.as_dict() for b in bad],
                   "workers": workers if client is None else "dask"}
        names = {"0": "background", **{str(c["id"]): c["name"] for c in categories}}
        context = {"categories": categories, "class_names": names, "channels": channels,
                   "keypoint_categories": sampler.dset.dataset.get("keypoint_categories", [])}
        summary["elapsed_s"] = round(time.perf_counter() - started, 3)
        try:
            _write_index_files(job, summary, context)
        except DiskFullError as err:
            raise DiskFullError(f"export finished its blocks, then: {err}; free space, then rerun with "
                                "resume=True (--resume) to write the index files") from err
    return summary


def format_summary(summary: dict) -> str:
    """The summary as a few human lines (what the CLI prints)."""
    out = io.StringIO()
    out.write(f"{summary['chips']} chips ({summary['format']}), {summary['bytes'] / 1e6:.1f} MB, "
              f"{summary['elapsed_s']:.1f} s")
    if summary["resumed_blocks"] or summary["redone_blocks"]:
        out.write(f", {summary['resumed_blocks']} of {summary['blocks']} blocks already done")
    if summary["redone_blocks"]:
        first = summary["redone_blocks"][0]
        out.write(f", {len(summary['redone_blocks'])} redone (block {first['block']}: {first['reason']}"
                  + (", ..." if len(summary["redone_blocks"]) > 1 else "") + ")")
    out.write("\npixels per class: " + ", ".join(f"{k}={v}" for k, v in summary["class_pixels"].items()))
    skipped = summary["skipped_annotations"]
    if skipped:
        out.write(f"\nwarning: skipped {len(skipped)} annotations that cannot be exported: " + "; ".join(
            f"annotation {s['aid']}: {s['reason']}" for s in skipped[:3]) + ("; ..." if len(skipped) > 3 else ""))
    return out.getvalue()
