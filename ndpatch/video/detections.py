"""A frame's annotations in a video window's pixel frame, and ndsampler's flat ``annots`` over frames."""
from __future__ import annotations

import numpy as np

from ndpatch.annots import ImageAnnots, track_ids, warp_boxes
from ndpatch.video.frames import Frame, translation


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
        boxes=warp_boxes(image_annots.boxes, frame.vid_from_img), dset=image_annots.dset)
    idxs = in_video.select(x0, y0, x1, y1, visible_thresh, annot_ids)
    dets = image_annots.detections().take(idxs)
    if identity:
        dets = dets.translate((-x0, -y0))
    else:
        import kwimage
        dets = dets.warp(kwimage.Affine(translation(-x0, -y0) @ frame.vid_from_img))
        bx, by, bw, bh = in_video.boxes[idxs].T  # exact bounds, not float32 corners
        dets.data["boxes"] = kwimage.Boxes(np.stack([bx - x0, by - y0, bw, bh], axis=1), "xywh")
    dets.data["track_ids"] = track_ids([image_annots.anns[i] for i in idxs])
    dets.meta["gid"] = frame.gid
    dets.meta["rel_frame_index"] = rel_frame_index
    return dets



def stack_annots(frame_dets: list) -> dict:
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


