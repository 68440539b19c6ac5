"""Annotations of one image as arrays, and their translation into a window's frame.

:class:`ImageAnnots` keeps an image's annotation ids, category ids and xywh
boxes as numpy arrays so that "which annotations touch this window" is one
vectorised test. The kwimage objects (boxes, polygons, keypoints) are built
only when a sample asks for annotations, once per image, then subset and
translated per window.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> dset = kwcoco_demo("shapes2")
    >>> anns = [dset.anns[aid] for aid in dset.index.gid_to_aids[1]]
    >>> image_annots = ImageAnnots.from_coco(anns, dset)
    >>> x, y, w, h = image_annots.boxes[0]
    >>> idxs = image_annots.select(x, y, x + w, y + h)
    >>> 0 in idxs
    True
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from ndpatch.errors import DatasetError, DatasetWarning
from ndpatch.validation import MAX_COORDINATE, bbox_problem, segmentation_problem


@dataclass(eq=False)
class ImageAnnots:
    """The annotations of one image: ids, category ids and xywh boxes as arrays."""

    aids: np.ndarray
    cids: np.ndarray
    boxes: np.ndarray
    anns: list[dict] = field(repr=False)
    dset: object = field(repr=False)
    _dets: object = field(default=None, repr=False)
    _positions: dict | None = field(default=None, repr=False)
    _edges: tuple | None = field(default=None, repr=False)

    @classmethod
    def from_coco(cls, anns: list[dict], dset) -> "ImageAnnots":
        boxes = annotation_boxes(anns, getattr(dset, "fpath", None))
        return cls(
            aids=np.array([ann["id"] for ann in anns], dtype=np.int64),
            cids=np.array([ann.get("category_id", -1) if ann.get("category_id") is not None else -1
                           for ann in anns], dtype=np.int64),
            boxes=boxes, anns=anns, dset=dset,
        )

    def __len__(self) -> int:
        return len(self.aids)

    def position(self, aid: int) -> int:
        """Row of annotation ``aid`` in these arrays."""
        if self._positions is None:
            self._positions = {int(a): i for i, a in enumerate(self.aids)}
        return self._positions[aid]

    def select(self, x0: float, y0: float, x1: float, y1: float,
               visible_thresh: float = 0.0, annot_ids=None) -> np.ndarray:
        """Indices of the annotations whose box intersects the window [x0, x1) × [y0, y1).

        ``visible_thresh`` also drops those whose visible box fraction is lower.
        ``annot_ids`` (ndsampler's meaning) selects exactly those of the image's
        annotations, with no spatial test.
        """
        if annot_ids is not None:
            return np.flatnonzero(np.isin(self.aids, np.asarray(list(annot_ids), dtype=np.int64)))
        bx0, by0, bx1, by1, lower_edges = self._bounds()
        # bx0 < x1, reach_x > x0, by0 < y1, reach_y > y0 as one comparison
        keep = (lower_edges < np.array([[x1], [-x0], [y1], [-y0]], dtype=np.float64)).all(axis=0)
        if visible_thresh > 0:
            area = self.boxes[:, 2] * self.boxes[:, 3]
            iw = np.clip(np.minimum(bx1, x1) - np.maximum(bx0, x0), 0, None)
            ih = np.clip(np.minimum(by1, y1) - np.maximum(by0, y0), 0, None)
            with np.errstate(invalid="ignore", divide="ignore"):
                visible = np.where(area > 0, iw * ih / area, 1.0)
            keep &= visible >= visible_thresh
        return np.flatnonzero(keep)

    @property
    def edges(self) -> np.ndarray:
        """(4, N) float64: each box's ``x0, -reach_x, y0, -reach_y``, the four numbers of the window test.

        A box touches the window ``[x0, x1) × [y0, y1)`` when all of
        ``edges < (x1, -x0, y1, -y0)`` hold (see :meth:`select`); a batch tests
        many windows against these at once (:func:`ndpatch.batch.select_annots`).
        """
        return self._bounds()[4]

    def _bounds(self) -> tuple[np.ndarray, ...]:
        """Box edges ``x0, y0, x1, y1``, and ``(x0, -reach_x, y0, -reach_y)`` stacked for the window test.

        A box reaches to its far edge; a zero-width or zero-height box (a point,
        a line) reaches to the next float after where it lies, so it counts in
        exactly the window (half-open pixel) that holds it.
        """
        if self._edges is None:
            bx0, by0 = self.boxes[:, 0], self.boxes[:, 1]
            bx1, by1 = bx0 + self.boxes[:, 2], by0 + self.boxes[:, 3]
            reach_x = np.maximum(bx1, np.nextafter(bx0, np.inf))
            reach_y = np.maximum(by1, np.nextafter(by0, np.inf))
            self._edges = (bx0, by0, bx1, by1, np.stack([bx0, -reach_x, by0, -reach_y]))
        return self._edges

    def detections(self):
        """All annotations of the image as one ``kwimage.Detections`` in image pixels.

        An annotation kwimage cannot read (a malformed segmentation, an unknown
        ``category_id``) raises DatasetError naming it.
        """
        if self._dets is None:
            import kwimage
            what = getattr(self.dset, "fpath", None)
            cats = getattr(self.dset, "cats", None)
            for ann in self.anns:
                cid = ann.get("category_id")
                if cats is not None and cid is not None and cid not in cats:
                    raise DatasetError(f"{describe_annotation(ann, what)}: unknown category_id {cid!r}")
            try:
                dets = kwimage.Detections.from_coco_annots(self.anns, dset=self.dset)
            except Exception as err:  # kwimage's errors for shapes it cannot read vary
                raise unreadable_annotations(self.anns, what, err) from err
            dets.data["boxes"] = kwimage.Boxes(self.boxes, "xywh")  # kwimage makes float32
            dets.data["aids"] = self.aids
            dets.data["cids"] = self.cids
            self._dets = dets
        return self._dets


def window_annots(image_annots: ImageAnnots, idxs: np.ndarray, x0: int, y0: int,
                  gid: int) -> "WindowAnnots":
    """The selected annotations in the frame of a window whose pixel (0, 0) is image (x0, y0)."""
    return WindowAnnots(image_annots, idxs, x0, y0, gid)


class WindowAnnots(Mapping):
    """The annotations of one window, under ndsampler's ``annots`` keys.

    Keys: ``aids``, ``cids``, ``rel_frame_index``, ``rel_boxes``, ``rel_ssegs``,
    ``rel_kpts`` and ``frame_dets`` (a list with one ``kwimage.Detections``, as
    for a one-frame sample). The arrays are cheap; the kwimage objects are
    built the first time a key asks for them, so a training loop that needs
    only boxes and classes (:attr:`xyxy`, ``cids``) never pays for polygons.
    Pickles as a plain dict.

    Example:
        >>> from ndpatch.demo import kwcoco_demo
        >>> dset = kwcoco_demo("shapes2")
        >>> image_annots = ImageAnnots.from_coco([dset.anns[a] for a in dset.index.gid_to_aids[1]], dset)
        >>> annots = window_annots(image_annots, np.array([0]), 10, 20, gid=1)
        >>> x, y, w, h = image_annots.boxes[0]
        >>> annots.xyxy.tolist() == [[x - 10, y - 20, x + w - 10, y + h - 20]]
        True
        >>> annots["rel_boxes"].to_xywh().data.tolist() == [[x - 10, y - 20, w, h]]
        True
        >>> sorted(annots)
        ['aids', 'cids', 'frame_dets', 'rel_boxes', 'rel_frame_index', 'rel_kpts', 'rel_ssegs']
    """

    KEYS = ("aids", "cids", "rel_frame_index", "rel_boxes", "rel_ssegs", "rel_kpts", "frame_dets")
    __slots__ = ("image_annots", "idxs", "x0", "y0", "gid", "_values")

    def __init__(self, image_annots: ImageAnnots, idxs: np.ndarray, x0: int, y0: int, gid: int):
        self.image_annots = image_annots
        self.idxs = idxs
        self.x0 = x0
        self.y0 = y0
        self.gid = gid
        self._values: dict = {}

    def __len__(self) -> int:
        return len(self.KEYS)

    def __iter__(self):
        return iter(self.KEYS)

    def __getitem__(self, key: str):
        values = self._values
        if key in values:
            return values[key]
        if key == "aids":
            value = self.image_annots.aids[self.idxs]
        elif key == "cids":
            value = self.image_annots.cids[self.idxs]
        elif key == "rel_frame_index":
            value = np.zeros(len(self.idxs), dtype=np.int64)
        elif key == "rel_boxes":
            import kwimage
            value = kwimage.Boxes(self.xywh, "xywh")
        elif key == "frame_dets":
            value = [self._detections()]
        elif key == "rel_ssegs":
            value = self["frame_dets"][0].data["segmentations"]
        elif key == "rel_kpts":
            value = self["frame_dets"][0].data["keypoints"]
        else:
            raise KeyError(key)
        values[key] = value
        return value

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4) float64 boxes ``x, y, w, h`` in the window's pixel frame."""
        boxes = self.image_annots.boxes[self.idxs]
        boxes[:, 0] -= self.x0
        boxes[:, 1] -= self.y0
        return boxes

    @property
    def xyxy(self) -> np.ndarray:
        """(N, 4) float64 boxes ``x0, y0, x1, y1`` in the window's pixel frame."""
        boxes = self.xywh
        boxes[:, 2:] += boxes[:, :2]
        return boxes

    def _detections(self):
        image_dets = self.image_annots.detections()
        dets = image_dets.take(self.idxs).translate((-self.x0, -self.y0))
        dets.meta = {**image_dets.meta, "gid": self.gid, "rel_frame_index": 0}
        dets.data["boxes"] = self["rel_boxes"]
        return dets

    def __reduce__(self):
        return dict, (dict(self.items()),)

    def __repr__(self) -> str:
        return f"WindowAnnots(gid={self.gid}, aids={self['aids'].tolist()})"


def describe_annotation(ann: dict, what=None) -> str:
    """``dataset <path>: annotation <aid> (image <gid>)``, the prefix of errors about one annotation.

    >>> describe_annotation({"id": 5, "image_id": 2}, "data.json")
    'dataset data.json: annotation 5 (image 2)'
    """
    return f"dataset {what}: annotation {ann.get('id')} (image {ann.get('image_id')})"


def unreadable_annotations(anns: list[dict], what, err: Exception) -> DatasetError:
    """The error for annotations kwimage failed to read: the first malformed segmentation, named."""
    for ann in anns:
        problem = None if ann.get("segmentation") is None else segmentation_problem(ann["segmentation"])
        if problem is not None:
            return DatasetError(f"{describe_annotation(ann, what)}: {problem}")
    gid = anns[0].get("image_id") if anns else None
    return DatasetError(f"dataset {what}: image {gid}: kwimage cannot read its annotations: {err}")


#: Annotations with no extent already warned about: (dataset, annotation id).
_WARNED_EMPTY: set[tuple[str, object]] = set()


def annotation_boxes(anns: Sequence[dict], what=None) -> np.ndarray:
    """(N, 4) float64 xywh boxes: each ``bbox``, else the box of its segmentation or keypoints.

    A malformed ``bbox``, or a box-less annotation whose segmentation is
    malformed (:mod:`ndpatch.validation`), raises DatasetError naming it.
    An annotation with no ``bbox``, ``segmentation`` or ``keypoints`` has no
    extent: its row is NaN (no window meets it) and a warning names it, once
    per dataset (``what``). Annotations with boxes are checked vectorised.

    >>> annotation_boxes([{"id": 1, "bbox": [1, 2, 3, 4]}, {"id": 2, "segmentation": [[0, 0, 4, 0, 4, 2]]}]).tolist()
    [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 4.0, 2.0]]
    >>> annotation_boxes([{"id": 3, "image_id": 1, "bbox": [1, 2, "3", 4]}], "data.json")
    Traceback (most recent call last):
    ...
    ndpatch.errors.DatasetError: dataset data.json: annotation 3 (image 1): bbox [1, 2, '3', 4] is not [x, y, w, h] of finite numbers with w, h >= 0
    """
    boxes = np.full((len(anns), 4), np.nan)
    given = [i for i, ann in enumerate(anns) if ann.get("bbox") is not None]
    if given:
        boxes[given] = _given_boxes([anns[i] for i in given], what)
    empty = []
    for i in (i for i, ann in enumerate(anns) if ann.get("bbox") is None):
        ann = anns[i]
        if ann.get("segmentation") is None and ann.get("keypoints") is None:
            empty.append(ann)
            continue
        problem = None if ann.get("segmentation") is None else segmentation_problem(ann["segmentation"])
        try:
            box = None if problem else annotation_xywh(ann)
        except Exception as err:  # kwimage's errors for shapes it cannot read vary
            problem = f"its segmentation or keypoints cannot be read: {err}"
        if problem:
            raise DatasetError(f"{describe_annotation(ann, what)}: {problem}")
        boxes[i] = box
    fresh = [ann for ann in empty if (str(what), ann.get("id")) not in _WARNED_EMPTY]
    if fresh:
        _WARNED_EMPTY.update((str(what), ann.get("id")) for ann in fresh)
        listed = ", ".join(f"annotation {ann.get('id')} (image {ann.get('image_id')})" for ann in fresh[:10])
        warnings.warn(f"dataset {what}: {len(fresh)} annotation(s) have no bbox, segmentation or keypoints "
                      f"and are left out of every window: {listed}{', ...' if len(fresh) > 10 else ''}",
                      DatasetWarning, stacklevel=3)
    return boxes


def _given_boxes(anns: list[dict], what) -> np.ndarray:
    """The ``bbox`` of annotations that have one, as (N, 4) float64; the first malformed one raises."""
    bboxes = [ann["bbox"] for ann in anns]
    try:
        kinds = set(map(type, itertools.chain.from_iterable(bboxes)))
        xywh = np.array(bboxes, dtype=np.float64)
    except (TypeError, ValueError):  # not lists, strings, ragged
        xywh = None
    if xywh is not None and xywh.shape == (len(anns), 4) and bool not in kinds \
            and all(issubclass(kind, Real) for kind in kinds):
        with np.errstate(invalid="ignore", over="ignore"):
            far = np.abs(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
            if np.isfinite(xywh).all() and (xywh[:, 2:] >= 0).all() and (far <= MAX_COORDINATE).all():
                return xywh
    for ann in anns:
        problem = bbox_problem(ann["bbox"])
        if problem is not None:
            raise DatasetError(f"{describe_annotation(ann, what)}: {problem}")
    return np.array(bboxes, dtype=np.float64)


def annotation_xywh(ann: dict) -> list[float]:
    """An annotation's box; derived from its polygon or keypoints when it has no bbox."""
    bbox = ann.get("bbox")
    if bbox is not None:
        return list(bbox)
    import kwimage
    if ann.get("segmentation") is not None:
        return list(kwimage.Segmentation.coerce(ann["segmentation"]).to_multi_polygon()
                    .box().to_xywh().data)
    if ann.get("keypoints") is not None:
        return list(kwimage.Points.from_coco(ann["keypoints"]).bounding_box().to_xywh().data[0])
    return [np.nan] * 4


def segmentation_geometry(ann: dict, warp=None):
    """An annotation's segmentation as a shapely geometry (``warp``-ed first when given).

    None when it has no area (missing, empty, or a ring of fewer than three
    points, as kwcoco's demo data has): such an annotation counts by its box.
    A segmentation that is not a polygon or mask raises DatasetError.

    Example:
        >>> segmentation_geometry({"id": 1, "image_id": 1, "segmentation": [[0, 0, 4, 0, 4, 2]]}).area
        4.0
        >>> segmentation_geometry({"id": 2, "image_id": 1, "segmentation": [[1, 2, 3, 4]]}) is None
        True
    """
    import kwimage
    if ann.get("segmentation") is None:
        return None
    try:
        polygons = kwimage.Segmentation.coerce(ann["segmentation"])
        polygons = None if polygons is None else polygons.to_multi_polygon()
    except Exception as err:
        raise DatasetError(f"image {ann.get('image_id')}: annotation {ann.get('id')} has a segmentation "
                           f"that is not a polygon or mask: {err}") from err
    if polygons is None or not len(polygons):
        return None
    if warp is not None:
        polygons = polygons.warp(warp)
    try:
        geom = polygons.to_shapely()
    except ValueError:  # a ring of fewer than three points
        return None
    return None if geom.is_empty or geom.area == 0 else geom


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """xywh boxes → the xywh bounding boxes of their corners mapped by a 3×3 matrix.

    Example:
        >>> warp_boxes(np.array([[1.0, 2.0, 3.0, 4.0]]), np.diag([2.0, 0.5, 1.0])).tolist()
        [[2.0, 1.0, 6.0, 2.0]]
    """
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    xs = np.stack([x0, x1, x1, x0], axis=1)
    ys = np.stack([y0, y0, y1, y1], axis=1)
    wx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    wy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    left, top = wx.min(axis=1), wy.min(axis=1)
    return np.stack([left, top, wx.max(axis=1) - left, wy.max(axis=1) - top], axis=1)


def track_ids(anns: list[dict]) -> np.ndarray:
    """The ``track_id`` of each annotation (-1 without one): int64, or object for other id types.

    Example:
        >>> track_ids([{"track_id": 3}, {}]).tolist(), track_ids([{"track_id": "a"}]).dtype
        ([3, -1], dtype('O'))
    """
    ids = [ann.get("track_id") for ann in anns]
    integer = all(isinstance(t, (int, np.integer, type(None))) for t in ids)
    return np.array([-1 if t is None else t for t in ids], dtype=np.int64 if integer else object)


def stack_windows(windows: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """The boxes, category ids and annotation ids of many windows' annotations, concatenated.

    ``windows`` are ``annots`` of samples (:class:`WindowAnnots` or plain
    dicts with ndsampler's keys). Returns ``xyxy`` (N×4 float64, each box in
    its own window's frame, equal to ``rel_boxes.to_ltrb()``), ``cids``,
    ``aids`` and ``counts`` (annotations per window), so a batch's labels are
    built with a few array operations instead of a few per window.

    Example:
        >>> from ndpatch.demo import kwcoco_demo
        >>> dset = kwcoco_demo("shapes2")
        >>> image_annots = ImageAnnots.from_coco([dset.anns[a] for a in dset.index.gid_to_aids[1]], dset)
        >>> windows = [window_annots(image_annots, np.array([0]), 10, 20, 1),
        ...            window_annots(image_annots, np.array([], dtype=np.int64), 0, 0, 1)]
        >>> stacked = stack_windows(windows)
        >>> stacked["counts"].tolist(), bool((stacked["xyxy"] == windows[0].xyxy).all())
        ([1, 0], True)
    """
    xywh, origins, cids, aids, counts = [], [], [], [], []
    for window in windows:
        if isinstance(window, WindowAnnots):
            image_annots, idxs = window.image_annots, window.idxs
            xywh.append(image_annots.boxes[idxs])
            cids.append(image_annots.cids[idxs])
            aids.append(image_annots.aids[idxs])
            origins.append((window.x0, window.y0))
            counts.append(len(idxs))
        else:
            xywh.append(np.asarray(window["rel_boxes"].to_xywh().data, dtype=np.float64).reshape(-1, 4))
            cids.append(np.asarray(window["cids"], dtype=np.int64))
            aids.append(np.asarray(window["aids"], dtype=np.int64))
            origins.append((0, 0))
            counts.append(len(xywh[-1]))
    counts = np.array(counts, dtype=np.int64)
    boxes = np.concatenate(xywh) if xywh else np.zeros((0, 4))
    top_left = boxes[:, :2] - np.repeat(np.array(origins, dtype=np.float64).reshape(-1, 2), counts, axis=0)
    return {
        "xyxy": np.concatenate([top_left, top_left + boxes[:, 2:]], axis=1),
        "cids": np.concatenate(cids) if cids else np.zeros(0, np.int64),
        "aids": np.concatenate(aids) if aids else np.zeros(0, np.int64),
        "counts": counts,
    }
