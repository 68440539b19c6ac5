"""Leak-free train/val/test splits by image, by video, or by spatial block.

``by='image'`` and ``by='video'`` shuffle images (or videos; an image outside
any video is its own group) with the seed and cut the shuffled list at the
cumulative fractions, so every image lands in exactly one split.
``by='block'`` cuts each image into square blocks of ``block_size`` pixels,
shuffles all blocks of all images and cuts them the same way. An image then
appears in every split that owns one of its blocks, with its record carrying
``split_region`` = ``{"split", "block_size", "image_shape", "blocks": [[block_row,
block_col], ...]}``: a window belongs to the split only when every block it
touches inside the image is the split's (:func:`window_in_region`), so
neighbouring pixels never cross from train to test. Such a split keeps the
annotations whose box intersects its blocks. Every image record gets
``split``. Files: ``OUT_DIR/{train,val,test}.kwcoco.json``.

Example:
    >>> region = {"split": "train", "block_size": 10, "image_shape": [30, 30],
    ...           "blocks": [[0, 0], [0, 1]]}
    >>> window_in_region(region, slice(0, 10), slice(5, 20))
    True
    >>> window_in_region(region, slice(5, 15), slice(0, 10))
    False
    >>> window_in_region(region, slice(-8, 10), slice(-3, 7))
    True
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ndpatch.errors import ExportError, OutputExistsError

#: ``--by`` choices.
SPLIT_BY = ("image", "video", "block")


def window_in_region(region: dict, rows: slice, cols: slice) -> bool:
    """True when every block the window touches (inside the image) belongs to the region.

    Padding outside the image belongs to no split and never disqualifies a window.
    """
    height, width = region["image_shape"]
    size = region["block_size"]
    r0, r1 = max(rows.start, 0), min(rows.stop, height)
    c0, c1 = max(cols.start, 0), min(cols.stop, width)
    if r1 <= r0 or c1 <= c0:
        return False
    owned = {tuple(b) for b in region["blocks"]}
    return all((br, bc) in owned
               for br in range(r0 // size, (r1 - 1) // size + 1)
               for bc in range(c0 // size, (c1 - 1) // size + 1))


def foreign_boxes(region: dict) -> np.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` covering the image's blocks that are not the region's, clipped to the image.

    Consecutive foreign blocks of a block row are merged into one box. A window
    is :func:`window_in_region` exactly when it overlaps the image and meets
    none of these boxes.

    >>> region = {"split": "val", "block_size": 10, "image_shape": [15, 25], "blocks": [[0, 1]]}
    >>> foreign_boxes(region).tolist()
    [[0, 0, 10, 10], [20, 0, 25, 10], [0, 10, 25, 15]]
    """
    height, width = region["image_shape"]
    size = region["block_size"]
    owned = {tuple(b) for b in region["blocks"]}
    boxes = []
    for br in range(-(-height // size)):
        run = None
        for bc in range(-(-width // size) + 1):
            foreign = bc * size < width and (br, bc) not in owned
            if foreign and run is None:
                run = bc
            elif not foreign and run is not None:
                boxes.append((run * size, br * size, min(bc * size, width), min((br + 1) * size, height)))
                run = None
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    """Fractions that are each in [0, 1] and sum to 1; else ExportError."""
    if any(not 0 <= f <= 1 for f in fractions.values()):
        raise ExportError(f"split fractions must lie in [0, 1], got {fractions}")
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise ExportError(f"split fractions must sum to 1, got {fractions} (sum {sum(fractions.values()):g})")
    return fractions


def assign(n: int, fractions: dict[str, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shuffle ``range(n)`` and cut it at the cumulative fractions: split name → item indices.

    >>> parts = assign(10, {"train": 0.8, "val": 0.1, "test": 0.1}, np.random.default_rng(0))
    >>> {k: len(v) for k, v in parts.items()}
    {'train': 8, 'val': 1, 'test': 1}
    """
    order = rng.permutation(n)
    cuts = np.round(np.cumsum([0.0, *fractions.values()]) * n).astype(int)
    cuts[-1] = n
    return {name: np.sort(order[cuts[i]:cuts[i + 1]]) for i, name in enumerate(fractions)}


def _blocks(height: int, width: int, size: int) -> list[tuple[int, int]]:
    return [(br, bc) for br in range(-(-height // size)) for bc in range(-(-width // size))]


def _box_touches(bbox, region: dict) -> bool:
    x, y, w, h = bbox
    rows = slice(math.floor(y), max(math.ceil(y + h), math.floor(y) + 1))
    cols = slice(math.floor(x), max(math.ceil(x + w), math.floor(x) + 1))
    height, width = region["image_shape"]
    size = region["block_size"]
    owned = {tuple(b) for b in region["blocks"]}
    r0, r1 = max(rows.start, 0), min(rows.stop, height)
    c0, c1 = max(cols.start, 0), min(cols.stop, width)
    return any((br, bc) in owned for br in range(r0 // size, (r1 - 1) // size + 1)
               for bc in range(c0 // size, (c1 - 1) // size + 1)) if r1 > r0 and c1 > c0 else False


def split_dataset(dataset: Any, out_dir: str | os.PathLike, fractions: dict[str, float] | None = None,
                  by: str = "image", block_size: int = 1024, seed: int = 0,
                  overwrite: bool = False) -> dict[str, dict]:
    """Write ``OUT_DIR/<split>.kwcoco.json`` per split; returns {split: {images, annotations, classes}}."""
    import kwcoco

    from ndpatch.cache.store import atomic_publish
    from ndpatch.dataset import load_dataset, rebased_files

    fractions = check_fractions(dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1}))
    if by not in SPLIT_BY:
        raise ExportError(f"unknown split mode {by!r}; expected one of {', '.join(SPLIT_BY)}")
    if by == "block" and int(block_size) < 1:
        raise ExportError(f"block size must be >= 1 pixel, got {block_size}")
    dset = load_dataset(dataset)
    out_dir = Path(out_dir)
    outputs = {name: out_dir / f"{name}.kwcoco.json" for name in fractions}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"split files exist: {', '.join(existing)} (pass overwrite=True / --overwrite)")
    rng = np.random.default_rng(seed)
    gids = sorted(dset.imgs)
    members: dict[str, dict[int, dict | None]] = {name: {} for name in fractions}
    if by == "image":
        for name, idxs in assign(len(gids), fractions, rng).items():
            members[name] = {gids[i]: None for i in idxs}
    elif by == "video":
        groups: dict[Any, list[int]] = {}
        for gid in gids:
            vid = dset.imgs[gid].get("video_id")
            groups.setdefault(("video", vid) if vid is not None else ("image", gid), []).append(gid)
        keys = sorted(groups, key=str)
        for name, idxs in assign(len(keys), fractions, rng).items():
            members[name] = {gid: None for i in idxs for gid in groups[keys[i]]}
    else:
        cells = []
        for gid in gids:
            img = dset.imgs[gid]
            cells += [(gid, b) for b in _blocks(int(img["height"]), int(img["width"]), int(block_size))]
        for name, idxs in assign(len(cells), fractions, rng).items():
            for i in idxs:
                gid, block = cells[i]
                img = dset.imgs[gid]
                region = members[name].setdefault(gid, {
                    "split": name, "block_size": int(block_size),
                    "image_shape": [int(img["height"]), int(img["width"])], "blocks": []})
                region["blocks"].append(list(block))
            for region in members[name].values():
                region["blocks"].sort()
    report = {}
    cat_names = {c["id"]: c["name"] for c in dset.dataset.get("categories", [])}
    for name, chosen in members.items():
        images, anns = [], []
        for gid in sorted(chosen):
            region = chosen[gid]
            image = {**rebased_files(dset.imgs[gid], str(dset.bundle_dpath), out_dir), "split": name}
            if region is not None:
                image["split_region"] = region
            images.append(image)
            anns += [dset.anns[aid] for aid in sorted(dset.index.gid_to_aids.get(gid, ()))
                     if region is None or _box_touches(dset.anns[aid].get("bbox", (0, 0, 0, 0)), region)]
        vids = {img.get("video_id") for img in images} - {None}
        data = {**{k: v for k, v in dset.dataset.items() if k not in ("images", "annotations", "videos")},
                "videos": [v for v in dset.dataset.get("videos", []) if v["id"] in vids],
                "images": images, "annotations": anns}
        sub = kwcoco.CocoDataset(data, bundle_dpath=str(out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_publish(outputs[name], lambda tmp, sub=sub: sub.dump(tmp, newlines=True, temp_file=False))
        classes: dict[str, int] = {}
        for ann in anns:
            label = cat_names.get(ann.get("category_id"), "none")
            classes[label] = classes.get(label, 0) + 1
        report[name] = {"images": len(images), "annotations": len(anns), "classes": classes}
    return report
