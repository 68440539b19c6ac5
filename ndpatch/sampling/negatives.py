"""Placing negatives: windows that meet no obstacle, found by random tries then an exact search.

The search is over integer starts whose window overlaps the image
(:func:`~ndpatch.sampling.geometry.placement_range`): ``tries`` random starts
are checked with ``acceptable`` (which may look at polygons and pixels); then
every box-free start is listed exactly (:func:`~ndpatch.sampling.geometry.free_positions`)
and up to ``tries`` of them are drawn, weighted by run length.

Example:
    >>> obstacles = tuple(np.array([v], float) for v in (0, 0, 8, 10))   # a box over x in [0, 8)
    >>> place_negative((10, 10), (4, 2), obstacles, lambda y, x: x >= 8, 4, False, np.random.default_rng(0))
    (0, 8)
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ndpatch.sampling.geometry import Bounds, free_positions, placement_range


def place_negative(image_dims: tuple[int, int], dims: tuple[int, int], obstacles: Bounds,
                   acceptable: Callable[[int, int], bool], tries: int, check_free: bool,
                   rng: np.random.Generator) -> tuple[int, int] | None:
    """A start ``(y0, x0)`` of a ``dims`` window in an image of ``image_dims``, or None when none is found.

    ``acceptable(y0, x0)`` judges a random try; ``obstacles`` are the boxes of
    the exact search, whose picks are judged again only when ``check_free``
    (a test the boxes alone do not cover, e.g. a nodata limit).
    """
    h, w = dims
    ylo, yhi = placement_range(image_dims[0], h)
    xlo, xhi = placement_range(image_dims[1], w)
    for y0, x0 in zip(rng.integers(ylo, yhi + 1, tries).tolist(), rng.integers(xlo, xhi + 1, tries).tolist()):
        if acceptable(y0, x0):
            return y0, x0
    free = free_positions(obstacles, image_dims, dims)
    if not len(free):
        return None
    lengths = free[:, 2] - free[:, 1] + 1
    picks = rng.choice(len(free), size=min(tries, len(free)), replace=False, p=lengths / lengths.sum())
    for y0, first, last in free[picks].tolist():
        x0 = int(rng.integers(first, last + 1))
        if not check_free or acceptable(y0, x0):
            return y0, x0
    return None


def nodata_fraction(im: np.ndarray, y0: int, x0: int, image_dims: tuple[int, int], value: float | None) -> float:
    """The fraction of a window's pixels that are outside the image or nodata in every band.

    ``im`` is the window read at ``(y0, x0)``; ``value`` the nodata value (NaN always counts).

    >>> im = np.zeros((2, 4, 1)); im[0, 2] = 5
    >>> nodata_fraction(im, 0, -2, (2, 10), value=5.0)   # 4 pixels outside, 1 nodata
    0.625
    """
    h, w = im.shape[:2]
    height, width = image_dims
    r0, r1 = max(0, -y0), min(h, height - y0)
    c0, c1 = max(0, -x0), min(w, width - x0)
    inside = im[r0:r1, c0:c1]
    bad = np.isnan(inside).all(axis=-1) if inside.dtype.kind == "f" else np.zeros(inside.shape[:2], bool)
    if value is not None and not math.isnan(value):
        bad |= (inside == value).all(axis=-1)
    return (h * w - inside.shape[0] * inside.shape[1] + int(bad.sum())) / (h * w)
