"""Sampling strategies: which windows to read, as target dicts ``load_sample`` reads.

Modules, bottom up (each imports only those above it in this list):

- :mod:`~ndpatch.sampling.geometry`: placements, grids (``kwarray.SlidingWindow``), free positions, hit tests
- :mod:`~ndpatch.sampling.blocks`: block splits (other splits' blocks as obstacles)
- :mod:`~ndpatch.sampling.table`: the targets table and its hit tests
- :mod:`~ndpatch.sampling.balance`: coverage cycles, category balance
- :mod:`~ndpatch.sampling.config`: :class:`SamplingConfig`
- :mod:`~ndpatch.sampling.positives`, :mod:`~ndpatch.sampling.negatives`: one window each
- :mod:`~ndpatch.sampling.random_windows`: :class:`RandomWindows`, area-weighted random windows
- :mod:`~ndpatch.sampling.video_table`, :mod:`~ndpatch.sampling.video`: space-time (:class:`VideoRegions`)
- :mod:`~ndpatch.sampling.regions`: :class:`Regions` (``sampler.regions``)
"""
from ndpatch.sampling.config import SamplingConfig
from ndpatch.sampling.random_windows import RandomWindows
from ndpatch.sampling.regions import Regions
from ndpatch.sampling.video import VideoRegions

__all__ = ["RandomWindows", "Regions", "SamplingConfig", "VideoRegions"]
