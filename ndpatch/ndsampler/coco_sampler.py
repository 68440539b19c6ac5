"""ndsampler's ``coco_sampler`` module: :class:`CocoSampler` is :class:`ndpatch.CocoSampler`.

Example:
    >>> from ndpatch.ndsampler.coco_sampler import CocoSampler
    >>> CocoSampler.demo("shapes8").load_sample({"gid": 1, "cx": 5, "cy": 2, "width": 6, "height": 6})["im"].shape
    (6, 6, 3)
"""
from ndpatch.sampler import CocoSampler
from ndpatch.target import Window, window_from_center


def _center_extent_to_slice(center: tuple[float, float], window_dims: tuple[int, int]) -> Window:
    """ndsampler's helper: the window of ``window_dims`` (height, width) centred at ``center`` (cy, cx).

    >>> _center_extent_to_slice((2, 5), (6, 6))
    (slice(-1, 5, None), slice(2, 8, None))
    """
    return window_from_center(center[1], center[0], window_dims[1], window_dims[0])


__all__ = ["CocoSampler"]
