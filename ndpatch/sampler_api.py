"""ndsampler 0.8.1's ``CocoSampler`` API, on ndpatch's sampler: the adapter :class:`CocoSampler` inherits.

Everything ndsampler's clients call on a sampler that ndpatch's read path does
not need lives here: the counts and class lookups (``n_images``,
``class_ids``, ``lookup_class_name``, ...), whole images (``load_image``,
``frames``), cache identity (``hashid``), ``coerce`` and the strategy loaders
(``load_item``, ``load_positive``, ``load_negative``). ``load_sample`` sends a
call here only when it uses something ndsampler-specific — a deprecated
keyword (``pad=``, ``dtype=``, ``padkw=``, ``nodata=``, ``tr=``), ``with_annots``
as a list of fields, or a target key of :data:`SAMPLE_OPTIONS` — so plain
targets pay for none of it. Spatial keys (``slices``, ``window_dims``,
``image_ids``, ...) are understood by the target parsers themselves
(:mod:`ndpatch.target`, :mod:`ndpatch.video.targets`).

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> sampler.n_images, len(sampler) == sampler.n_positives, sampler.lookup_class_id("star")
    (8, True, 3)
    >>> sample = sampler.load_sample({"aid": 1, "window_dims": "square", "as_xarray": True})
    >>> sample["im"].dims, sample["im"].shape, sample["target"]["annot_idx"]
    (('y', 'x', 'c'), (162, 162, 3), 0)
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ndpatch.errors import NdpatchError, TargetError
from ndpatch.sampler_frames import SamplerFrames
from ndpatch.sampling.regions_api import DatasetNames

#: Target keys that only ndsampler code uses: a target with one of them goes through
#: :meth:`SamplerAPI._load_ndsampler_sample` (``aid``: its returned target gains ndsampler's inferred keys).
SAMPLE_OPTIONS = frozenset({"aid", "as_xarray", "finalize", "legacy_target", "legacy_annots", "verbose_ndsample",
                            "padkw", "use_native_scale", "realign_native", "optimize"})
#: ``load_sample`` keywords ndsampler 0.8.1 still accepts with a DeprecationWarning (they move into the target).
DEPRECATED_KWARGS = ("pad", "padkw", "dtype", "nodata")
#: What ``with_annots`` may list (ndsampler's names).
ANNOT_FIELDS = ("boxes", "segmentation", "keypoints")


def _deprecated(name: str, where: str, instead: str) -> None:
    warnings.warn(f"ndsampler's {name!r} {where} is deprecated: {instead}", DeprecationWarning, stacklevel=4)


def annotation_fields(with_annots: Any) -> tuple[str, ...]:
    """``with_annots`` as the fields it asks for: True → all, a list or ``'boxes+segmentation'`` → those.

    >>> annotation_fields(True), annotation_fields("boxes+keypoints"), annotation_fields(False)
    (('boxes', 'segmentation', 'keypoints'), ('boxes', 'keypoints'), ())
    """
    if isinstance(with_annots, str):
        fields = tuple(with_annots.split("+"))
    elif isinstance(with_annots, (list, tuple, set, frozenset)):
        fields = tuple(with_annots)
    else:
        return ANNOT_FIELDS if with_annots else ()
    unknown = [f for f in fields if f not in ANNOT_FIELDS]
    if unknown:
        raise TargetError(f"with_annots fields must be among {ANNOT_FIELDS}, got {unknown}")
    return fields


def backend_spec(backend: Any, options: dict) -> tuple[Any, dict]:
    """ndsampler's ``backend={'type': 'npy' | 'cog' | None, 'config': {...}}`` as a name and options.

    ``compress='auto'`` is ndpatch's lossless default (ndsampler's picks JPEG for RGB bytes).

    >>> backend_spec({"type": "cog", "config": {"compress": "auto"}}, {})
    ('cog', {})
    """
    if not isinstance(backend, dict):
        return backend, options
    unknown = set(backend) - {"type", "config", "_hack_use_cli"}
    if unknown:
        raise NdpatchError(f"backend dict has unknown keys {sorted(unknown)}; expected 'type' and 'config'")
    config = {**backend.get("config", {}), **options}
    if config.get("compress") == "auto":
        del config["compress"]
    return backend.get("type"), config


class SamplerAPI(DatasetNames):
    """The parts of ndsampler 0.8.1's ``CocoSampler`` API that ndpatch's own read path does not use."""

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def coerce(cls, data: Any, **kwargs):
        """A sampler from a sampler (returned as is), a ``kwcoco.CocoDataset`` or a dataset path."""
        if isinstance(data, cls):
            if kwargs:
                raise NdpatchError(f"data is already a sampler; cannot apply {sorted(kwargs)}")
            return data
        return cls(data, **kwargs)

    # -- counts and classes: image_ids, n_images, class_ids, lookup_class_name, ... (DatasetNames)
    @property
    def n_positives(self) -> int:
        return self.regions.n_positives

    @property
    def n_samples(self) -> int:
        return self.regions.n_samples

    def __len__(self) -> int:
        return self.n_samples

    def preselect(self, **kwargs):
        """``regions.preselect`` (see :meth:`ndpatch.sampling.regions.Regions.preselect`)."""
        return self.regions.preselect(**kwargs)

    def new_sample_grid(self, task: str, window_dims, window_overlap: float = 0.0, **options) -> dict:
        """``regions.new_sample_grid`` (``'image_detection'`` or ``'video_detection'``)."""
        return self.regions.new_sample_grid(task, window_dims, window_overlap, **options)

    # -- whole images -------------------------------------------------------------------------
    @property
    def frames(self) -> SamplerFrames:
        """ndsampler's ``Frames`` API over this sampler (``load_image``, ``load_region``, ``prepare``)."""
        if getattr(self, "_frames", None) is None:
            self._frames = SamplerFrames(self)
        return self._frames

    @property
    def _backend(self) -> dict:
        """The backend as ndsampler's config dict (``{'type': None | 'npy' | 'cog' | 'auto', 'config': {...}}``)."""
        name = self.backend.name
        return {"type": None if name == "direct" else name, "config": dict(getattr(self.backend, "settings", {}))}

    def load_image(self, image_id: int, cache: bool = True):
        """The whole image (``cache=True``: an indexable reader over the backend; else an array)."""
        return self.frames.load_image(image_id, cache=cache)

    def load_annotations(self, image_id: int) -> list[dict]:
        """The COCO annotation dicts of an image."""
        self.index.image(image_id)
        return [self.dset.anns[aid] for aid in self.dset.index.gid_to_aids[image_id]]

    def load_image_with_annots(self, image_id: int, cache: bool = True) -> tuple[dict, list[dict]]:
        """The image record with ``imdata`` (:meth:`load_image`) and its annotations."""
        img = {**self.index.image(image_id), "imdata": self.load_image(image_id, cache=cache)}
        return img, self.load_annotations(image_id)

    def load_target_annots(self, target: dict) -> list[int]:
        """Ids of the annotations that meet a target's window, on all of its frames, without reading pixels."""
        target = self._infer_target_attributes(target)
        rows, cols = target["space_slice"]
        gids = target.get("gids", [target.get("gid")])
        found = []
        for gid in gids:
            image_annots = self.index.image_annots(gid)
            found += image_annots.aids[image_annots.select(cols.start, rows.start, cols.stop, rows.stop)].tolist()
        return found

    # -- cache identity -------------------------------------------------------------------------
    def _depends(self) -> dict:
        """What :attr:`hashid` is made of: the dataset's content and the backend's settings."""
        from collections import OrderedDict

        import ubelt as ub
        dset_hashid = self.regions.hashid
        return OrderedDict([("regions_hashid", dset_hashid),
                            ("frames_hashid", ub.hash_data([dset_hashid, self._backend["type"],
                                                            sorted(self._backend["config"].items())]))])

    @property
    def hashid(self) -> str:
        """A hash of the dataset's content and backend settings (what clients key their caches on)."""
        if getattr(self, "_hashid", None) is None:
            import ubelt as ub
            self._hashid = ub.hash_data(self._depends())
        return self._hashid

    # -- strategies (ndsampler's loaders) -------------------------------------------------------
    def load_item(self, index: int, with_annots=True, target: dict | None = None, rng=None, **kwargs) -> dict:
        """The sample of item ``index`` of the preselected positives + negatives."""
        tr = self.regions.get_item(index, rng=rng)
        return self.load_sample({**tr, **_extra_target(target, kwargs, "load_item")},
                                with_annots=with_annots, **kwargs)

    def load_positive(self, index: int | None = None, with_annots=True, target: dict | None = None,
                      rng=None, **kwargs) -> dict:
        """A window around an annotation (``index`` into the pool or table, or drawn)."""
        tr = self.regions.get_positive(index, rng=rng)
        return self.load_sample({**tr, **_extra_target(target, kwargs, "load_positive")},
                                with_annots=with_annots, **kwargs)

    def load_negative(self, index: int | None = None, with_annots=True, target: dict | None = None,
                      rng=None, **kwargs) -> dict:
        """A window that meets no annotation (``index`` into the preselected pool, or drawn)."""
        tr = self.regions.get_negative(index, rng=rng)
        return self.load_sample({**tr, **_extra_target(target, kwargs, "load_negative")},
                                with_annots=with_annots, **kwargs)

    # -- ndsampler's load_sample ----------------------------------------------------------------
    def _infer_target_attributes(self, target: dict, **kwargs) -> dict:
        """The target with what ndsampler infers (``gid``/``gids``, window, ``slices``, dims ...), no pixels read."""
        from ndpatch.target import sample_target
        from ndpatch.video import is_video_target, video_frames
        from ndpatch.video.targets import parse_video_target, video_sample_target
        target = _moved_kwargs(target, kwargs)
        if is_video_target(target):
            tr = parse_video_target(target, video_frames(self))
            n_video = len(self.index.frame_order(tr.vidid)) if tr.vidid is not None else len(tr.gids)
            inferred = video_sample_target(target, tr, n_video)
        else:
            tr = self.parse(target)
            inferred = sample_target(target, tr, self._image_dims(tr.gid))
        return self._annotation_keys(inferred, target)

    def _load_slice(self, target: dict) -> dict:
        """The sample of a target without its annotations (ndsampler's first half of ``load_sample``)."""
        return self.load_sample(target, with_annots=False)

    def _populate_overlap(self, sample: dict, visible_thresh: float = 0.1, with_annots=True,
                          annot_ids=None) -> dict:
        """Add ``annots`` (and ``target['annot_idx']``) to a sample from :meth:`_load_slice`."""
        full = self.load_sample(sample["target"], with_annots=with_annots, annot_ids=annot_ids,
                                visible_thresh=visible_thresh)
        sample["annots"] = full["annots"]
        sample["target"] = full["target"]
        return sample

    def _annotation_keys(self, inferred: dict, target: dict) -> dict:
        """ndsampler's keys of an ``aid`` target: ``category_id`` and the box's ``cx, cy, width, height``."""
        aid = target.get("aid")
        if aid is None or aid == -1:
            return inferred
        inferred.setdefault("category_id", self.index.annotation(aid).get("category_id"))
        if "space_slice" not in target and "slices" not in target and not {"cx", "cy", "width", "height"} <= set(target):
            _, x, y, w, h = self.index.annotation_box(aid)
            for key, value in (("cx", x + w / 2), ("cy", y + h / 2), ("width", w), ("height", h)):
                inferred.setdefault(key, value)
        return inferred

    def _load_ndsampler_sample(self, target, with_annots, annot_ids, visible_thresh, out, with_masks,
                               kwargs: dict) -> dict:
        """``load_sample`` for a call that uses ndsampler-only keywords or target keys (see module doc)."""
        from ndpatch.sample_options import (as_xarray, delayed_sample, drop_fields, native_scale_sample,
                                            repad)
        if target is None and "tr" in kwargs:
            _deprecated("tr", "keyword of load_sample", "pass the target dict as `target`")
            target = kwargs.pop("tr")
        if not isinstance(target, dict):
            raise TargetError(f"a target must be a dict, got {type(target).__name__}: {target!r:.80}")
        target = _moved_kwargs(target, kwargs)
        fields = annotation_fields(with_annots)
        padkw = dict(target.get("padkw") or {"mode": "constant"})
        mode = padkw.pop("mode", "constant")
        request = {**target}
        if "constant_values" in padkw:
            request["fill"] = padkw.pop("constant_values")
        if target.get("use_native_scale") or target.get("finalize") is False:
            builder = native_scale_sample if target.get("use_native_scale") else delayed_sample
            sample = builder(self, request, bool(fields), annot_ids, visible_thresh)
        else:
            sample = self._sample(request, bool(fields), annot_ids, visible_thresh, out, with_masks)
            if mode != "constant":
                repad(sample, mode, padkw)
        if padkw and mode == "constant":
            raise TargetError(f"padkw options {sorted(padkw)} need a numpy.pad mode other than 'constant'")
        normalized = self._annotation_keys(sample["target"], target)
        for key in ("fill", "padkw"):   # the caller's own spelling, as ndsampler returns it
            if key in target:
                normalized[key] = target[key]
            else:
                normalized.pop(key, None)
        if "annots" in sample:
            if target.get("legacy_annots", True) is False:
                sample["annots"] = {"frame_dets": sample["annots"]["frame_dets"]}
            else:
                aid = target.get("aid")
                found = np.flatnonzero(np.asarray(sample["annots"]["aids"]) == aid) if aid is not None else []
                normalized["annot_idx"] = int(found[0]) if len(found) else -1
                if len(fields) < len(ANNOT_FIELDS):
                    sample["annots"] = drop_fields(sample["annots"], fields)
        if target.get("as_xarray") and isinstance(sample["im"], np.ndarray):
            sample["im"] = as_xarray(self, sample)
        if target.get("legacy_target", True) is False:
            sample.pop("tr", None)
        if target.get("verbose_ndsample"):
            changed = {k: v for k, v in normalized.items() if k not in target or target[k] is not v}
            print(f"ndpatch load_sample: target {target!r}\n  inferred {changed!r}")
        return sample


def _moved_kwargs(target: dict, kwargs: dict) -> dict:
    """ndsampler's deprecated ``load_sample`` keywords moved into (a copy of) the target, with a warning."""
    if not kwargs:
        return target
    unknown = sorted(set(kwargs) - set(DEPRECATED_KWARGS))
    if unknown:
        raise TargetError(f"load_sample got unexpected keyword arguments {unknown}; "
                          f"target keys go in the target dict")
    target = dict(target)
    for key in DEPRECATED_KWARGS:
        if key in kwargs:
            _deprecated(key, "keyword of load_sample", f"put {key!r} in the target dict")
            if key in target:
                warnings.warn(f"{key!r} was given both as a keyword and in the target; the keyword wins",
                              UserWarning, stacklevel=4)
            target[key] = kwargs[key]
    return target


def _extra_target(target: dict | None, kwargs: dict, where: str) -> dict:
    """The ``target`` overrides of a strategy loader (ndsampler's deprecated ``tr=`` keyword included)."""
    if "tr" in kwargs:
        _deprecated("tr", f"keyword of {where}", "use target=")
        if target is not None:
            warnings.warn("the deprecated tr= overrides target=", UserWarning, stacklevel=3)
        target = kwargs.pop("tr")
    return dict(target or {})
