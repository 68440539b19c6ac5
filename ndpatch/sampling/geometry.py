"""Window geometry on one image's pixel grid: placements, grids, free positions, hit tests.

Every function works one axis at a time or on arrays of boxes, so image grids
(height, width) and space-time grids (time, height, width) share them. Boxes are
``(x0, y0, x1, y1)`` arrays (:func:`box_bounds`: a zero-size box is widened by
a hair, so it counts in the pixel where it lies). Windows are integer starts
plus a size; "meets" means sharing interior with the window.

Grids with ``edge='shift'`` come from ``kwarray.SlidingWindow`` (``keepbound``:
the last window aligned to the end of the axis). ndpatch keeps its own code for
the rules kwarray lacks: ``edge='pad'`` (the stride is kept and the last window
runs past the end) and the stride rule ``max(1, round(window * (1 - overlap)))``,
passed to kwarray as an explicit stride.

Example:
    >>> grid_starts((10, 5), (4, 5)).tolist()
    [[0, 0], [4, 0], [6, 0]]
    >>> bounds = box_bounds(np.array([[3.0, 0.0, 4.0, 10.0]]))   # a box over x in [3, 7)
    >>> free_positions(bounds, (10, 10), (4, 3)).tolist()        # x + 3 <= 3 or x >= 7
    [[0, 0, 0], [0, 7, 7]]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from numbers import Real
from typing import Sequence

import kwarray
import numpy as np
import shapely

from ndpatch.errors import TargetError

Bounds = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: Grid ``edge`` rules (:class:`GridRule`).
EDGES = ("shift", "pad", "overshoot", "drop")
#: Where grid windows may run past the image (:class:`GridRule`).
PAD_DIRECTIONS = ("end", "start", "both")


def box_bounds(xywh: np.ndarray) -> Bounds:
    """``(x0, y0, x1, y1)`` of xywh boxes, from their corners as given.

    The corners are taken as stored, never recomputed from centres: ``cy - h / 2``
    can land an ulp away from ``y`` and make a box touch a window it only borders.
    A side of zero size reaches to the next float (:func:`point_reach`), so the
    box counts in exactly the half-open pixel that holds it.

    >>> [b.tolist() for b in box_bounds(np.array([[1.0, 2.0, 0.0, 3.0]]))]
    [[1.0], [2.0], [1.0000000000000002], [5.0]]
    """
    x, y, w, h = np.asarray(xywh, dtype=np.float64).reshape(-1, 4).T
    return x, y, point_reach(x, x + w), point_reach(y, y + h)


def point_reach(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``stop``, or the float just after ``start`` when the side has no length.

    With it, ``reach > lo`` is ``start >= lo`` for a point: it meets ``[lo, hi)``
    exactly when it lies in it (no tolerance constant to fall inside).

    >>> point_reach(np.array([2.0, -1e-10]), np.array([3.0, -1e-10])) > 0
    array([ True, False])
    """
    return np.maximum(stop, np.nextafter(start, np.inf))


def placement_range(length: int, window: int) -> tuple[int, int]:
    """Inclusive range of window starts on one axis: inside the image, or covering it if larger.

    >>> placement_range(10, 4), placement_range(3, 5)
    ((0, 6), (-2, 0))
    """
    return min(0, length - window), max(0, length - window)


def overlap_stride(window: int, overlap: float) -> int:
    """The stride of windows that overlap by the fraction ``overlap`` (at least 1 pixel).

    >>> overlap_stride(4, 0.0), overlap_stride(4, 0.5), overlap_stride(3, 0.9)
    (4, 2, 1)
    """
    if isinstance(overlap, bool) or not isinstance(overlap, Real) or not 0 <= overlap < 1:
        raise TargetError(f"window_overlap must be a number in [0, 1) (or one per axis), got {overlap!r}")
    return max(1, int(round(window * (1 - overlap))))


def _per_axis(value, n_axes: int, name: str) -> tuple:
    """``value`` for each of ``n_axes`` axes: a tuple of that length, or one value for all."""
    if isinstance(value, (tuple, list)):
        if len(value) != n_axes:
            raise TargetError(f"{name} has {len(value)} values, the grid has {n_axes} axes: {value!r}")
        return tuple(value)
    return (value,) * n_axes


def _values(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _check_size(window_dims: Sequence, name: str = "window size") -> tuple[int, ...]:
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in window_dims):
        raise TargetError(f"{name} must be a whole number of pixels >= 1 on every axis, got {tuple(window_dims)!r}")
    return tuple(int(d) for d in window_dims)


@dataclass(frozen=True)
class GridRule:
    """Where a grid puts windows along each axis. Every field is one value, or a tuple with one per axis.

    Attributes:
        overlap: the fraction of a window that neighbours share, in [0, 1)
            (the stride is :func:`overlap_stride`).
        stride: pixels between window starts, at least 1 (instead of ``overlap``);
            larger than the window gives a sparse grid.
        edge: what happens at the end of an axis that is not a whole number of strides
            (:data:`EDGES`): ``'shift'`` the last window back onto the edge (ndsampler's,
            kwarray's ``keepbound``); ``'pad'`` keep the stride and let windows run past
            the image until the axis is covered (torchgeo's ``GridGeoSampler``);
            ``'overshoot'`` windows may run up to ``padding`` pixels past the image
            (Raster Vision's ``Box.get_windows``); ``'drop'`` only windows inside the image.
        pad_direction: where windows may run past the image (:data:`PAD_DIRECTIONS`):
            ``'end'`` (bottom, right), ``'start'`` (top, left) or ``'both'``; for
            ``'pad'`` the grid is then anchored at the end of the axis, or centred.
        padding: ``'overshoot'`` only: how far windows may run past the image
            (default: half a window, Raster Vision's default).

    An axis shorter than the window gets one padded window (placed by
    ``pad_direction``), except with ``'drop'`` (none). A window that would not
    meet the image at all (sparse ``'pad'`` grids, ``padding`` of a window or more)
    is left out.

    Example:
        >>> def starts(**rule): return GridRule(stride=3, **rule).starts((11,), (4,)).ravel().tolist()
        >>> starts(), starts(edge="pad"), starts(edge="pad", pad_direction="start")
        ([0, 3, 6, 7], [0, 3, 6, 9], [-2, 1, 4, 7])
        >>> starts(edge="overshoot"), starts(edge="overshoot", padding=0), starts(edge="drop")
        ([0, 3, 6, 9], [0, 3, 6], [0, 3, 6])
        >>> GridRule(stride=(5, 2), edge="drop").starts((10, 6), (2, 4)).tolist()      # sparse rows
        [[0, 0], [0, 2], [5, 0], [5, 2]]
    """

    overlap: float | tuple[float, ...] = 0.0
    stride: int | tuple[int, ...] | None = None
    edge: str = "shift"
    pad_direction: str | tuple[str, ...] = "end"
    padding: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.edge not in EDGES:
            raise TargetError(f"edge must be one of {', '.join(map(repr, EDGES))}, got {self.edge!r}")
        if not all(direction in PAD_DIRECTIONS for direction in _values(self.pad_direction)):
            raise TargetError(f"pad_direction must be one of {', '.join(map(repr, PAD_DIRECTIONS))} "
                              f"(or one per axis), got {self.pad_direction!r}")
        for overlap in _values(self.overlap):
            overlap_stride(1, overlap)
        if self.stride is not None:
            _check_size(_values(self.stride), "stride")
            if any(overlap != 0 for overlap in _values(self.overlap)):
                raise TargetError(f"give stride or window_overlap, not both (stride {self.stride!r}, "
                                  f"window_overlap {self.overlap!r})")
        if self.padding is not None and not all(
                isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in _values(self.padding)):
            raise TargetError(f"padding must be a whole number of pixels >= 0 (or one per axis), got {self.padding!r}")

    def starts(self, dims: Sequence[int], window_dims: Sequence[int]) -> np.ndarray:
        """Window starts (one row per window, one column per axis) over an array of ``dims``, in row-major order."""
        axes = self.axes(dims, window_dims)
        return np.array(list(product(*axes)), dtype=np.int64).reshape(-1, len(axes))

    def axes(self, dims: Sequence[int], window_dims: Sequence[int]) -> list[np.ndarray]:
        """The starts on each axis (the grid is their product)."""
        window_dims = _check_size(window_dims)
        n = len(window_dims)
        return [_axis_starts(self.edge, int(length), window, stride, direction, padding)
                for length, window, stride, direction, padding in zip(
                    dims, window_dims, self.strides(window_dims), _per_axis(self.pad_direction, n, "pad_direction"),
                    _per_axis(self.padding, n, "padding"))]

    def strides(self, window_dims: Sequence[int]) -> tuple[int, ...]:
        """The stride on each axis: ``stride``, else from ``overlap``."""
        n = len(window_dims)
        return tuple(overlap_stride(int(window), overlap) if stride is None else int(stride)
                     for window, overlap, stride in zip(window_dims, _per_axis(self.overlap, n, "window_overlap"),
                                                        _per_axis(self.stride, n, "stride")))


def _axis_starts(edge: str, length: int, window: int, stride: int, pad_direction: str,
                 padding: int | None) -> np.ndarray:
    """The starts of one axis of ``length`` pixels (see :class:`GridRule`)."""
    if edge == "shift" and length >= window:
        slider = kwarray.SlidingWindow((length,), (window,), stride=stride, keepbound=True, allow_overshoot=True)
        return np.array([s.start for s in slider.basis_slices[0]], dtype=np.int64)
    if edge == "drop":
        return np.arange(0, length - window + 1, stride, dtype=np.int64)
    if edge == "overshoot":
        reach = window // 2 if padding is None else int(padding)
        lo = -reach if pad_direction in ("start", "both") else 0
        hi = length + reach if pad_direction in ("end", "both") else length
        starts = np.arange(lo, hi - window + 1, stride, dtype=np.int64)
    else:  # 'pad', and 'shift' on an axis shorter than the window: one padded window
        n = max(math.ceil((length - window) / stride) + 1, 1)
        starts = np.arange(n, dtype=np.int64) * stride - _offset((n - 1) * stride + window - length, pad_direction)
    starts = starts[(starts < length) & (starts + window > 0)]
    if not len(starts):  # no window fits the padded axis: one padded window
        starts = np.array([-_offset(window - length, pad_direction)], dtype=np.int64)
    return starts


def _offset(overrun: int, pad_direction: str) -> int:
    """How far before 0 a grid starts whose windows run ``overrun`` pixels past the axis."""
    return {"end": 0, "start": overrun, "both": overrun // 2}[pad_direction]


def axis_starts(length: int, window: int, overlap: float = 0.0, edge: str = "shift", **rule) -> np.ndarray:
    """Starts of grid windows on one axis (:class:`GridRule`; ``rule``: ``stride``, ``pad_direction``, ``padding``).

    >>> axis_starts(10, 4).tolist(), axis_starts(10, 4, edge="pad").tolist()
    ([0, 4, 6], [0, 4, 8])
    >>> axis_starts(10, 4, overlap=0.5).tolist(), axis_starts(3, 5).tolist(), axis_starts(3, 5, edge="drop").tolist()
    ([0, 2, 4, 6], [0], [])
    """
    return GridRule(overlap, edge=edge, **rule).starts((length,), (window,))[:, 0]


def strided_starts(length: int, window: int, stride: int, edge: str = "shift") -> np.ndarray:
    """Starts of windows ``stride`` apart that cover ``[0, length)``: no gaps, so ``stride`` is at most ``window``.

    >>> strided_starts(7, 3, 2).tolist(), strided_starts(7, 3, 3).tolist()
    ([0, 2, 4], [0, 3, 4])
    """
    if not 1 <= stride <= window:
        raise TargetError(f"a stride of {stride} with windows of {window} would leave gaps: "
                          f"it must be in [1, {window}]")
    return axis_starts(length, window, edge=edge, stride=stride)


def grid_starts(dims: Sequence[int], window_dims: Sequence[int], overlap: float = 0.0,
                edge: str = "shift", **rule) -> np.ndarray:
    """Starts (one row per window, one column per axis) of a grid over an array of ``dims`` (:class:`GridRule`).

    >>> grid_starts((10, 5), (4, 5)).tolist()
    [[0, 0], [4, 0], [6, 0]]
    >>> grid_starts((10, 5), (4, 5), stride=(3, 5), edge="drop").tolist()
    [[0, 0], [3, 0], [6, 0]]
    """
    return GridRule(overlap, edge=edge, **rule).starts(dims, window_dims)


def box_hits(bounds: Bounds, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Mask of the boxes ``(bx0, by0, bx1, by1)`` that meet the window's interior."""
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


def free_positions(bounds: Bounds, dims: tuple[int, int], window_dims: tuple[int, int]) -> np.ndarray:
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
    ylo, yhi = placement_range(height, h)
    xlo, xhi = placement_range(width, w)
    ys = np.unique(np.concatenate([[ylo], np.ceil(bounds[3]).astype(np.int64)]))
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


def free_spans(bounds: Bounds, y: int, window_dims: tuple[int, int],
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


def nearest_free_position(bounds: Bounds, window_dims: tuple[int, int], start: tuple[int, int],
                          ranges: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int] | None:
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


def random_free_start(free: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A start ``(y, x)`` drawn uniformly from the free positions of :func:`free_positions`.

    >>> random_free_start(np.array([[0, 2, 2]]), np.random.default_rng(0))
    (0, 2)
    """
    lengths = free[:, 2] - free[:, 1] + 1
    y0, first, last = free[rng.choice(len(free), p=lengths / lengths.sum())].tolist()
    return y0, int(rng.integers(first, last + 1))
