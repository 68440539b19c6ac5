"""Random windows anywhere in the dataset, images weighted by area (torchgeo's ``RandomGeoSampler``).

Each draw picks an image with probability proportional to its area in pixels,
then a window start uniformly among the integer starts whose window lies inside
the image. Images smaller than the window (on either axis) are skipped, unless
``pad=True``: then they are drawn too, and on an axis shorter than the window
the start is drawn among those whose window covers the image (the rest is
padding). A block-split image (``ndpatch split --by block``) counts the area of
its own split's blocks only and draws among the starts whose window meets no
other split's block. Windows ignore annotations: this is the stream for
segmentation and self-supervised training over whole scenes. Draws follow
:mod:`ndpatch.rng` (an int seed gives the same windows run to run, and each
DataLoader worker and rank its own stream).

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> windows = RandomWindows(sampler, (64, 64), length=3, rng=0)
    >>> targets = list(windows)
    >>> len(targets), targets[0]["space_slice"][0].stop - targets[0]["space_slice"][0].start
    (3, 64)
    >>> [t["space_slice"] for t in RandomWindows(sampler, (64, 64), length=3, rng=0)] == \\
    ...     [t["space_slice"] for t in targets]
    True
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from ndpatch.errors import SamplingError, TargetError
from ndpatch.rng import ProcessStream, RngLike
from ndpatch.sampling.geometry import free_positions, placement_range, random_free_start


class RandomWindows:
    """An epoch of ``length`` random windows of ``window_dims`` = (height, width), drawn as in the module doc.

    Args:
        sampler: a :class:`~ndpatch.sampler.CocoSampler` (its images table is read; no pixels).
        window_dims: (height, width) of every window.
        length: windows per epoch (``len``, what one iteration yields); default: the
            number of non-overlapping windows that tile the drawable images (torchgeo's).
        pad: also draw images smaller than the window, padded.
        gids: draw from these images only (default: every image).
        rng: the stream's seed or Generator (:mod:`ndpatch.rng`).
    """

    def __init__(self, sampler, window_dims: Sequence[int], length: int | None = None, pad: bool = False,
                 gids: Sequence[int] | None = None, rng: RngLike = None):
        if len(window_dims) != 2 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in window_dims):
            raise TargetError(f"window_dims must be (height, width) in whole pixels >= 1, got {window_dims!r}")
        self.window_dims = (int(window_dims[0]), int(window_dims[1]))
        self.pad = bool(pad)
        self._stream = ProcessStream(rng)
        table = sampler.regions.table
        rows = range(len(table.images["gid"])) if gids is None else [table.image_row(g) for g in gids]
        self.gids: list[int] = []
        self._places: list[tuple[tuple[int, int], np.ndarray | None]] = []  # (image dims, free starts or None)
        weights, tiles = [], 0
        h, w = self.window_dims
        for img in rows:
            height, width = int(table.images["height"][img]), int(table.images["width"][img])
            if not pad and (height < h or width < w):
                continue
            foreign = table.foreign_bounds(img)
            free = None if foreign is None else free_positions(foreign, (height, width), self.window_dims)
            if free is not None and not len(free):
                continue
            area = height * width if foreign is None else height * width - _area(foreign)
            self.gids.append(int(table.images["gid"][img]))
            self._places.append(((height, width), free))
            weights.append(float(area))
            tiles += _tiles(height, h) * _tiles(width, w)
        if not self.gids:
            raise SamplingError(f"no image of dataset {sampler.dset.fpath} has room for a {h}x{w} window"
                                f"{'' if pad else ' (pad=True also draws smaller images, padded)'}")
        self._cumulative = np.cumsum(weights) / np.sum(weights)
        self.length = tiles if length is None else int(length)
        if self.length < 0:
            raise TargetError(f"length must be >= 0, got {length!r}")

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[dict]:
        gen = self._stream.generator()
        for _ in range(self.length):
            yield self.draw(gen)

    def draw(self, rng: RngLike = None) -> dict:
        """One window: ``{'gid', 'space_slice'}`` (``rng``: a seed or Generator, else the stream)."""
        gen = self._stream.generator(rng)
        i = min(int(np.searchsorted(self._cumulative, gen.random(), side="right")), len(self.gids) - 1)
        (height, width), free = self._places[i]
        h, w = self.window_dims
        if free is None:
            (ylo, yhi), (xlo, xhi) = placement_range(height, h), placement_range(width, w)
            y0, x0 = int(gen.integers(ylo, yhi + 1)), int(gen.integers(xlo, xhi + 1))
        else:  # a block-split image: among the starts that meet no other split's block
            y0, x0 = random_free_start(free, gen)
        return {"gid": self.gids[i], "space_slice": (slice(y0, y0 + h), slice(x0, x0 + w))}


def _tiles(length: int, window: int) -> int:
    """Non-overlapping windows that tile an axis (the last one may run past it): at least one."""
    return max(math.ceil((length - window) / window) + 1, 1)


def _area(bounds) -> float:
    """The total area of non-overlapping boxes ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = bounds
    return float(((x1 - x0) * (y1 - y0)).sum())
