"""A video frame as a read sees it: its files' entries, channels and warps into video pixels.

A :class:`Frame` is built from the image's record (:mod:`ndpatch.record`):
every file kwcoco lists for the frame (``file_name``, then the assets), each
with its cache entry and its map from video pixels. :class:`VideoFrames`
memoises frames per sampler and builds a frame again when its record is
resolved again (a file changed), so a frame never mixes old and new files.

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("vidshapes1-frames2")
    >>> frame = video_frames(sampler).frame(1)
    >>> frame.channels, frame.locate("g"), frame.assets[0].shift
    (('r', 'g', 'b'), (0, 1), (0, 0))
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.cache.base import CacheEntry
from ndpatch.dataset import DEFAULT_CHANNELS, vid_from_img
from ndpatch.errors import ChannelError


@dataclass(frozen=True, slots=True)
class FrameAsset:
    """One file of a frame: its cache entry, channel names and warp from video pixels."""

    entry: CacheEntry
    channels: tuple[str, ...]
    asset_from_vid: np.ndarray
    shift: tuple[int, int] | None  # (dx, dy) when asset_from_vid is an integer translation
    axis_aligned: bool  # scale + translation only: resampled by GDAL (ndpatch.warp)


@dataclass(frozen=True, slots=True)
class Frame:
    """One image of a video: its assets and the warp from image to video pixels."""

    gid: int
    assets: tuple[FrameAsset, ...]
    vid_from_img: np.ndarray
    channels: tuple[str, ...]

    def describe(self) -> str:
        paths = ", ".join(asset.entry.source for asset in self.assets)
        return f"image {self.gid} ({paths})"

    def locate(self, channel: str | int) -> tuple[int, int] | None:
        """``(asset index, band)`` of a channel name or frame band index; None when missing."""
        if isinstance(channel, (int, np.integer)):
            if not 0 <= channel < len(self.channels):
                raise ChannelError(f"{self.describe()} has {len(self.channels)} bands; "
                                   f"band index {channel} is out of range")
            channel = self.channels[channel]
        for i, asset in enumerate(self.assets):
            if channel in asset.channels:
                return i, asset.channels.index(channel)
        return None



def translation(x: float, y: float) -> np.ndarray:
    """The 3×3 matrix of a translation by ``(x, y)``."""
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def _integer_shift(matrix: np.ndarray) -> tuple[int, int] | None:
    """``(dx, dy)`` when the matrix is a translation by whole pixels, else None."""
    tx, ty = matrix[0, 2], matrix[1, 2]
    if np.allclose(matrix[:2, :2], np.eye(2), rtol=0, atol=1e-12) and \
            abs(tx - round(tx)) < 1e-9 and abs(ty - round(ty)) < 1e-9:
        return int(round(tx)), int(round(ty))
    return None


def _axis_aligned(matrix: np.ndarray) -> bool:
    """True when the matrix only scales (positively) and translates."""
    return abs(matrix[0, 1]) < 1e-9 and abs(matrix[1, 0]) < 1e-9 and matrix[0, 0] > 0 and matrix[1, 1] > 0



def build_frame(record, img: dict) -> Frame:
    """The frame of image record ``img`` from its :class:`~ndpatch.record.ImageRecord` (ensures every file)."""
    if record.frames_error is not None:
        raise record.frames_error
    to_video = vid_from_img(img)
    assets = []
    for asset in record.frame_files:
        entry = record.entry_of(asset.source)
        channels = asset.source.channels or DEFAULT_CHANNELS.get(entry.bands) or \
            tuple(str(b) for b in range(entry.bands))
        asset_from_vid = np.linalg.inv(to_video @ np.asarray(asset.warp.matrix, dtype=np.float64))
        assets.append(FrameAsset(entry, tuple(channels), asset_from_vid,
                                 _integer_shift(asset_from_vid), _axis_aligned(asset_from_vid)))
    channels = tuple(dict.fromkeys(c for asset in assets for c in asset.channels))
    return Frame(record.gid, tuple(assets), to_video, channels)


class VideoFrames:
    """Per-sampler memo of frame layouts, each tied to the image record it was built from."""

    def __init__(self, sampler):
        self.sampler = sampler
        self._frames: dict[int, tuple[Any, Frame]] = {}

    def frame(self, gid: int) -> Frame:
        """The layout of image ``gid``, opening (or converting) its files on first use."""
        records = self.sampler.records
        held = self._frames.get(gid)
        if held is not None and held[0] is records.current(gid):
            return held[1]
        img = self.sampler.index.image(gid)
        held = self._frames[gid] = records.using(gid, lambda record: (record, build_frame(record, img)), frames=True)
        return held[1]


_MEMOS: "weakref.WeakKeyDictionary[Any, VideoFrames]" = weakref.WeakKeyDictionary()


def video_frames(sampler) -> VideoFrames:
    """The frame memo of a sampler (made on first use, dropped with the sampler)."""
    memo = _MEMOS.get(sampler)
    if memo is None:
        memo = _MEMOS[sampler] = VideoFrames(sampler)
    return memo


