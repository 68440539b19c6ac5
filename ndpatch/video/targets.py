"""Space-time targets: which frames, which window in video pixels, how to read them.

A video target names frames — ``vidid`` (all frames, in frame order), ``vidid``
+ ``time_slice`` (a slice of that order) or ``gids`` (chosen frames, in the
given order; they win over a ``time_slice`` naming other frames, as in ndsampler) — and a window in *video* pixels: ``cx, cy, width, height`` or
``space_slice`` (default: the whole video); ``aid`` alone centres the window on
that annotation's box in video space. Optional: ``pad``, ``channels``,
``dtype``, ``fill``/``nodata``, ``scale`` (output pixels per video pixel),
``interpolation`` (``'linear'``, the default, or ``'nearest'``) and
``antialias`` (default: on for linear). ndsampler 0.8.1's spellings work too
(``video_id``, ``image_ids``, 3-D ``slices``, ``window_dims``).

Example:
    >>> tr = VideoTarget(vidid=1, gids=(2, 3), time_slice=slice(1, 3), space_slice=(slice(0, 8), slice(4, 8)),
    ...                  space_dims=(64, 64), pad=(1, 2))
    >>> tr.rows, tr.cols
    (slice(-1, 9, None), slice(2, 10, None))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.annots import warp_boxes
from ndpatch.dataset import channel_names, vid_from_img
from ndpatch.errors import TargetError
from ndpatch.target import (InvalidTarget, Window, as_ints, check_window_size, integer, number, parse_channels,
                            parse_dtype, parse_fill, parse_interpolation, parse_pad, parse_scale, target_window)

#: Interpolations a target may ask for (kwimage names).
INTERPOLATIONS = ("linear", "nearest")


def is_video_target(target: Any) -> bool:
    """True when a target names frames (``vidid``/``video_id`` or ``gids``/``image_ids``).

    Example:
        >>> is_video_target({"vidid": 1}), is_video_target({"gid": 1}), is_video_target({"image_ids": [1]})
        (True, False, True)
    """
    return isinstance(target, dict) and (target.get("vidid") is not None or target.get("gids") is not None
                                         or target.get("video_id") is not None
                                         or target.get("image_ids") is not None)


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
    scale: float = 1.0

    @property
    def rows(self) -> slice:
        return slice(self.space_slice[0].start - self.pad[0], self.space_slice[0].stop + self.pad[0])

    @property
    def cols(self) -> slice:
        return slice(self.space_slice[1].start - self.pad[1], self.space_slice[1].stop + self.pad[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, rows, cols) of the returned array, padding included (times ``scale``)."""
        height = self.rows.stop - self.rows.start
        width = self.cols.stop - self.cols.start
        if self.scale != 1:
            height, width = max(1, round(height * self.scale)), max(1, round(width * self.scale))
        return len(self.gids), height, width


def _video_pad(pad: Any) -> tuple[int, int]:
    """ndpatch's spatial ``pad`` (int or (rows, cols)), or ndsampler's (time, rows, cols) with no time pad."""
    if pad is not None and np.ndim(pad) and len(pad) == 3:
        time_pad = pad[0]
        if np.ndim(time_pad) == 0:
            time_pad = (time_pad, time_pad)
        if any(integer(p, "pad") != 0 for p in time_pad):
            raise InvalidTarget(f"pad {pad!r}: padding in time is not supported (ndsampler does not either)")
        pad = tuple(pad)[1:]
    return parse_pad(pad)


def _time_slice(value: Any, n_frames: int) -> slice:
    """A time slice within the video's frames (no padding in time, as in ndsampler; a positive step)."""
    if not isinstance(value, slice):
        raise InvalidTarget(f"time_slice must be a slice, got {value!r}")
    step = None if value.step is None else integer(value.step, "time_slice step")
    start = 0 if value.start is None else integer(value.start, "time_slice start")
    stop = n_frames if value.stop is None else integer(value.stop, "time_slice stop")
    if start < 0 or stop > n_frames or stop <= start or (step is not None and step < 1):
        raise InvalidTarget(f"time_slice {value!r} selects no frames, or frames past the end, of the video's "
                            f"{n_frames} frames (padding in time is not supported; the step must be positive)")
    return slice(start, stop, step)


def parse_video_target(target: dict, frames) -> VideoTarget:
    """Parse a target dict naming frames into a :class:`VideoTarget`.

    ``frames`` is the sampler's :class:`~ndpatch.video.frames.VideoFrames` (a frame is
    opened only for the size of images outside any video). Also takes
    ndsampler 0.8.1's spellings: ``video_id``, ``image_ids``, 3-D ``slices``
    (time, rows, cols), ``window_dims``, ``pad=(0, rows, cols)``.
    """
    index = frames.sampler.index
    vidid = target.get("vidid", target.get("video_id"))
    gids = target.get("gids", target.get("image_ids"))
    time_slice = target.get("time_slice")
    space_slice = target.get("space_slice")
    slices = target.get("slices")
    if slices is not None:   # ndsampler's (time, rows, cols)
        if not isinstance(slices, (tuple, list)) or len(slices) != 3:
            raise TargetError(f"video {vidid}: slices must be (time slice, row slice, col slice), got {slices!r}")
        space_slice = tuple(slices[1:]) if space_slice is None else space_slice
        time_slice = slices[0] if gids is None and time_slice is None else time_slice
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
            time_slice = None   # the gids are the frames (as in ndsampler); a time_slice of other frames is stale
    else:
        vidid = as_ints(vidid, what, "vidid")[0]
        order = index.frame_order(vidid)
        if time_slice is not None:
            try:
                time_slice = _time_slice(time_slice, len(order))
            except InvalidTarget as err:
                raise TargetError(f"video {vidid}: {err}") from None
            gids = tuple(order[time_slice])
        else:
            gids = tuple(order)
        if not gids:
            raise TargetError(f"{what}: no frames in time_slice {time_slice!r} of {len(order)} frames")
    what = f"video {vidid} ({index.describe(gids[0])}, ...)" if vidid is not None else index.describe(gids[0])
    try:
        return _parse(target, frames, vidid, gids, time_slice, space_slice)
    except InvalidTarget as err:
        raise TargetError(f"{what}: {err}") from None


def _parse(target: dict, frames, vidid, gids: tuple[int, ...], time_slice, space_slice) -> VideoTarget:
    index = frames.sampler.index
    if vidid is not None:
        video = index.video(vidid)
        space_dims = (int(video["height"]), int(video["width"]))
    else:
        entry = frames.frame(gids[0]).assets[0].entry
        space_dims = index.image_dims(gids[0]) or (entry.height, entry.width)

    aid_box = None
    aid = target.get("aid")
    if aid is not None and aid != -1:   # -1: ndsampler's "no annotation"
        gid, x, y, w, h = index.annotation_box(aid)
        if gid not in gids:
            raise InvalidTarget(f"annotation {aid} is on image {gid}, not one of the frames")
        aid_box = warp_boxes(np.array([[x, y, w, h]]), vid_from_img(index.image(gid)))[0]
    window = target_window(target, aid_box, space_slice, lambda: space_dims)

    channels = parse_channels(target.get("channels"))
    if isinstance(channels, str):
        channels = list(channel_names(channels))
    elif channels is not None and np.ndim(channels) == 0:
        channels = [channels]
    interpolation, antialias = parse_interpolation(target)
    if interpolation not in INTERPOLATIONS:
        raise InvalidTarget(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    fill, dtype = parse_fill(target, parse_dtype(target.get("dtype")))
    tr = VideoTarget(
        vidid=vidid, gids=gids, time_slice=time_slice, space_slice=window, space_dims=space_dims,
        pad=_video_pad(target.get("pad")), channels=None if channels is None else tuple(channels),
        dtype=dtype, fill=fill, interpolation=interpolation, antialias=antialias,
        scale=parse_scale(target.get("scale")),
    )
    check_window_size(tr.shape)
    return tr


def video_sample_target(target: dict, tr: VideoTarget, n_video: int, channels: tuple | None = None) -> dict:
    """The target a video sample returns: the caller's keys, plus the frames and window as ndsampler infers them.

    Adds ``vidid``, ``gids``, ``time_slice`` (of the video's frames; for frames
    given as ``gids``, ``slice(0, len(gids))`` as in ndsampler), ``space_slice``,
    ``slices`` (time, rows, cols), ``pad`` (unless given), ``space_dims``, ``data_dims`` (frames, height, width), ``window_dims``
    (the window's (height, width)), ``interpolation``, ``antialias`` and, when
    known and not given, ``channels`` (the names of the C axis).
    """
    time_slice = tr.time_slice if tr.time_slice is not None else slice(0, len(tr.gids))
    space_slice = tr.space_slice
    normalized = {
        "pad": tr.pad, **target, "vidid": tr.vidid, "gids": list(tr.gids), "time_slice": time_slice,
        "space_slice": space_slice, "slices": (time_slice, *space_slice),
        "space_dims": tr.space_dims, "data_dims": (n_video, *tr.space_dims),
        "interpolation": tr.interpolation, "antialias": tr.antialias,
        "window_dims": (space_slice[0].stop - space_slice[0].start, space_slice[1].stop - space_slice[1].start),
    }
    if channels is not None:
        normalized.setdefault("channels", "|".join(map(str, channels)))
    return normalized
