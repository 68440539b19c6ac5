"""ndsampler 0.8.1's sample options that change what ``im`` is, applied after (or instead of) ndpatch's read.

- ``as_xarray``: ``im`` as an ``xarray.DataArray`` with dims ``(y, x, c)`` or
  ``(t, y, x, c)`` and the channel names as ``c`` coordinates (:func:`as_xarray`).
- ``padkw={'mode': 'reflect', ...}``: the part of the window past the image
  filled by ``numpy.pad`` from the part inside (:func:`repad`).
- ``with_annots=['boxes']``: segmentations and keypoints left out (:func:`drop_fields`).
- ``finalize=False``: ``im`` as ``delayed_image`` crops (one per frame of a
  video) that read the window when finalized (:func:`delayed_sample`).
- ``use_native_scale`` (videos): each frame as a list of its files' windows at
  their own resolution, and ``realign_native='largest'`` each frame's files
  resampled to its largest one (:func:`native_scale_sample`).

The last two are built by ``delayed_image`` from the dataset's files, as
ndsampler builds them (they do not go through ndpatch's cache).
"""
from __future__ import annotations

import numpy as np

from ndpatch.dataset import channel_names
from ndpatch.errors import TargetError
from ndpatch.target import clip_window, parse_channels, parse_interpolation


def channel_labels(sampler, sample: dict) -> list[str] | None:
    """The names of ``im``'s channels (None when they are not known for every band)."""
    im, target = sample["im"], sample["target"]
    if "channels" in sample["params"]:
        labels = [str(c) for c in sample["params"]["channels"]]
    else:
        names = sampler.records.get(target["gid"]).channels
        request = parse_channels(target.get("channels"))
        if request is None:
            labels = None if names is None else list(names)
        else:
            request = channel_names(request) if isinstance(request, str) else np.atleast_1d(request).tolist()
            labels = [names[c] if isinstance(c, int) and names is not None else str(c) for c in request]
    return labels if labels is not None and len(labels) == im.shape[-1] else None


def as_xarray(sampler, sample: dict):
    """``sample['im']`` as an ``xarray.DataArray`` (dims ``y, x, c`` or ``t, y, x, c``; ``c``: channel names)."""
    import xarray as xr
    im = sample["im"]
    dims = ("t", "y", "x", "c") if im.ndim == 4 else ("y", "x", "c")
    labels = channel_labels(sampler, sample)
    return xr.DataArray(im, dims=dims, coords={} if labels is None else {"c": labels})


def repad(sample: dict, mode: str, options: dict) -> None:
    """Refill the part of ``im`` past the image with ``numpy.pad(inside, mode=mode, **options)``, in place."""
    params, im = sample["params"], sample["im"]
    if params.get("scale", 1) != 1 or sample["target"].get("scale") not in (None, 1):
        raise TargetError(f"padkw mode {mode!r} is not supported with a scaled window")
    (y0, y1), (x0, x1) = params["st_dims"][-2:]
    height, width = params["data_dims"][-2:]
    rows, cols = clip_window(slice(y0, y1), slice(x0, x1), height, width)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise TargetError(f"padkw mode {mode!r} needs part of the window inside the image; "
                          f"rows {y0}:{y1}, cols {x0}:{x1} of a {height}x{width} image")
    r0, c0 = rows.start - y0, cols.start - x0
    r1, c1 = r0 + rows.stop - rows.start, c0 + cols.stop - cols.start
    widths = [(r0, im.shape[-3] - r1), (c0, im.shape[-2] - c1), (0, 0)]
    frames = im if im.ndim == 4 else im[None]
    for frame in frames:
        frame[...] = np.pad(frame[r0:r1, c0:c1], widths, mode=mode, **options)


def drop_fields(annots, fields: tuple[str, ...]) -> dict:
    """The annotations with only ``fields`` filled: segmentations / keypoints of the others are None."""
    import kwimage
    annots = dict(annots)
    frame_dets = []
    for dets in annots["frame_dets"]:
        dets = dets.copy()
        if "segmentation" not in fields:
            dets.data["segmentations"] = kwimage.PolygonList([None] * len(dets))
        if "keypoints" not in fields:
            dets.data["keypoints"] = kwimage.PointsList([None] * len(dets))
        frame_dets.append(dets)
    annots["frame_dets"] = frame_dets
    annots["rel_ssegs"] = kwimage.PolygonList([s for d in frame_dets for s in d.data["segmentations"].data])
    annots["rel_kpts"] = kwimage.PointsList([k for d in frame_dets for k in d.data["keypoints"].data])
    return annots


def _delayed_crops(sampler, target: dict) -> tuple[list, bool]:
    """One ``delayed_image`` crop of the target's window per frame (in video space for a video target)."""
    inferred = sampler._infer_target_attributes(target)
    video = "gids" in inferred
    channels = parse_channels(target.get("channels"))
    if channels is not None and not isinstance(channels, str):
        if any(not isinstance(c, str) for c in np.atleast_1d(channels).tolist()):
            raise TargetError(f"finalize=False and use_native_scale take channel names, got {channels!r}")
        channels = "|".join(channels)
    interpolation, antialias = parse_interpolation(target)
    nodata = "float" if target.get("nodata", target.get("fill")) in ("float", "nan", "auto") else None
    pr, pc = inferred["pad"]
    pad = None if pr == pc == 0 else [(pr, pr), (pc, pc)]
    crops = []
    for gid in inferred["gids"] if video else [inferred["gid"]]:
        delayed = sampler.dset.coco_image(gid).imdelay(channels=channels, space="video" if video else "image",
                                                       interpolation=interpolation, antialias=antialias,
                                                       nodata_method=nodata)
        crop = delayed.crop(inferred["space_slice"], clip=False, wrap=False, pad=pad, lazy=True)
        crops.append(crop.prepare().optimize())
    return crops, video


def delayed_sample(sampler, target: dict, with_annots: bool, annot_ids, visible_thresh: float) -> dict:
    """``finalize=False``: ``im`` is the window's ``delayed_image`` crop (a list of them, one per frame, for a video)."""
    sample = sampler._sample(target, with_annots, annot_ids, visible_thresh, None, False)
    crops, video = _delayed_crops(sampler, target)
    scale = sample["target"].get("scale")
    if scale not in (None, 1):
        crops = [crop.warp({"scale": scale}) for crop in crops]
    sample["im"] = crops if video else crops[0]
    return sample


def native_scale_sample(sampler, target: dict, with_annots: bool, annot_ids, visible_thresh: float) -> dict:
    """``use_native_scale``: each frame's files at their own resolution (see the module doc).

    ``params['jagged_meta']`` has, per frame, ``align`` (each part's warp from the
    aligned window), ``chans`` (its channels) and ``grid_to_part_warps``. Annotations
    stay in the aligned window's frame (scaled by ``scale``), as in ndsampler.
    """
    import kwimage
    if not ("vidid" in target or "gids" in target or "video_id" in target or "image_ids" in target):
        raise TargetError("use_native_scale is for video targets (vidid / gids), as in ndsampler")
    realign = target.get("realign_native", False)
    if realign not in (False, None, "largest"):
        raise TargetError(f"realign_native must be 'largest' or False, got {realign!r}")
    sample = sampler._sample(target, with_annots, annot_ids, visible_thresh, None, False)
    crops, _ = _delayed_crops(sampler, target)
    scale = sample["target"].get("scale")
    to_window = kwimage.Affine.coerce(sample["params"]["tf_rel_to_abs"]).inv()
    frames, meta = [], []
    for crop in crops:
        parts, align = crop.undo_warps(remove=["scale"], squash_nans=True, return_warps=True)
        if scale not in (None, 1):
            parts = [part.warp({"scale": scale}) for part in parts]
        warps = [kwimage.Affine.scale(scale) @ to_window if scale not in (None, 1) else to_window for _ in parts]
        meta.append({"align": align, "chans": [part.channels for part in parts], "grid_to_part_warps": warps})
        if realign == "largest":
            from delayed_image import DelayedChannelConcat
            largest = max((part.dsize for part in parts), key=lambda dsize: dsize[0] * dsize[1])
            parts = [part.warp({"scale": np.array(largest) / np.array(part.dsize)}, dsize=largest) for part in parts]
            frames.append(_finalized(DelayedChannelConcat(parts, dsize=largest).optimize(), target))
        else:
            frames.append([_finalized(part.optimize(), target) for part in parts])
    if realign == "largest" and len({frame.shape for frame in frames}) == 1:
        if target.get("as_xarray"):
            import xarray as xr
            frames = xr.concat(frames, dim="t")
        else:
            frames = np.stack(frames)
    sample["im"] = frames
    sample["params"]["jagged_meta"] = meta
    return sample


def _finalized(delayed, target: dict):
    return (delayed.as_xarray() if target.get("as_xarray") else delayed).finalize()
