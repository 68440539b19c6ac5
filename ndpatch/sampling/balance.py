"""Drawing positives: coverage epochs, optionally balanced over categories or the category tree.

:class:`CoverageCycle` visits every member of a group once per pass (a fresh
permutation each pass); :func:`category_probabilities` weighs categories level
by level down the category tree; :class:`BalancedCycle` combines them into the
positive draws of :class:`~ndpatch.sampling.regions.Regions`.

Example:
    >>> cycle = BalancedCycle(np.arange(4), np.array([1, 1, 1, 2]), balance="category")
    >>> rng = np.random.default_rng(0)
    >>> sorted(set(cycle.draw(rng) for _ in range(40)))
    [0, 1, 2, 3]
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def category_probabilities(counts: dict[int, int], children: dict[int, list[int]] | None = None,
                           power: float = 1.0) -> dict[int, float]:
    """Probability of drawing each category, balanced level by level down the category tree.

    At each node the options are the node's own annotations and each child
    subtree that has any; option ``o`` gets weight ``count(o) ** (1 - power)``:
    ``power=1`` splits evenly (so a rare leaf keeps its branch's share),
    ``power=0`` follows the counts, ``0.5`` is in between. Without ``children``
    every category is its own root: uniform over categories at ``power=1``.

    >>> category_probabilities({1: 900, 2: 90, 3: 10})
    {1: 0.3333333333333333, 2: 0.3333333333333333, 3: 0.3333333333333333}
    >>> category_probabilities({2: 900, 3: 90, 5: 10}, children={1: [2, 3], 4: [5]})
    {2: 0.25, 3: 0.25, 5: 0.5}
    """
    children = children or {}
    nodes = set(counts) | set(children) | {c for cs in children.values() for c in cs}
    has_parent = {c for cs in children.values() for c in cs}
    subtree: dict[int, int] = {}

    def total(node: int) -> int:
        if node not in subtree:
            subtree[node] = counts.get(node, 0) + sum(total(c) for c in children.get(node, ()))
        return subtree[node]

    probs: dict[int, float] = defaultdict(float)

    def spread(node: int | None, options: list[int], mass: float) -> None:
        own = counts.get(node, 0) if node is not None else 0
        sizes = ([own] if own else []) + [total(c) for c in options]
        weights = np.asarray(sizes, dtype=np.float64) ** (1.0 - power)
        weights = weights / weights.sum()
        if own:
            probs[node] += mass * float(weights[0])
            weights = weights[1:]
        for child, share in zip(options, weights.tolist()):
            spread(child, [c for c in children.get(child, ()) if total(c) > 0], mass * share)

    roots = sorted(node for node in nodes - has_parent if total(node) > 0)
    if roots:
        spread(None, roots, 1.0)
    return {c: probs[c] for c in sorted(probs)}


class CoverageCycle:
    """Draw members of groups so that each group visits all its members once per pass.

    ``group`` gives each member's group (0..n_groups-1); each pass over a group
    is a fresh permutation. O(1) amortised per draw.

    >>> cycle = CoverageCycle(np.zeros(4, int), 1)
    >>> rng = np.random.default_rng(0)
    >>> sorted(cycle.draw(0, rng) for _ in range(4))
    [0, 1, 2, 3]
    """

    def __init__(self, group: np.ndarray, n_groups: int):
        self.order = np.argsort(group, kind="stable")
        self.start = np.searchsorted(group[self.order], np.arange(n_groups), "left")
        self.stop = np.searchsorted(group[self.order], np.arange(n_groups), "right")
        self.cursor = self.stop - self.start  # every group starts "exhausted": shuffle on first use

    def draw(self, g: int, rng: np.random.Generator) -> int:
        start, stop = self.start[g], self.stop[g]
        if self.cursor[g] >= stop - start:
            rng.shuffle(self.order[start:stop])
            self.cursor[g] = 0
        member = int(self.order[start + self.cursor[g]])
        self.cursor[g] += 1
        return member


def category_children(categories: list[dict]) -> dict[int, list[int]]:
    """Each category id's child ids, from COCO categories with ``supercategory`` / ``parents``."""
    import kwcoco
    tree = kwcoco.CategoryTree.from_coco(categories)
    return {tree.node_to_id[node]: [tree.node_to_id[c] for c in tree.graph.successors(node)]
            for node in tree.graph.nodes}


class BalancedCycle:
    """Draw table rows in coverage epochs, uniformly or balanced over categories.

    Args:
        rows: the table rows to draw.
        category_ids: the category of each table row (indexed by row).
        balance: None (every row alike), ``'category'`` or ``'hierarchy'``.
        power: see :func:`category_probabilities`.
        categories: the COCO categories (for ``'hierarchy'``).
    """

    def __init__(self, rows: np.ndarray, category_ids: np.ndarray, balance: str | None = None,
                 power: float = 1.0, categories: list[dict] | None = None):
        self.rows = rows
        if balance is None:
            self.cycle = CoverageCycle(np.zeros(len(rows), np.int64), 1)
            self.cum_probs = np.array([1.0])
            return
        cids, group, counts = np.unique(category_ids[rows], return_inverse=True, return_counts=True)
        children = category_children(categories or []) if balance == "hierarchy" else None
        probs = category_probabilities(dict(zip(cids.tolist(), counts.tolist())), children, power)
        self.cycle = CoverageCycle(group, len(cids))
        self.cum_probs = np.cumsum([probs.get(c, 0.0) for c in cids.tolist()])
        self.cum_probs /= self.cum_probs[-1]

    def _category(self, rng: np.random.Generator) -> int:
        cum = self.cum_probs
        return min(int(np.searchsorted(cum, rng.random(), side="right")), len(cum) - 1) if len(cum) > 1 else 0

    def draw(self, rng: np.random.Generator) -> int:
        """The next row: a category by its probability, then that category's next row of its epoch."""
        return int(self.rows[self.cycle.draw(self._category(rng), rng)])

    def sample(self, rng: np.random.Generator) -> int:
        """A row drawn afresh (no epoch state): a category by its probability, then any of its rows."""
        cycle, g = self.cycle, self._category(rng)
        return int(self.rows[cycle.order[cycle.start[g] + int(rng.integers(cycle.stop[g] - cycle.start[g]))]])
