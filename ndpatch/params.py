"""A sample's ``params``: ndsampler's window parameters, built the first time one is read.

:meth:`CocoSampler.load_sample` returns ``params`` as a read-only mapping with
ndsampler's keys (``offset``, ``tf_rel_to_abs``, ``sample_tlbr``, ``st_dims``,
``data_dims``, ``pad``) and ndpatch's (``scale``, ``valid_fraction``,
``geotransform``, ``crs``). Its kwimage objects (an ``Affine``, ``Boxes``)
cost more to build than reading a small window from a memmap, so every value
is computed on first access; what depends on the pixels (the valid fraction of
a window with nodata or a scale) is computed when the sample is read, so an
in-place augmentation of ``im`` cannot change it. ``dict(params)`` is a plain
dict, and params pickle as one.

Example:
    >>> params = SampleParams(2, -1, 8, 5, 1.0, (70, 90), (0, 0), None)
    >>> params["st_dims"], params["offset"].tolist(), round(params["valid_fraction"], 3)
    ([(-1, 5), (2, 8)], [-2, 1], 0.833)
    >>> params["tf_rel_to_abs"].matrix[:2, 2].tolist(), sorted(params) == sorted(SampleParams.KEYS)
    ([2.0, -1.0], True)
"""
from __future__ import annotations

from collections.abc import Mapping

import kwimage
import numpy as np

from ndpatch.geo import Georef
from ndpatch.target import window_params


def window_affine(x0: int, y0: int, scale: float = 1.0) -> kwimage.Affine:
    """Sample pixels → image pixels of a window whose pixel (0, 0) is image ``(x0, y0)``, read at ``scale``."""
    tf = kwimage.Affine(np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]]))
    return tf if scale == 1 else tf @ kwimage.Affine.scale(1 / scale)


class SampleParams(Mapping):
    """The params of one sample (see the module doc); ``valid_fraction=None``: from the window's extent alone."""

    KEYS = ("offset", "tf_rel_to_abs", "sample_tlbr", "st_dims", "data_dims", "pad", "scale",
            "valid_fraction", "geotransform", "crs")
    __slots__ = ("_args", "_values")

    def __init__(self, x0: int, y0: int, x1: int, y1: int, scale: float, data_dims: tuple[int, int],
                 pad: tuple[int, int], georef: Georef | None, valid_fraction: float | None = None):
        self._args = (x0, y0, x1, y1, scale, data_dims, pad, georef, valid_fraction)
        self._values: dict | None = None

    def _build(self) -> dict:
        x0, y0, x1, y1, scale, data_dims, pad, georef, valid_fraction = self._args
        tf = window_affine(x0, y0, scale)
        if valid_fraction is None:  # every pixel is valid where the window meets the image
            rows_in = max(0, min(y1, data_dims[0]) - max(y0, 0))
            cols_in = max(0, min(x1, data_dims[1]) - max(x0, 0))
            valid_fraction = (rows_in / (y1 - y0)) * (cols_in / (x1 - x0))
        return {**window_params(x0, y0, x1, y1, tf, data_dims, pad), "scale": scale,
                "valid_fraction": valid_fraction,
                "geotransform": None if georef is None else georef.warped(tf).geotransform(),
                "crs": None if georef is None else georef.crs_wkt}

    def __getitem__(self, key: str):
        if self._values is None:
            self._values = self._build()
        return self._values[key]

    def __iter__(self):
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __reduce__(self):
        return dict, (dict(self.items()),)

    def __repr__(self) -> str:
        x0, y0, x1, y1 = self._args[:4]
        return f"SampleParams(x {x0}:{x1}, y {y0}:{y1}, scale {self._args[4]})"
