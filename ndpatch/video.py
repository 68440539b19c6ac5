"""Space-time samples: frames of a video (or a list of images) warped into one pixel grid.

A video target names frames and a spatial window in *video* pixels:

- ``vidid`` (all frames, in frame order), ``vidid`` + ``time_slice`` (a slice of
  that order) or ``gids`` (chosen frames, in the given order);
- ``cx, cy, width, height`` or ``space_slice`` (default: the whole video); ``aid``
  alone centres the window on that annotation's box in video space;
- optional ``pad``, ``channels`` (e.g. ``'r|g|b'``; default: every channel any
  frame has), ``dtype``, ``fill``/``nodata``, ``interpolation`` (``'linear'``,
  the default, or ``'nearest'``) and ``antialias`` (default: on for linear).

``im`` is T×H×W×C. Each asset (file) of each frame is mapped to video pixels by
kwcoco's ``warp_aux_to_img`` and ``warp_img_to_vid`` and read one of three ways:
an integer translation is a plain padded window read (bit-exact); scale +
translation is a GDAL resampled read (:func:`ndpatch.warp.read_resampled`);
any other affine reads the asset's bounding window and resamples it here
(:func:`warped_window`). Pixel-corner convention throughout, like kwcoco.
Channels a frame lacks are filled with the fill value (default 0) and listed
in ``params['missing_channels']``. ``annots['frame_dets']`` holds one
``kwimage.Detections`` per frame, in the window's pixel frame, with
``track_ids``. Frames are opened through the sampler's backend only when a
target asks for them; each asset is its own cache entry.
:func:`load_video_batch` stacks same-shaped video targets into B×T×H×W×C.

Space-time sampling (:class:`VideoRegions`): a grid over every frame-pixel of
every video, positives centred on one annotation of a track at its frame, and
negatives that no annotation on any of their frames meets; seeded like
:mod:`ndpatch.regions`, whose per-axis geometry it reuses.

Example:
    >>> import kwcoco, ndpatch
    >>> dset = kwcoco.CocoDataset.demo("vidshapes1-frames3", image_size=(64, 64), verbose=0)
    >>> sampler = ndpatch.CocoSampler(dset)
    >>> sample = sampler.load_sample({"vidid": 1, "time_slice": slice(1, 3),
    ...                               "space_slice": (slice(8, 40), slice(-4, 20))})
    >>> sample["im"].shape
    (2, 32, 24, 3)
    >>> sample["params"]["gids"], len(sample["annots"]["frame_dets"])
    ([2, 3], 2)
"""
from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.annots import ImageAnnots, segmentation_geometry
from ndpatch.cache.base import CacheEntry, ImageSource, fill_value, read_window
from ndpatch.errors import ChannelError, DatasetError, SamplingError, TargetError, UnknownVideoError
from ndpatch.index import DEFAULT_CHANNELS, channel_names, resolve_path
from ndpatch.regions import (CoverageCycle, box_hits, extent_hits, free_positions, grid_starts,
                             placement_range, strided_starts)
from ndpatch.rng import ProcessStream, RngLike
from ndpatch.target import Window, window_from_center, window_params
from ndpatch.warp import read_resampled

#: Interpolations a target may ask for (kwimage names).
INTERPOLATIONS = ("linear", "nearest")

#: Dtypes OpenCV warps natively; others are warped as float64 and cast back.
_WARP_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64")}

#: Pixels of source context read around a resampled window (linear needs 1).
_MARGIN = 2


def is_video_target(target: Any) -> bool:
    """True when a target names frames (``vidid``/``video_id`` or ``gids``).

    Example:
        >>> is_video_target({"vidid": 1}), is_video_target({"gid": 1})
        (True, False)
    """
    return isinstance(target, dict) and (target.get("vidid") is not None or target.get("gids") is not None
                                         or target.get("video_id") is not None)


# -- frames: assets, channels and warps ---------------------------------------------
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


def _matrix(warp: Any) -> np.ndarray:
    """A 3×3 float matrix from a kwcoco warp record (None is the identity)."""
    if warp is None:
        return np.eye(3)
    import kwimage
    return np.asarray(kwimage.Affine.coerce(warp).matrix, dtype=np.float64)


def _vid_from_img(img: dict) -> np.ndarray:
    """Video pixels from image pixels (the identity for an image outside a video)."""
    return _matrix(img.get("warp_img_to_vid")) if img.get("video_id") is not None else np.eye(3)


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


class VideoFrames:
    """Per-sampler memo of frame layouts, video frame orders and the video annotation table."""

    def __init__(self, sampler):
        self.sampler = sampler
        self._frames: dict[int, Frame] = {}
        self._entries: dict[str, CacheEntry] = {}
        self._orders: dict[int, list[int]] = {}
        self._table: VideoTable | None = None

    def table(self) -> "VideoTable":
        """Every video's annotations in video pixels (built on first use)."""
        if self._table is None:
            self._table = build_video_table(self)
        return self._table

    def video(self, vidid: int) -> dict:
        """The video record; unknown ids raise UnknownVideoError."""
        dset = self.sampler.dset
        try:
            return dset.index.videos[vidid]
        except (KeyError, TypeError):
            raise UnknownVideoError(f"unknown video id {vidid!r} in dataset {dset.fpath}") from None

    def order(self, vidid: int) -> list[int]:
        """The image ids of a video, by frame index."""
        gids = self._orders.get(vidid)
        if gids is None:
            self.video(vidid)
            dset = self.sampler.dset
            gids = sorted(dset.index.vidid_to_gids.get(vidid, ()),
                          key=lambda gid: (dset.index.imgs[gid].get("frame_index", 0), gid))
            self._orders[vidid] = gids
        return gids

    def frame(self, gid: int) -> Frame:
        """The layout of image ``gid``, opening (or converting) its assets on first use."""
        frame = self._frames.get(gid)
        if frame is None:
            frame = self._build(gid)
            self._frames[gid] = frame
        return frame

    def _build(self, gid: int) -> Frame:
        index = self.sampler.index
        img = index.image(gid)
        vid_from_img = _vid_from_img(img)
        records = ([{"file_name": img["file_name"], "channels": img.get("channels")}]
                   if img.get("file_name") else [])
        records += img.get("assets") or img.get("auxiliary") or []
        if not records:
            raise DatasetError(f"image {gid} has no file_name and no assets")
        assets = []
        for record in records:
            if len(records) == 1:
                entry = self.sampler.entry(gid)
                declared = index.source(gid).channels
            else:
                entry, declared = self._asset_entry(gid, record)
            channels = declared or DEFAULT_CHANNELS.get(entry.bands) or \
                tuple(str(b) for b in range(entry.bands))
            vid_from_asset = vid_from_img @ _matrix(record.get("warp_aux_to_img"))
            asset_from_vid = np.linalg.inv(vid_from_asset)
            assets.append(FrameAsset(entry, tuple(channels), asset_from_vid,
                                     _integer_shift(asset_from_vid), _axis_aligned(asset_from_vid)))
        channels = tuple(dict.fromkeys(c for asset in assets for c in asset.channels))
        return Frame(gid, tuple(assets), vid_from_img, channels)

    def _asset_entry(self, gid: int, record: dict) -> tuple[CacheEntry, tuple[str, ...] | None]:
        path = resolve_path(self.sampler.index.bundle_dpath, record["file_name"])
        declared = record.get("channels")
        if declared is not None:
            declared = channel_names(declared)
        entry = self._entries.get(path)
        if entry is None:
            entry = self.sampler.backend.ensure(ImageSource(gid=gid, path=path, channels=declared))
            self._entries[path] = entry
        return entry, declared


_MEMOS: "weakref.WeakKeyDictionary[Any, VideoFrames]" = weakref.WeakKeyDictionary()


def video_frames(sampler) -> VideoFrames:
    """The frame memo of a sampler (made on first use, dropped with the sampler)."""
    memo = _MEMOS.get(sampler)
    if memo is None:
        memo = _MEMOS[sampler] = VideoFrames(sampler)
    return memo


# -- targets ----------------------------------------------------------------------
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


def _ints(value: Any, what: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in (value if np.ndim(value) else [value]))
    except (TypeError, ValueError):
        raise TargetError(f"{what}: {name} must be an int or ints, got {value!r}") from None
    return values


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


def parse_video_target(target: dict, frames: VideoFrames) -> VideoTarget:
    """Parse a target dict naming frames into a :class:`VideoTarget`."""
    index = frames.sampler.index
    vidid = target.get("vidid", target.get("video_id"))
    gids = target.get("gids")
    time_slice = target.get("time_slice")
    what = f"video {vidid}" if vidid is not None else f"images {gids!r}"
    if gids is not None:
        gids = _ints(gids, what, "gids")
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
                                       tuple(frames.order(vidid)[time_slice]) != gids):
            raise TargetError(f"{what}: gids {list(gids)} are not the frames of time_slice {time_slice!r}: "
                              f"give one of them")
    else:
        vidid = _ints(vidid, what, "vidid")[0]
        order = frames.order(vidid)
        if time_slice is not None:
            if not isinstance(time_slice, slice):
                raise TargetError(f"{what}: time_slice must be a slice, got {time_slice!r}")
            gids = tuple(order[time_slice])
        else:
            gids = tuple(order)
        if not gids:
            raise TargetError(f"{what}: no frames in time_slice {time_slice!r} of {len(order)} frames")

    if vidid is not None:
        video = frames.video(vidid)
        space_dims = (int(video["height"]), int(video["width"]))
    else:
        entry = frames.frame(gids[0]).assets[0].entry
        space_dims = index.image_dims(gids[0]) or (entry.height, entry.width)

    aid_box = None
    if target.get("aid") is not None:
        gid, x, y, w, h = index.annotation_box(target["aid"])
        if gid not in gids:
            raise TargetError(f"{what}: annotation {target['aid']} is on image {gid}, not one of the frames")
        aid_box = _warp_boxes(np.array([[x, y, w, h]]), frames.frame(gid).vid_from_img)[0]
    window = _window(target, what, space_dims, aid_box)

    pad = target.get("pad") or 0
    pad = _ints(pad, what, "pad")
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


# -- pixels -----------------------------------------------------------------------
def warped_window(backend, entry: CacheEntry, asset_from_vid: np.ndarray, rows: slice, cols: slice,
                  bands: list[int] | None, fill: float | None, dtype: np.dtype,
                  interpolation: str = "linear", antialias: bool = False) -> np.ndarray:
    """The video-space window ``rows × cols`` of an asset mapped to video by any affine warp.

    Reads only the asset's bounding window (plus a margin, padded with the fill
    value past the asset). ``nearest`` takes, for each output pixel centre, the
    asset pixel holding its exact (float64) source point (fill when that point is
    not strictly inside the asset, as :mod:`ndpatch.warp`); ``linear`` resamples
    with ``kwimage.warp_affine`` (pixel-corner convention, like kwcoco).

    Example:
        >>> import numpy as np
        >>> entry = CacheEntry(gid=1, source="mem", path="mem", kind="test", height=2, width=2,
        ...                    bands=1, dtype=np.dtype("uint8"), nodata=None, band_names=("gray",))
        >>> class Count:
        ...     def read_into(self, entry, rows, cols, bands, out):
        ...         out[..., 0] = np.arange(4).reshape(2, 2)[rows, cols]
        >>> half = np.diag([0.5, 0.5, 1.0])  # video pixels are half as large
        >>> warped_window(Count(), entry, half, slice(0, 4), slice(0, 5), None, None,
        ...               np.dtype("uint8"), "nearest")[..., 0]
        array([[0, 0, 1, 1, 0],
               [0, 0, 1, 1, 0],
               [2, 2, 3, 3, 0],
               [2, 2, 3, 3, 0]], dtype=uint8)
    """
    height, width = rows.stop - rows.start, cols.stop - cols.start
    n_bands = entry.bands if bands is None else len(bands)
    value = fill_value(entry, fill, dtype)
    asset_from_out = asset_from_vid @ _translate(cols.start, rows.start)
    corners = asset_from_out @ np.array([[0, width, width, 0], [0, 0, height, height], [1, 1, 1, 1]])
    margin = _MARGIN
    if antialias and interpolation != "nearest":
        margin += math.ceil(2 * max(np.abs(asset_from_out[:2, :2]).sum(axis=1)))
    x0 = max(math.floor(corners[0].min()) - margin, -margin)
    x1 = min(math.ceil(corners[0].max()) + margin, entry.width + margin)
    y0 = max(math.floor(corners[1].min()) - margin, -margin)
    y1 = min(math.ceil(corners[1].max()) + margin, entry.height + margin)
    if x1 <= x0 or y1 <= y0:
        return np.full((height, width, n_bands), value, dtype=dtype)
    if interpolation == "nearest":
        piece = read_window(backend, entry, slice(y0, y1), slice(x0, x1), bands, fill, dtype)
        centres_c = np.arange(width) + 0.5
        centres_r = (np.arange(height) + 0.5)[:, None]
        m = asset_from_out
        sx = m[0, 0] * centres_c + m[0, 1] * centres_r + m[0, 2]
        sy = m[1, 0] * centres_c + m[1, 1] * centres_r + m[1, 2]
        inside = (sx > 0) & (sx < entry.width) & (sy > 0) & (sy < entry.height)  # as ndpatch.warp
        warped = np.full((height, width, n_bands), value, dtype=dtype)
        warped[inside] = piece[np.floor(sy[inside]).astype(np.intp) - y0,
                               np.floor(sx[inside]).astype(np.intp) - x0]
        return warped
    import kwimage
    work = dtype if dtype in _WARP_DTYPES else np.dtype(np.float64)
    piece = read_window(backend, entry, slice(y0, y1), slice(x0, x1), bands, fill, work)
    out_from_piece = np.linalg.inv(asset_from_out) @ _translate(x0, y0)
    warped = kwimage.warp_affine(piece, out_from_piece, dsize=(width, height),
                                 interpolation=interpolation, border_value=value,
                                 antialias=antialias, origin_convention="corner")
    warped = warped.reshape(height, width, n_bands)
    if work != dtype:
        warped = (np.rint(warped) if dtype.kind in "iub" else warped).astype(dtype)
    return warped


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def _read_frame(backend, frame: Frame, tr: VideoTarget, channels: tuple, dtype: np.dtype,
                out: np.ndarray) -> tuple[str, ...]:
    """Fill ``out`` (H×W×C) with one frame's channels; returns the names it lacks."""
    by_asset: dict[int, tuple[list[int], list[int]]] = {}
    missing = []
    for position, channel in enumerate(channels):
        found = frame.locate(channel)
        if found is None:
            missing.append(channel)
            out[..., position] = 0 if tr.fill is None else tr.fill
            continue
        bands, positions = by_asset.setdefault(found[0], ([], []))
        bands.append(found[1])
        positions.append(position)
    rows, cols = tr.rows, tr.cols
    for asset_index, (bands, positions) in by_asset.items():
        asset = frame.assets[asset_index]
        contiguous = positions == list(range(positions[0], positions[0] + len(positions)))
        view = out[..., positions[0]:positions[-1] + 1] if contiguous else None
        if asset.shift is not None:
            dx, dy = asset.shift
            pixels = read_window(backend, asset.entry, slice(rows.start + dy, rows.stop + dy),
                                 slice(cols.start + dx, cols.stop + dx), bands, tr.fill, dtype, view)
        elif asset.axis_aligned:
            pixels = read_resampled(backend, asset.entry,
                                    asset.asset_from_vid @ _translate(cols.start, rows.start),
                                    out.shape[:2], bands, tr.fill, dtype,
                                    interpolation=tr.interpolation, antialias=tr.antialias, out=view)
        else:
            pixels = warped_window(backend, asset.entry, asset.asset_from_vid, rows, cols, bands,
                                   tr.fill, dtype, tr.interpolation, tr.antialias)
        if pixels is not view:
            out[..., positions] = pixels
    return tuple(str(c) for c in missing)


# -- annotations -------------------------------------------------------------------
def _warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """xywh boxes → the xywh bounding boxes of their warped corners."""
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    xs = np.stack([x0, x1, x1, x0], axis=1)
    ys = np.stack([y0, y0, y1, y1], axis=1)
    wx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    wy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    left, top = wx.min(axis=1), wy.min(axis=1)
    return np.stack([left, top, wx.max(axis=1) - left, wy.max(axis=1) - top], axis=1)


def _track_ids(anns: list[dict]) -> np.ndarray:
    """The ``track_id`` of each annotation (-1 without one): int64, or object for other id types."""
    track_ids = [ann.get("track_id") for ann in anns]
    integer = all(isinstance(t, (int, np.integer, type(None))) for t in track_ids)
    return np.array([-1 if t is None else t for t in track_ids], dtype=np.int64 if integer else object)


def frame_detections(sampler, frame: Frame, rel_frame_index: int, x0: int, y0: int, x1: int,
                     y1: int, visible_thresh: float = 0.0, annot_ids=None):
    """The annotations of a frame that touch the video window, in the window's pixel frame.

    Returns a ``kwimage.Detections`` with ``aids``, ``cids`` and ``track_ids``
    (-1 for annotations without one); ``meta`` has ``gid`` and ``rel_frame_index``.
    """
    image_annots = sampler.index.image_annots(frame.gid)
    identity = np.array_equal(frame.vid_from_img, np.eye(3))
    in_video = image_annots if identity else ImageAnnots(
        aids=image_annots.aids, cids=image_annots.cids, anns=image_annots.anns,
        boxes=_warp_boxes(image_annots.boxes, frame.vid_from_img), dset=image_annots.dset)
    idxs = in_video.select(x0, y0, x1, y1, visible_thresh, annot_ids)
    dets = image_annots.detections().take(idxs)
    if identity:
        dets = dets.translate((-x0, -y0))
    else:
        import kwimage
        dets = dets.warp(kwimage.Affine(_translate(-x0, -y0) @ frame.vid_from_img))
        bx, by, bw, bh = in_video.boxes[idxs].T  # exact bounds, not float32 corners
        dets.data["boxes"] = kwimage.Boxes(np.stack([bx - x0, by - y0, bw, bh], axis=1), "xywh")
    dets.data["track_ids"] = _track_ids([image_annots.anns[i] for i in idxs])
    dets.meta["gid"] = frame.gid
    dets.meta["rel_frame_index"] = rel_frame_index
    return dets


# -- samples ----------------------------------------------------------------------
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
    if channels is None:
        channels = tuple(dict.fromkeys(c for frame in frame_list for c in frame.channels))
    dtype = tr.dtype
    if dtype is None:
        used = {frame.assets[found[0]].entry.dtype
                for frame in frame_list for found in map(frame.locate, channels) if found}
        used = used or {asset.entry.dtype for frame in frame_list for asset in frame.assets}
        dtype = np.result_type(*used)
    rows, cols = tr.rows, tr.cols
    shape = (len(frame_list), rows.stop - rows.start, cols.stop - cols.start, len(channels))
    return VideoLayout(tr, frame_list, tuple(channels), np.dtype(dtype), shape)


def read_video_pixels(backend, layout: VideoLayout, out: np.ndarray) -> list[tuple[str, ...]]:
    """Fill ``out`` (the layout's shape and dtype) frame by frame; returns each frame's missing channels."""
    return [_read_frame(backend, frame, layout.tr, layout.channels, layout.dtype, out[t])
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
    frames = video_frames(sampler)
    rows, cols = tr.rows, tr.cols
    x0, y0, x1, y1 = cols.start, rows.start, cols.stop, rows.stop
    n_video = len(frames.order(tr.vidid)) if tr.vidid is not None else len(tr.gids)
    data_dims = (n_video, *tr.space_dims)
    time_slice = tr.time_slice if tr.time_slice is not None else slice(0, len(tr.gids))
    space_slice = tr.space_slice
    by_gids = target.get("gids") is not None and target.get("time_slice") is None
    normalized = {
        **target, "vidid": tr.vidid, "gids": list(tr.gids), "time_slice": None if by_gids else time_slice,
        "space_slice": space_slice, "slices": (time_slice, *space_slice), "pad": tr.pad,
        "space_dims": tr.space_dims, "data_dims": data_dims, "channels": "|".join(map(str, channels)),
        "interpolation": tr.interpolation, "antialias": tr.antialias,
        "window_dims": (len(tr.gids), space_slice[0].stop - space_slice[0].start,
                        space_slice[1].stop - space_slice[1].start),
    }
    tf_rel_to_abs = kwimage.Affine.translate((x0, y0))
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
        sample["annots"] = _stack_annots(frame_dets)
        sample["kp_classes"] = sampler.kp_classes
    return sample


def load_video_batch(sampler, targets: Sequence[dict], with_annots: bool = True,
                     out: np.ndarray | None = None, pool: Executor | None = None) -> dict:
    """Read same-shaped video targets into one (B, T, H, W, C) array.

    Every target must name frames and give the same T×H×W×C shape and dtype
    (else :class:`TargetError`, naming the first frame of the odd target).
    With a thread ``pool`` the frames of GDAL-decoded assets are read on it.
    Returns ``im``, ``targets`` (normalised target dicts, which ``load_sample``
    and ``load_batch`` accept again), ``params`` (per target, as in
    :func:`load_video_sample`) and, when ``with_annots``, ``annots`` (per target).

    Example:
        >>> import kwcoco, ndpatch
        >>> dset = kwcoco.CocoDataset.demo("vidshapes2-frames3", image_size=(32, 32), verbose=0)
        >>> sampler = ndpatch.CocoSampler(dset)
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
    layouts = [video_layout(sampler, target) for target in targets]
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
    if pool is not None and decoded and len(layouts) > 1:
        futures = [pool.submit(read_video_pixels, sampler.backend, layout, out[i])
                   for i, layout in enumerate(layouts)]
        missing = [future.result() for future in futures]
    else:
        missing = [read_video_pixels(sampler.backend, layout, out[i]) for i, layout in enumerate(layouts)]
    samples = [_video_sample(sampler, target, layout, out[i], missing[i], with_annots)
               for i, (target, layout) in enumerate(zip(targets, layouts))]
    batch = {"im": out, "targets": [sample["target"] for sample in samples],
             "params": [sample["params"] for sample in samples]}
    if with_annots:
        batch["annots"] = [sample["annots"] for sample in samples]
    return batch


def _stack_annots(frame_dets: list) -> dict:
    """ndsampler's flat ``annots`` keys over every frame, plus ``frame_dets``."""
    import kwimage
    stacked = kwimage.Detections.concatenate(frame_dets)
    return {
        "aids": stacked.data["aids"],
        "cids": stacked.data["cids"],
        "track_ids": stacked.data["track_ids"],
        "rel_frame_index": np.concatenate(
            [np.full(len(d), d.meta["rel_frame_index"], dtype=np.int64) for d in frame_dets]),
        "rel_boxes": stacked.boxes,
        "rel_ssegs": stacked.data.get("segmentations"),
        "rel_kpts": stacked.data.get("keypoints"),
        "frame_dets": frame_dets,
    }


# -- space-time sampling -------------------------------------------------------------
#: How a zero-width or zero-height box still counts where it lies (as in ImageAnnots.select).
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """One video of a :class:`VideoTable`: frames, (height, width) and each frame's table rows."""

    vidid: int
    gids: tuple[int, ...]
    dims: tuple[int, int]
    frame_rows: np.ndarray  # rows of frame t: frame_rows[t]:frame_rows[t + 1]
    vid_from_img: tuple[np.ndarray, ...]

    def rows(self, frames: range) -> np.ndarray:
        """Table rows of the annotations on the frames at these positions."""
        if frames.step == 1:
            return np.arange(self.frame_rows[frames.start], self.frame_rows[frames.stop]) \
                if len(frames) else np.zeros(0, np.int64)
        return np.concatenate([np.arange(self.frame_rows[t], self.frame_rows[t + 1]) for t in frames]
                              + [np.zeros(0, np.int64)])


@dataclass(frozen=True, slots=True)
class VideoTable:
    """Every annotation of every video in video pixels, sorted by video, frame position and id.

    ``columns`` (numpy arrays, one row per annotation): ``aid``, ``vidid``,
    ``gid``, ``frame`` (position of its frame in the video), ``category_id``,
    ``track_id`` (-1 without one), ``cx``, ``cy``, ``width``, ``height`` (the
    bounding box of its box warped into video pixels) and ``has_segmentation``.
    """

    columns: dict[str, np.ndarray]
    videos: dict[int, VideoInfo]
    anns: list[dict]
    bounds: tuple[np.ndarray, ...]  # x0, y0, x1, y1 in video pixels (zero sizes widened)


def build_video_table(frames: VideoFrames) -> VideoTable:
    """The :class:`VideoTable` of a sampler's dataset (reads no pixels, opens no frames)."""
    index, dset = frames.sampler.index, frames.sampler.dset
    videos, anns, boxes, frame_pos, vids, gids = {}, [], [], [], [], []
    for vidid in sorted(dset.index.videos):
        video = frames.video(vidid)
        if video.get("height") is None or video.get("width") is None:
            raise DatasetError(f"video {vidid} of dataset {dset.fpath} has no width/height")
        order = frames.order(vidid)
        counts, matrices = [], []
        for t, gid in enumerate(order):
            image_annots = index.image_annots(gid)
            matrix = _vid_from_img(index.image(gid))
            warped = _warp_boxes(image_annots.boxes, matrix)
            keep = np.flatnonzero(np.isfinite(warped).all(axis=1))
            anns += [image_annots.anns[i] for i in keep.tolist()]
            boxes.append(warped[keep])
            counts.append(len(keep))
            matrices.append(matrix)
        n = len(anns) - sum(counts)
        videos[vidid] = VideoInfo(vidid, tuple(order), (int(video["height"]), int(video["width"])),
                                  n + np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
                                  tuple(matrices))
        frame_pos += [t for t, count in enumerate(counts) for _ in range(count)]
        vids += [vidid] * sum(counts)
        gids += [gid for gid, count in zip(order, counts) for _ in range(count)]
    x, y, w, h = np.concatenate(boxes + [np.zeros((0, 4))]).T
    columns = {
        "aid": np.array([ann["id"] for ann in anns], dtype=np.int64),
        "vidid": np.array(vids, dtype=np.int64), "gid": np.array(gids, dtype=np.int64),
        "frame": np.array(frame_pos, dtype=np.int64),
        "category_id": np.array([-1 if ann.get("category_id") is None else ann["category_id"]
                                 for ann in anns], dtype=np.int64),
        "track_id": _track_ids(anns),
        "cx": x + w / 2, "cy": y + h / 2, "width": w, "height": h,
        "has_segmentation": np.array([ann.get("segmentation") is not None for ann in anns], dtype=bool),
    }
    bounds = (x, y, np.maximum(x + w, x + _EPS), np.maximum(y + h, y + _EPS))
    return VideoTable(columns, videos, anns, bounds)


class VideoRegions:
    """Space-time windows to train on: a grid, track-centred positives, all-frames negatives.

    Windows are ``window_dims=(time, height, width)``: that many consecutive
    frames (fewer when the video is shorter) and a window in video pixels.
    Targets are dicts with ``vidid`` + ``time_slice`` that ``load_sample`` and
    ``load_batch`` read. An annotation *meets* a window when it is on one of the
    window's frames and its extent, warped into video pixels (its polygon where
    it has one, else its box), meets the window's interior.

    Args:
        sampler: a :class:`~ndpatch.sampler.CocoSampler` over a dataset with videos.
        window_dims: (time, height, width) of every window.
        rng: the default stream of draws given no ``rng`` (see :mod:`ndpatch.rng`).
        negative_tries: random placements tried per video before an exact search.

    Example:
        >>> import kwcoco, ndpatch
        >>> dset = kwcoco.CocoDataset.demo("vidshapes2-frames5", image_size=(64, 64), verbose=0)
        >>> sampler = ndpatch.CocoSampler(dset)
        >>> regions = VideoRegions(sampler, window_dims=(3, 32, 32), rng=0)
        >>> pos = regions.get_positive(0)
        >>> pos["aid"] in sampler.load_sample(pos)["annots"]["frame_dets"][pos["rel_frame_index"]].data["aids"]
        True
        >>> neg = regions.get_negative()
        >>> regions.hits(neg["vidid"], neg["time_slice"], *neg["space_slice"])
        []
        >>> sampler.load_sample(neg)["im"].shape
        (3, 32, 32, 3)
    """

    def __init__(self, sampler, window_dims: Sequence[int], rng: RngLike = None, negative_tries: int = 16):
        dims = _ints(window_dims, "VideoRegions", "window_dims")
        if len(dims) != 3 or min(dims) <= 0:
            raise TargetError(f"window_dims must be (time, height, width) > 0, got {window_dims!r}")
        if negative_tries < 1:
            raise TargetError(f"negative_tries must be at least 1, got {negative_tries!r}")
        self.sampler = sampler
        self.window_dims: tuple[int, int, int] = (dims[0], dims[1], dims[2])
        self._stream = ProcessStream(rng)
        self.negative_tries = int(negative_tries)
        self._geoms: OrderedDict[int, Any] = OrderedDict()
        self._full: tuple[np.ndarray, int] | None = None
        self._cycle: CoverageCycle | None = None

    def _rng(self, rng: RngLike) -> np.random.Generator:
        """``rng`` as a Generator, or this process's (worker's) stream (coverage restarts with it)."""
        if self._stream.renewed():
            self._cycle = None
        return self._stream.generator(rng)

    @property
    def table(self) -> VideoTable:
        return video_frames(self.sampler).table()

    @property
    def targets(self) -> dict[str, np.ndarray]:
        """The annotation table (see :class:`VideoTable`); row ``i`` is positive ``i``."""
        return self.table.columns

    def _video(self, vidid: int) -> VideoInfo:
        info = self.table.videos.get(vidid)
        if info is None:
            raise UnknownVideoError(f"unknown video id {vidid!r} in dataset {self.sampler.dset.fpath}")
        return info

    def _time_window(self, n_frames: int, t0: int) -> range:
        return range(t0, min(t0 + self.window_dims[0], n_frames))

    # -- which annotations meet a window ---------------------------------------------------
    def _geometry(self, row: int, info: VideoInfo):
        """The shapely geometry, in video pixels, of table row ``row``'s segmentation (cached).

        None for a segmentation without area: such an annotation counts by its box.
        """
        if row not in self._geoms:
            matrix = info.vid_from_img[int(self.targets["frame"][row])]
            self._geoms[row] = segmentation_geometry(self.table.anns[row], warp=matrix)
            if len(self._geoms) > 4096:
                self._geoms.popitem(last=False)
        return self._geoms[row]

    def _hit_rows(self, info: VideoInfo, frames: range, x0: float, y0: float, x1: float, y1: float,
                  stop_at_first: bool = False) -> np.ndarray:
        """Table rows on ``frames`` whose extent (polygon, else box) meets the window's interior."""
        rows = info.rows(frames)
        rows = rows[box_hits(tuple(b[rows] for b in self.table.bounds), x0, y0, x1, y1)]
        if not len(rows):
            return rows
        return extent_hits(rows, self.targets["has_segmentation"][rows], lambda row: self._geometry(row, info),
                           (x0, y0, x1, y1), stop_at_first)

    def hits(self, vidid: int, time_slice: slice, rows: slice, cols: slice) -> list[int]:
        """Ids of the annotations on frames ``time_slice`` of video ``vidid`` that meet ``rows × cols``."""
        info = self._video(vidid)
        frames = range(len(info.gids))[time_slice]
        found = self._hit_rows(info, frames, cols.start, rows.start, cols.stop, rows.stop)
        return self.targets["aid"][found].tolist()

    # -- grid ------------------------------------------------------------------------------
    def new_sample_grid(self, time_stride: int | None = None, window_overlap: float = 0.0,
                        edge: str = "shift", vidids: Sequence[int] | None = None) -> dict[str, list[dict]]:
        """Windows covering every pixel of every frame of every video (or of ``vidids``), split by label.

        Time windows start ``time_stride`` frames apart (default: the window
        length; at most it, so no frame is skipped), the last one aligned to
        the video's end. Space is tiled as :meth:`Regions.new_sample_grid`
        (``window_overlap``, ``edge``). Each target has ``vidid``,
        ``time_slice``, ``space_slice``, ``aids`` (annotations that meet the
        window, by frame then id) and ``label`` (``'positive'`` when ``aids``).
        """
        n_time, height, width = self.window_dims
        stride = n_time if time_stride is None else int(time_stride)
        vidids = sorted(self.table.videos) if vidids is None else vidids
        grid: dict[str, list[dict]] = {"positives": [], "negatives": []}
        for vidid in vidids:
            info = self._video(vidid)
            if not info.gids:
                continue
            space = grid_starts(info.dims, (height, width), window_overlap, edge).tolist()
            for t0 in strided_starts(len(info.gids), n_time, stride).tolist():
                frames = self._time_window(len(info.gids), t0)
                for y0, x0 in space:
                    found = self._hit_rows(info, frames, x0, y0, x0 + width, y0 + height)
                    aids = self.targets["aid"][found].tolist()
                    label = "positive" if aids else "negative"
                    grid[label + "s"].append({
                        "vidid": vidid, "time_slice": slice(frames.start, frames.stop),
                        "space_slice": (slice(y0, y0 + height), slice(x0, x0 + width)),
                        "aids": aids, "label": label})
        return grid

    # -- positives -------------------------------------------------------------------------
    def positive_target(self, row: int) -> dict:
        """The window on annotation ``row`` of the table: its frame centred in time, its box in space.

        The time window is clamped to the video; ``rel_frame_index`` is the
        annotation's frame within it.
        """
        columns = self.targets
        if not 0 <= row < len(columns["aid"]):
            raise SamplingError(f"positive index {row} is out of range (the video table has "
                                f"{len(columns['aid'])} rows)")
        n_time, height, width = self.window_dims
        info = self._video(int(columns["vidid"][row]))
        t, n_frames = int(columns["frame"][row]), len(info.gids)
        t0 = min(max(t - n_time // 2, 0), max(n_frames - n_time, 0))
        frames = self._time_window(n_frames, t0)
        track_id = columns["track_id"][row]
        return {
            "vidid": info.vidid, "time_slice": slice(frames.start, frames.stop),
            "cx": float(columns["cx"][row]), "cy": float(columns["cy"][row]),
            "width": width, "height": height,
            "aid": int(columns["aid"][row]), "category_id": int(columns["category_id"][row]),
            "track_id": track_id.item() if isinstance(track_id, np.generic) else track_id,
            "rel_frame_index": t - t0,
        }

    def get_positive(self, index: int | None = None, rng: RngLike = None) -> dict:
        """Positive ``index`` (a table row), or the next one drawn: every annotation once per epoch."""
        if index is not None:
            return self.positive_target(index)
        gen = self._rng(rng)
        n_rows = len(self.targets["aid"])
        if not n_rows:
            raise SamplingError(f"dataset {self.sampler.dset.fpath} has no video annotations "
                                f"to draw positives from")
        if self._cycle is None:
            self._cycle = CoverageCycle(np.zeros(n_rows, np.int64), 1)
        return self.positive_target(self._cycle.draw(0, gen))

    # -- negatives -------------------------------------------------------------------------
    def _place_negative(self, info: VideoInfo, rng: np.random.Generator) -> tuple[int, int, int] | None:
        """A free ``(t0, y0, x0)`` in a video: random tries, then an exact box-free search."""
        n_time, height, width = self.window_dims
        n_frames = len(info.gids)
        if not n_frames:
            return None
        t_last = max(n_frames - n_time, 0)
        ylo, yhi = placement_range(info.dims[0], height)
        xlo, xhi = placement_range(info.dims[1], width)
        tries = self.negative_tries
        for t0, y0, x0 in zip(rng.integers(0, t_last + 1, tries).tolist(),
                              rng.integers(ylo, yhi + 1, tries).tolist(),
                              rng.integers(xlo, xhi + 1, tries).tolist()):
            frames = self._time_window(n_frames, t0)
            if not len(self._hit_rows(info, frames, x0, y0, x0 + width, y0 + height, stop_at_first=True)):
                return t0, y0, x0
        for t0 in rng.permutation(t_last + 1).tolist():
            rows = info.rows(self._time_window(n_frames, t0))
            free = free_positions(tuple(b[rows] for b in self.table.bounds), info.dims, (height, width))
            if len(free):
                lengths = free[:, 2] - free[:, 1] + 1
                y0, first, last = free[rng.choice(len(free), p=lengths / lengths.sum())].tolist()
                return t0, y0, int(rng.integers(first, last + 1))
        return None

    def _negative_target(self, info: VideoInfo, t0: int, y0: int, x0: int) -> dict:
        _, height, width = self.window_dims
        frames = self._time_window(len(info.gids), t0)
        return {"vidid": info.vidid, "time_slice": slice(frames.start, frames.stop),
                "space_slice": (slice(y0, y0 + height), slice(x0, x0 + width)),
                "aid": None, "category_id": self.sampler.regions._background_id()}

    def get_negative(self, rng: RngLike = None, vidid: int | None = None) -> dict:
        """A window that no annotation on any of its frames meets, in video ``vidid`` or any video.

        Videos are drawn uniformly; one found to have no room is dropped from
        later draws. Raises :class:`SamplingError` naming the video when
        ``vidid`` has no room, or when no video has.
        """
        gen = self._rng(rng)
        n_time, height, width = self.window_dims
        what = f"{n_time}x{height}x{width} negative window that meets no annotation in any of its frames"
        if vidid is not None:
            info = self._video(vidid)
            found = self._place_negative(info, gen)
            if found is None:
                name = self.sampler.dset.index.videos[vidid].get("name", "")
                raise SamplingError(f"video {vidid} {name!r} of dataset {self.sampler.dset.fpath}: "
                                    f"no room for a {what}")
            return self._negative_target(info, *found)
        infos = list(self.table.videos.values())
        live, n_live = self._full if self._full is not None else (np.arange(len(infos)), len(infos))
        while n_live:
            i = int(gen.integers(n_live))
            found = self._place_negative(infos[int(live[i])], gen)
            if found is not None:
                self._full = (live, n_live)
                return self._negative_target(infos[int(live[i])], *found)
            n_live -= 1
            live[i], live[n_live] = live[n_live], live[i]
        self._full = (live, 0)
        raise SamplingError(f"no video of dataset {self.sampler.dset.fpath} has room for a {what}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_geoms"] = OrderedDict()  # shapely geometries: rebuilt on demand
        return state
