"""Which windows to train on: the targets table and the sampling strategies built on it.

:class:`Regions` (``sampler.regions``) keeps one row per annotation in a table
of numpy columns, built vectorised from the dataset's annotation list, sorted
by image so each image's annotations are one contiguous slice. On it:

- positives: a window around an annotation, fixed-size or fitted to the box
  times a context factor, with optional centre and scale jitter; drawn in
  coverage epochs (every annotation once before any repeats), optionally
  balanced over categories or over the category hierarchy;
- negatives: a window that intersects no annotation's extent (its polygon where
  it has one, else its box) and, optionally, has at most a given fraction of
  nodata/fill pixels; an image without room says so;
- ``preselect`` / ``get_item``: a fixed list of positives then negatives;
- ``new_sample_grid``: windows covering every pixel of every image, each
  labelled positive or negative.

An image of a block split (``ndpatch split --by block``; its record has
``split_region``) treats the blocks of the other splits as out of bounds: grid
windows touching them are dropped, they are obstacles for negatives like
annotations, and positives are moved off them (an annotation with no such
window is not a positive of the split).

Targets are plain dicts with ndsampler 0.8.1's keys, ready for ``load_sample``.
Every random draw takes ``rng`` (see :mod:`ndpatch.rng`).

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> regions = sampler.regions
    >>> regions.configure(window_dims=(64, 64))
    >>> len(regions.targets["aid"]) == sampler.dset.n_annots
    True
    >>> pos = regions.get_positive(rng=0)
    >>> (pos["width"], pos["height"])
    (64, 64)
    >>> neg = regions.get_negative(rng=0)
    >>> regions.hits(neg["gid"], *regions.window(neg))
    []
    >>> regions.preselect(n_pos=5, n_neg=3, rng=0)
    (5, 3)
"""
from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, defaultdict
from itertools import product
from operator import itemgetter
from typing import Any, Sequence

import numpy as np
import shapely

from ndpatch.annots import annotation_xywh, segmentation_geometry
from ndpatch.errors import DatasetError, SamplingError, TargetError, UnknownImageError
from ndpatch.rng import ProcessStream, RngLike
from ndpatch.splits import foreign_boxes
from ndpatch.target import window_from_center

#: Columns of the targets table (ndsampler's), in order.
TABLE_COLUMNS = ("aid", "gid", "category_id", "cx", "cy", "width", "height", "img_width", "img_height")

#: How a zero-width or zero-height box still counts where it lies (as in ImageAnnots.select).
_EPS = 1e-9


# -- window geometry: one axis at a time, so (time, height, width) grids are additive ----------

def placement_range(length: int, window: int) -> tuple[int, int]:
    """Inclusive range of window starts on one axis: inside the image, or covering it if larger.

    >>> placement_range(10, 4), placement_range(3, 5)
    ((0, 6), (-2, 0))
    """
    return min(0, length - window), max(0, length - window)


def axis_starts(length: int, window: int, overlap: float = 0.0, edge: str = "shift") -> np.ndarray:
    """Starts of windows that cover ``[0, length)`` on one axis.

    The stride is ``window * (1 - overlap)`` (at least 1). ``edge='shift'``
    aligns the last window to the end of the axis (every window inside when the
    axis is at least one window long); ``edge='pad'`` keeps the stride and lets
    the last window run past the end (with overlap 0 each pixel is covered once).

    >>> axis_starts(10, 4).tolist(), axis_starts(10, 4, edge="pad").tolist()
    ([0, 4, 6], [0, 4, 8])
    >>> axis_starts(10, 4, overlap=0.5).tolist(), axis_starts(3, 5).tolist()
    ([0, 2, 4, 6], [0])
    """
    if not 0 <= overlap < 1:
        raise TargetError(f"window_overlap must be in [0, 1), got {overlap!r}")
    if edge not in ("shift", "pad"):
        raise TargetError(f"edge must be 'shift' or 'pad', got {edge!r}")
    return strided_starts(length, window, max(1, int(round(window * (1 - overlap)))), edge)


def strided_starts(length: int, window: int, stride: int, edge: str = "shift") -> np.ndarray:
    """Starts of windows ``stride`` apart that cover ``[0, length)`` (``edge`` as in :func:`axis_starts`).

    >>> strided_starts(7, 3, 2).tolist(), strided_starts(7, 3, 3).tolist()
    ([0, 2, 4], [0, 3, 4])
    """
    if not 1 <= stride <= window:
        raise TargetError(f"a stride of {stride} with windows of {window} would leave gaps: "
                          f"it must be in [1, {window}]")
    n = math.ceil(max(length - window, 0) / stride) + 1
    starts = np.arange(n, dtype=np.int64) * stride
    if edge == "shift" and length > window:
        starts[-1] = length - window
    return starts


def grid_starts(dims: Sequence[int], window_dims: Sequence[int], overlap: float = 0.0,
                edge: str = "shift") -> np.ndarray:
    """Starts (one row per window, one column per axis) of a grid covering an array of ``dims``.

    >>> grid_starts((10, 5), (4, 5)).tolist()
    [[0, 0], [4, 0], [6, 0]]
    """
    axes = [axis_starts(n, w, overlap, edge) for n, w in zip(dims, window_dims)]
    return np.array(list(product(*axes)), dtype=np.int64).reshape(-1, len(axes))


def box_hits(bounds: tuple[np.ndarray, ...], x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Mask of the boxes ``(bx0, by0, bx1, by1)`` (zero sizes widened) that meet the window's interior."""
    bx0, by0, bx1, by1 = bounds
    return (bx0 < x1) & (bx1 > x0) & (by0 < y1) & (by1 > y0)


def extent_hits(rows: np.ndarray, exact: np.ndarray, geometry, window: tuple[float, float, float, float],
                stop_at_first: bool = False) -> np.ndarray:
    """Of ``rows`` (whose boxes meet the window), those whose extent meets its interior.

    A row's extent is its polygon where ``exact`` says it has one
    (``geometry(row)``: a shapely geometry, or None to count by the box), else
    its box. ``stop_at_first`` returns at most one row, cheaply.
    """
    if stop_at_first and not exact.all():
        return rows[~exact][:1]
    box = shapely.box(*window)
    geoms = np.array([geometry(row) for row in rows[exact]], dtype=object)
    by_box = np.array([geom is None for geom in geoms], dtype=bool)
    keep = ~exact
    keep[exact] = by_box | (shapely.intersects(geoms, box) & ~shapely.touches(geoms, box))
    return rows[keep]


def free_positions(bounds: tuple[np.ndarray, ...], dims: tuple[int, int],
                   window_dims: tuple[int, int]) -> np.ndarray:
    """Rows ``(y, x_first, x_last)``: integer window starts that meet none of the boxes.

    Exact, not sampled: if any box-free placement exists, one is listed. Sliding
    a free window up keeps it free until it reaches the top of its range or the
    bottom of a box, so the candidate rows are those ``y``; on each, the free
    ``x`` are the gaps between the boxes that cross that band.

    >>> bounds = tuple(np.array([v], float) for v in (3, 0, 7, 10))   # a box over x in [3, 7)
    >>> free_positions(bounds, (10, 10), (4, 3)).tolist()             # x + 3 <= 3 or x >= 7
    [[0, 0, 0], [0, 7, 7]]
    """
    height, width = dims
    h, w = window_dims
    bx0, by0, bx1, by1 = bounds
    ylo, yhi = placement_range(height, h)
    xlo, xhi = placement_range(width, w)
    ys = np.unique(np.concatenate([[ylo], np.ceil(by1).astype(np.int64)]))
    ys = ys[(ys >= ylo) & (ys <= yhi)]
    rows = []
    for y in ys.tolist():
        first, last = free_spans(bounds, y, window_dims, (xlo, xhi))
        rows.extend((y, a, b) for a, b in zip(first.tolist(), last.tolist()))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def centre_starts(centre: np.ndarray, window: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive ranges ``(lo, hi)`` of window starts on one axis whose window contains ``centre`` and meets the image.

    The window ``[start, start + window]`` contains the centre (edges
    included) and shares at least one pixel with ``[0, length)``.

    >>> [a.tolist() for a in centre_starts(np.array([5.5, 0.5]), 4, 10)]
    [[2.0, -3.0], [5.0, 0.0]]
    """
    return np.maximum(np.ceil(centre) - window, 1 - window), np.minimum(np.floor(centre), length - 1)


def free_spans(bounds: tuple[np.ndarray, ...], y: int, window_dims: tuple[int, int],
               x_range: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(first, last)``: the runs of starts ``x`` in ``x_range`` (inclusive) whose window at row ``y`` meets no box.

    >>> bounds = tuple(np.array([v], float) for v in (3, 0, 7, 10))   # a box over x in [3, 7)
    >>> [a.tolist() for a in free_spans(bounds, 0, (4, 3), (0, 7))]
    [[0, 7], [0, 7]]
    """
    h, w = window_dims
    xlo, xhi = x_range
    bx0, by0, bx1, by1 = bounds
    band = (by0 < y + h) & (by1 > y)
    lo = np.floor(bx0[band] - w).astype(np.int64) + 1   # forbidden x in [lo, hi]
    hi = np.ceil(bx1[band]).astype(np.int64) - 1
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    first = np.maximum(np.concatenate([[xlo], hi + 1]), xlo)
    last = np.minimum(np.concatenate([lo - 1, [xhi]]), xhi)
    keep = first <= last
    return first[keep], last[keep]


def nearest_free_position(bounds: tuple[np.ndarray, ...], window_dims: tuple[int, int],
                          start: tuple[int, int], ranges: tuple[tuple[int, int], tuple[int, int]]
                          ) -> tuple[int, int] | None:
    """The start ``(y, x)`` within ``ranges`` (inclusive, per axis) nearest to ``start`` (L1) whose window meets no box.

    Exact: sliding a free window towards ``start``'s row keeps it free until it
    reaches that row (clipped to the range) or the edge of a box, so those are
    the candidate rows; on each, the nearest free ``x`` is ``start``'s clipped
    to a free span (:func:`free_spans`). None when no start is free.

    >>> bounds = tuple(np.array([v], float) for v in (3, 0, 7, 10))   # a box over x in [3, 7)
    >>> nearest_free_position(bounds, (4, 3), (0, 2), ((0, 6), (0, 7)))
    (0, 0)
    """
    h, w = window_dims
    (ylo, yhi), (xlo, xhi) = ranges
    if ylo > yhi or xlo > xhi:
        return None
    near = box_hits(bounds, xlo, ylo, xhi + w, yhi + h)
    bounds = tuple(b[near] for b in bounds)
    sy, sx = start
    ys = np.concatenate([[min(max(sy, ylo), yhi)], np.ceil(bounds[3]), np.floor(bounds[1]) - h]).astype(np.int64)
    ys = np.unique(ys[(ys >= ylo) & (ys <= yhi)])
    best, best_cost = None, math.inf
    for y in ys[np.argsort(np.abs(ys - sy), kind="stable")].tolist():
        if abs(y - sy) >= best_cost:
            break
        first, last = free_spans(bounds, y, window_dims, (xlo, xhi))
        if len(first):
            xs = np.clip(sx, first, last)
            x = int(xs[np.argmin(np.abs(xs - sx))])
            cost = abs(y - sy) + abs(x - sx)
            if cost < best_cost:
                best, best_cost = (y, x), cost
    return best


# -- the targets table -----------------------------------------------------------------

def build_targets(dataset: dict, image_dims=None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The targets table (one row per annotation with a box, sorted by gid then aid) and the images.

    ``dataset`` is a COCO dict (``images``, ``annotations``). ``image_dims(gid)``
    gives ``(height, width)`` of images whose record lacks them. Besides
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
    bboxes = [ann.get("bbox") for ann in anns]
    for i in [i for i, box in enumerate(bboxes) if box is None]:
        bboxes[i] = annotation_xywh(anns[i])
    xywh = np.array(bboxes, dtype=np.float64).reshape(n, 4)

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


def split_obstacles(records: list[dict], images: dict[str, np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """Boxes ``(x0, y0, x1, y1)`` of the other splits' blocks of each block-split image, or None if there is none.

    ``records`` are the dataset's image records; images with a
    ``split_region`` get :func:`ndpatch.splits.foreign_boxes`. Adds
    ``obstacle_start``/``obstacle_stop`` (each image's rows in the boxes) to
    the ``images`` table of :func:`build_targets`.
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


# -- class balance -----------------------------------------------------------------------

def category_probabilities(counts: dict[int, int], children: dict[int, list[int]] | None = None,
                           power: float = 1.0) -> dict[int, float]:
    """Probability of drawing each category, balanced level by level down the category tree.

    At each node the options are the node's own annotations and each child
    subtree that has any; option ``o`` gets weight ``count(o) ** (1 - power)``:
    ``power=1`` splits evenly (so a rare leaf keeps its branch's share),
    ``power=0`` follows the counts, ``0.5`` is in between. Without ``children``
    every category is its own root: uniform over categories at ``power=1``.

    >>> category_probabilities({1: 900, 2: 90, 3: 10})
    {1: 0.3333333333333333, 2: 0.3333333333333333, 3: 0.3333333333333333}
    >>> category_probabilities({2: 900, 3: 90, 5: 10}, children={1: [2, 3], 4: [5]})
    {2: 0.25, 3: 0.25, 5: 0.5}
    """
    children = children or {}
    nodes = set(counts) | set(children) | {c for cs in children.values() for c in cs}
    has_parent = {c for cs in children.values() for c in cs}
    subtree: dict[int, int] = {}

    def total(node: int) -> int:
        if node not in subtree:
            subtree[node] = counts.get(node, 0) + sum(total(c) for c in children.get(node, ()))
        return subtree[node]

    probs: dict[int, float] = defaultdict(float)

    def spread(node: int | None, options: list[int], mass: float) -> None:
        own = counts.get(node, 0) if node is not None else 0
        sizes = ([own] if own else []) + [total(c) for c in options]
        weights = np.asarray(sizes, dtype=np.float64) ** (1.0 - power)
        weights = weights / weights.sum()
        if own:
            probs[node] += mass * float(weights[0])
            weights = weights[1:]
        for child, share in zip(options, weights.tolist()):
            spread(child, [c for c in children.get(child, ()) if total(c) > 0], mass * share)

    roots = sorted(node for node in nodes - has_parent if total(node) > 0)
    if roots:
        spread(None, roots, 1.0)
    return {c: probs[c] for c in sorted(probs)}


class CoverageCycle:
    """Draw members of groups so that each group visits all its members once per pass.

    ``group`` gives each member's group (0..n_groups-1); each pass over a group
    is a fresh permutation. O(1) amortised per draw.

    >>> cycle = CoverageCycle(np.zeros(4, int), 1)
    >>> rng = np.random.default_rng(0)
    >>> sorted(cycle.draw(0, rng) for _ in range(4))
    [0, 1, 2, 3]
    """

    def __init__(self, group: np.ndarray, n_groups: int):
        self.order = np.argsort(group, kind="stable")
        self.start = np.searchsorted(group[self.order], np.arange(n_groups), "left")
        self.stop = np.searchsorted(group[self.order], np.arange(n_groups), "right")
        self.cursor = self.stop - self.start  # every group starts "exhausted": shuffle on first use

    def draw(self, g: int, rng: np.random.Generator) -> int:
        start, stop = self.start[g], self.stop[g]
        if self.cursor[g] >= stop - start:
            rng.shuffle(self.order[start:stop])
            self.cursor[g] = 0
        member = int(self.order[start + self.cursor[g]])
        self.cursor[g] += 1
        return member


# -- configuration ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How :class:`Regions` shapes and draws windows.

    Attributes:
        window_dims: (height, width) of every window; None fits positives to their
            annotation (negatives then use the median fitted size).
        context: fitted positives are the box size times this (at least 1 pixel).
        center_jitter: the window centre moves by up to this fraction of half the
            window (at most 1, so the annotation centre stays inside).
        scale_jitter: fitted windows are scaled by a factor in [1/(1+s), 1+s]
            (log-uniform); needs ``window_dims=None``.
        balance: None (every annotation alike), ``'category'`` (categories alike)
            or ``'hierarchy'`` (branches of the category tree alike, level by level).
        balance_power: 1 balances fully, 0 follows the counts (see
            :func:`category_probabilities`).
        neg_to_pos_ratio: negatives per positive in ``preselect`` and ``draw``.
        max_nodata: a negative has at most this fraction of nodata or fill pixels
            (None: not checked; reads the window's pixels).
        nodata_value: the pixel value that counts as nodata (default: the source's
            declared nodata; NaN always counts).
        negative_tries: random placements tried per image before an exact search.
    """

    window_dims: tuple[int, int] | None = None
    context: float = 1.0
    center_jitter: float = 0.0
    scale_jitter: float = 0.0
    balance: str | None = None
    balance_power: float = 1.0
    neg_to_pos_ratio: float = 0.0
    max_nodata: float | None = None
    nodata_value: float | None = None
    negative_tries: int = 16

    def __post_init__(self) -> None:
        if self.window_dims is not None:
            dims = tuple(int(d) for d in self.window_dims)
            if len(dims) != 2 or min(dims) <= 0:
                raise TargetError(f"window_dims must be (height, width) > 0, got {self.window_dims!r}")
            object.__setattr__(self, "window_dims", dims)
        if not self.context > 0:
            raise TargetError(f"context must be positive, got {self.context!r}")
        if not 0 <= self.center_jitter <= 1:
            raise TargetError(f"center_jitter must be in [0, 1], got {self.center_jitter!r}")
        if self.scale_jitter < 0:
            raise TargetError(f"scale_jitter must be non-negative, got {self.scale_jitter!r}")
        if self.scale_jitter and self.window_dims is not None:
            raise TargetError("scale_jitter changes the window size: use it with window_dims=None")
        if self.balance not in (None, "category", "hierarchy"):
            raise TargetError(f"balance must be None, 'category' or 'hierarchy', got {self.balance!r}")
        if self.neg_to_pos_ratio < 0:
            raise TargetError(f"neg_to_pos_ratio must be non-negative, got {self.neg_to_pos_ratio!r}")
        if self.max_nodata is not None and not 0 <= self.max_nodata <= 1:
            raise TargetError(f"max_nodata must be in [0, 1], got {self.max_nodata!r}")
        if self.negative_tries < 1:
            raise TargetError(f"negative_tries must be at least 1, got {self.negative_tries!r}")


# -- the strategies ----------------------------------------------------------------------

class Regions:
    """The targets table of a sampler's dataset and the strategies that draw windows from it.

    Args:
        sampler: a :class:`~ndpatch.sampler.CocoSampler` (its ``dset.dataset`` is
            read; pixels are read through ``load_sample`` only for the nodata limit).
        rng: the default stream of every draw that gets no ``rng`` (an int seed
            is re-spawned per DataLoader worker / rank; see :mod:`ndpatch.rng`).
        **config: :class:`SamplingConfig` fields.
    """

    def __init__(self, sampler, rng: RngLike = None, **config):
        self.sampler = sampler
        self._stream = ProcessStream(rng)
        self.config = SamplingConfig(**config)
        self._table: dict[str, np.ndarray] | None = None
        self._images: dict[str, np.ndarray] | None = None
        self._foreign: tuple[np.ndarray, ...] | None = None
        self._geoms: OrderedDict[int, Any] = OrderedDict()
        self._reset()

    def _reset(self) -> None:
        """Forget every drawing state (epochs, pools, full images)."""
        self._reset_epochs()
        self._full: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
        self._usable: np.ndarray | None = None
        self._pos_pool: list[dict] | None = None
        self._neg_pool: list[dict] | None = None

    def configure(self, **config) -> None:
        """Change settings (:class:`SamplingConfig` fields); drawing state starts afresh."""
        self.config = dataclasses.replace(self.config, **config)
        self._reset()

    def reseed(self, rng: RngLike) -> None:
        """Restart the default stream (and epochs and pools) from ``rng``."""
        self._stream = ProcessStream(rng)
        self._reset()

    def _reset_epochs(self) -> None:
        self._cycle: CoverageCycle | None = None
        self._cum_probs: np.ndarray | None = None

    def _rng(self, rng: RngLike) -> np.random.Generator:
        """``rng`` as a Generator, or this process's (worker's) default stream.

        A new process or DataLoader worker gets its own stream and epochs (it may
        have inherited the parent's by fork); preselected pools are kept.
        """
        if self._stream.renewed():
            self._reset_epochs()
        return self._stream.generator(rng)

    # -- tables -------------------------------------------------------------------------
    def _build(self) -> None:
        def image_dims(gid: int) -> tuple[int, int]:
            entry = self.sampler.entry(gid)
            return entry.height, entry.width
        self._table, self._images = build_targets(self.sampler.dset.dataset, image_dims)
        self._foreign = split_obstacles(self.sampler.dset.dataset.get("images", []), self._images)
        x, y = self._table["x"], self._table["y"]  # as given: cy - height / 2 may be an ulp off
        self._bounds = (x, y, np.maximum(x + self._table["width"], x + _EPS),
                        np.maximum(y + self._table["height"], y + _EPS))

    @property
    def targets(self) -> dict[str, np.ndarray]:
        """The targets table: :data:`TABLE_COLUMNS` (+ ``ann_index``, ``has_segmentation``) as arrays."""
        if self._table is None:
            self._build()
        return self._table

    @property
    def images(self) -> dict[str, np.ndarray]:
        """Per image (sorted by gid): ``gid``, ``width``, ``height``, its ``start:stop`` rows in the table."""
        if self._images is None:
            self._build()
        return self._images

    @property
    def n_positives(self) -> int:
        return len(self._pos_pool) if self._pos_pool is not None else len(self.targets["aid"])

    @property
    def epoch_size(self) -> int:
        """Positives in one coverage epoch: every annotation that can be drawn (see ``_positive_rows``)."""
        return len(self._positive_rows())

    @property
    def n_negatives(self) -> int:
        return len(self._neg_pool) if self._neg_pool is not None else 0

    @property
    def n_samples(self) -> int:
        return self.n_positives + self.n_negatives

    def _image_row(self, gid: int) -> int:
        gids = self.images["gid"]
        i = int(np.searchsorted(gids, gid))
        if i >= len(gids) or gids[i] != gid:
            raise UnknownImageError(f"unknown image id {gid!r} in dataset {self.sampler.dset.fpath}")
        return i

    def _describe(self, gid: int) -> str:
        return self.sampler.index.source(gid).describe()

    # -- geometry of one image's annotations -------------------------------------------
    def _geometry(self, row: int):
        """The shapely geometry of table row ``row``'s segmentation, None when it has no area (cached)."""
        if row not in self._geoms:
            ann = self.sampler.dset.dataset["annotations"][int(self.targets["ann_index"][row])]
            self._geoms[row] = segmentation_geometry(ann)
            if len(self._geoms) > 4096:
                self._geoms.popitem(last=False)
        return self._geoms[row]

    def _hit_rows(self, img: int, x0: float, y0: float, x1: float, y1: float,
                  stop_at_first: bool = False) -> np.ndarray:
        """Table rows of image row ``img`` whose extent (polygon, else box) meets the window."""
        start, stop = int(self.images["start"][img]), int(self.images["stop"][img])
        rows = start + np.flatnonzero(box_hits(tuple(b[start:stop] for b in self._bounds), x0, y0, x1, y1))
        if not len(rows):
            return rows
        return extent_hits(rows, self.targets["has_segmentation"][rows], self._geometry,
                           (x0, y0, x1, y1), stop_at_first)

    def _foreign_bounds(self, img: int) -> tuple[np.ndarray, ...] | None:
        """Boxes of the other splits' blocks in image row ``img``; None unless it is block-split."""
        if self._foreign is None:
            return None
        start, stop = int(self.images["obstacle_start"][img]), int(self.images["obstacle_stop"][img])
        return tuple(b[start:stop] for b in self._foreign) if stop > start else None

    def _split_clause(self, img: int) -> str:
        if self._foreign_bounds(img) is None:
            return ""
        region = self.sampler.index.image(int(self.images["gid"][img]))["split_region"]
        return f" and stays inside split {region['split']!r}'s blocks"

    def hits(self, gid: int, rows: slice, cols: slice) -> list[int]:
        """Ids of the annotations of image ``gid`` whose extent meets the window ``(rows, cols)``."""
        img = self._image_row(gid)
        found = self._hit_rows(img, cols.start, rows.start, cols.stop, rows.stop)
        return self.targets["aid"][found].tolist()

    @staticmethod
    def window(target: dict) -> tuple[slice, slice]:
        """The (row slice, col slice) a drawn target reads (ndsampler's centre rule)."""
        if target.get("space_slice") is not None:
            return target["space_slice"]
        return window_from_center(target["cx"], target["cy"], target["width"], target["height"])

    # -- positives -------------------------------------------------------------------------
    def _draw_row(self, rng: np.random.Generator) -> int:
        table = self.targets
        if not len(table["aid"]):
            raise SamplingError(f"dataset {self.sampler.dset.fpath} has no annotations to draw positives from")
        rows = self._positive_rows()
        if not len(rows):
            raise SamplingError(f"dataset {self.sampler.dset.fpath}: no annotation has a window around its "
                                f"centre that stays inside its split's blocks")
        if self._cycle is None:
            balance = self.config.balance
            if balance is None:
                self._cycle = CoverageCycle(np.zeros(len(rows), np.int64), 1)
                self._cum_probs = np.array([1.0])
            else:
                cids, group, counts = np.unique(table["category_id"][rows], return_inverse=True,
                                                return_counts=True)
                children = self._category_children() if balance == "hierarchy" else None
                probs = category_probabilities(dict(zip(cids.tolist(), counts.tolist())), children,
                                               self.config.balance_power)
                self._cycle = CoverageCycle(group, len(cids))
                self._cum_probs = np.cumsum([probs.get(c, 0.0) for c in cids.tolist()])
                self._cum_probs /= self._cum_probs[-1]
        g = int(np.searchsorted(self._cum_probs, rng.random(), side="right")) if len(self._cum_probs) > 1 else 0
        return int(rows[self._cycle.draw(min(g, len(self._cum_probs) - 1), rng)])

    def _positive_rows(self) -> np.ndarray:
        """Table rows drawn as positives (cached per configuration).

        Every row, except that in a block-split image an annotation is left out
        when no window around its centre (of the smallest size drawn) stays
        inside the split's blocks.
        """
        if self._usable is None:
            table, images = self.targets, self.images
            keep = np.ones(len(table["aid"]), bool)
            if self._foreign is not None:
                smallest = math.exp(-math.log1p(self.config.scale_jitter))
                for img in np.flatnonzero(images["obstacle_stop"] > images["obstacle_start"]).tolist():
                    rows = np.arange(images["start"][img], images["stop"][img])
                    dims = np.array([self._window_dims(row, smallest) for row in rows.tolist()]).reshape(-1, 2)
                    starts = self._split_starts(img, rows, table["cx"][rows], table["cy"][rows], dims.T)
                    keep[rows] = ~np.isnan(starts[:, 0])
            self._usable = np.flatnonzero(keep)
        return self._usable

    def _window_dims(self, row: int, scale: float = 1.0) -> tuple[int, int]:
        """(height, width) of row ``row``'s positive: ``window_dims``, else its box × context × ``scale``."""
        if self.config.window_dims is not None:
            return self.config.window_dims
        table, context = self.targets, self.config.context
        return (math.ceil(max(float(table["height"][row]), 1.0) * context * scale),
                math.ceil(max(float(table["width"][row]), 1.0) * context * scale))

    def _split_starts(self, img: int, rows, cx, cy, dims) -> np.ndarray:
        """Starts ``(y0, x0)`` (one row each) of the windows of ``dims`` centred at (cx, cy), kept in the split.

        ``rows`` are table rows of block-split image row ``img``; arguments
        broadcast. A window that touches another split's block, misses the
        annotation's centre or the image is moved as little as possible (L1)
        to one that does not; NaN where there is none.
        """
        rows, cx, cy, h, w = np.atleast_1d(*np.broadcast_arrays(rows, cx, cy, *dims))
        foreign = self._foreign_bounds(img)
        y0, x0 = np.floor(cy - h / 2), np.floor(cx - w / 2)   # window_from_center's rule
        ylo, yhi = centre_starts(self.targets["cy"][rows], h, int(self.images["height"][img]))
        xlo, xhi = centre_starts(self.targets["cx"][rows], w, int(self.images["width"][img]))
        ok = (ylo <= y0) & (y0 <= yhi) & (xlo <= x0) & (x0 <= xhi)
        ok &= ~box_hits(foreign, x0[:, None], y0[:, None], (x0 + w)[:, None], (y0 + h)[:, None]).any(axis=1)
        starts = np.stack([y0, x0], axis=1)
        for i in np.flatnonzero(~ok).tolist():
            found = nearest_free_position(foreign, (int(h[i]), int(w[i])), (int(y0[i]), int(x0[i])),
                                          ((int(ylo[i]), int(yhi[i])), (int(xlo[i]), int(xhi[i]))))
            starts[i] = np.nan if found is None else found
        return starts

    def _category_children(self) -> dict[int, list[int]]:
        import kwcoco
        tree = kwcoco.CategoryTree.from_coco(self.sampler.dset.dataset.get("categories", []))
        return {tree.node_to_id[node]: [tree.node_to_id[c] for c in tree.graph.successors(node)]
                for node in tree.graph.nodes}

    def positive_target(self, row: int, rng: RngLike = None) -> dict:
        """The window around the annotation in table row ``row`` (jittered as configured)."""
        table, cfg = self.targets, self.config
        if not 0 <= row < len(table["aid"]):
            raise SamplingError(f"positive index {row} is out of range (the table has {len(table['aid'])} rows)")
        cx, cy = float(table["cx"][row]), float(table["cy"][row])
        gen = self._rng(rng) if cfg.scale_jitter or cfg.center_jitter else None
        scale = math.exp(gen.uniform(-1, 1) * math.log1p(cfg.scale_jitter)) if cfg.scale_jitter else 1.0
        height, width = self._window_dims(row, scale)
        if cfg.center_jitter:
            dx, dy = gen.uniform(-1, 1, size=2) * cfg.center_jitter / 2
            cx, cy = cx + dx * width, cy + dy * height
        if self._foreign is not None:
            cx, cy, height, width = self._inside_split(row, cx, cy, (height, width))
        return {
            "gid": int(table["gid"][row]), "aid": int(table["aid"][row]),
            "category_id": int(table["category_id"][row]),
            "cx": cx, "cy": cy, "width": width, "height": height,
            "img_width": int(table["img_width"][row]), "img_height": int(table["img_height"][row]),
        }

    def _inside_split(self, row: int, cx: float, cy: float, dims: tuple[int, int]) -> tuple[float, float, int, int]:
        """(cx, cy, height, width) of row ``row``'s positive, moved inside its split's blocks if block-split.

        A scale-jittered window that cannot stay inside falls back to the
        smallest scale; an annotation with no such window raises SamplingError.
        """
        img = self._image_row(int(self.targets["gid"][row]))
        if self._foreign_bounds(img) is None:
            return cx, cy, *dims
        y0, x0 = self._split_starts(img, row, cx, cy, dims)[0]
        if math.isnan(y0) and self.config.scale_jitter:
            dims = self._window_dims(row, math.exp(-math.log1p(self.config.scale_jitter)))
            y0, x0 = self._split_starts(img, row, cx, cy, dims)[0]
        if math.isnan(y0):
            gid = int(self.images["gid"][img])
            raise SamplingError(f"{self._describe(gid)}: annotation {int(self.targets['aid'][row])} is not a "
                                f"positive here: no {dims[0]}x{dims[1]} window around its centre"
                                f"{self._split_clause(img)}")
        return x0 + dims[1] / 2, y0 + dims[0] / 2, *dims

    def get_positive(self, index: int | None = None, rng: RngLike = None) -> dict:
        """Positive ``index`` (of the preselected pool, else of the table), or the next one drawn."""
        if index is None:
            gen = self._rng(rng)
            return self.positive_target(self._draw_row(gen), gen)
        if self._pos_pool is not None:
            return _pool_item(self._pos_pool, index, "positive")
        return self.positive_target(index, rng)

    # -- negatives -------------------------------------------------------------------------
    def negative_dims(self) -> tuple[int, int]:
        """(height, width) of negative windows: ``window_dims``, else the median fitted positive."""
        if self.config.window_dims is not None:
            return self.config.window_dims
        table = self.targets
        if not len(table["aid"]):
            raise SamplingError("the dataset has no annotations to size negatives by: "
                                "configure window_dims=(height, width)")
        c = self.config.context
        return (math.ceil(float(np.median(np.maximum(table["height"], 1))) * c),
                math.ceil(float(np.median(np.maximum(table["width"], 1))) * c))

    def _nodata_fraction(self, gid: int, y0: int, x0: int, dims: tuple[int, int]) -> float:
        h, w = dims
        rows, cols = slice(y0, y0 + h), slice(x0, x0 + w)
        im = self.sampler.load_sample({"gid": gid, "space_slice": (rows, cols)}, with_annots=False)["im"]
        img = self._image_row(gid)
        H, W = int(self.images["height"][img]), int(self.images["width"][img])
        r0, r1 = max(0, -y0), min(h, H - y0)
        c0, c1 = max(0, -x0), min(w, W - x0)
        inside = im[r0:r1, c0:c1]
        value = self.config.nodata_value
        if value is None:
            value = self.sampler.entry(gid).nodata
        bad = np.isnan(inside).all(axis=-1) if inside.dtype.kind == "f" else np.zeros(inside.shape[:2], bool)
        if value is not None and not math.isnan(value):
            bad |= (inside == value).all(axis=-1)
        return (h * w - inside.shape[0] * inside.shape[1] + int(bad.sum())) / (h * w)

    def _acceptable(self, img: int, y0: int, x0: int, dims: tuple[int, int]) -> bool:
        h, w = dims
        foreign = self._foreign_bounds(img)
        if foreign is not None and box_hits(foreign, x0, y0, x0 + w, y0 + h).any():
            return False
        if len(self._hit_rows(img, x0, y0, x0 + w, y0 + h, stop_at_first=True)):
            return False
        if self.config.max_nodata is None:
            return True
        gid = int(self.images["gid"][img])
        return self._nodata_fraction(gid, y0, x0, dims) <= self.config.max_nodata

    def _place_negative(self, img: int, dims: tuple[int, int], rng: np.random.Generator) -> tuple[int, int] | None:
        """A free (y0, x0) in image row ``img``: random tries, then an exact box-free search.

        In a block-split image the other splits' blocks are obstacles like the boxes.
        """
        h, w = dims
        H, W = int(self.images["height"][img]), int(self.images["width"][img])
        ylo, yhi = placement_range(H, h)
        xlo, xhi = placement_range(W, w)
        tries = self.config.negative_tries
        for y0, x0 in zip(rng.integers(ylo, yhi + 1, tries).tolist(), rng.integers(xlo, xhi + 1, tries).tolist()):
            if self._acceptable(img, y0, x0, dims):
                return y0, x0
        start, stop = int(self.images["start"][img]), int(self.images["stop"][img])
        obstacles = tuple(b[start:stop] for b in self._bounds)
        foreign = self._foreign_bounds(img)
        if foreign is not None:
            obstacles = tuple(np.concatenate(pair) for pair in zip(obstacles, foreign))
        free = free_positions(obstacles, (H, W), dims)
        if not len(free):
            return None
        lengths = free[:, 2] - free[:, 1] + 1
        picks = rng.choice(len(free), size=min(tries, len(free)), replace=False, p=lengths / lengths.sum())
        for y0, first, last in free[picks].tolist():
            x0 = int(rng.integers(first, last + 1))
            if self.config.max_nodata is None or self._acceptable(img, y0, x0, dims):
                return y0, x0
        return None

    def _negative_target(self, img: int, y0: int, x0: int, dims: tuple[int, int]) -> dict:
        h, w = dims
        return {
            "gid": int(self.images["gid"][img]), "aid": None,
            "category_id": self._background_id(),
            "cx": x0 + w / 2, "cy": y0 + h / 2, "width": w, "height": h,
            "img_width": int(self.images["width"][img]), "img_height": int(self.images["height"][img]),
        }

    def random_negative(self, rng: RngLike = None, gid: int | None = None) -> dict:
        """A window free of annotations (and of too much nodata), in image ``gid`` or any image.

        Images are drawn uniformly; one found to have no room is dropped from
        the draws (for this window size). Raises :class:`SamplingError` naming
        the image when ``gid`` has no room, or when no image has.
        """
        gen = self._rng(rng)
        dims = self.negative_dims()
        if self._table is None:
            self._build()
        if gid is not None:
            img = self._image_row(gid)
            found = self._place_negative(img, dims, gen)
            if found is None:
                raise SamplingError(f"{self._describe(gid)}: no room for a {dims[0]}x{dims[1]} negative "
                                    f"window that meets no annotation{self._split_clause(img)}"
                                    f"{self._nodata_clause()}")
            return self._negative_target(img, *found, dims)
        live, n_live = self._full.get(dims, (None, 0))
        if live is None:
            live, n_live = np.arange(len(self.images["gid"])), len(self.images["gid"])
        while n_live:
            i = int(gen.integers(n_live))
            found = self._place_negative(int(live[i]), dims, gen)
            if found is not None:
                self._full[dims] = (live, n_live)
                return self._negative_target(int(live[i]), *found, dims)
            n_live -= 1
            live[i], live[n_live] = live[n_live], live[i]
        self._full[dims] = (live, 0)
        raise SamplingError(f"no image of dataset {self.sampler.dset.fpath} has room for a "
                            f"{dims[0]}x{dims[1]} negative window that meets no annotation"
                            f"{'' if self._foreign is None else ' or block of another split'}"
                            f"{self._nodata_clause()}")

    def _background_id(self) -> int:
        """The id of the category named 'background', else 0 (ndsampler's convention)."""
        for cat in self.sampler.dset.dataset.get("categories", []):
            if cat.get("name") == "background":
                return int(cat["id"])
        return 0

    def _nodata_clause(self) -> str:
        limit = self.config.max_nodata
        return "" if limit is None else f" with at most {limit:g} nodata (tried {self.config.negative_tries} placements)"

    def get_negative(self, index: int | None = None, rng: RngLike = None, gid: int | None = None) -> dict:
        """Negative ``index`` of the preselected pool, or a new random one (see :meth:`random_negative`)."""
        if index is None:
            return self.random_negative(rng, gid)
        if self._neg_pool is None:
            raise SamplingError(f"no preselected negatives to index ({index}): call preselect first")
        return _pool_item(self._neg_pool, index, "negative")

    # -- fixed lists -------------------------------------------------------------------------
    def preselect(self, n_pos: int | None = None, n_neg: int | None = None,
                  neg_to_pos_ratio: float | None = None, window_dims=None,
                  rng: RngLike = None, verbose: int = 0) -> tuple[int, int]:
        """Draw ``n_pos`` positives (default one epoch) and ``n_neg`` negatives for ``get_item``.

        ``n_neg`` defaults to ``neg_to_pos_ratio * n_pos`` (the argument, else
        the configured ratio); ``window_dims`` sets the window size first.
        Returns ``(n_pos, n_neg)``, exactly as asked.
        """
        if n_neg is not None and neg_to_pos_ratio is not None:
            raise TargetError("give n_neg or neg_to_pos_ratio, not both")
        if window_dims is not None:
            self.configure(window_dims=window_dims)
        gen = self._rng(rng)
        n_pos = len(self._positive_rows()) if n_pos is None else int(n_pos)
        if n_neg is None:
            ratio = self.config.neg_to_pos_ratio if neg_to_pos_ratio is None else neg_to_pos_ratio
            n_neg = int(ratio * n_pos)
        self._pos_pool = [self.get_positive(None, gen) for _ in range(n_pos)] if n_pos else []
        self._neg_pool = [self.random_negative(gen) for _ in range(int(n_neg))]
        if verbose:
            print(f"preselected {len(self._pos_pool)} positives and {len(self._neg_pool)} negatives")
        return len(self._pos_pool), len(self._neg_pool)

    def get_item(self, index: int | None, rng: RngLike = None) -> dict:
        """Item ``index`` of positives then negatives (``None``: a random item)."""
        if index is None:
            index = int(self._rng(rng).integers(self.n_samples))
        if index < self.n_positives:
            return self.get_positive(index, rng)
        return self.get_negative(index - self.n_positives, rng)

    def draw(self, rng: RngLike = None) -> dict:
        """A negative with probability ``ratio / (1 + ratio)`` (configured ratio), else a positive."""
        gen = self._rng(rng)
        ratio = self.config.neg_to_pos_ratio
        if ratio and gen.random() * (1 + ratio) >= 1:
            return self.random_negative(gen)
        return self.get_positive(None, gen)

    # -- grids -----------------------------------------------------------------------------
    def new_sample_grid(self, task: str = "detection", window_dims=None, window_overlap: float = 0.0,
                        edge: str = "shift", gids: Sequence[int] | None = None,
                        time_stride: int | None = None,
                        vidids: Sequence[int] | None = None) -> dict[str, list[dict]]:
        """Windows covering every pixel of every image (or of ``gids``), split by label.

        ``window_dims`` is (height, width), ``'full'`` (one window per image) or
        None (the configured ``window_dims``). Returns ``{'positives': [...],
        'negatives': [...]}``; each target has ``gid``, ``space_slice``, ``aids``
        (annotations whose extent meets the window) and ``label``.
        ``window_dims=(time, height, width)`` gives a space-time grid over every
        video (or ``vidids``), ``time_stride`` frames apart
        (:meth:`ndpatch.video.VideoRegions.new_sample_grid`).
        """
        if task not in ("detection", "image_detection"):
            raise TargetError(f"new_sample_grid supports task='detection', got {task!r}")
        if window_dims is not None and not isinstance(window_dims, str) and len(window_dims) == 3:
            from ndpatch.video import VideoRegions
            return VideoRegions(self.sampler, window_dims).new_sample_grid(
                time_stride=time_stride, window_overlap=window_overlap, edge=edge, vidids=vidids)
        window_dims = self.config.window_dims if window_dims is None else window_dims
        if window_dims is None:
            raise TargetError("new_sample_grid needs window_dims=(height, width) or 'full'")
        images = self.images
        rows = range(len(images["gid"])) if gids is None else [self._image_row(g) for g in gids]
        grid: dict[str, list[dict]] = {"positives": [], "negatives": []}
        for img in rows:
            gid, dims = int(images["gid"][img]), (int(images["height"][img]), int(images["width"][img]))
            wdims = dims if isinstance(window_dims, str) and window_dims == "full" else tuple(window_dims)
            for y0, x0 in self._grid_placements(img, dims, wdims, window_overlap, edge):
                y1, x1 = y0 + wdims[0], x0 + wdims[1]
                aids = self.targets["aid"][self._hit_rows(img, x0, y0, x1, y1)].tolist()
                label = "positive" if aids else "negative"
                grid[label + "s"].append({"gid": gid, "space_slice": (slice(y0, y1), slice(x0, x1)),
                                          "aids": aids, "label": label})
        return grid

    def _grid_placements(self, img: int, dims: tuple[int, int], window_dims: tuple[int, int],
                         overlap: float, edge: str) -> list[tuple[int, int]]:
        """Starts of the grid windows over image row ``img`` (:func:`grid_starts`).

        In a block-split image only windows that meet none of the other
        splits' blocks are kept; a last window shifted onto the image edge
        that would meet one takes its ``edge='pad'`` placement instead (a
        subset of the shifted window's pixels, plus padding).
        """
        foreign = self._foreign_bounds(img)
        if foreign is None:
            return grid_starts(dims, window_dims, overlap, edge).tolist()
        h, w = window_dims
        axes = [list(zip(axis_starts(n, d, overlap, edge).tolist(), axis_starts(n, d, overlap, "pad").tolist()))
                for n, d in zip(dims, window_dims)]
        kept = []
        for (y_edge, y_pad), (x_edge, x_pad) in product(*axes):
            for y0, x0 in product(dict.fromkeys((y_edge, y_pad)), dict.fromkeys((x_edge, x_pad))):
                if not box_hits(foreign, x0, y0, x0 + w, y0 + h).any():
                    kept.append((y0, x0))
                    break
        return kept

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_geoms"] = OrderedDict()  # shapely geometries: rebuilt on demand
        return state


def _pool_item(pool: list[dict], index: int, kind: str) -> dict:
    if not -len(pool) <= index < len(pool):
        raise SamplingError(f"{kind} index {index} is out of range (the pool has {len(pool)})")
    return pool[index]
