"""Space-time targets: which frames, which window in video pixels, how to read them.

A video target names frames — ``vidid`` (all frames, in frame order), ``vidid``
+ ``time_slice`` (a slice of that order) or ``gids`` (chosen frames, in the
given order) — and a window in *video* pixels: ``cx, cy, width, height`` or
``space_slice`` (default: the whole video); ``aid`` alone centres the window on
that annotation's box in video space. Optional: ``pad``, ``channels``,
``dtype``, ``fill``/``nodata``, ``interpolation`` (``'linear'``, the default,
or ``'nearest'``) and ``antialias`` (default: on for linear).

Example:
    >>> tr = VideoTarget(vidid=1, gids=(2, 3), time_slice=slice(1, 3), space_slice=(slice(0, 8), slice(4, 8)),
    ...                  space_dims=(64, 64), pad=(1, 2))
    >>> tr.rows, tr.cols
    (slice(-1, 9, None), slice(2, 10, None))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.annots import warp_boxes
from ndpatch.dataset import channel_names, vid_from_img
from ndpatch.errors import TargetError
from ndpatch.target import Window, as_ints, window_from_center

#: Interpolations a target may ask for (kwimage names).
INTERPOLATIONS = ("linear", "nearest")


def is_video_target(target: Any) -> bool:
    """True when a target names frames (``vidid``/``video_id`` or ``gids``).

    Example:
        >>> is_video_target({"vidid": 1}), is_video_target({"gid": 1})
        (True, False)
    """
    return isinstance(target, dict) and (target.get("vidid") is not None or target.get("gids") is not None
                                         or target.get("video_id") is not None)


@dataclass(frozen=True, slots=True)
class VideoTarget:
    """A parsed video target: frames, a window in video pixels, how to read it."""

    vidid: int | None
    gids: tuple[int, ...]
    time_slice: slice | None
    space_slice: Window
    space_dims: tuple[int, int]
    pad: tuple[int, int] = (0, 0)
    channels: tuple[str | int, ...] | None = None
    dtype: np.dtype | None = None
    fill: float | None = None
    interpolation: str = "linear"
    antialias: bool = True

    @property
    def rows(self) -> slice:
        return slice(self.space_slice[0].start - self.pad[0], self.space_slice[0].stop + self.pad[0])

    @property
    def cols(self) -> slice:
        return slice(self.space_slice[1].start - self.pad[1], self.space_slice[1].stop + self.pad[1])


def _window(target: dict, what: str, space_dims: tuple[int, int], aid_box) -> Window:
    if target.get("space_slice") is not None:
        window = []
        for axis, s in zip(("rows", "cols"), target["space_slice"]):
            if not isinstance(s, slice) or s.start is None or s.stop is None or s.step not in (None, 1):
                raise TargetError(f"{what}: space_slice {axis} must be a slice with start, stop "
                                  f"and step 1, got {s!r}")
            if int(s.stop) <= int(s.start):
                raise TargetError(f"{what}: space_slice {axis} is empty: {s!r}")
            window.append(slice(int(s.start), int(s.stop)))
        return window[0], window[1]
    if target.get("cx") is not None or target.get("cy") is not None:
        sizes = []
        for key in ("cx", "cy", "width", "height"):
            value = target.get(key)
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(value) or \
                    (key in ("width", "height") and value <= 0):
                raise TargetError(f"{what}: a centred target needs finite cx, cy and positive "
                                  f"width, height; {key} is {value!r}")
            sizes.append(float(value))
        return window_from_center(*sizes)
    if aid_box is not None:
        x, y, w, h = aid_box
        w, h = max(w, 1.0), max(h, 1.0)
        return window_from_center(x + w / 2, y + h / 2, w, h)
    return slice(0, space_dims[0]), slice(0, space_dims[1])


def parse_video_target(target: dict, frames) -> VideoTarget:
    """Parse a target dict naming frames into a :class:`VideoTarget`.

    ``frames`` is the sampler's :class:`~ndpatch.video.frames.VideoFrames` (a frame is
    opened only for the size of images outside any video).
    """
    index = frames.sampler.index
    vidid = target.get("vidid", target.get("video_id"))
    gids = target.get("gids")
    time_slice = target.get("time_slice")
    what = f"video {vidid}" if vidid is not None else f"images {gids!r}"
    if gids is not None:
        gids = as_ints(gids, what, "gids")
        if not gids:
            raise TargetError(f"{what}: gids is empty")
        vidids = {index.image(gid).get("video_id") for gid in gids}
        if len(vidids) > 1:
            raise TargetError(f"{what}: the frames belong to different videos {sorted(vidids, key=str)}")
        frame_vidid = vidids.pop()
        if vidid is not None and frame_vidid != vidid:
            raise TargetError(f"{what}: image {gids[0]} belongs to video {frame_vidid}, not {vidid}")
        vidid = frame_vidid
        if time_slice is not None and (vidid is None or not isinstance(time_slice, slice) or
                                       tuple(index.frame_order(vidid)[time_slice]) != gids):
            raise TargetError(f"{what}: gids {list(gids)} are not the frames of time_slice {time_slice!r}: "
                              f"give one of them")
    else:
        vidid = as_ints(vidid, what, "vidid")[0]
        order = index.frame_order(vidid)
        if time_slice is not None:
            if not isinstance(time_slice, slice):
                raise TargetError(f"{what}: time_slice must be a slice, got {time_slice!r}")
            gids = tuple(order[time_slice])
        else:
            gids = tuple(order)
        if not gids:
            raise TargetError(f"{what}: no frames in time_slice {time_slice!r} of {len(order)} frames")

    if vidid is not None:
        video = index.video(vidid)
        space_dims = (int(video["height"]), int(video["width"]))
    else:
        entry = frames.frame(gids[0]).assets[0].entry
        space_dims = index.image_dims(gids[0]) or (entry.height, entry.width)

    aid_box = None
    if target.get("aid") is not None:
        gid, x, y, w, h = index.annotation_box(target["aid"])
        if gid not in gids:
            raise TargetError(f"{what}: annotation {target['aid']} is on image {gid}, not one of the frames")
        aid_box = warp_boxes(np.array([[x, y, w, h]]), vid_from_img(index.image(gid)))[0]
    window = _window(target, what, space_dims, aid_box)

    pad = target.get("pad") or 0
    pad = as_ints(pad, what, "pad")
    pad = pad * 2 if len(pad) == 1 else pad
    if len(pad) != 2 or min(pad) < 0:
        raise TargetError(f"{what}: pad must be a non-negative int or (rows, cols), got {target['pad']!r}")

    channels = target.get("channels")
    if isinstance(channels, str):
        channels = list(channel_names(channels))
    elif isinstance(channels, (int, np.integer)):
        channels = [channels]
    interpolation = target.get("interpolation", "linear")
    if interpolation not in INTERPOLATIONS:
        raise TargetError(f"{what}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    dtype = target.get("dtype")
    fill = target.get("fill", target.get("nodata"))
    if isinstance(fill, str):
        if fill not in ("float", "nan"):
            raise TargetError(f"{what}: nodata must be a number, 'float' or 'nan', got {fill!r}")
        fill, dtype = math.nan, dtype or np.float32
    return VideoTarget(
        vidid=vidid, gids=gids, time_slice=time_slice, space_slice=window, space_dims=space_dims,
        pad=(pad[0], pad[1]), channels=None if channels is None else tuple(channels),
        dtype=None if dtype is None else np.dtype(dtype), fill=fill, interpolation=interpolation,
        antialias=bool(target.get("antialias", interpolation != "nearest")),
    )


