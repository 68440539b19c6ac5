"""Space-time windows to train on: a grid, track-centred positives, all-frames negatives.

:class:`VideoRegions` draws from the video table
(:mod:`~ndpatch.sampling.video_table`: every annotation of every video in video
pixels) with the per-axis geometry of :mod:`~ndpatch.sampling.geometry`; its
targets are ``vidid`` + ``time_slice`` dicts that ``load_sample`` and
``load_batch`` read (:mod:`ndpatch.video`). Seeded like
:class:`~ndpatch.sampling.regions.Regions`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ndpatch.annots import segmentation_geometry
from ndpatch.errors import SamplingError, TargetError, UnknownVideoError
from ndpatch.rng import ProcessStream, RngLike
from ndpatch.sampling.balance import CoverageCycle
from ndpatch.sampling.geometry import (box_hits, extent_hits, free_positions, grid_starts, placement_range,
                                       random_free_start, strided_starts)
from ndpatch.sampling.regions_api import grid_result
from ndpatch.sampling.table import GEOMETRY_CACHE, background_id
from ndpatch.sampling.video_table import VideoInfo, VideoTable, video_table
from ndpatch.target import as_ints


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
        dims = as_ints(window_dims, "VideoRegions", "window_dims")
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
        """Every video's annotations in video pixels (:func:`~ndpatch.sampling.video_table.video_table`)."""
        return video_table(self.sampler.index)

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
            if len(self._geoms) > GEOMETRY_CACHE:
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
                        edge: str = "shift", vidids: Sequence[int] | None = None, **rule) -> dict[str, list]:
        """Windows covering every pixel of every frame of every video (or of ``vidids``), in grid order.

        Time windows start ``time_stride`` frames apart (default: the window
        length; at most it, so no frame is skipped), the last one aligned to
        the video's end. Space is tiled as :meth:`Regions.new_sample_grid`
        (``window_overlap``, ``edge``, ``rule``: ``stride``, ``pad_direction``,
        ``padding``). Each target has ``vidid``,
        ``time_slice``, ``space_slice``, ``aids`` (annotations that meet the
        window, by frame then id), ``gids`` (its frames) and ``label`` (``'positive'``
        when ``aids``); the grid is :func:`~ndpatch.sampling.regions_api.grid_result`'s.
        """
        n_time, height, width = self.window_dims
        stride = n_time if time_stride is None else int(time_stride)
        vidids = sorted(self.table.videos) if vidids is None else vidids
        targets = []
        for vidid in vidids:
            info = self._video(vidid)
            if not info.gids:
                continue
            space = grid_starts(info.dims, (height, width), window_overlap, edge, **rule).tolist()
            for t0 in strided_starts(len(info.gids), n_time, stride).tolist():
                frames = self._time_window(len(info.gids), t0)
                for y0, x0 in space:
                    found = self._hit_rows(info, frames, x0, y0, x0 + width, y0 + height)
                    aids = self.targets["aid"][found].tolist()
                    targets.append({
                        "vidid": vidid, "time_slice": slice(frames.start, frames.stop),
                        "space_slice": (slice(y0, y0 + height), slice(x0, x0 + width)),
                        "gids": list(info.gids[frames.start:frames.stop]),
                        "aids": aids, "label": "positive" if aids else "negative"})
        return grid_result(targets)

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
                return (t0, *random_free_start(free, rng))
        return None

    def _negative_target(self, info: VideoInfo, t0: int, y0: int, x0: int) -> dict:
        _, height, width = self.window_dims
        frames = self._time_window(len(info.gids), t0)
        return {"vidid": info.vidid, "time_slice": slice(frames.start, frames.stop),
                "space_slice": (slice(y0, y0 + height), slice(x0, x0 + width)),
                "aid": None, "category_id": background_id(self.sampler.dset.dataset)}

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
