"""ndsampler's ``coco_sampler`` module: :class:`CocoSampler` is :class:`ndpatch.CocoSampler`.

Example:
    >>> from ndpatch.ndsampler.coco_sampler import CocoSampler
    >>> CocoSampler.demo("shapes8").load_sample({"gid": 1, "cx": 5, "cy": 2, "width": 6, "height": 6})["im"].shape
    (6, 6, 3)
"""
from ndpatch.sampler import CocoSampler

__all__ = ["CocoSampler"]
