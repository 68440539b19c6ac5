"""``import ndpatch.ndsampler as ndsampler``: ndsampler 0.8.1's public API, backed by ndpatch.

The same top-level names and submodules as ndsampler 0.8.1 (``coco_sampler``,
``coco_regions``, ``coco_frames``, ``abstract_frames``, ``abstract_sampler``,
``isect_indexer``, ``category_tree``, ``toydata``); ``CocoSampler`` *is*
:class:`ndpatch.CocoSampler`. docs/porting.md maps every name and lists the
deliberate differences.

Example:
    >>> import ndpatch
    >>> import ndpatch.ndsampler as ndsampler
    >>> ndsampler.CocoSampler is ndpatch.CocoSampler
    True
    >>> sampler = ndsampler.CocoSampler.demo("shapes8")
    >>> sampler.load_sample({"gid": 1, "slices": (slice(0, 64), slice(0, 32))})["im"].shape
    (64, 32, 3)
"""
from ndpatch.ndsampler import (abstract_frames, abstract_sampler, category_tree, coco_frames, coco_regions,
                               coco_sampler, isect_indexer, toydata)
from ndpatch.ndsampler.abstract_frames import Frames, SimpleFrames
from ndpatch.ndsampler.abstract_sampler import AbstractSampler, HashIdentifiable
from ndpatch.ndsampler.category_tree import CategoryTree
from ndpatch.ndsampler.coco_frames import CocoFrames
from ndpatch.ndsampler.coco_regions import (CocoRegions, MissingNegativePool, Targets, new_image_sample_grid,
                                            new_video_sample_grid, select_positive_regions, tabular_coco_targets)
from ndpatch.ndsampler.coco_sampler import CocoSampler
from ndpatch.ndsampler.isect_indexer import FrameIntersectionIndex
from ndpatch.ndsampler.toydata import DynamicToySampler

#: The ndsampler API version this package provides (ndpatch's own is ``ndpatch.__version__``).
__version__ = "0.8.1"

__all__ = ["AbstractSampler", "CategoryTree", "CocoFrames", "CocoRegions", "CocoSampler", "DynamicToySampler",
           "FrameIntersectionIndex", "Frames", "HashIdentifiable", "MissingNegativePool", "SimpleFrames",
           "Targets", "abstract_frames", "abstract_sampler", "category_tree", "coco_frames", "coco_regions",
           "coco_sampler", "isect_indexer", "new_image_sample_grid", "new_video_sample_grid",
           "select_positive_regions", "tabular_coco_targets", "toydata"]
