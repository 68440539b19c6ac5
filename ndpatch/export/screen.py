"""Bad annotations, found before an export starts: skipped with a counted warning, or refused (``strict``).

An annotation is bad when the export cannot turn it into a label or a chip
annotation: no ``category_id`` or one the dataset's categories do not have,
neither ``bbox`` nor ``segmentation``, a ``bbox`` that is not four finite
numbers with non-negative width and height, or a ``segmentation`` that is not
a COCO polygon list, a kwcoco polygon or an RLE mask (the rule sampling uses
too: :mod:`ndpatch.validation`). The checks are structural (microseconds per
annotation). An annotation with a segmentation and no box gets the
segmentation's box in the export's copy of the dataset (kwimage needs one);
the user's dataset is never changed.

Example:
    >>> import kwcoco
    >>> dset = kwcoco.CocoDataset({"categories": [{"id": 1, "name": "car"}],
    ...     "images": [{"id": 1, "file_name": "a.tif"}],
    ...     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]},
    ...                     {"id": 2, "image_id": 1, "category_id": 7, "bbox": [0, 0, 2, 2]},
    ...                     {"id": 3, "image_id": 1, "category_id": 1}]})
    >>> [(p.aid, p.reason) for p in screen_annotations(dset)]
    [(2, 'unknown category_id 7'), (3, 'neither bbox nor segmentation')]
"""
from __future__ import annotations

from dataclasses import dataclass

import kwcoco

from ndpatch.annots import annotation_xywh
from ndpatch.errors import DatasetError
from ndpatch.validation import bbox_problem, finite_numbers, segmentation_problem


@dataclass(frozen=True)
class BadAnnotation:
    """One annotation an export leaves out, and why."""

    aid: int
    image_id: int
    reason: str

    def as_dict(self) -> dict:
        return {"aid": self.aid, "image_id": self.image_id, "reason": self.reason}


def annotation_problem(ann: dict, category_ids: set) -> str | None:
    """Why an annotation cannot be exported (None: it can)."""
    cid = ann.get("category_id")
    if cid is None:
        return "no category_id"
    if isinstance(cid, (list, dict)) or cid not in category_ids:
        return f"unknown category_id {cid!r}"
    bbox, segmentation = ann.get("bbox"), ann.get("segmentation")
    if bbox is None and segmentation is None:
        return "neither bbox nor segmentation"
    problem = (None if bbox is None else bbox_problem(bbox)) or \
        (None if segmentation is None else segmentation_problem(segmentation))
    if problem is None and bbox is None and derived_box(ann) is None:
        problem = "no bbox, and its segmentation has no extent"
    return problem


def derived_box(ann: dict) -> list[float] | None:
    """The box of a box-less annotation's segmentation; None when it has no finite extent."""
    try:
        box = [float(v) for v in annotation_xywh(ann)]
    except Exception:  # kwimage's errors for shapes it cannot read vary
        return None
    return box if finite_numbers(box) else None


def screen_annotations(dset: kwcoco.CocoDataset) -> list[BadAnnotation]:
    """Every annotation of ``dset`` an export cannot use, in id order."""
    category_ids = set(dset.cats)
    bad = []
    for aid in sorted(dset.anns):
        ann = dset.anns[aid]
        reason = annotation_problem(ann, category_ids)
        if reason is not None:
            bad.append(BadAnnotation(int(aid), ann.get("image_id"), reason))
    return bad


def refuse(bad: list[BadAnnotation], dset: kwcoco.CocoDataset) -> DatasetError:
    """The error of a strict export over a dataset with bad annotations (the first ten named)."""
    listed = "; ".join(f"annotation {b.aid} (image {b.image_id}): {b.reason}" for b in bad[:10])
    more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
    return DatasetError(f"{dset.fpath}: {len(bad)} annotations cannot be exported: {listed}{more}")


def usable_dataset(dset: kwcoco.CocoDataset, bad: list[BadAnnotation]) -> kwcoco.CocoDataset | None:
    """A copy of ``dset`` without the bad annotations and with boxes for box-less ones; None when ``dset`` is usable."""
    skip = {b.aid for b in bad}
    boxless = [aid for aid, ann in dset.anns.items() if aid not in skip and ann.get("bbox") is None]
    if not skip and not boxless:
        return None
    annotations = [ann if ann.get("bbox") is not None else {**ann, "bbox": derived_box(ann)}
                   for ann in dset.dataset["annotations"] if ann["id"] not in skip]
    usable = kwcoco.CocoDataset({**dset.dataset, "annotations": annotations}, bundle_dpath=str(dset.bundle_dpath))
    usable.fpath = dset.fpath
    usable.bundle_dpath = dset.bundle_dpath  # kwcoco's fpath setter moves it to the json's folder
    return usable
