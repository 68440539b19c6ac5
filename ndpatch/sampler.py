"""CocoSampler: windows of pixels and their annotations, from a COCO/kwcoco dataset.

Method names, target keys and sample keys follow ndsampler 0.8.1's
``CocoSampler`` so training code ports by changing an import (differences:
docs/differences.md).

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> sample = sampler.load_sample({"gid": 1, "cx": 5, "cy": 2, "width": 6, "height": 6})
    >>> sample["im"].shape
    (6, 6, 3)
    >>> sample["target"]["space_slice"]
    (slice(-1, 5, None), slice(2, 8, None))
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import kwimage
import numpy as np

from ndpatch.annots import window_annots
from ndpatch.batch import WindowTable, at_target, read_batch, select_annots
from ndpatch.cache import make_backend
from ndpatch.cache.base import CacheEntry, read_window
from ndpatch.cache.validity import resampled_valid_fraction, valid_fraction
from ndpatch.errors import NdpatchError, TargetError
from ndpatch.index import DatasetIndex
from ndpatch.masks import window_masks
from ndpatch.params import SampleParams, window_affine
from ndpatch.readers import BATCH_THREADS
from ndpatch.record import ImageRecord, ImageRecords
from ndpatch.sampler_api import SAMPLE_OPTIONS, SamplerAPI, backend_spec
from ndpatch.target import Target, clip_window, parse_target, sample_target
from ndpatch.video import is_video_target, load_video_batch, load_video_sample
from ndpatch.warp import read_aligned, read_resampled


class CocoSampler(SamplerAPI):
    """Random access to windows of the images of a kwcoco / MS-COCO dataset.

    Args:
        dset: a ``kwcoco.CocoDataset``, or the path of a kwcoco or plain MS-COCO json.
        workdir: the cache directory (cache backends); default ``$NDPATCH_CACHE``,
            else the per-user cache dir.
        backend: ``'auto'`` (the default: tiled lossless GeoTIFFs are read in
            place, other images converted on first touch into the cache,
            npy or COG by size; docs/cache.md), ``'npy'``, ``'cog'``, a backend
            instance, ndsampler's ``{'type': name, 'config': {...}}``, or ``None``
            (read every source directly through GDAL).
        allow_vrt: also read GDAL VRT images, when every file they reference is
            inside the dataset's folder (off by default: a VRT can point at any
            file on the machine; docs/geo.md). Passed to the backend.
        backend_options: settings passed to the backend (e.g. ``blocksize``).

    ndsampler 0.8.1's API that the read path does not need (counts, class
    lookups, whole images, ``hashid``, the strategy loaders) comes from
    :class:`~ndpatch.sampler_api.SamplerAPI`.

    Each request is parse → image record (:attr:`records`, resolved once per
    image and re-checked at most once a second: an edited or replaced source is
    served fresh) → read → annotations.
    """

    def __init__(self, dset: Any, workdir: str | None = None, backend: Any = "auto",
                 autoinit: bool = True, verbose: int = 0, allow_vrt: bool = False, **backend_options):
        self.index = DatasetIndex(dset)
        self.workdir = workdir
        self.verbose = verbose
        backend, backend_options = backend_spec(backend, backend_options)
        if allow_vrt and not isinstance(backend, (str, type(None))) and not getattr(backend, "allow_vrt", False):
            raise NdpatchError("allow_vrt=True with a backend instance that does not allow VRTs: "
                               "make the backend with allow_vrt=True")
        self.backend = make_backend(backend, workdir=workdir, allow_vrt=allow_vrt, **backend_options)
        self.records = ImageRecords(self.index, self.backend)
        self._regions = None
        self._classes = None

    # -- construction helpers (ndsampler compatible) --------------------------------
    @classmethod
    def demo(cls, key: str = "shapes", workdir: str | None = None, backend: Any = "auto",
             **kwargs) -> "CocoSampler":
        """A sampler over one of kwcoco's toy datasets (``'shapes8'``, ``'vidshapes8'``, ...).

        ``kwargs`` go to ``kwcoco.CocoDataset.demo`` (e.g. ``num_frames=5``). As in
        ndsampler, ``'photos'`` loses its annotations without a box and gains a
        ``background`` category (id 0).
        """
        from ndpatch.demo import kwcoco_demo
        dset = kwcoco_demo(key, **kwargs)
        if key == "photos":
            dset.remove_annotations([aid for aid, ann in dset.anns.items() if "bbox" not in ann])
            dset.add_category("background", id=0)
        return cls(dset, workdir=workdir, backend=backend)

    @property
    def dset(self):
        return self.index.dset

    @property
    def classes(self):
        """The dataset's object categories as a ``kwcoco.CategoryTree``."""
        if self._classes is None:
            self._classes = self.dset.object_categories()
        return self._classes

    @cached_property
    def kp_classes(self):
        """The dataset's keypoint categories as a ``kwcoco.CategoryTree``."""
        return self.dset.keypoint_categories()

    @property
    def regions(self):
        """The targets table and sampling strategies (:class:`ndpatch.sampling.regions.Regions`)."""
        if self._regions is None:
            from ndpatch.sampling.regions import Regions
            self._regions = Regions(self)
        return self._regions

    # -- pixels -------------------------------------------------------------------
    def entry(self, gid: int) -> CacheEntry:
        """The readable form of single-file image ``gid``, converted into the cache on first touch."""
        record = self.records.get(gid)
        if record.entry is None:
            self.index.source(gid)  # raises: a multi-file image has one entry per file
        return record.entry

    def asset_entry(self, source) -> CacheEntry:
        """The readable form of one file of an image (resolved once per image record)."""
        return self.records.current(source.gid).entry_of(source)

    def _image_dims(self, gid: int) -> tuple[int, int]:
        return self.records.get(gid).dims

    def parse(self, target: dict) -> Target:
        """Validate a target dict into a :class:`~ndpatch.target.Target`."""
        return parse_target(target, annotation_box=self.index.annotation_box,
                            image_dims=self._image_dims, describe=self.index.describe)

    def load_sample(self, target: dict | None = None, with_annots: bool = True, annot_ids=None,
                    visible_thresh: float = 0.0, out: np.ndarray | None = None,
                    with_masks: bool = False, **kwargs) -> dict:
        """Read one window and the annotations inside it.

        Returns a dict with ``im`` (H×W×C, writable, C-contiguous; ``out`` when
        given), ``target`` (normalised; also as ``tr``), ``params`` (``offset``,
        ``sample_tlbr``, ``st_dims``, ``data_dims``, ``pad``, ``tf_rel_to_abs``),
        ``classes``, ``kp_classes`` and, when ``with_annots``, ``annots``.
        ``params`` also has ``scale``, ``valid_fraction`` (pixels in the image
        and not nodata), ``geotransform`` and ``crs`` (None unless georeferenced).
        ``with_masks`` adds ``label_map`` (category id per pixel; an image's
        ``class_id`` raster when it has one), ``instance_masks`` (N×H×W) and ``mask_aids``.
        Targets naming frames (``vidid`` / ``gids``) return T×H×W×C samples
        (:func:`ndpatch.video.load_video_sample`).

        ndsampler 0.8.1's keywords (deprecated ``pad=``, ``dtype=``, ``padkw=``,
        ``nodata=``, ``tr=``; ``with_annots`` as a list of fields) and target
        options (``as_xarray``, ``finalize``, ``use_native_scale``, ...) are
        handled by :class:`~ndpatch.sampler_api.SamplerAPI` (docs/porting.md).
        """
        if kwargs or type(target) is not dict or type(with_annots) not in (bool, int) \
                or not SAMPLE_OPTIONS.isdisjoint(target):
            return self._load_ndsampler_sample(target, with_annots, annot_ids, visible_thresh, out,
                                               with_masks, kwargs)
        return self._sample(target, with_annots, annot_ids, visible_thresh, out, with_masks)

    def _sample(self, target: dict, with_annots: bool, annot_ids, visible_thresh: float,
                out: np.ndarray | None, with_masks: bool) -> dict:
        """:meth:`load_sample` of a plain target: parse → record → read → annotations."""
        if is_video_target(target):
            return load_video_sample(self, target, with_annots, annot_ids, visible_thresh, out)
        if target.get("gsd") is not None:
            target = {**target, "scale": self._gsd_scale(target)}
        tr = self.parse(target)
        record = self.records.get(tr.gid)
        rows, cols = tr.rows, tr.cols
        if tr.scale == 1 and not record.multi:
            entry = record.entry
            bands = record.bands(tr.channels)
            im = read_window(self.backend, entry, rows, cols, bands, tr.fill, tr.dtype, out)
            data_dims, georef = (entry.height, entry.width), record.georef
            # None: from the window's extent, when params are first read
            valid_fraction = None if entry.mask == "all_valid" else self._valid_fraction(entry, tr, bands, im)
        else:
            record, im, georef = self.records.using(tr.gid, lambda rec: self._read_resampled(rec, tr, out))
            data_dims = record.dims
            valid_fraction = resampled_valid_fraction(self.backend, record.parts(tr.channels),
                                                      window_affine(cols.start, rows.start, tr.scale), im, data_dims)
        normalized = sample_target(target, tr, data_dims)
        sample = {
            "im": im,
            "target": normalized,
            "tr": normalized,
            "params": SampleParams(cols.start, rows.start, cols.stop, rows.stop, tr.scale, data_dims, tr.pad,
                                   georef, valid_fraction),
            "classes": self.classes,
        }
        if with_annots or with_masks:
            normalized["annot_idx"] = -1   # ndsampler's; an aid target's is set by SamplerAPI
            sample["annots"] = self._window_annots(tr, visible_thresh, annot_ids)
            sample["kp_classes"] = self.kp_classes
        if with_masks:
            sample.update(window_masks(sample["annots"], im.shape[:2]))
            tf_rel_to_abs = sample["params"]["tf_rel_to_abs"]
            label_map = self.records.using(tr.gid, lambda rec: self._label_raster(rec, tf_rel_to_abs, im.shape[:2]))
            if label_map is not None:
                sample["label_map"] = label_map
        return sample

    def valid_fraction(self, target: dict) -> float:
        """``params['valid_fraction']`` of a target's window, reading only what it needs.

        The share of the window's pixels inside the image and valid by GDAL's mask
        (alpha band, ``.msk`` or internal mask, nodata: :mod:`ndpatch.cache.validity`).
        A scale-1 window of one file reads no pixels unless its file has a
        nodata value (then its pixels), or a mask band (then that).
        """
        if is_video_target(target) or target.get("gsd") is not None:
            return self.load_sample(target, with_annots=False)["params"]["valid_fraction"]
        tr = self.parse(target)
        record = self.records.get(tr.gid)
        if tr.scale != 1 or record.multi:
            return self.load_sample(target, with_annots=False)["params"]["valid_fraction"]
        return self._valid_fraction(record.entry, tr, None, None)

    def _valid_fraction(self, entry: CacheEntry, tr: Target, bands: list[int] | None,
                        im: np.ndarray | None) -> float:
        """The valid-pixel fraction of a scale-1 window of one file (GDAL's mask: :mod:`ndpatch.cache.validity`).

        Arithmetic for all-valid files; a nodata file's pixels are the sample's own (``im``)
        when it holds every band unconverted, else read; a mask band is read.
        """
        rows, cols = tr.rows, tr.cols
        if entry.mask == "all_valid":
            rows_in = max(0, min(rows.stop, entry.height) - max(rows.start, 0))
            cols_in = max(0, min(cols.stop, entry.width) - max(cols.start, 0))
            return (rows_in / (rows.stop - rows.start)) * (cols_in / (cols.stop - cols.start))
        pixels = None
        every_band = bands is None or bands == list(range(entry.bands))
        if entry.mask == "nodata" and im is not None and every_band and im.dtype == entry.dtype and \
                not (tr.fill is not None and np.isnan(tr.fill)):
            inner_rows, inner_cols = clip_window(rows, cols, entry.height, entry.width)
            pixels = im[inner_rows.start - rows.start:inner_rows.stop - rows.start,
                        inner_cols.start - cols.start:inner_cols.stop - cols.start]
        return valid_fraction(self.backend, entry, rows, cols, pixels)

    def _gsd_scale(self, target: dict) -> float:
        """The scale that gives a target's ``gsd`` (CRS units per output pixel)."""
        gid = target.get("gid", target.get("image_id"))
        if gid is None and target.get("aid") is not None:
            gid = self.index.annotation(target["aid"])["image_id"]
        georef = self.records.using(gid, lambda rec: rec.parts_georef(rec.parts(target.get("channels"))))
        if georef is None:
            raise TargetError(f"image {gid}: a gsd target needs a georeferenced image")
        return georef.gsd / float(target["gsd"])

    def _read_resampled(self, record: ImageRecord, tr: Target, out: np.ndarray | None):
        """A scaled and/or multi-file window: every file resampled onto the sample grid.

        Returns ``(record, im, georef)``.
        """
        tf = kwimage.Affine.translate((tr.cols.start, tr.rows.start)) @ kwimage.Affine.scale(1 / tr.scale)
        parts = record.parts(tr.channels)
        n_channels = sum(len(positions) for *_, positions in parts)
        im = read_aligned(self.backend, parts, tf, tr.shape, n_channels, tr.fill, tr.dtype,
                          interpolation=tr.interpolation, antialias=tr.antialias, out=out)
        return record, im, record.parts_georef(parts)

    def _label_raster(self, record: ImageRecord, tf_rel_to_abs, shape: tuple[int, int]) -> np.ndarray | None:
        """The window of the image's label raster (a file with channel ``class_id``), if it has one."""
        asset = record.label_file()
        if asset is None:
            return None
        entry = record.entry_of(asset.source)
        return read_resampled(self.backend, entry, asset.warp.inv() @ tf_rel_to_abs, shape, [0], 0,
                              np.int32, interpolation="nearest")[..., 0]

    def _window_annots(self, tr: Target, visible_thresh: float = 0.0, annot_ids=None):
        """The annotations that touch the window read for ``tr``, in its pixel frame."""
        image_annots = self.index.image_annots(tr.gid)
        x0, y0 = tr.cols.start, tr.rows.start
        idxs = image_annots.select(x0, y0, tr.cols.stop, tr.rows.stop, visible_thresh, annot_ids)
        annots = window_annots(image_annots, idxs, x0, y0, tr.gid)
        if tr.scale == 1:
            return annots
        dets = annots["frame_dets"][0].scale(tr.scale)  # a scaled window: annotations scaled to match
        return {"aids": annots["aids"], "cids": annots["cids"], "rel_frame_index": annots["rel_frame_index"],
                "rel_boxes": dets.boxes, "rel_ssegs": dets.data["segmentations"],
                "rel_kpts": dets.data["keypoints"], "frame_dets": [dets]}

    def window_table(self, targets: Sequence[dict | Target]) -> WindowTable:
        """Targets (dicts or parsed) as a :class:`~ndpatch.batch.WindowTable`, each dict parsed once.

        Give the table (or ``table.take(indices)``) to :meth:`load_batch` to
        read batches of it with no per-target parsing.
        """
        return WindowTable.from_targets(self._parse_all(targets))

    def _parse_all(self, targets: Sequence[dict | Target]) -> list[Target]:
        parsed = []
        for i, target in enumerate(targets):
            try:
                parsed.append(target if isinstance(target, Target) else self.parse(target))
            except NdpatchError as err:
                raise at_target(err, i, target) from err
        return parsed

    def load_batch(self, targets: Sequence[dict | Target] | WindowTable, with_annots: bool = True,
                   out: np.ndarray | None = None, threads: int | None = None) -> dict:
        """Read a batch of same-sized windows into one (B, H, W, C) array.

        Targets are dicts (as for :meth:`load_sample`), parsed :class:`Target`
        values, or a :class:`~ndpatch.batch.WindowTable` (:meth:`window_table`:
        the fastest, nothing parsed per batch). Each window goes straight into
        its slot of ``out`` (allocated when not given; a caller's buffer, e.g.
        ``pinned_tensor.numpy()``, must have the batch's shape and dtype):
        windows that GDAL decodes (direct and COG backends) are read by
        ``threads`` threads of the process's reader pool (default
        :data:`~ndpatch.readers.BATCH_THREADS`; ``1`` reads in this thread), and
        memory-mapped (npy) windows are copied by torch's intra-op threads
        (``torch.get_num_threads()``) when ``threads`` > 1 and the batch is
        :data:`~ndpatch.batch.THREADED_COPY_BYTES` or more, else in this thread.
        Pixels and annotations equal :meth:`load_sample` per target. An
        error about one target names its position in the batch and the target.

        Returns a dict with ``im`` (B×H×W×C), ``targets`` (the parsed targets;
        the table itself for a table) and, when ``with_annots``, ``annots``
        (:class:`~ndpatch.batch.BatchAnnots`: per target, the keys of
        ``load_sample``'s ``annots``; ``annots.stacked()`` gives the batch's
        boxes, classes and ids as arrays).
        Video targets (``vidid`` / ``gids``) of one T×H×W×C shape give a
        (B, T, H, W, C) ``im`` (:func:`ndpatch.video.load_video_batch`); a
        batch cannot mix them with image targets.

        Example:
            >>> import ndpatch
            >>> sampler = ndpatch.CocoSampler.demo("shapes8")
            >>> batch = sampler.load_batch([{"gid": 1, "cx": 50, "cy": 40, "width": 32, "height": 32},
            ...                             {"gid": 2, "cx": -5, "cy": 9, "width": 32, "height": 32}])
            >>> batch["im"].shape, len(batch["annots"])
            ((2, 32, 32, 3), 2)
            >>> table = sampler.window_table([{"gid": 3, "cx": 20, "cy": 20, "width": 32, "height": 32}] * 8)
            >>> sampler.load_batch(table.take([0, 5]), with_annots=False)["im"].shape
            (2, 32, 32, 3)
        """
        threads = BATCH_THREADS if threads is None else max(1, int(threads))
        if isinstance(targets, WindowTable):
            table = parsed = targets
        else:
            if any(is_video_target(tr) for tr in targets):
                return load_video_batch(self, targets, with_annots, out, threads)
            parsed = self._parse_all(targets)
            table = WindowTable.from_targets(parsed)

        def resample(tr: Target) -> np.ndarray:
            return self.records.using(tr.gid, lambda rec: self._read_resampled(rec, tr, None))[1]

        im = read_batch(self.records, self.backend, table, out, threads, resample,
                        named=targets if len(targets) == len(table) else table)
        batch = {"im": im, "targets": parsed}
        if with_annots:
            batch["annots"] = select_annots(self.index, table, self._window_annots)
        return batch
