"""Put window predictions back together into whole-image arrays, in RAM or on disk.

A :class:`Stitcher` holds a weighted sum and a weight total for one image.
Each ``add(space_slice, data, weight)`` adds a window's prediction (per-pixel
scores, masks, any channel count; windows may run past the image, the outside
part is dropped); ``finalize()`` divides, so overlaps are weighted averages.
Works for any number of spatial axes (``dims``), e.g. (height, width) or
(time, height, width).

Accumulators are float32 by default. Those that would take more than
``max_ram_bytes`` (default :data:`MAX_RAM_BYTES`) live in memory-mapped temporary
files under ``workdir`` (default: the system temp dir), unlinked at once so
nothing is left behind; ``finalize`` then writes the result the same way,
strip by strip, so a scene larger than RAM is stitched with bounded memory and
the same values as in RAM. (``kwarray.Stitcher`` can memmap its accumulators
but divides whole arrays in RAM, keeps a weight per channel and leaves its
files on disk.)

Example:
    >>> import numpy as np
    >>> stitcher = Stitcher((2, 3))
    >>> stitcher.add((slice(0, 2), slice(0, 2)), np.full((2, 2, 1), 1.0))
    >>> stitcher.add((slice(0, 2), slice(1, 3)), np.full((2, 2, 1), 3.0))
    >>> stitcher.finalize()[..., 0].tolist()
    [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    >>> on_disk = Stitcher((2, 3), max_ram_bytes=0)      # every accumulator memory-mapped
    >>> on_disk.add((slice(0, 2), slice(0, 2)), np.full((2, 2, 1), 1.0))
    >>> on_disk.add((slice(0, 2), slice(1, 3)), np.full((2, 2, 1), 3.0))
    >>> type(on_disk.weights).__name__, on_disk.finalize()[..., 0].tolist()
    ('memmap', [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from ndpatch.errors import TargetError

#: Accumulators beyond this many bytes (per stitcher) are memory-mapped files, not RAM.
MAX_RAM_BYTES = int(os.environ.get("NDPATCH_STITCH_RAM_MB", "1024")) << 20
#: Bytes of temporary arrays ``finalize`` works on at a time when the result is on disk.
STRIP_BYTES = 16 << 20


class Stitcher:
    """Accumulates window predictions into an array of shape ``dims`` (+ channels).

    Args:
        dims: the image's spatial shape, e.g. ``(height, width)``.
        dtype: the accumulator type (float32; float64 keeps large integer sums exact).
        fill: the value of pixels that no window covered.
        max_ram_bytes: accumulators (weights, then sums) that would bring this
            stitcher's RAM above this go to memory-mapped temporary files.
        workdir: the folder of those files (default: the system temp dir).
    """

    def __init__(self, dims: Sequence[int], dtype=np.float32, fill: float = np.nan,
                 max_ram_bytes: int | None = None, workdir: str | os.PathLike | None = None):
        self.dims = tuple(int(d) for d in dims)
        self.dtype = np.dtype(dtype)
        self.fill = fill
        self.max_ram_bytes = MAX_RAM_BYTES if max_ram_bytes is None else int(max_ram_bytes)
        self.workdir = None if workdir is None else os.fspath(workdir)
        self._ram_bytes = 0
        self.weights = self._zeros(self.dims, self.dtype)
        self.sums: np.ndarray | None = None
        self._channel_axis: bool | None = None

    def _zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A zeroed array: in RAM within the budget, else a memmap of an unlinked temporary file."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if self._ram_bytes + nbytes <= self.max_ram_bytes:
            self._ram_bytes += nbytes
            return np.zeros(shape, dtype=dtype)
        with tempfile.TemporaryFile(dir=self.workdir, prefix="ndpatch-stitch-") as file:
            if nbytes == 0:
                return np.zeros(shape, dtype=dtype)
            return np.memmap(file, dtype=dtype, mode="w+", shape=shape)  # sparse: zero until written

    @property
    def on_disk(self) -> bool:
        """Whether the sums (or the weights) are memory-mapped files."""
        return isinstance(self.weights, np.memmap) or isinstance(self.sums, np.memmap)

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
            self.sums = self._zeros(self.dims + data.shape[nd:], self.dtype)
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

    def finalize(self, dtype=None, out: np.ndarray | None = None) -> np.ndarray:
        """The weighted average per pixel (``fill`` where nothing was added), as ``dtype``.

        ``out`` (e.g. ``np.lib.format.open_memmap`` of a ``.npy`` to keep) receives
        the result; else it is made in RAM, or memory-mapped when the
        accumulators are. Computed strip by strip along the first axis.
        """
        dtype = np.dtype(dtype or self.dtype)
        shape = self.dims + (() if self.sums is None else self.sums.shape[len(self.dims):])
        if out is None:
            out = self._zeros(shape, dtype) if self.on_disk else np.empty(shape, dtype=dtype)
        elif out.shape != shape:
            raise TargetError(f"finalize: out is {out.shape}, the stitched array is {shape}")
        if self.sums is None:
            out[...] = self.fill
            return out
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * 8)
        step = max(1, STRIP_BYTES // row_bytes) if self.on_disk else max(1, shape[0])
        for r0 in range(0, shape[0], step):
            rows = slice(r0, min(r0 + step, shape[0]))
            weights = self.weights[rows]
            covered = weights > 0
            denom = np.where(covered, weights, 1)
            strip = self.sums[rows] / (denom[..., None] if self._channel_axis else denom)
            strip[~covered] = self.fill
            out[rows] = strip
        return out
