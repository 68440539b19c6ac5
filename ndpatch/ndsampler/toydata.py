"""ndsampler's ``toydata`` module: ``DynamicToySampler``, toy detection windows drawn on the fly.

Each window is a fresh toy image from kwcoco's generator
(``kwcoco.demo.toydata_image.demodata_toy_img``): positives hold at least one
object, negatives none. The same ``seed`` and index give the same window.

Example:
    >>> sampler = DynamicToySampler(n_positives=10, seed=0)
    >>> sample = sampler.load_positive(0, window_dims=(64, 64))
    >>> sample["im"].shape[:2], len(sample["annots"]["aids"]) > 0, len(sampler)
    ((64, 64), True, 20)
"""
from __future__ import annotations

import numpy as np

from ndpatch.ndsampler.abstract_sampler import AbstractSampler


class DynamicToySampler(AbstractSampler):
    """Toy windows generated on demand: ``n_positives`` positives, as many negatives.

    Args:
        n_positives: how many positives (and negatives) the sampler has.
        seed: makes window ``index`` the same every time (None: a fresh one each time).
        gsize: default window (width, height).
        categories: kwcoco toy category names (default: kwcoco's).
    """

    def __init__(self, n_positives: float = 1e5, seed: int | None = None, gsize=(416, 416), categories=None):
        import kwcoco
        from kwcoco.demo.toypatterns import CategoryPatterns
        self.catpats = CategoryPatterns.coerce(categories)
        names = ["background"] + [cat["name"] for cat in self.catpats]
        self.catgraph = kwcoco.CategoryTree.coerce(names)
        self.cname_to_cid = {name: i for i, name in enumerate(names)}
        self.BACKGROUND_CLASS_ID = 0
        self._n_positives = int(n_positives)
        self._gsize = tuple(gsize)
        self.seed = seed

    @property
    def classes(self):
        return self.catgraph

    @property
    def class_ids(self) -> list[int]:
        return list(self.cname_to_cid.values())

    @property
    def n_positives(self) -> int:
        return self._n_positives

    def __len__(self) -> int:
        return self._n_positives * 2

    def lookup_class_name(self, class_id: int) -> str:
        return {cid: name for name, cid in self.cname_to_cid.items()}[class_id]

    def lookup_class_id(self, class_name: str) -> int:
        return self.cname_to_cid[class_name]

    def preselect(self, **kwargs):
        return self._n_positives, self._n_positives

    def _window(self, index, positive: bool, window_dims, pad) -> dict:
        import kwimage
        from kwcoco.demo.toydata_image import demodata_toy_img
        height, width = window_dims or self._gsize[::-1]
        pad = 0 if pad is None else int(np.max(pad))
        seed = None if self.seed is None or index is None else hash((self.seed, positive, int(index))) % 2**32
        rng = np.random.default_rng(seed)
        img, anns = demodata_toy_img(image_size=(width + 2 * pad, height + 2 * pad), categories=self.catpats,
                                     n_annots=(1, 4) if positive else (0, 0), centerobj="pos" if positive else None,
                                     rng=np.random.RandomState(int(rng.integers(2**31))))
        boxes = kwimage.Boxes(np.array([ann["bbox"] for ann in anns], dtype=np.float64).reshape(-1, 4), "xywh")
        cids = np.array([self.cname_to_cid[ann["category_name"]] for ann in anns], dtype=np.int64)
        target = {"index": index, "label": "positive" if positive else "negative",
                  "category_id": int(cids[0]) if positive and len(cids) else self.BACKGROUND_CLASS_ID}
        im = np.ascontiguousarray(np.atleast_3d(img["imdata"]))
        return {"im": im, "target": target, "tr": target, "classes": self.catgraph,
                "annots": {"aids": np.arange(len(anns)), "cids": cids, "rel_boxes": boxes}}

    def load_positive(self, index=None, pad=None, window_dims=None, rng=None) -> dict:
        return self._window(index, True, window_dims, pad)

    def load_negative(self, index=None, pad=None, window_dims=None, rng=None) -> dict:
        return self._window(index, False, window_dims, pad)

    def load_item(self, index: int, pad=None, window_dims=None) -> dict:
        if index < self._n_positives:
            return self.load_positive(index, pad=pad, window_dims=window_dims)
        return self.load_negative(index - self._n_positives, pad=pad, window_dims=window_dims)


__all__ = ["DynamicToySampler"]
