"""The targets table: one row per annotation, as numpy columns, and the hit tests on it.

:func:`build_targets` builds the table (ndsampler's columns) and the images
table vectorised from a COCO dict, sorted by image so each image's annotations
are one contiguous slice. :class:`TargetsTable` adds what strategies ask of it:
box bounds, the other splits' blocks of block-split images, and which rows'
extents (polygon, else box) meet a window.

Example:
    >>> dataset = {"images": [{"id": 1, "width": 20, "height": 10}],
    ...            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4]}]}
    >>> table = TargetsTable(dataset)
    >>> table.columns["cx"].tolist(), table.hit_rows(0, 0, 0, 3, 3).tolist(), table.hit_rows(0, 6, 0, 9, 9).tolist()
    ([4.0], [0], [])
"""
from __future__ import annotations

from collections import OrderedDict
from operator import itemgetter
from typing import Any

import numpy as np

import kwarray

from ndpatch.annots import annotation_boxes, segmentation_geometry
from ndpatch.errors import DatasetError, UnknownImageError
from ndpatch.sampling.blocks import split_obstacles
from ndpatch.sampling.geometry import Bounds, box_bounds, box_hits, extent_hits

#: Columns of the targets table (ndsampler's), in order.
TABLE_COLUMNS = ("aid", "gid", "category_id", "cx", "cy", "width", "height", "img_width", "img_height")
#: Shapely geometries of segmentations kept per table (least recently used dropped).
GEOMETRY_CACHE = 4096


def build_targets(dataset: dict, image_dims=None, what=None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The targets table (one row per annotation with a box, sorted by gid then aid) and the images.

    ``dataset`` is a COCO dict (``images``, ``annotations``). ``image_dims(gid)``
    gives ``(height, width)`` of images whose record lacks them; ``what``
    names the dataset in errors (:func:`~ndpatch.annots.annotation_boxes`). Besides
    :data:`TABLE_COLUMNS` the table has ``ann_index`` (position in the
    annotation list), ``has_segmentation`` and ``x``, ``y`` (the box's corner as
    given: ``cy - height / 2`` may differ from it by an ulp). The images table has ``gid``,
    ``width``, ``height``, ``start``/``stop`` (their rows in the targets table).
    """
    imgs = dataset.get("images", [])
    anns = dataset.get("annotations", [])
    n_img, n = len(imgs), len(anns)
    img_gid = np.fromiter(map(itemgetter("id"), imgs), np.int64, n_img)
    img_w = np.fromiter((img.get("width") or -1 for img in imgs), np.int64, n_img)
    img_h = np.fromiter((img.get("height") or -1 for img in imgs), np.int64, n_img)
    for i in np.flatnonzero((img_w < 0) | (img_h < 0)).tolist():
        if image_dims is None:
            raise DatasetError(f"image {int(img_gid[i])} has no width/height in the dataset")
        img_h[i], img_w[i] = image_dims(int(img_gid[i]))
    by_gid = np.argsort(img_gid, kind="stable")
    img_gid, img_w, img_h = img_gid[by_gid], img_w[by_gid], img_h[by_gid]

    aid = np.fromiter(map(itemgetter("id"), anns), np.int64, n)
    gid = np.fromiter(map(itemgetter("image_id"), anns), np.int64, n)
    cid = np.fromiter((-1 if (c := ann.get("category_id")) is None else c for ann in anns), np.int64, n)
    has_sseg = np.fromiter((ann.get("segmentation") is not None for ann in anns), bool, n)
    xywh = annotation_boxes(anns, what)

    row = np.searchsorted(img_gid, gid).clip(0, max(n_img - 1, 0))
    unknown = (img_gid[row] != gid) if n_img else np.ones(n, bool)
    if unknown.any():
        k = int(np.flatnonzero(unknown)[0])
        raise DatasetError(f"annotation {int(aid[k])} refers to unknown image {int(gid[k])}")
    keep = np.isfinite(xywh).all(axis=1)
    order = np.lexsort((aid, gid))
    order = order[keep[order]]
    x, y, w, h = xywh[order].T
    table = {
        "aid": aid[order], "gid": gid[order], "category_id": cid[order],
        "cx": x + w / 2, "cy": y + h / 2, "width": w, "height": h,
        "img_width": img_w[row[order]], "img_height": img_h[row[order]],
        "ann_index": order, "has_segmentation": has_sseg[order], "x": x, "y": y,
    }
    images = {
        "gid": img_gid, "width": img_w, "height": img_h,
        "start": np.searchsorted(table["gid"], img_gid, "left"),
        "stop": np.searchsorted(table["gid"], img_gid, "right"),
    }
    return table, images


class TargetsFrame(kwarray.DataFrameArray):
    """The targets table as ndsampler 0.8.1's ``regions.targets``: a ``kwarray.DataFrameArray``.

    ``len`` is the number of rows, ``.columns`` the nine of :data:`TABLE_COLUMNS`,
    ``frame['cx']`` a column, ``frame.iloc[i]`` a row dict; ndpatch's own columns
    (``ann_index``, ``has_segmentation``, ``x``, ``y``) are reachable by name.

    >>> frame = TargetsFrame(TargetsTable({"images": [{"id": 1, "width": 9, "height": 9}], "annotations": [
    ...     {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]}).columns)
    >>> len(frame), frame.columns[:3], frame["cx"].tolist(), frame.iloc[0]["aid"]
    (1, ['aid', 'gid', 'category_id'], [1.0], np.int64(4))
    """

    def __init__(self, columns: dict[str, np.ndarray]):
        super().__init__(columns)

    def keys(self):
        return TABLE_COLUMNS

    def __getitem__(self, key):
        if key.__class__ is str:
            return self._data[key]
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        return key in self._data


def background_id(dataset: dict) -> int:
    """The id of the category named 'background', else 0 (ndsampler's convention for negatives).

    >>> background_id({"categories": [{"id": 3, "name": "background"}]}), background_id({})
    (3, 0)
    """
    for cat in dataset.get("categories", []):
        if cat.get("name") == "background":
            return int(cat["id"])
    return 0


class TargetsTable:
    """A dataset's targets table, images table, box bounds and block-split obstacles.

    Args:
        dataset: the COCO dict (``CocoDataset.dataset``).
        image_dims: ``gid -> (height, width)`` for images whose record lacks them.
        what: the dataset's name in errors.
    """

    def __init__(self, dataset: dict, image_dims=None, what: Any = None):
        self.columns, self.images = build_targets(dataset, image_dims, what)
        self.obstacles = split_obstacles(dataset.get("images", []), self.images)
        self.bounds: Bounds = box_bounds(np.stack([self.columns[k] for k in ("x", "y", "width", "height")], 1))
        self.what = what
        self._annotations = dataset.get("annotations", [])
        self._geoms: OrderedDict[int, Any] = OrderedDict()

    def image_row(self, gid: int) -> int:
        """The row of image ``gid`` in the images table; UnknownImageError when it has none."""
        gids = self.images["gid"]
        i = int(np.searchsorted(gids, gid))
        if i >= len(gids) or gids[i] != gid:
            raise UnknownImageError(f"unknown image id {gid!r} in dataset {self.what}")
        return i

    def rows(self, img: int) -> slice:
        """The table rows of image row ``img``."""
        return slice(int(self.images["start"][img]), int(self.images["stop"][img]))

    def image_bounds(self, img: int) -> Bounds:
        """The box bounds of image row ``img``'s annotations."""
        rows = self.rows(img)
        return tuple(b[rows] for b in self.bounds)

    def foreign_bounds(self, img: int) -> Bounds | None:
        """Boxes of the other splits' blocks in image row ``img``; None unless it is block-split."""
        if self.obstacles is None:
            return None
        start, stop = int(self.images["obstacle_start"][img]), int(self.images["obstacle_stop"][img])
        return tuple(b[start:stop] for b in self.obstacles) if stop > start else None

    def geometry(self, row: int):
        """The shapely geometry of row ``row``'s segmentation, None when it has no area (cached)."""
        if row not in self._geoms:
            self._geoms[row] = segmentation_geometry(self._annotations[int(self.columns["ann_index"][row])])
            if len(self._geoms) > GEOMETRY_CACHE:
                self._geoms.popitem(last=False)
        return self._geoms[row]

    def hit_rows(self, img: int, x0: float, y0: float, x1: float, y1: float,
                 stop_at_first: bool = False, hit: str = "extent") -> np.ndarray:
        """Table rows of image row ``img`` whose extent (polygon, else box; ``hit='box'``: box) meets the window."""
        rows = self.rows(img)
        found = rows.start + np.flatnonzero(box_hits(self.image_bounds(img), x0, y0, x1, y1))
        if not len(found) or hit == "box":
            return found[:1] if stop_at_first else found
        return extent_hits(found, self.columns["has_segmentation"][found], self.geometry,
                           (x0, y0, x1, y1), stop_at_first)

    def labelled_windows(self, img: int, starts, window_dims: tuple[int, int]) -> list[dict]:
        """Grid targets of image row ``img``: ``gid``, ``space_slice`` (and ndsampler's ``slices``),
        ``aids`` (rows met) and ``label``."""
        gid, (h, w) = int(self.images["gid"][img]), window_dims
        targets = []
        for y0, x0 in starts:
            aids = self.columns["aid"][self.hit_rows(img, x0, y0, x0 + w, y0 + h)].tolist()
            window = (slice(y0, y0 + h), slice(x0, x0 + w))
            targets.append({"gid": gid, "space_slice": window, "slices": window,
                            "aids": aids, "label": "positive" if aids else "negative"})
        return targets

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_geoms"] = OrderedDict()  # shapely geometries: rebuilt on demand
        return state
