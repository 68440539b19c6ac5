"""Space-time samples and batches: a video target's frames read into one T×H×W×C array.

``annots['frame_dets']`` holds one ``kwimage.Detections`` per frame, in the
window's pixel frame, with ``track_ids``. Frames are opened through the
sampler's backend only when a target asks for them; each file is its own cache
entry. :func:`load_video_batch` stacks same-shaped video targets into B×T×H×W×C.

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("vidshapes1-frames3")
    >>> sample = load_video_sample(sampler, {"vidid": 1, "time_slice": slice(1, 3),
    ...                                      "space_slice": (slice(8, 40), slice(-4, 20))})
    >>> sample["im"].shape, sample["params"]["gids"], len(sample["annots"]["frame_dets"])
    ((2, 32, 24, 3), [2, 3], 2)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ndpatch.errors import NdpatchError, TargetError
from ndpatch.readers import READERS
from ndpatch.batch import at_target
from ndpatch.target import window_params
from ndpatch.video.detections import frame_detections, stack_annots
from ndpatch.video.frames import Frame, video_frames
from ndpatch.video.targets import VideoTarget, is_video_target, parse_video_target, video_sample_target
from ndpatch.video.warping import read_frame


@dataclass(frozen=True, slots=True)
class VideoLayout:
    """What a video target reads: its parsed form, frames, channel names, dtype and T×H×W×C shape."""

    tr: VideoTarget
    frames: tuple[Frame, ...]
    channels: tuple[str | int, ...]
    dtype: np.dtype
    shape: tuple[int, int, int, int]

    def describe(self) -> str:
        return self.frames[0].describe()


def video_layout(sampler, target: dict) -> VideoLayout:
    """Parse a video target and resolve its channels, dtype and shape (opens its frames, reads nothing)."""
    frames = video_frames(sampler)
    tr = parse_video_target(target, frames)
    frame_list = tuple(frames.frame(gid) for gid in tr.gids)
    channels = tr.channels
    if channels is None:   # every frame's channels, in file order; '<all>': sorted by name, as ndsampler
        channels = tuple(dict.fromkeys(c for frame in frame_list for c in frame.channels))
        if target.get("channels") == "<all>":
            channels = tuple(sorted(channels, key=str))
    dtype = tr.dtype
    if dtype is None:
        used = {frame.assets[found[0]].entry.dtype
                for frame in frame_list for found in map(frame.locate, channels) if found}
        used = used or {asset.entry.dtype for frame in frame_list for asset in frame.assets}
        dtype = np.result_type(*used)
    shape = (*tr.shape, len(channels))
    return VideoLayout(tr, frame_list, tuple(channels), np.dtype(dtype), shape)


def read_video_pixels(backend, layout: VideoLayout, out: np.ndarray) -> list[tuple[str, ...]]:
    """Fill ``out`` (the layout's shape and dtype) frame by frame; returns each frame's missing channels."""
    return [read_frame(backend, frame, layout.tr, layout.channels, layout.dtype, out[t])
            for t, frame in enumerate(layout.frames)]


def load_video_sample(sampler, target: dict, with_annots: bool = True, annot_ids=None,
                      visible_thresh: float = 0.0, out: np.ndarray | None = None) -> dict:
    """Read a T×H×W×C space-time window and each frame's annotations (see the module doc).

    ``params`` holds ndsampler's keys (``offset``, ``tf_rel_to_abs`` to video
    pixels, ``sample_tlbr``, ``st_dims``, ``data_dims``, ``pad``) and ``gids``,
    ``channels`` (names of the C axis), ``missing_channels`` (per frame),
    ``interpolation`` and ``tf_rel_to_img`` (per frame, sample pixels → image pixels).
    """
    layout = video_layout(sampler, target)
    if out is None:
        out = np.empty(layout.shape, dtype=layout.dtype)
    elif out.shape != layout.shape or out.dtype != layout.dtype:
        raise TargetError(f"{layout.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the window needs {layout.shape} {layout.dtype}")
    missing = read_video_pixels(sampler.backend, layout, out)
    return _video_sample(sampler, target, layout, out, missing, with_annots, annot_ids, visible_thresh)


def _video_sample(sampler, target: dict, layout: VideoLayout, im: np.ndarray,
                  missing: list[tuple[str, ...]], with_annots: bool = True, annot_ids=None,
                  visible_thresh: float = 0.0) -> dict:
    """The sample dict of a video window whose pixels are already in ``im``."""
    import kwimage
    tr, frame_list, channels = layout.tr, layout.frames, layout.channels
    rows, cols = tr.rows, tr.cols
    x0, y0, x1, y1 = cols.start, rows.start, cols.stop, rows.stop
    n_video = len(sampler.index.frame_order(tr.vidid)) if tr.vidid is not None else len(tr.gids)
    normalized = video_sample_target(target, tr, n_video, channels)
    data_dims, time_slice = normalized["data_dims"], normalized["slices"][0]
    tf_rel_to_abs = kwimage.Affine.translate((x0, y0))
    if tr.scale != 1:
        tf_rel_to_abs = tf_rel_to_abs @ kwimage.Affine.scale(1 / tr.scale)
    sample = {
        "im": im,
        "target": normalized,
        "tr": normalized,
        "params": {
            **window_params(x0, y0, x1, y1, tf_rel_to_abs, data_dims, tr.pad),
            "st_dims": [(time_slice.start, time_slice.stop), (y0, y1), (x0, x1)],
            "gids": list(tr.gids),
            "channels": tuple(channels),
            "missing_channels": missing,
            "interpolation": tr.interpolation,
            "tf_rel_to_img": [kwimage.Affine(np.linalg.inv(frame.vid_from_img)) @ tf_rel_to_abs
                              for frame in frame_list],
        },
        "classes": sampler.classes,
    }
    if with_annots:
        frame_dets = [frame_detections(sampler, frame, t, x0, y0, x1, y1, visible_thresh, annot_ids)
                      for t, frame in enumerate(frame_list)]
        if tr.scale != 1:   # a scaled window: annotations scaled to match
            frame_dets = [dets.scale(tr.scale) for dets in frame_dets]
        sample["annots"] = stack_annots(frame_dets)
        normalized["annot_idx"] = -1   # ndsampler's; an aid target's is set by SamplerAPI
        sample["kp_classes"] = sampler.kp_classes
    return sample


def load_video_batch(sampler, targets: Sequence[dict], with_annots: bool = True,
                     out: np.ndarray | None = None, threads: int = 1) -> dict:
    """Read same-shaped video targets into one (B, T, H, W, C) array.

    Every target must name frames and give the same T×H×W×C shape and dtype
    (else :class:`TargetError`, naming the first frame of the odd target).
    The frames of GDAL-decoded files are read by ``threads`` threads of the
    process's reader pool (:data:`ndpatch.readers.READERS`).
    Returns ``im``, ``targets`` (normalised target dicts, which ``load_sample``
    and ``load_batch`` accept again), ``params`` (per target, as in
    :func:`load_video_sample`) and, when ``with_annots``, ``annots`` (per target).

    Example:
        >>> import ndpatch
        >>> from ndpatch.demo import kwcoco_demo
        >>> sampler = ndpatch.CocoSampler(kwcoco_demo("vidshapes2-frames3", image_size=(32, 32)))
        >>> batch = load_video_batch(sampler, [{"vidid": 1, "cx": 8, "cy": 8, "width": 16, "height": 16},
        ...                                    {"vidid": 2, "space_slice": (slice(0, 16), slice(16, 32))}])
        >>> batch["im"].shape, [len(a["frame_dets"]) for a in batch["annots"]]
        ((2, 3, 16, 16, 3), [3, 3])
    """
    if not targets:
        raise TargetError("load_batch needs at least one target")
    mixed = [i for i, target in enumerate(targets) if not is_video_target(target)]
    if mixed:
        raise TargetError(f"a batch mixes video targets (T×H×W×C) and image targets (H×W×C; "
                          f"target {mixed[0]}): load them in separate batches")
    layouts = []
    for i, target in enumerate(targets):
        try:
            layouts.append(video_layout(sampler, target))
        except NdpatchError as err:
            raise at_target(err, i, target) from err
    first = layouts[0]
    for layout in layouts:
        if (layout.shape, layout.dtype) != (first.shape, first.dtype):
            raise TargetError(f"{layout.describe()}: its window is {layout.shape} {layout.dtype} but the "
                              f"batch's first is {first.shape} {first.dtype}; a batch needs one shape and dtype")
    shape = (len(layouts), *first.shape)
    if out is None:
        out = np.empty(shape, dtype=first.dtype)
    elif out.shape != shape or out.dtype != first.dtype:
        raise TargetError(f"{first.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the batch needs {shape} {first.dtype}")
    decoded = any(asset.entry.kind != "npy" for layout in layouts for frame in layout.frames
                  for asset in frame.assets)

    missing: list = [None] * len(layouts)   # per target: what read_video_pixels reports missing

    def read(i: int) -> None:
        missing[i] = read_video_pixels(sampler.backend, layouts[i], out[i])
    READERS.share(read, range(len(layouts)), threads if decoded else 1)
    samples = [_video_sample(sampler, target, layout, out[i], missing[i], with_annots)
               for i, (target, layout) in enumerate(zip(targets, layouts))]
    batch = {"im": out, "targets": [sample["target"] for sample in samples],
             "params": [sample["params"] for sample in samples]}
    if with_annots:
        batch["annots"] = [sample["annots"] for sample in samples]
    return batch


