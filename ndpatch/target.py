"""Targets: what a caller asks for, parsed into one small immutable value.

A target dict names an image (``gid``/``image_id``, or ``aid`` alone) and a
window: ``cx, cy, width, height`` (a centred window), ``space_slice`` (row
slice, col slice), ``aid`` alone (that annotation's box) or nothing (the whole
image). Optional keys: ``pad`` (context added on each side, int or
``(rows, cols)``), ``channels``, ``dtype``, ``fill`` / ``nodata``, ``scale``
(output pixels per image pixel; the window stays in image pixels),
``interpolation`` and ``antialias`` (how a scaled window is resampled).

Window rule (ndsampler 0.8.1's): on each axis ``d = ceil(size)``,
``start = floor(centre - d / 2)``, ``stop = start + d``.

Example:
    >>> window_from_center(cx=5, cy=2, width=6, height=6)
    (slice(-1, 5, None), slice(2, 8, None))
    >>> t = Target(gid=1, space_slice=(slice(-1, 5), slice(2, 8)), pad=(1, 3))
    >>> t.rows, t.cols, t.shape
    (slice(-2, 6, None), slice(-1, 11, None), (8, 12))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import kwimage
import numpy as np

from ndpatch.errors import TargetError

Window = tuple[slice, slice]


def window_from_center(cx: float, cy: float, width: float, height: float) -> Window:
    """The (row slice, col slice) of a window of the given size centred at (cx, cy)."""
    d_rows = math.ceil(height)
    d_cols = math.ceil(width)
    r0 = math.floor(cy - d_rows / 2)
    c0 = math.floor(cx - d_cols / 2)
    return slice(r0, r0 + d_rows), slice(c0, c0 + d_cols)


def clip_window(rows: slice, cols: slice, height: int, width: int) -> Window:
    """The part of a window that lies inside an image of the given size (may be empty)."""
    r0 = min(max(rows.start, 0), height)
    c0 = min(max(cols.start, 0), width)
    r1 = max(min(rows.stop, height), r0)
    c1 = max(min(cols.stop, width), c0)
    return slice(r0, r1), slice(c0, c1)


def window_params(x0: int, y0: int, x1: int, y1: int, tf_rel_to_abs, data_dims: tuple,
                  pad: tuple[int, int]) -> dict:
    """ndsampler's ``params`` of a sample whose (padded) window is ``[x0, x1) × [y0, y1)``.

    Example:
        >>> params = window_params(2, -1, 8, 5, kwimage.Affine.translate((2, -1)), (70, 90), (0, 0))
        >>> params["offset"].tolist(), params["sample_tlbr"].data.tolist(), params["st_dims"]
        ([-2, 1], [2, -1, 8, 5], [(-1, 5), (2, 8)])
    """
    return {
        "offset": np.array([-x0, -y0]),
        "tf_rel_to_abs": tf_rel_to_abs,
        "sample_tlbr": kwimage.Boxes(np.array([x0, y0, x1, y1]), "ltrb"),
        "st_dims": [(y0, y1), (x0, x1)],
        "data_dims": data_dims,
        "pad": pad,
    }


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: one image, one window, how to read it.

    ``space_slice`` is the requested window; ``rows``/``cols`` add ``pad``
    context on each side and are what is read. Both may extend past the image.
    """

    gid: int
    space_slice: Window
    pad: tuple[int, int] = (0, 0)
    channels: Any = None
    dtype: np.dtype | None = None
    fill: float | None = None
    aid: int | None = None
    scale: float = 1.0
    interpolation: str = "linear"
    antialias: bool = True
    rows: slice = field(init=False)
    cols: slice = field(init=False)

    def __post_init__(self) -> None:
        rs, cs = self.space_slice
        pr, pc = self.pad
        object.__setattr__(self, "rows", slice(rs.start - pr, rs.stop + pr))
        object.__setattr__(self, "cols", slice(cs.start - pc, cs.stop + pc))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the returned array, padding included (times ``scale``)."""
        height, width = self.rows.stop - self.rows.start, self.cols.stop - self.cols.start
        if self.scale == 1:
            return height, width
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))


def as_ints(value: Any, what: str, name: str) -> tuple[int, ...]:
    """An int or a sequence of ints as a tuple; TargetError naming ``what`` and ``name`` otherwise.

    >>> as_ints(3, "video 1", "pad"), as_ints([1, 2], "video 1", "pad")
    ((3,), (1, 2))
    """
    try:
        return tuple(int(v) for v in (value if np.ndim(value) else [value]))
    except (TypeError, ValueError):
        raise TargetError(f"{what}: {name} must be an int or ints, got {value!r}") from None


def _as_pad(pad: Any, gid: int) -> tuple[int, int]:
    if pad is None:
        return (0, 0)
    if np.isscalar(pad):
        pad = (pad, pad)
    try:
        pr, pc = (int(p) for p in pad)
    except (TypeError, ValueError):
        raise TargetError(f"image {gid}: pad must be an int or (rows, cols), got {pad!r}") from None
    if pr < 0 or pc < 0:
        raise TargetError(f"image {gid}: pad must be non-negative, got {pad!r}")
    return pr, pc


def _as_slice(s: Any, axis: str, gid: int) -> slice:
    if not isinstance(s, slice) or s.start is None or s.stop is None:
        raise TargetError(f"image {gid}: space_slice {axis} must be a slice with start and stop, got {s!r}")
    if s.step not in (None, 1):
        raise TargetError(f"image {gid}: space_slice {axis} step must be 1, got {s.step!r}")
    start, stop = int(s.start), int(s.stop)
    if stop <= start:
        raise TargetError(f"image {gid}: space_slice {axis} is empty: {s!r}")
    return slice(start, stop)


def _positive(value: Any, name: str, gid: int) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TargetError(f"image {gid}: {name} must be a number, got {value!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise TargetError(f"image {gid}: {name} must be positive, got {value!r}")
    return value


def parse_target(target: dict, *, annotation_box, image_dims) -> Target:
    """Parse a target dict into a :class:`Target`.

    ``annotation_box(aid)`` returns ``(gid, x, y, w, h)`` of an annotation and
    ``image_dims(gid)`` returns ``(height, width)``; both raise the index's
    errors for unknown ids.
    """
    if not isinstance(target, dict):
        raise TargetError(f"a target must be a dict, got {type(target).__name__}")
    gid = target.get("gid", target.get("image_id"))
    aid = target.get("aid")
    box = None
    if aid is not None:
        box = annotation_box(aid)
        if gid is None:
            gid = box[0]
        elif gid != box[0]:
            raise TargetError(f"annotation {aid} belongs to image {box[0]}, not image {gid}")
    if gid is None:
        raise TargetError(f"target names no image (give 'gid', 'image_id' or 'aid'): {target!r}")

    if target.get("space_slice") is not None:
        rows, cols = target["space_slice"]
        window = (_as_slice(rows, "rows", gid), _as_slice(cols, "cols", gid))
    elif target.get("cx") is not None or target.get("cy") is not None:
        for key in ("cx", "cy"):
            if target.get(key) is None:
                raise TargetError(f"image {gid}: a centred target needs both cx and cy")
        width = _positive(target.get("width"), "width", gid)
        height = _positive(target.get("height"), "height", gid)
        window = window_from_center(target["cx"], target["cy"], width, height)
    elif box is not None:
        _, x, y, w, h = box
        w, h = max(w, 1.0), max(h, 1.0)
        window = window_from_center(x + w / 2, y + h / 2, w, h)
    else:
        height, width = image_dims(gid)
        window = (slice(0, height), slice(0, width))

    dtype = target.get("dtype")
    fill = target.get("fill", target.get("nodata"))
    if isinstance(fill, str):
        if fill not in ("float", "nan"):
            raise TargetError(f"image {gid}: nodata must be a number, 'float' or 'nan', got {fill!r}")
        fill = math.nan
        dtype = dtype or np.float32
    return Target(
        gid=gid,
        space_slice=window,
        pad=_as_pad(target.get("pad"), gid),
        channels=target.get("channels"),
        dtype=None if dtype is None else np.dtype(dtype),
        fill=fill,
        aid=aid,
        scale=1.0 if target.get("scale") is None else _positive(target["scale"], "scale", gid),
        interpolation=target.get("interpolation", "linear"),
        antialias=bool(target.get("antialias", True)),
    )
