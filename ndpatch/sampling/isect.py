"""Which annotations of an image a box overlaps: ndsampler 0.8.1's ``FrameIntersectionIndex``, vectorised.

The index is the targets table (:mod:`~ndpatch.sampling.table`): each image's
boxes are one contiguous slice of arrays, so a query is one comparison over
them. "Overlaps" is ndsampler's rule: the boxes' closed extents meet (touching
edges count), which is what its quad-tree answers.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> import kwimage
    >>> index = FrameIntersectionIndex.from_coco(kwcoco_demo("shapes8"))
    >>> aids = index.overlapping_aids(1, kwimage.Boxes([0, 0, 600, 600], "xywh"))
    >>> aids == sorted(kwcoco_demo("shapes8").index.gid_to_aids[1])
    True
"""
from __future__ import annotations

import warnings

import numpy as np

from ndpatch.errors import SamplingError
from ndpatch.sampling.table import TargetsTable


def query_ltrb(box) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of a ``kwimage.Boxes`` (one box, any format) or an ltrb sequence."""
    if hasattr(box, "to_ltrb"):
        return np.asarray(box.to_ltrb().data, dtype=np.float64).reshape(-1, 4)[0]
    return np.asarray(box, dtype=np.float64).reshape(4)


class FrameIntersectionIndex:
    """Box queries on one dataset's annotations, image by image (see the module doc).

    Args:
        table: the dataset's :class:`~ndpatch.sampling.table.TargetsTable`.
    """

    def __init__(self, table: TargetsTable):
        self.table = table
        self.all_gids = table.images["gid"].tolist()

    @classmethod
    def from_coco(cls, dset, verbose: int = 0) -> "FrameIntersectionIndex":
        """The index of a ``kwcoco.CocoDataset`` (its images need width and height)."""
        return cls(TargetsTable(dset.dataset, what=getattr(dset, "fpath", None)))

    @classmethod
    def demo(cls, *args, **kwargs) -> "FrameIntersectionIndex":
        """The index of ``kwcoco.CocoDataset.demo(*args, **kwargs)``."""
        from ndpatch.demo import kwcoco_demo
        return cls.from_coco(kwcoco_demo(*args, **kwargs))

    def _boxes(self, gid: int) -> tuple[np.ndarray, np.ndarray]:
        """The aids and ``(N, 4)`` ltrb boxes of image ``gid``."""
        rows = self.table.rows(self.table.image_row(gid))
        cols = self.table.columns
        x, y = cols["x"][rows], cols["y"][rows]
        return cols["aid"][rows], np.stack([x, y, x + cols["width"][rows], y + cols["height"][rows]], axis=1)

    def overlapping_aids(self, gid: int, box) -> list[int]:
        """Sorted ids of the annotations of image ``gid`` whose box overlaps ``box`` (edges touching count)."""
        aids, boxes = self._boxes(gid)
        x0, y0, x1, y1 = query_ltrb(box)
        keep = (boxes[:, 0] <= x1) & (boxes[:, 2] >= x0) & (boxes[:, 1] <= y1) & (boxes[:, 3] >= y0)
        return sorted(aids[keep].tolist())

    def _overlaps(self, gid: int, box, denominator: str) -> tuple[list[int], np.ndarray]:
        aids, boxes = self._boxes(gid)
        found = self.overlapping_aids(gid, box)
        if not found:
            return found, np.empty(0)
        boxes = boxes[np.searchsorted(aids, found)]   # an image's rows are sorted by aid
        x0, y0, x1, y1 = query_ltrb(box)
        iw = np.clip(np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0), 0, None)
        ih = np.clip(np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0), 0, None)
        inter = iw * ih
        other = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if denominator == "union":
            return found, inter / ((x1 - x0) * (y1 - y0) + other - inter)
        return found, inter / (other + 1e-6)

    def ious(self, gid: int, box) -> tuple[list[int], np.ndarray]:
        """The overlapping aids and each one's intersection over union with ``box``."""
        return self._overlaps(gid, box, "union")

    def iooas(self, gid: int, box) -> tuple[list[int], np.ndarray]:
        """The overlapping aids and the fraction of each one's area that ``box`` covers."""
        return self._overlaps(gid, box, "other")

    def random_negatives(self, num: int, anchors=None, window_size=None, gids=None, thresh: float = 0.0,
                         exact: bool | str = True, rng=None, patience: int | None = None):
        """``num`` random boxes in which no annotation has ``thresh`` or more of its area (0: none overlaps).

        Sizes are ``window_size`` (width, height) or, relative to each image's
        (width, height), one of ``anchors``. ``exact`` keeps drawing until ``num``
        are found (``'warn'``: warn instead of raising when they cannot be).
        Returns ``(gids, kwimage.Boxes)`` (ltrb).
        """
        import kwimage
        from ndpatch.rng import coerce_rng
        if (window_size is None) == (anchors is None):
            raise SamplingError("give exactly one of window_size and anchors")
        gen = coerce_rng(rng)
        pool = self.all_gids if gids is None else list(gids)
        dims = dict(zip(self.table.images["gid"].tolist(), zip(self.table.images["width"].tolist(),
                                                               self.table.images["height"].tolist())))
        found_gids, found_boxes = [], []
        attempts = (patience or int(np.sqrt(num * 10) + 1)) * max(num, 1) * 20 if exact else num
        for _ in range(attempts):
            if len(found_boxes) >= num:
                break
            gid = pool[int(gen.integers(len(pool)))]
            width, height = dims[gid]
            if window_size is not None:
                w, h = window_size
            else:
                aw, ah = np.asarray(anchors, dtype=np.float64)[int(gen.integers(len(anchors)))]
                w, h = aw * width, ah * height
            if w > width or h > height:
                continue
            x0, y0 = gen.random() * (width - w), gen.random() * (height - h)
            box = [x0, y0, x0 + w, y0 + h]
            _, overlaps = self.iooas(gid, box)
            if not len(overlaps) or overlaps.max() < thresh:
                found_gids.append(gid)
                found_boxes.append(box)
        if exact and len(found_boxes) < num:
            message = f"found {len(found_boxes)} of {num} negatives with thresh={thresh}"
            if exact != "warn":
                raise SamplingError(message)
            warnings.warn(message)
        return np.array(found_gids, dtype=np.int64), kwimage.Boxes(np.array(found_boxes).reshape(-1, 4), "ltrb")

    def _support(self, gid: int):
        """Every annotation box of image ``gid`` as ``kwimage.Boxes`` (ltrb)."""
        import kwimage
        return kwimage.Boxes(self._boxes(gid)[1], "ltrb")

    def __repr__(self) -> str:
        return f"<FrameIntersectionIndex({len(self.all_gids)})>"
