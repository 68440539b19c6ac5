"""``--format kwcoco``: ``data.kwcoco.json`` over ``images/<chip>.tif``.

Each chip is a kwcoco image whose annotations (boxes, polygons, keypoints and
every other field, e.g. ``track_id``) are the source annotations that touch
the window, translated into chip pixels (not clipped: coordinates may fall
outside the chip, as the window's own annotations do in a sample). The chip's
image record says where it came from (``ndpatch_source``). The json is
streamed, so memory does not grow with the number of chips.

Example:
    >>> shift_annotation({"id": 5, "image_id": 1, "category_id": 2, "bbox": [10, 20, 3, 4],
    ...                   "segmentation": [[10, 20, 13, 20, 13, 24]],
    ...                   "keypoints": [{"xy": [11, 21], "keypoint_category_id": 1}]}, 10, 20)
    {'category_id': 2, 'bbox': [0, 0, 3, 4], 'segmentation': [[0, 0, 3, 0, 3, 4]], 'keypoints': [{'xy': [1, 1], 'keypoint_category_id': 1}]}
"""
from __future__ import annotations

import json
from pathlib import Path

from ndpatch.export.base import Chip, publish, write_geotiff
from ndpatch.export.chips import IMAGE_CHIPS


def _shift_flat(values: list, dx: float, dy: float, stride: int) -> list:
    return [v - (dx if i % stride == 0 else dy) if i % stride < 2 else v for i, v in enumerate(values)]


def _shift_polygon(poly, dx: float, dy: float):
    if isinstance(poly, dict):
        return {**poly, "exterior": [[x - dx, y - dy] for x, y in poly["exterior"]],
                "interiors": [[[x - dx, y - dy] for x, y in ring] for ring in poly.get("interiors", [])]}
    return _shift_flat(poly, dx, dy, 2)


def shift_segmentation(seg, dx: float, dy: float):
    """A COCO/kwcoco segmentation moved by (-dx, -dy); RLE masks become polygons."""
    if isinstance(seg, dict) and "counts" in seg:
        import kwimage
        seg = kwimage.Segmentation.coerce(seg).to_multi_polygon().to_coco("new")
    if isinstance(seg, dict):
        return _shift_polygon(seg, dx, dy)
    return [_shift_polygon(poly, dx, dy) for poly in seg]


def shift_keypoints(kpts, dx: float, dy: float):
    """COCO flat ``[x, y, v, ...]`` or kwcoco ``[{'xy': ...}, ...]`` keypoints moved by (-dx, -dy)."""
    if kpts and isinstance(kpts[0], dict):
        return [{**kp, "xy": [kp["xy"][0] - dx, kp["xy"][1] - dy]} for kp in kpts]
    return _shift_flat(kpts, dx, dy, 3)


def shift_annotation(ann: dict, dx: float, dy: float) -> dict:
    """An annotation (without its ids) in the frame whose pixel (0, 0) is source (dx, dy)."""
    out = {k: v for k, v in ann.items() if k not in ("id", "image_id")}
    if ann.get("bbox") is not None:
        x, y, w, h = ann["bbox"]
        out["bbox"] = [x - dx, y - dy, w, h]
    if ann.get("segmentation") is not None:
        out["segmentation"] = shift_segmentation(ann["segmentation"], dx, dy)
    if ann.get("keypoints") is not None:
        out["keypoints"] = shift_keypoints(ann["keypoints"], dx, dy)
    return out


class KwcocoWriter:
    """Chip GeoTIFFs indexed by one streamed kwcoco json."""

    name = "kwcoco"
    sharded = False
    rules = (IMAGE_CHIPS,)
    needs = ()

    def write_block(self, out_dir: Path, block: int, chips: list[Chip]) -> list[dict]:
        records = []
        for chip in chips:
            image_file = IMAGE_CHIPS.name(chip.index)
            size = write_geotiff(out_dir / image_file, chip.im, chip.geotransform, chip.crs_wkt)
            records.append({**chip.record(), "files": [image_file], "bytes": size,
                            "height": int(chip.im.shape[0]), "width": int(chip.im.shape[1]),
                            "annotations": chip.coco_annots})
        return records

    def finish(self, out_dir: Path, records, context: dict) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w") as file:
                file.write('{"info": [], "categories": %s, "keypoint_categories": %s, "images": [\n'
                           % (json.dumps(context["categories"]), json.dumps(context["keypoint_categories"])))
                for gid, record in enumerate(records(), start=1):
                    image = {"id": gid, "name": record["chip"], "file_name": record["files"][0],
                             "height": record["height"], "width": record["width"],
                             "ndpatch_source": {k: record[k] for k in (
                                 "image_id", "file_name", "row_start", "row_stop", "col_start", "col_stop")}}
                    if context.get("channels"):
                        image["channels"] = context["channels"]
                    if record["split"]:
                        image["split"] = record["split"]
                    file.write(("" if gid == 1 else ",\n") + json.dumps(image))
                file.write('\n], "annotations": [\n')
                aid = 0
                for gid, record in enumerate(records(), start=1):
                    for ann in record["annotations"]:
                        aid += 1
                        file.write(("" if aid == 1 else ",\n") + json.dumps({"id": aid, "image_id": gid, **ann}))
                file.write("\n]}\n")

        publish(out_dir / "data.kwcoco.json", write)
