"""Targets: what a caller asks for, parsed into one small value.

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
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kwimage
import numpy as np

from ndpatch.errors import TargetError

Window = tuple[slice, slice]

#: The largest window a target may ask for, in output pixels (frames × rows × cols), refused before
#: anything is allocated (``NDPATCH_MAX_WINDOW_PIXELS``; default 2**30, e.g. 32768 × 32768).
MAX_WINDOW_PIXELS = int(os.environ.get("NDPATCH_MAX_WINDOW_PIXELS", 2**30))

#: Target keys that say how a window is read; a target with none of them is read with the defaults.
READ_OPTIONS = frozenset({"pad", "channels", "dtype", "fill", "nodata", "scale", "interpolation", "antialias"})


def window_from_center(cx: float, cy: float, width: float, height: float) -> Window:
    """The (row slice, col slice) of a window of the given size centred at (cx, cy)."""
    d_rows = math.ceil(height)
    d_cols = math.ceil(width)
    r0 = math.floor(cy - d_rows / 2)
    c0 = math.floor(cx - d_cols / 2)
    return slice(r0, r0 + d_rows), slice(c0, c0 + d_cols)


def clip_window(rows: slice, cols: slice, height: int, width: int) -> Window:
    """The part of a window that lies inside an image of the given size (may be empty).

    >>> clip_window(slice(-2, 3), slice(1, 9), 4, 6)
    (slice(0, 3, None), slice(1, 6, None))
    """
    if rows.start >= 0 and cols.start >= 0 and rows.stop <= height and cols.stop <= width:
        return rows, cols   # the usual case, without the min/max
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


@dataclass(slots=True)
class Target:
    """A parsed target: one image, one window, how to read it.

    ``space_slice`` is the requested window; ``rows``/``cols`` add ``pad``
    context on each side and are what is read. Both may extend past the image.
    Read-only by convention, not frozen: one is built per request, and a frozen
    dataclass's ``__init__`` costs ~1 µs more (a fifth of ``load_sample``'s own Python work).
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
        self.rows = slice(rs.start - pr, rs.stop + pr)
        self.cols = slice(cs.start - pc, cs.stop + pc)

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
    except (TypeError, ValueError, OverflowError):
        raise TargetError(f"{what}: {name} must be an int or ints, got {value!r}") from None


class InvalidTarget(ValueError):
    """What is wrong with one value of a target; the parser re-raises it as a TargetError naming the image."""


def number(value: Any, name: str, positive: bool = False) -> float:
    """A finite real number (not a bool or a string), positive when asked.

    >>> number(3, "cx"), number(np.float32(2.5), "width", positive=True)
    (3.0, 2.5)
    >>> number(float("nan"), "cx")
    Traceback (most recent call last):
    ...
    ndpatch.target.InvalidTarget: cx must be a finite number, got nan
    """
    kind = type(value)
    if kind is not float and kind is not int and (isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating))):
        raise InvalidTarget(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:   # an int beyond float's range
        raise InvalidTarget(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(value):
        raise InvalidTarget(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise InvalidTarget(f"{name} must be positive, got {value!r}")
    return value


def integer(value: Any, name: str) -> int:
    """An integral number (``3``, ``np.int32(3)``, ``3.0``) as an int; InvalidTarget otherwise."""
    if type(value) is int:   # the usual case, first
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    as_float = number(value, name)
    if not as_float.is_integer():
        raise InvalidTarget(f"{name} must be an integer, got {value!r}")
    return int(as_float)


def is_window(rows: Any, cols: Any) -> bool:
    """True when ``rows`` and ``cols`` are non-empty slices with int bounds and no step (a window as is).

    >>> is_window(slice(0, 4), slice(-2, 3)), is_window(slice(0, 4), slice(3, 3)), is_window(slice(0, 4), slice(None, 3))
    (True, False, False)
    """
    return (type(rows) is slice and type(cols) is slice and rows.step is None and cols.step is None
            and type(rows.start) is int and type(rows.stop) is int and type(cols.start) is int
            and type(cols.stop) is int and rows.start < rows.stop and cols.start < cols.stop)


def window_slice(s: Any, axis: int, dims: Callable[[], tuple[int, int]]) -> slice:
    """A half-open, non-empty window slice of ``axis`` (0: rows, 1: cols); a missing start is 0, a
    missing stop ``dims()[axis]``.

    Starts may be negative and stops past the image (the window is padded).
    """
    name = ("rows", "cols")[axis]
    if not isinstance(s, slice):
        raise InvalidTarget(f"space_slice {name} must be a slice, got {s!r}")
    if s.step is not None and s.step != 1:
        raise InvalidTarget(f"space_slice {name} step must be 1, got {s.step!r}")
    start = 0 if s.start is None else integer(s.start, f"space_slice {name} start")
    stop = dims()[axis] if s.stop is None else integer(s.stop, f"space_slice {name} stop")
    if stop <= start:
        raise InvalidTarget(f"space_slice {name} is empty: {s!r}")
    return slice(start, stop)


def window_slices(value: Any, dims: Callable[[], tuple[int, int]]) -> Window:
    """``space_slice`` (or ndsampler's 2-D ``slices``): (row slice, col slice).

    >>> window_slices((slice(2, 6), slice(None, 3)), lambda: (8, 9))
    (slice(2, 6, None), slice(0, 3, None))
    """
    if type(value) is tuple and len(value) == 2 and is_window(*value):
        return value   # the usual case: already a window of plain ints, checked without a call per bound
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidTarget(f"space_slice must be (row slice, col slice), got {value!r}")
    return window_slice(value[0], 0, dims), window_slice(value[1], 1, dims)


def window_size(target: dict, height: float | None, width: float | None) -> tuple[int, int]:
    """(rows, cols) of a centred window: ``window_dims`` (ndsampler's key) else ceil(height, width).

    ``window_dims`` is ``(height, width)``, ``'extent'`` (the default: height
    and width rounded up) or ``'square'`` (the larger of the two, both ways).

    >>> window_size({"window_dims": "square"}, 63, 161.5), window_size({"window_dims": (30, 20)}, None, None)
    ((162, 162), (30, 20))
    """
    dims = target.get("window_dims")
    if dims is None or isinstance(dims, str):
        if dims not in (None, "extent", "square"):
            raise InvalidTarget(f"window_dims must be (height, width), 'extent' or 'square', got {dims!r}")
        if height is None or width is None:
            raise InvalidTarget("a centred target needs width and height (or window_dims=(height, width))")
        rows = math.ceil(number(height, "height", positive=True))
        cols = math.ceil(number(width, "width", positive=True))
        return (max(rows, cols),) * 2 if dims == "square" else (rows, cols)
    if not isinstance(dims, (tuple, list, np.ndarray)) or len(dims) != 2:
        raise InvalidTarget(f"window_dims must be (height, width), 'extent' or 'square', got {dims!r}")
    rows, cols = (math.ceil(number(d, "window_dims", positive=True)) for d in dims)
    return rows, cols


def parse_pad(pad: Any) -> tuple[int, int]:
    """``pad``: an int, ``(rows, cols)`` or ndsampler's ``((top, bottom), (left, right))`` with equal sides.

    >>> parse_pad(3), parse_pad((1, 2)), parse_pad(((4, 4), (0, 0))), parse_pad(None)
    ((3, 3), (1, 2), (4, 0), (0, 0))
    """
    if pad is None:
        return (0, 0)
    axes = [pad, pad] if np.ndim(pad) == 0 else list(pad)
    if len(axes) != 2:
        raise InvalidTarget(f"pad must be an int or (rows, cols), got {pad!r}")
    sides = []
    for axis in axes:
        if np.ndim(axis):
            low, high = (integer(p, "pad") for p in axis) if len(axis) == 2 else (None, None)
            if low is None or low != high:
                raise InvalidTarget(f"pad {pad!r}: each axis is one int (the same on both sides); "
                                    f"unequal sides are not supported")
            axis = low
        sides.append(integer(axis, "pad"))
    if min(sides) < 0:
        raise InvalidTarget(f"pad must be non-negative, got {pad!r}")
    return sides[0], sides[1]


def parse_channels(channels: Any) -> Any:
    """A channel request: None / ``'<all>'`` (every channel), a spec ``'r|g'``, a band index, or a list of them.

    A ``delayed_image`` ``ChannelSpec`` / ``FusedChannelSpec`` is taken by its spec string.
    An empty request (``''``, ``[]``) and booleans are refused.

    >>> parse_channels("<all>"), parse_channels("r|g"), parse_channels([0, "nir"])
    (None, 'r|g', [0, 'nir'])
    """
    if channels is None or (isinstance(channels, str) and channels == "<all>"):
        return None
    if not isinstance(channels, str) and hasattr(channels, "spec"):
        channels = channels.spec
    if isinstance(channels, str):
        if not channels.strip(" |,"):
            raise InvalidTarget(f"channels {channels!r} names no channel")
        return channels
    items = [channels] if np.ndim(channels) == 0 else list(channels)
    if not items:
        raise InvalidTarget("channels [] names no channel")
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (str, int, np.integer)) or item == "":
            raise InvalidTarget(f"channels must be names or band indices, got {item!r} in {channels!r}")
        if not isinstance(item, str) and item < 0:
            raise InvalidTarget(f"band index {item} is negative")
    return channels


def parse_dtype(value: Any) -> np.dtype | None:
    """The output dtype of a target (None: the source's); one ndpatch serves, else InvalidTarget."""
    if value is None:
        return None
    from ndpatch.cache.casting import served_dtype   # cache/ sits above target.py
    try:
        return served_dtype(value)
    except TargetError as err:
        raise InvalidTarget(str(err)) from None


def parse_fill(target: dict, dtype: np.dtype | None) -> tuple[float | None, np.dtype | None]:
    """``fill`` / ``nodata``: a number, or ``'float'``/``'nan'``/``'auto'`` (NaN, float32 unless a dtype is given).

    A number must be a value of ``dtype`` when one is given.
    """
    fill = target.get("fill", target.get("nodata"))
    if fill is None:
        return None, dtype
    if isinstance(fill, str):
        if fill not in ("float", "nan", "auto"):
            raise InvalidTarget(f"nodata must be a number, 'float', 'auto' or 'nan', got {fill!r}")
        return math.nan, dtype or np.dtype(np.float32)
    if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (int, float, np.integer, np.floating)):
        raise InvalidTarget(f"fill must be a number, got {fill!r}")
    if dtype is not None and not math.isnan(fill):
        if dtype.kind in "iu" and (not float(fill).is_integer() or not
                                   np.iinfo(dtype).min <= fill <= np.iinfo(dtype).max):
            raise InvalidTarget(f"fill {fill!r} is not a {dtype} value")
        if dtype.kind == "f" and math.isfinite(fill) and abs(fill) > float(np.finfo(dtype).max):
            raise InvalidTarget(f"fill {fill!r} is not a {dtype} value")
    return fill, dtype


def parse_scale(value: Any) -> float:
    """``scale``: output pixels per image pixel, a positive number (or ndsampler's ``(sx, sy)`` with sx == sy)."""
    if value is None:
        return 1.0
    if np.ndim(value):
        pair = list(value)
        if len(pair) != 2 or number(pair[0], "scale") != number(pair[1], "scale"):
            raise InvalidTarget(f"scale {value!r}: only the same scale on both axes is supported")
        value = pair[0]
    return number(value, "scale", positive=True)


def parse_interpolation(target: dict) -> tuple[str, bool]:
    """``interpolation`` (default and ndsampler's ``'auto'``: ``'linear'``) and ``antialias``
    (default and ``'auto'``: on unless ``'nearest'``)."""
    interpolation = target.get("interpolation", "linear")
    if interpolation == "auto":
        interpolation = "linear"
    if not isinstance(interpolation, str):
        raise InvalidTarget(f"interpolation must be a name such as 'linear' or 'nearest', got {interpolation!r}")
    antialias = target.get("antialias", "auto")
    return interpolation, interpolation != "nearest" if antialias == "auto" else bool(antialias)


def check_window_size(shape: tuple[int, ...]) -> None:
    """Refuse a window of more than :data:`MAX_WINDOW_PIXELS` pixels (frames × rows × cols) before it is allocated."""
    pixels = math.prod(shape)
    if pixels > MAX_WINDOW_PIXELS:
        raise InvalidTarget(f"a window of {' x '.join(map(str, shape))} pixels is larger than the "
                            f"{MAX_WINDOW_PIXELS} allowed (NDPATCH_MAX_WINDOW_PIXELS)")


def parse_target(target: dict, *, annotation_box, image_dims, describe=None) -> Target:
    """Parse a target dict into a :class:`Target`.

    ``annotation_box(aid)`` returns ``(gid, x, y, w, h)`` of an annotation,
    ``image_dims(gid)`` returns ``(height, width)`` and ``describe(gid)`` names
    the image and its files in errors (default ``image <gid>``); the first two
    raise the index's errors for unknown ids. Also takes ndsampler 0.8.1's
    spellings: ``slices`` for ``space_slice``, ``window_dims``, ``aid=-1`` (no
    annotation), ``'auto'`` interpolation and antialias, ``channels='<all>'``.
    """
    if not isinstance(target, dict):
        raise TargetError(f"a target must be a dict, got {type(target).__name__}: {target!r:.80}")
    gid = target.get("gid", target.get("image_id"))
    aid = target.get("aid")
    box = None
    if aid is not None and aid != -1:   # -1: ndsampler's "no annotation" (its negatives)
        box = annotation_box(aid)
        if gid is None:
            gid = box[0]
        elif gid != box[0]:
            raise TargetError(f"annotation {aid} belongs to image {box[0]}, not image {gid}")
    if gid is None:
        raise TargetError(f"target names no image (give 'gid', 'image_id' or 'aid'): {target!r}")
    try:
        tr = _parse(target, gid, aid if box is not None else None, box, image_dims)
    except InvalidTarget as err:
        raise TargetError(f"{describe(gid) if describe else f'image {gid}'}: {err}") from None
    return tr


def target_window(target: dict, box, space_slice, dims: Callable[[], tuple[int, int]]) -> Window:
    """The window of a target: ``space_slice``, else centred (``cx, cy`` and ``width, height`` or
    ``window_dims``; an annotation's ``box`` (x, y, w, h) fills what the target leaves out), else all of ``dims()``.

    >>> target_window({"window_dims": (4, 4)}, (10, 20, 2, 2), None, lambda: (64, 64))
    (slice(19, 23, None), slice(9, 13, None))
    """
    if space_slice is not None:
        return window_slices(space_slice, dims)
    cx, cy, width, height = target.get("cx"), target.get("cy"), target.get("width"), target.get("height")
    if box is not None:   # an annotation fills what the target leaves out
        x, y, w, h = box
        cx = x + w / 2 if cx is None else cx
        cy = y + h / 2 if cy is None else cy
        width = max(w, 1.0) if width is None else width
        height = max(h, 1.0) if height is None else height
    window_dims = target.get("window_dims")
    if cx is not None or cy is not None:
        if cx is None or cy is None:
            raise InvalidTarget("a centred target needs both cx and cy")
        if window_dims is None and height is not None and width is not None:   # the usual case, without window_size
            rows, cols = number(height, "height", positive=True), number(width, "width", positive=True)
        else:
            rows, cols = window_size(target, height, width)
        return window_from_center(number(cx, "cx"), number(cy, "cy"), cols, rows)
    if width is not None or height is not None or window_dims is not None:
        raise InvalidTarget("width, height and window_dims need a centre: give cx and cy (or aid)")
    height, width = dims()
    return slice(0, height), slice(0, width)


def _parse(target: dict, gid: int, aid, box, image_dims) -> Target:
    space_slice = target.get("space_slice")
    if space_slice is None:
        space_slice = target.get("slices")   # ndsampler's name for the 2-D window
    window = target_window(target, None if box is None else box[1:], space_slice, lambda: image_dims(gid))
    if READ_OPTIONS.isdisjoint(target):   # most targets: a window and nothing else
        tr = Target(gid=gid, space_slice=window, aid=aid)
    else:
        fill, dtype = parse_fill(target, parse_dtype(target.get("dtype")))
        interpolation, antialias = parse_interpolation(target)
        tr = Target(gid=gid, space_slice=window, pad=parse_pad(target.get("pad")),
                    channels=parse_channels(target.get("channels")), dtype=dtype, fill=fill, aid=aid,
                    scale=parse_scale(target.get("scale")), interpolation=interpolation, antialias=antialias)
    check_window_size(tr.shape)
    return tr


def sample_target(target: dict, tr: Target, data_dims: tuple[int, int]) -> dict:
    """The target a sample returns: the caller's keys, plus the window as ndsampler 0.8.1 infers it.

    Adds ``gid``, ``space_slice`` and ``slices`` (the window), ``pad`` (unless
    the caller gave one), ``space_dims`` / ``data_dims`` (the image's (height,
    width)) and ``window_dims`` (the window's (height, width)); every other key
    passes through as given.

    >>> tr = Target(gid=1, space_slice=(slice(0, 4), slice(2, 8)))
    >>> sample_target({"gid": 1, "label": "mine"}, tr, (10, 10))["window_dims"]
    (4, 6)
    """
    space_slice = tr.space_slice
    return {
        "pad": tr.pad, **target, "gid": tr.gid, "space_slice": space_slice, "slices": space_slice,
        "space_dims": data_dims, "data_dims": data_dims,
        "window_dims": (space_slice[0].stop - space_slice[0].start, space_slice[1].stop - space_slice[1].start),
    }
