"""Block splits in sampling: the other splits' blocks of an image are out of bounds.

An image of a block split (``ndpatch split --by block``; its record has
``split_region``) keeps every window inside its split's blocks: the other
splits' blocks become boxes (:func:`split_obstacles`, via
:func:`ndpatch.splits.foreign_boxes`) that grids avoid
(:func:`split_grid_starts`), that negatives treat like annotation boxes, and
that positives are moved off (:func:`split_starts`).

Example:
    >>> foreign = tuple(np.array([v], float) for v in (10, 0, 20, 10))   # another split's block
    >>> split_grid_starts(foreign, (10, 20), (10, 10), GridRule())
    [(0, 0)]
    >>> split_starts(foreign, 9.0, 5.0, 9.0, 5.0, (6, 6), (10, 20)).tolist()   # moved left, centre kept
    [[2.0, 4.0]]
"""
from __future__ import annotations

from itertools import product
from typing import Callable

import numpy as np

from ndpatch.sampling.geometry import Bounds, GridRule, box_hits, centre_starts, nearest_free_position
from ndpatch.splits import foreign_boxes


def split_obstacles(records: list[dict], images: dict[str, np.ndarray]) -> Bounds | None:
    """Boxes ``(x0, y0, x1, y1)`` of the other splits' blocks of each block-split image, or None if there is none.

    ``records`` are the dataset's image records; images with a
    ``split_region`` get :func:`ndpatch.splits.foreign_boxes`. Adds
    ``obstacle_start``/``obstacle_stop`` (each image's rows in the boxes) to
    the ``images`` table of :func:`ndpatch.sampling.table.build_targets`.
    """
    regions = {img["id"]: img["split_region"] for img in records if img.get("split_region")}
    if not regions:
        return None
    boxes = [foreign_boxes(regions[gid]) if gid in regions else np.zeros((0, 4), np.int64)
             for gid in images["gid"].tolist()]
    counts = np.array([len(b) for b in boxes], dtype=np.int64)
    images["obstacle_stop"] = np.cumsum(counts)
    images["obstacle_start"] = images["obstacle_stop"] - counts
    return tuple(np.concatenate(boxes).astype(np.float64).T)


def split_grid_starts(foreign: Bounds, dims: tuple[int, int], window_dims: tuple[int, int],
                      rule: GridRule) -> list[tuple[int, int]]:
    """Starts of the grid windows (:class:`~ndpatch.sampling.geometry.GridRule`) that meet no foreign block.

    A last window shifted onto the image edge (``edge='shift'``) that would
    meet one takes its unshifted placement instead (a stride after the one
    before it: a subset of the shifted window's pixels, plus padding).
    """
    h, w = window_dims
    axes = []
    for starts, stride in zip(rule.axes(dims, window_dims), rule.strides(window_dims)):
        unshifted = starts.copy()
        if rule.edge == "shift" and len(starts) > 1:
            unshifted[-1] = starts[-2] + stride
        axes.append(list(zip(starts.tolist(), unshifted.tolist())))
    kept = []
    for (y_edge, y_pad), (x_edge, x_pad) in product(*axes):
        for y0, x0 in product(dict.fromkeys((y_edge, y_pad)), dict.fromkeys((x_edge, x_pad))):
            if not box_hits(foreign, x0, y0, x0 + w, y0 + h).any():
                kept.append((y0, x0))
                break
    return kept


def split_starts(foreign: Bounds, ann_cx, ann_cy, cx, cy, dims, image_dims: tuple[int, int]) -> np.ndarray:
    """Starts ``(y0, x0)`` (one row each) of the windows of ``dims`` centred at (cx, cy), kept in the split.

    ``ann_cx``/``ann_cy`` are the annotations' centres (which each window must
    keep), ``cx``/``cy`` the wanted window centres; arguments broadcast. A window
    that meets a foreign block, misses its annotation's centre or the image is
    moved as little as possible (L1) to one that does not; NaN where there is none.
    """
    ann_cx, ann_cy, cx, cy, h, w = np.atleast_1d(*np.broadcast_arrays(ann_cx, ann_cy, cx, cy, *dims))
    y0, x0 = np.floor(cy - h / 2), np.floor(cx - w / 2)   # window_from_center's rule
    ylo, yhi = centre_starts(ann_cy, h, int(image_dims[0]))
    xlo, xhi = centre_starts(ann_cx, w, int(image_dims[1]))
    ok = (ylo <= y0) & (y0 <= yhi) & (xlo <= x0) & (x0 <= xhi)
    ok &= ~box_hits(foreign, x0[:, None], y0[:, None], (x0 + w)[:, None], (y0 + h)[:, None]).any(axis=1)
    starts = np.stack([y0, x0], axis=1)
    for i in np.flatnonzero(~ok).tolist():
        found = nearest_free_position(foreign, (int(h[i]), int(w[i])), (int(y0[i]), int(x0[i])),
                                      ((int(ylo[i]), int(yhi[i])), (int(xlo[i]), int(xhi[i]))))
        starts[i] = np.nan if found is None else found
    return starts


def placed_start(table, img: int, row, cx, cy, dims) -> np.ndarray:
    """:func:`split_starts` for table rows ``row`` of image row ``img`` of a ``TargetsTable``."""
    columns = table.columns
    return split_starts(table.foreign_bounds(img), columns["cx"][row], columns["cy"][row], cx, cy, dims,
                        (int(table.images["height"][img]), int(table.images["width"][img])))


def placeable_rows(table, dims_of: Callable[[int], tuple[int, int]]) -> np.ndarray:
    """Mask of the table rows that have a positive window: in a block-split image, one inside the split.

    ``dims_of(row)`` is the (height, width) of row ``row``'s window.
    """
    columns, images = table.columns, table.images
    keep = np.ones(len(columns["aid"]), bool)
    if table.obstacles is None:
        return keep
    for img in np.flatnonzero(images["obstacle_stop"] > images["obstacle_start"]).tolist():
        rows = np.arange(images["start"][img], images["stop"][img])
        dims = np.array([dims_of(row) for row in rows.tolist()]).reshape(-1, 2)
        starts = placed_start(table, img, rows, columns["cx"][rows], columns["cy"][rows], dims.T)
        keep[rows] = ~np.isnan(starts[:, 0])
    return keep
