"""ndsampler's ``category_tree`` module: ``CategoryTree`` is kwcoco's (what ``sampler.classes`` returns).

``source_nodes`` / ``sink_nodes`` are kwcoco's; ``gini`` and ``entropy`` score
class probabilities. ndsampler 0.8.1 also mixes torch helpers for
hierarchical softmax into its tree (``Mixin_CategoryTree_Torch``:
``conditional_log_softmax``, ...); ndpatch does not (docs/porting.md).

Example:
    >>> from ndpatch.ndsampler.category_tree import CategoryTree, entropy, gini
    >>> CategoryTree.coerce(["cat", "dog"]).idx_to_node
    ['cat', 'dog']
    >>> probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    >>> gini(probs).tolist(), entropy(probs).tolist()
    ([0.5, 0.0], [1.0, 0.0])
"""
import numpy as np
from kwcoco import CategoryTree
from kwcoco.category_tree import sink_nodes, source_nodes


def gini(probs, axis: int = 1, impl=np):
    """Gini impurity ``1 - sum(p ** 2)`` along ``axis`` (``impl``: numpy or a ``kwarray.ArrayAPI``)."""
    return 1 - impl.sum(probs ** 2, axis=axis)


def entropy(probs, axis: int = 1, impl=np):
    """Shannon entropy in bits along ``axis``; zero probabilities add nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = impl.nan_to_num(impl.log2(probs), copy=False)
    return 0.0 - impl.sum(probs * logs, axis=axis)   # 0.0 - x: no -0.0 for a certain class


__all__ = ["CategoryTree", "entropy", "gini", "sink_nodes", "source_nodes"]
