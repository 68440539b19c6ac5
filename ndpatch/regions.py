"""The names ``ndpatch.regions`` has always offered; the code lives in :mod:`ndpatch.sampling`.

Example:
    >>> from ndpatch.regions import Regions, grid_starts
    >>> Regions.__module__, grid_starts.__module__
    ('ndpatch.sampling.regions', 'ndpatch.sampling.geometry')
"""
from ndpatch.sampling.balance import CoverageCycle, category_probabilities
from ndpatch.sampling.blocks import split_obstacles
from ndpatch.sampling.config import SamplingConfig
from ndpatch.sampling.geometry import (axis_starts, box_hits, centre_starts, extent_hits, free_positions, free_spans,
                                       grid_starts, nearest_free_position, placement_range, strided_starts)
from ndpatch.sampling.regions import Regions
from ndpatch.sampling.table import TABLE_COLUMNS, build_targets

__all__ = ["TABLE_COLUMNS", "CoverageCycle", "Regions", "SamplingConfig", "axis_starts", "box_hits",
           "build_targets", "category_probabilities", "centre_starts", "extent_hits", "free_positions",
           "free_spans", "grid_starts", "nearest_free_position", "placement_range", "split_obstacles",
           "strided_starts"]
