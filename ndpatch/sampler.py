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

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import kwimage
import numpy as np

from ndpatch.annots import window_annots
from ndpatch.cache import make_backend
from ndpatch.cache.base import CacheEntry, read_window
from ndpatch.errors import TargetError
from ndpatch import geo
from ndpatch.index import LABEL_CHANNELS, DatasetIndex
from ndpatch.masks import window_masks
from ndpatch.target import Target, parse_target, window_params
from ndpatch.video import is_video_target, load_video_batch, load_video_sample
from ndpatch.warp import read_aligned, read_resampled


class CocoSampler:
    """Random access to windows of the images of a kwcoco / MS-COCO dataset.

    Args:
        dset: a ``kwcoco.CocoDataset``, or the path of a kwcoco or plain MS-COCO json.
        workdir: the cache directory (cache backends); default ``$NDPATCH_CACHE``,
            else the per-user cache dir.
        backend: ``None`` (read sources directly through GDAL), or a cache
            backend name (``'npy'``, ``'cog'``, ``'auto'``) or instance.
        backend_options: settings passed to the backend (e.g. ``blocksize``).
    """

    def __init__(self, dset: Any, workdir: str | None = None, backend: Any = None,
                 autoinit: bool = True, verbose: int = 0, **backend_options):
        self.index = DatasetIndex(dset)
        self.workdir = workdir
        self.verbose = verbose
        self.backend = make_backend(backend, workdir=workdir, **backend_options)
        self._entries: dict[int, CacheEntry] = {}
        self._asset_entries: dict[str, CacheEntry] = {}
        self._georefs: dict[int, object] = {}
        self._bands: dict[tuple, list[int] | None] = {}
        self._regions = None
        self._classes = None

    # -- construction helpers (ndsampler compatible) --------------------------------
    @classmethod
    def demo(cls, key: str = "shapes8", workdir: str | None = None, backend: Any = None,
             **kwargs) -> "CocoSampler":
        """A sampler over one of kwcoco's toy datasets (``'shapes8'``, ``'vidshapes8'``, ...)."""
        from ndpatch.demo import kwcoco_demo
        return cls(kwcoco_demo(key), workdir=workdir, backend=backend, **kwargs)

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
        """The targets table and sampling strategies (:class:`ndpatch.regions.Regions`)."""
        if self._regions is None:
            from ndpatch.regions import Regions
            self._regions = Regions(self)
        return self._regions

    # -- pixels -------------------------------------------------------------------
    def entry(self, gid: int) -> CacheEntry:
        """The readable form of image ``gid``, converted into the cache on first touch."""
        entry = self._entries.get(gid)
        if entry is None:
            entry = self.backend.ensure(self.index.source(gid))
            self._entries[gid] = entry
        return entry

    def _image_dims(self, gid: int) -> tuple[int, int]:
        if self.index.is_multi_asset(gid):
            dims = self.index.image_dims(gid)
            if dims is None:
                raise TargetError(f"image {gid}: a multi-file image needs width and height in its record")
            return dims
        entry = self.entry(gid)
        return entry.height, entry.width

    def _band_list(self, tr: Target, entry: CacheEntry) -> list[int] | None:
        channels = tr.channels
        if channels is None:
            return None
        key = (tr.gid, channels if isinstance(channels, str) else tuple(channels))
        bands = self._bands.get(key, False)
        if bands is False:
            bands = self.index.bands_for(tr.gid, channels, entry.bands)
            self._bands[key] = bands
        return bands

    def parse(self, target: dict) -> Target:
        """Validate a target dict into a :class:`~ndpatch.target.Target`."""
        return parse_target(target, annotation_box=self.index.annotation_box,
                            image_dims=self._image_dims)

    def load_sample(self, target: dict, with_annots: bool = True, annot_ids=None,
                    visible_thresh: float = 0.0, out: np.ndarray | None = None,
                    with_masks: bool = False) -> dict:
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
        """
        if is_video_target(target):
            return load_video_sample(self, target, with_annots, annot_ids, visible_thresh, out)
        if target.get("gsd") is not None:
            target = {**target, "scale": self._gsd_scale(target)}
        tr = self.parse(target)
        if tr.scale == 1 and not self.index.is_multi_asset(tr.gid):
            entry = self.entry(tr.gid)
            im = read_window(self.backend, entry, tr.rows, tr.cols, self._band_list(tr, entry),
                             tr.fill, tr.dtype, out)
            data_dims, nodata = (entry.height, entry.width), entry.nodata
        else:
            im, data_dims, nodata = self._read_resampled(tr, out)
        x0, y0, x1, y1 = tr.cols.start, tr.rows.start, tr.cols.stop, tr.rows.stop
        space_slice = tr.space_slice
        tf_rel_to_abs = kwimage.Affine(np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]]))
        if tr.scale != 1:
            tf_rel_to_abs = tf_rel_to_abs @ kwimage.Affine.scale(1 / tr.scale)
        if tr.scale == 1 and nodata is None:  # geo.valid_fraction's value, without per-pixel work
            rows_in = max(0, min(y1, data_dims[0]) - max(y0, 0))
            cols_in = max(0, min(x1, data_dims[1]) - max(x0, 0))
            valid_fraction = (rows_in / (y1 - y0)) * (cols_in / (x1 - x0))
        else:
            valid_fraction = geo.valid_fraction(im, tf_rel_to_abs, data_dims, nodata)
        normalized = {
            **target, "gid": tr.gid, "space_slice": space_slice, "slices": space_slice,
            "pad": tr.pad, "space_dims": data_dims, "data_dims": data_dims,
            "window_dims": (space_slice[0].stop - space_slice[0].start,
                            space_slice[1].stop - space_slice[1].start),
        }
        sample = {
            "im": im,
            "target": normalized,
            "tr": normalized,
            "params": {
                **window_params(x0, y0, x1, y1, tf_rel_to_abs, data_dims, tr.pad),
                "scale": tr.scale,
                "valid_fraction": valid_fraction,
                **self._window_georef(tr.gid, tf_rel_to_abs),
            },
            "classes": self.classes,
        }
        if with_annots or with_masks:
            sample["annots"] = self._window_annots(tr, visible_thresh, annot_ids)
            sample["kp_classes"] = self.kp_classes
        if with_masks:
            sample.update(window_masks(sample["annots"], im.shape[:2]))
            label_map = self._label_raster(tr, tf_rel_to_abs, im.shape[:2])
            if label_map is not None:
                sample["label_map"] = label_map
        return sample

    def _gsd_scale(self, target: dict) -> float:
        """The scale that gives a target's ``gsd`` (CRS units per output pixel)."""
        gid = target.get("gid", target.get("image_id"))
        if gid is None and target.get("aid") is not None:
            gid = self.index.annotation(target["aid"])["image_id"]
        georef = self._georef(gid)
        if georef is None:
            raise TargetError(f"image {gid}: a gsd target needs a georeferenced image")
        return georef.gsd / float(target["gsd"])

    def _georef(self, gid: int):
        if gid not in self._georefs:
            self._georefs[gid] = self.index.georef(gid)
        return self._georefs[gid]

    def _window_georef(self, gid: int, tf_rel_to_abs) -> dict:
        """``geotransform`` (GDAL order) and ``crs`` (WKT) of the sample's pixel grid, when georeferenced."""
        georef = self._georef(gid)
        if georef is None:
            return {"geotransform": None, "crs": None}
        return {"geotransform": georef.warped(tf_rel_to_abs).geotransform(), "crs": georef.crs_wkt}

    def asset_entry(self, source) -> CacheEntry:
        """The readable form of one asset file (cached once per path)."""
        entry = self._asset_entries.get(source.path)
        if entry is None:
            entry = self._asset_entries[source.path] = self.backend.ensure(source)
        return entry

    def _read_resampled(self, tr: Target, out: np.ndarray | None):
        """A scaled and/or multi-file window: every asset resampled onto the sample grid."""
        tf = kwimage.Affine.translate((tr.cols.start, tr.rows.start)) @ kwimage.Affine.scale(1 / tr.scale)
        if self.index.is_multi_asset(tr.gid):
            plan = self.index.channel_plan(tr.gid, tr.channels)
            parts = [(self.asset_entry(asset.source), asset.warp, bands, positions)
                     for asset, bands, positions in plan]
            n_channels = sum(len(positions) for *_, positions in plan)
            data_dims = self._image_dims(tr.gid)
        else:
            entry = self.entry(tr.gid)
            bands = self._band_list(tr, entry)
            n_channels = entry.bands if bands is None else len(bands)
            parts = [(entry, kwimage.Affine.eye(), bands if bands is not None else list(range(entry.bands)),
                      list(range(n_channels)))]
            data_dims = (entry.height, entry.width)
        im = read_aligned(self.backend, parts, tf, tr.shape, n_channels, tr.fill, tr.dtype,
                          interpolation=tr.interpolation, antialias=tr.antialias, out=out)
        nodatas = {entry.nodata for entry, *_ in parts}
        return im, data_dims, nodatas.pop() if len(nodatas) == 1 else None

    def _label_raster(self, tr: Target, tf_rel_to_abs, shape: tuple[int, int]) -> np.ndarray | None:
        """The window of the image's label raster (an asset with channel ``class_id``), if it has one."""
        if not self.index.is_multi_asset(tr.gid):
            return None
        for asset in self.index.assets(tr.gid):
            if asset.source.channels and asset.source.channels[0] in LABEL_CHANNELS:
                entry = self.asset_entry(asset.source)
                return read_resampled(self.backend, entry, asset.warp.inv() @ tf_rel_to_abs, shape, [0], 0,
                                      np.int32, interpolation="nearest")[..., 0]
        return None

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

    def load_batch(self, targets: Sequence[dict | Target], with_annots: bool = True,
                   out: np.ndarray | None = None, threads: int | None = None) -> dict:
        """Read a batch of same-sized windows into one (B, H, W, C) array.

        Targets are dicts (as for :meth:`load_sample`) or parsed :class:`Target`
        values. Reads are grouped by image and each window goes straight into
        its slot of ``out`` (allocated when not given; a caller's buffer, e.g.
        ``pinned_tensor.numpy()``, must have the batch's shape and dtype).
        Windows that GDAL decodes (direct and COG backends) are read on a
        bounded pool of ``threads`` threads (default :data:`BATCH_THREADS`;
        ``1`` reads in this thread); memory-mapped windows are copied in this
        thread. Pixels and annotations equal :meth:`load_sample` per target.

        Returns a dict with ``im`` (B×H×W×C), ``targets`` (the parsed targets)
        and, when ``with_annots``, ``annots`` (one entry per target, the keys of
        ``load_sample``'s ``annots``).
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
        """
        if any(is_video_target(tr) for tr in targets):
            threads = BATCH_THREADS if threads is None else max(1, int(threads))
            return load_video_batch(self, targets, with_annots, out,
                                    _reader_pool(threads) if threads > 1 else None)
        parsed = [tr if isinstance(tr, Target) else self.parse(tr) for tr in targets]
        if not parsed:
            raise TargetError("load_batch needs at least one target")
        # Scaled and multi-file windows are resampled (as in load_sample), then copied into their slot.
        resampled = {i: self._read_resampled(tr, None)[0] for i, tr in enumerate(parsed)
                     if tr.scale != 1 or self.index.is_multi_asset(tr.gid)}
        entries = [None if i in resampled else self.entry(tr.gid) for i, tr in enumerate(parsed)]
        bands = [None if entry is None else self._band_list(tr, entry) for tr, entry in zip(parsed, entries)]
        layouts = [(*resampled[i].shape, resampled[i].dtype) if entry is None else
                   (*tr.shape, entry.bands if band is None else len(band),
                    entry.dtype if tr.dtype is None else tr.dtype)
                   for i, (tr, entry, band) in enumerate(zip(parsed, entries, bands))]
        height, width, n_bands, dtype = layouts[0]

        def describe(gid: int) -> str:
            return f"image {gid} ({', '.join(source.path for source in self.index.sources(gid))})"
        for tr, layout in zip(parsed, layouts):
            if layout != layouts[0]:
                raise TargetError(f"{describe(tr.gid)}: its window is "
                                  f"{layout[:3]} {layout[3]} but the batch's first is {layouts[0][:3]} {dtype}; "
                                  "a batch needs one shape and dtype")
        shape = (len(parsed), height, width, n_bands)
        if out is None:
            out = np.empty(shape, dtype=dtype)
        elif out.shape != shape or out.dtype != dtype:
            raise TargetError(f"{describe(parsed[0].gid)}: out buffer is {out.shape} {out.dtype}, "
                              f"the batch needs {shape} {dtype}")

        def read(slots: Sequence[int]) -> None:
            for i in slots:
                tr = parsed[i]
                if entries[i] is None:
                    out[i] = resampled[i]
                else:
                    read_window(self.backend, entries[i], tr.rows, tr.cols, bands[i], tr.fill, tr.dtype, out[i])

        order = sorted(range(len(parsed)), key=lambda i: (parsed[i].gid, parsed[i].rows.start))
        threads = BATCH_THREADS if threads is None else max(1, int(threads))
        if threads > 1 and len(order) > 1 and any(entry is not None and entry.kind != "npy" for entry in entries):
            n = len(order)
            chunks = [order[k * n // threads:(k + 1) * n // threads] for k in range(threads)]
            for future in [_reader_pool(threads).submit(read, chunk) for chunk in chunks if chunk]:
                future.result()
        else:
            read(order)
        batch = {"im": out, "targets": parsed}
        if with_annots:
            batch["annots"] = [self._window_annots(tr) for tr in parsed]
        return batch

    # -- sampling strategies (ndsampler compatible) ---------------------------------
    def load_item(self, index: int, with_annots: bool = True, target: dict | None = None,
                  rng=None, **kwargs) -> dict:
        """The sample of item ``index`` of the preselected positives + negatives."""
        tr = self.regions.get_item(index, rng=rng)
        return self.load_sample({**tr, **(target or {})}, with_annots=with_annots, **kwargs)

    def load_positive(self, index: int | None = None, with_annots: bool = True,
                      target: dict | None = None, rng=None, **kwargs) -> dict:
        """A window around an annotation (``index`` into the targets table, or drawn)."""
        tr = self.regions.get_positive(index, rng=rng)
        return self.load_sample({**tr, **(target or {})}, with_annots=with_annots, **kwargs)

    def load_negative(self, index: int | None = None, with_annots: bool = True,
                      target: dict | None = None, rng=None, **kwargs) -> dict:
        """A window that intersects no annotation."""
        tr = self.regions.get_negative(index, rng=rng)
        return self.load_sample({**tr, **(target or {})}, with_annots=with_annots, **kwargs)



#: Reader threads per process for batches of GDAL-decoded windows (GDAL releases the GIL).
BATCH_THREADS = min(4, os.cpu_count() or 1)

_READER_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _reader_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` reader threads (a forked child starts its own)."""
    key = (os.getpid(), threads)
    pool = _READER_POOLS.get(key)
    if pool is None:
        pool = _READER_POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="ndpatch-read")
    return pool
