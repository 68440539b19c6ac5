"""Put window predictions back together into whole-image arrays.

A :class:`Stitcher` holds a weighted sum and a weight total for one image.
Each ``add(space_slice, data, weight)`` adds a window's prediction (per-pixel
scores, masks, any channel count; windows may run past the image, the outside
part is dropped); ``finalize()`` divides, so overlaps are weighted averages.
Works for any number of spatial axes (``dims``), e.g. (height, width) or
(time, height, width).

Example:
    >>> import numpy as np
    >>> stitcher = Stitcher((2, 3))
    >>> stitcher.add((slice(0, 2), slice(0, 2)), np.full((2, 2, 1), 1.0))
    >>> stitcher.add((slice(0, 2), slice(1, 3)), np.full((2, 2, 1), 3.0))
    >>> stitcher.finalize()[..., 0]
    array([[1., 2., 3.],
           [1., 2., 3.]])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ndpatch.errors import TargetError


class Stitcher:
    """Accumulates window predictions into an array of shape ``dims`` (+ channels).

    Args:
        dims: the image's spatial shape, e.g. ``(height, width)``.
        dtype: the accumulator type (float64 keeps integer-valued inputs exact).
        fill: the value of pixels that no window covered.
    """

    def __init__(self, dims: Sequence[int], dtype=np.float64, fill: float = np.nan):
        self.dims = tuple(int(d) for d in dims)
        self.dtype = np.dtype(dtype)
        self.fill = fill
        self.weights = np.zeros(self.dims, dtype=self.dtype)
        self.sums: np.ndarray | None = None
        self._channel_axis: bool | None = None

    def add(self, space_slice: Sequence[slice], data: np.ndarray, weight=1.0) -> None:
        """Add ``data`` (window shape, optionally + channels) at ``space_slice`` with ``weight``.

        ``weight`` is a number or an array of the window's spatial shape (e.g. a
        taper that trusts window centres more than edges).
        """
        data = np.asarray(data)
        nd = len(self.dims)
        window = tuple((s.stop - s.start) for s in space_slice)
        if len(window) != nd or data.shape[:nd] != window or data.ndim not in (nd, nd + 1):
            raise TargetError(f"prediction of shape {data.shape} does not fit window {tuple(space_slice)} "
                              f"of an image of dims {self.dims}")
        if self.sums is None:
            self._channel_axis = data.ndim == nd + 1
            self.sums = np.zeros(self.dims + data.shape[nd:], dtype=self.dtype)
        elif (data.ndim == nd + 1) != self._channel_axis or data.shape[nd:] != self.sums.shape[nd:]:
            raise TargetError(f"prediction of shape {data.shape} has other channels than earlier ones "
                              f"({self.sums.shape[nd:]})")
        inside, local = [], []
        for s, n in zip(space_slice, self.dims):
            lo, hi = max(s.start, 0), min(s.stop, n)
            if hi <= lo:
                return
            inside.append(slice(lo, hi))
            local.append(slice(lo - s.start, hi - s.start))
        inside, local = tuple(inside), tuple(local)
        weight = np.broadcast_to(np.asarray(weight, dtype=self.dtype), window)[local]
        part = data[local].astype(self.dtype, copy=False)
        self.sums[inside] += part * (weight[..., None] if self._channel_axis else weight)
        self.weights[inside] += weight

    def finalize(self, dtype=None) -> np.ndarray:
        """The weighted average per pixel (``fill`` where nothing was added), as ``dtype``."""
        if self.sums is None:
            return np.full(self.dims, self.fill, dtype=dtype or self.dtype)
        covered = self.weights > 0
        denom = np.where(covered, self.weights, 1)
        out = self.sums / (denom[..., None] if self._channel_axis else denom)
        out[~covered] = self.fill
        return out if dtype is None else out.astype(dtype)
