"""The window of a positive: around an annotation, fixed or fitted, jittered, kept inside its split.

Example:
    >>> from ndpatch.sampling.config import SamplingConfig
    >>> from ndpatch.sampling.table import TargetsTable
    >>> table = TargetsTable({"images": [{"id": 1, "width": 40, "height": 30}],
    ...                       "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 10, 4, 6]}]})
    >>> positive_window(table, SamplingConfig(context=2.0), 0, None)
    (12.0, 13.0, 12, 8, True)
"""
from __future__ import annotations

import math

import numpy as np

from ndpatch.sampling.blocks import placed_start
from ndpatch.sampling.config import SamplingConfig


def fitted_dims(columns: dict[str, np.ndarray], config: SamplingConfig, row: int,
                scale: float = 1.0) -> tuple[int, int]:
    """(height, width) of row ``row``'s positive: ``window_dims``, else its box × context × ``scale``."""
    if config.window_dims is not None:
        return config.window_dims
    return (math.ceil(max(float(columns["height"][row]), 1.0) * config.context * scale),
            math.ceil(max(float(columns["width"][row]), 1.0) * config.context * scale))


def smallest_scale(config: SamplingConfig) -> float:
    """The smallest window scale ``scale_jitter`` draws."""
    return math.exp(-math.log1p(config.scale_jitter))


def positive_window(table, config: SamplingConfig, row: int,
                    gen: np.random.Generator | None) -> tuple[float, float, int, int, bool]:
    """``(cx, cy, height, width, placed)`` of the window around table row ``row``.

    Jitter draws from ``gen`` (needed when configured). In a block-split image
    the window is moved inside the split (a scale-jittered window that cannot
    stay inside falls back to the smallest scale); ``placed`` is False when no
    window of that size can, and the size is the one that failed.
    """
    columns = table.columns
    cx, cy = float(columns["cx"][row]), float(columns["cy"][row])
    scale = math.exp(gen.uniform(-1, 1) * math.log1p(config.scale_jitter)) if config.scale_jitter else 1.0
    dims = fitted_dims(columns, config, row, scale)
    if config.center_jitter:
        dx, dy = gen.uniform(-1, 1, size=2) * config.center_jitter / 2
        cx, cy = cx + dx * dims[1], cy + dy * dims[0]
    img = table.image_row(int(columns["gid"][row])) if table.obstacles is not None else None
    if img is None or table.foreign_bounds(img) is None:
        return cx, cy, *dims, True
    y0, x0 = placed_start(table, img, row, cx, cy, dims)[0]
    if math.isnan(y0) and config.scale_jitter:
        dims = fitted_dims(columns, config, row, smallest_scale(config))
        y0, x0 = placed_start(table, img, row, cx, cy, dims)[0]
    if math.isnan(y0):
        return cx, cy, *dims, False
    return x0 + dims[1] / 2, y0 + dims[0] / 2, *dims, True
