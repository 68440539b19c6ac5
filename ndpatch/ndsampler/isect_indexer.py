"""ndsampler's ``isect_indexer`` module: :class:`FrameIntersectionIndex` (vectorised; no quad-tree or rtree).

Example:
    >>> from ndpatch.ndsampler.isect_indexer import FrameIntersectionIndex
    >>> import kwimage
    >>> index = FrameIntersectionIndex.demo("shapes8")
    >>> aids, ious = index.ious(1, kwimage.Boxes([0, 10, 100, 100], "xywh"))
    >>> len(aids) == len(ious)
    True
"""
from ndpatch.sampling.isect import FrameIntersectionIndex

#: ndsampler chose rtree over pyqtree by this flag; ndpatch needs neither.
USE_RTREE = False

__all__ = ["FrameIntersectionIndex", "USE_RTREE"]
