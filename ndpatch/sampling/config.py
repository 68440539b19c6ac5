"""How image sampling shapes and draws windows: :class:`SamplingConfig`.

Example:
    >>> SamplingConfig(window_dims=[64, 32]).window_dims
    (64, 32)
"""
from __future__ import annotations

import dataclasses

from ndpatch.errors import TargetError


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
        max_nodata: a negative has at most this fraction of pixels that hold no
            data: outside the image, or invalid by GDAL's mask of the source (alpha
            band, ``.msk`` or internal mask, nodata value; :mod:`ndpatch.cache.validity`).
            None: not checked (checking reads the window's mask, or its pixels for a
            nodata value).
        nodata_value: a pixel value that counts as nodata instead of the source's
            mask (pixels equal to it in every band, and NaN, are invalid).
        negative_tries: random placements tried per image before an exact search.
        hit: what an annotation occupies for negatives: ``'extent'`` (its polygon
            where it has one, else its box) or ``'box'`` (its box, as ndsampler 0.8.1).
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
    hit: str = "extent"

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
        if self.hit not in ("extent", "box"):
            raise TargetError(f"hit must be 'extent' or 'box', got {self.hit!r}")
        if self.negative_tries < 1:
            raise TargetError(f"negative_tries must be at least 1, got {self.negative_tries!r}")
