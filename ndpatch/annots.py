"""Annotations of one image as arrays, and their translation into a window's frame.

:class:`ImageAnnots` keeps an image's annotation ids, category ids and xywh
boxes as numpy arrays so that "which annotations touch this window" is one
vectorised test. The kwimage objects (boxes, polygons, keypoints) are built
only when a sample asks for annotations, once per image, then subset and
translated per window.

Example:
    >>> import kwcoco
    >>> dset = kwcoco.CocoDataset.demo("shapes2")
    >>> anns = [dset.anns[aid] for aid in dset.index.gid_to_aids[1]]
    >>> image_annots = ImageAnnots.from_coco(anns, dset)
    >>> x, y, w, h = image_annots.boxes[0]
    >>> idxs = image_annots.select(x, y, x + w, y + h)
    >>> 0 in idxs
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    @classmethod
    def from_coco(cls, anns: list[dict], dset) -> "ImageAnnots":
        boxes = np.array([_xywh(ann) for ann in anns], dtype=np.float64).reshape(-1, 4)
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

        ``visible_thresh`` also drops those whose visible box fraction is lower;
        ``annot_ids`` restricts the candidates to those ids.
        """
        boxes = self.boxes
        bx0, by0 = boxes[:, 0], boxes[:, 1]
        bx1, by1 = bx0 + boxes[:, 2], by0 + boxes[:, 3]
        # A zero-width or zero-height box (a point, a line) counts where it lies.
        keep = (bx0 < x1) & (np.maximum(bx1, bx0 + 1e-9) > x0) & \
               (by0 < y1) & (np.maximum(by1, by0 + 1e-9) > y0)
        if annot_ids is not None:
            keep &= np.isin(self.aids, np.asarray(list(annot_ids), dtype=np.int64))
        if visible_thresh > 0:
            area = boxes[:, 2] * boxes[:, 3]
            iw = np.clip(np.minimum(bx1, x1) - np.maximum(bx0, x0), 0, None)
            ih = np.clip(np.minimum(by1, y1) - np.maximum(by0, y0), 0, None)
            with np.errstate(invalid="ignore", divide="ignore"):
                visible = np.where(area > 0, iw * ih / area, 1.0)
            keep &= visible >= visible_thresh
        return np.flatnonzero(keep)

    def detections(self):
        """All annotations of the image as one ``kwimage.Detections`` in image pixels."""
        if self._dets is None:
            import kwimage
            dets = kwimage.Detections.from_coco_annots(self.anns, dset=self.dset)
            dets.data["boxes"] = kwimage.Boxes(self.boxes, "xywh")  # kwimage makes float32
            dets.data["aids"] = self.aids
            dets.data["cids"] = self.cids
            self._dets = dets
        return self._dets


def window_annots(image_annots: ImageAnnots, idxs: np.ndarray, x0: int, y0: int,
                  gid: int) -> dict:
    """The selected annotations in the frame of a window whose pixel (0, 0) is image (x0, y0).

    Returns ndsampler's ``annots`` keys: ``aids``, ``cids``, ``rel_boxes``,
    ``rel_ssegs``, ``rel_kpts``, ``rel_frame_index`` and ``frame_dets`` (a list
    with one ``kwimage.Detections``, as for a one-frame sample).
    """
    dets = image_annots.detections().take(idxs).translate((-x0, -y0))
    dets.meta["gid"] = gid
    dets.meta["rel_frame_index"] = 0
    return {
        "aids": image_annots.aids[idxs],
        "cids": image_annots.cids[idxs],
        "rel_frame_index": np.zeros(len(idxs), dtype=np.int64),
        "rel_boxes": dets.boxes,
        "rel_ssegs": dets.data["segmentations"],
        "rel_kpts": dets.data["keypoints"],
        "frame_dets": [dets],
    }


def _xywh(ann: dict) -> list[float]:
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
