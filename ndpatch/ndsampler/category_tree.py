"""ndsampler's ``category_tree`` module: ``CategoryTree`` is kwcoco's (what ``sampler.classes`` returns).

ndsampler 0.8.1 adds torch helpers for hierarchical softmax to it
(``conditional_log_softmax``, ...); ndpatch does not (docs/porting.md).

Example:
    >>> from ndpatch.ndsampler.category_tree import CategoryTree
    >>> CategoryTree.coerce(["cat", "dog"]).idx_to_node
    ['cat', 'dog']
"""
from kwcoco import CategoryTree

__all__ = ["CategoryTree"]
