"""One block of an export: read its windows, build its chips, publish them, then record its manifest.

A :class:`JobSpec` is all a worker process receives, once: the dataset's path
when the export was given a path (else the dataset itself), the sampler's
backend, the output folder and the settings; the plan is read from the
folder's ``plan.npy``. Each task is then a block number. Pixels come from
the sampler's public API (``load_batch``, ``load_sample`` and its
``params['geotransform']``/``params['crs']``), so every image ``load_sample``
reads, multi-file images included, exports the same way.

Example:
    >>> sorted(WRITERS)
    ['chips', 'kwcoco', 'tfrecord', 'webdataset']
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.cache.store import fsync_path
from ndpatch.errors import DiskFullError, ExportError, NdpatchError
from ndpatch.export.base import Chip, chip_name, window_geotransform
from ndpatch.export.chips import ChipsWriter
from ndpatch.export.coco import KwcocoWriter, shift_annotation
from ndpatch.export.folder import ExportFolder
from ndpatch.export.labels import chip_label
from ndpatch.export.manifest import PART_FORMAT, file_entry, image_inputs
from ndpatch.export.plan import Plan
from ndpatch.export.screen import BadAnnotation, screen_annotations, usable_dataset
from ndpatch.export.tar_shards import WebdatasetWriter
from ndpatch.export.tfrecord_shards import TfrecordWriter
from ndpatch.gdalio import file_identity

#: ``--format`` name → writer class.
WRITERS: dict[str, type] = {w.name: w for w in (ChipsWriter, KwcocoWriter, WebdatasetWriter, TfrecordWriter)}
#: What the forkserver imports once, so that every worker forked from it starts warm (kwimage's and
#: delayed_image's lazy imports cost seconds in each fresh process; a missing one is skipped).
WORKER_MODULES = ("ndpatch.export.job", "ndpatch.sampler", "kwimage.structs.detections",
                  "kwimage.structs.polygon", "delayed_image.channel_spec")
#: A geotransform that says nothing: pixel coordinates (GDAL's default).
_PIXEL_GRID = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class JobSpec:
    """What every worker of one export needs, cheap to send: no pickled sampler, no plan."""

    dataset: Any  # a dataset path, or (given a dataset or sampler) the dataset itself
    dataset_identity: tuple | None  # the path's file identity when the leader loaded it
    backend: Any
    out_dir: str
    format: str
    window: tuple[int, int]
    block_size: int
    label_dtype: str
    channels: Any
    digest: str  # of the settings and the label dtype (each part file records it)


def open_sampler(dataset: Any, backend: Any = None, workdir: str | None = None):
    """``(sampler, bad annotations)``: a sampler over ``dataset`` without the annotations an export cannot use."""
    from ndpatch.sampler import CocoSampler

    sampler = dataset if isinstance(dataset, CocoSampler) else CocoSampler(dataset, backend=backend, workdir=workdir)
    bad: list[BadAnnotation] = screen_annotations(sampler.dset)
    usable = usable_dataset(sampler.dset, bad)
    if usable is not None:
        sampler = CocoSampler(usable, backend=sampler.backend, workdir=sampler.workdir)
    return sampler, bad


def dataset_file_identity(dataset: Any) -> tuple | None:
    """The file identity of a dataset given as a path (None for a dataset object)."""
    return file_identity(os.fspath(dataset)) if isinstance(dataset, (str, os.PathLike)) else None


class Job:
    """Writes any block of one export; the leader's and every worker's."""

    def __init__(self, spec: JobSpec, sampler, plan: Plan):
        self.spec = spec
        self.sampler = sampler
        self.plan = plan
        self.writer = WRITERS[spec.format]()
        self.folder = ExportFolder(spec.out_dir)
        self.label_dtype = np.dtype(spec.label_dtype)
        self._georefs: dict[int, tuple] = {}

    @classmethod
    def from_spec(cls, spec: JobSpec) -> "Job":
        """A worker's job: the dataset loaded (and screened) again, the plan mapped from the folder."""
        sampler, _ = open_sampler(spec.dataset, spec.backend)
        if dataset_file_identity(spec.dataset) != spec.dataset_identity:
            raise ExportError(f"{spec.dataset} changed while the export ran; rerun with resume=True (--resume)")
        folder = ExportFolder(spec.out_dir)
        return cls(spec, sampler, Plan(spec.window, np.load(folder.plan_path(), mmap_mode="r")))

    def blocks(self) -> int:
        return -(-len(self.plan) // self.spec.block_size)

    def chips_of(self, block: int) -> range:
        first = block * self.spec.block_size
        return range(first, min(len(self.plan), first + self.spec.block_size))

    def expected(self, block: int) -> dict:
        """What block ``block``'s manifest must say to be kept: settings digest, windows, file names."""
        chips = self.chips_of(block)
        if self.writer.sharded:
            files = [rule.name(block) for rule in self.writer.rules]
        else:
            files = [rule.name(i) for i in chips for rule in self.writer.rules]
        return {"settings": self.spec.digest, "windows": np.asarray(self.plan.table[chips.start:chips.stop]).tolist(),
                "files": files}

    def write_block(self, block: int) -> int:
        """Write one block's files, then its part file (its manifest); returns the number of chips."""
        chips = self.chips_of(block)
        windows = [self.plan.slices(i) for i in chips]
        dset = self.sampler.dset
        inputs = {str(gid): image_inputs(dset, gid) for gid in sorted({w[0] for w in windows})}  # before reading
        made = self._chips(chips, windows)
        expected = self.expected(block)
        root = self.folder.root
        try:
            records = self.writer.write_block(root, block, made)
            for folder in {(root / name).parent for name in expected["files"]}:
                fsync_path(folder)  # the files' renames are durable before the part file says "done"
            self.folder.write_part(block, {
                "ndpatch_export_part": PART_FORMAT, "block": block, "settings": self.spec.digest,
                "windows": expected["windows"], "images": inputs,
                "files": [file_entry(root, name) for name in expected["files"]], "records": records})
        except DiskFullError as err:
            raise DiskFullError(f"export block {block} (chips {chip_name(chips.start)} to {chip_name(chips.stop - 1)}) "
                                f"stopped: {err}; the finished blocks are kept: free space, then rerun with "
                                "resume=True (--resume)") from err
        return len(made)

    def _chips(self, chips: range, windows: list[tuple[int, slice, slice]]) -> list[Chip]:
        targets = [{"gid": gid, "space_slice": (rows, cols)} for gid, rows, cols in windows]
        if self.spec.channels is not None:
            targets = [{**tr, "channels": self.spec.channels} for tr in targets]
        pixels, annots = [], []
        for _, run in itertools.groupby(targets, key=lambda tr: tr["gid"]):  # one dtype/bands per image
            batch = self.sampler.load_batch(list(run), with_annots=True, threads=1)
            pixels += list(batch["im"])
            annots += batch["annots"]
        return [self._chip(index, gid, rows, cols, pixels[k], annots[k])
                for k, (index, (gid, rows, cols)) in enumerate(zip(chips, windows))]

    def _chip(self, index: int, gid: int, rows: slice, cols: slice, im: np.ndarray, annots) -> Chip:
        dset = self.sampler.dset
        image = dset.imgs[gid]
        geotransform, crs_wkt = self._georef(gid)
        return Chip(
            index=index, name=chip_name(index), gid=gid, file_name=source_name(image), rows=rows, cols=cols,
            im=im, label=chip_label(self.sampler, gid, rows, cols, annots, self.label_dtype),
            annots=annots, split=image.get("split", ""),
            geotransform=None if geotransform is None else window_geotransform(geotransform, rows.start, cols.start),
            crs_wkt=crs_wkt,
            coco_annots=[shift_annotation(dset.anns[int(aid)], cols.start, rows.start) for aid in annots["aids"]],
        )

    def _georef(self, gid: int) -> tuple[tuple | None, str | None]:
        """(geotransform, CRS WKT) of image ``gid``'s pixel grid, None for each it lacks; once per image."""
        if gid not in self._georefs:
            params = self.sampler.load_sample({"gid": gid, "space_slice": (slice(0, 1), slice(0, 1))},
                                              with_annots=False)["params"]
            geotransform, crs = params["geotransform"], params["crs"] or None
            georeferenced = geotransform is not None and (crs or tuple(geotransform) != _PIXEL_GRID)
            self._georefs[gid] = (tuple(geotransform) if georeferenced else None, crs)
        return self._georefs[gid]


def source_name(image: dict) -> str:
    """What ``chips.csv`` calls a chip's source: the image's file name, or its assets' joined by ``|``."""
    if image.get("file_name"):
        return image["file_name"]
    return "|".join(asset["file_name"] for asset in image.get("assets") or image.get("auxiliary") or ())


_WORKER_JOB: Job | None = None
_WORKER_ERROR: Exception | None = None


def init_worker(spec: JobSpec) -> None:
    """A worker's start: the job is built (``ndpatch.workers`` already leaves Ctrl-C to the leader).

    An error building it is kept for the first task to raise, where the leader sees its message
    (an initializer's error only breaks the pool).
    """
    global _WORKER_JOB, _WORKER_ERROR
    try:
        _WORKER_JOB = Job.from_spec(spec)
    except (NdpatchError, OSError) as err:
        _WORKER_ERROR = err


def run_block(block: int) -> int:
    """A worker's task: write one block."""
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    return _WORKER_JOB.write_block(block)


def iter_records(folder: ExportFolder, blocks: int):
    """All chip records of a finished export, in chip order, one part file at a time."""
    for block in range(blocks):
        yield from folder.read_part(block)["records"]
