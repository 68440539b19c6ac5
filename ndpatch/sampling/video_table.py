"""Every annotation of every video, in video pixels: the table space-time sampling draws from.

Built from the dataset alone (no pixels, no frames opened): each frame's
annotation boxes warped by its ``warp_img_to_vid``, sorted by video, frame
position and annotation id, one :class:`VideoInfo` per video.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> from ndpatch.index import DatasetIndex
    >>> index = DatasetIndex(kwcoco_demo("vidshapes2-frames3"))
    >>> table = video_table(index)
    >>> sorted(table.videos), len(table.columns["aid"]) == index.dset.n_annots
    ([1, 2], True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ndpatch.annots import track_ids, warp_boxes
from ndpatch.dataset import vid_from_img
from ndpatch.errors import DatasetError
from ndpatch.sampling.geometry import box_bounds


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


def build_video_table(index) -> VideoTable:
    """The :class:`VideoTable` of a :class:`~ndpatch.index.DatasetIndex`'s dataset."""
    dset = index.dset
    videos, anns, boxes, frame_pos, vids, gids = {}, [], [], [], [], []
    for vidid in sorted(dset.index.videos):
        video = index.video(vidid)
        if video.get("height") is None or video.get("width") is None:
            raise DatasetError(f"video {vidid} of dataset {dset.fpath} has no width/height")
        order = index.frame_order(vidid)
        counts, matrices = [], []
        for gid in order:
            image_annots = index.image_annots(gid)
            matrix = vid_from_img(index.image(gid))
            warped = warp_boxes(image_annots.boxes, matrix)
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
    xywh = np.concatenate(boxes + [np.zeros((0, 4))])
    x, y, w, h = xywh.T
    columns = {
        "aid": np.array([ann["id"] for ann in anns], dtype=np.int64),
        "vidid": np.array(vids, dtype=np.int64), "gid": np.array(gids, dtype=np.int64),
        "frame": np.array(frame_pos, dtype=np.int64),
        "category_id": np.array([-1 if ann.get("category_id") is None else ann["category_id"]
                                 for ann in anns], dtype=np.int64),
        "track_id": track_ids(anns),
        "cx": x + w / 2, "cy": y + h / 2, "width": w, "height": h,
        "has_segmentation": np.array([ann.get("segmentation") is not None for ann in anns], dtype=bool),
    }
    return VideoTable(columns, videos, anns, box_bounds(xywh))


def video_table(index) -> VideoTable:
    """The video table of an index (built on first use, kept by the index)."""
    return index.derived("video_table", build_video_table)
