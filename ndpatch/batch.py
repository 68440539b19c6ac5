"""The columnar hot path: a batch of windows as numpy columns, read into one (B, H, W, C) array.

A :class:`WindowTable` holds parsed targets as integer columns (image id,
first row and column read, height and width with the padding, the padding,
the annotation id) and an index into a short tuple of :class:`ReadOptions`
(channels, dtype, fill, scale, ...) shared by the rows that use them. Dict
targets are parsed once into it (:meth:`CocoSampler.window_table`,
:class:`TargetColumns` for a dataset's targets); ``table[i]`` gives back the
:class:`~ndpatch.target.Target`.

:func:`read_batch` reads a table with per-batch work only: one image record per
image, the out-of-image and padding decisions as array arithmetic per image,
the fill of padded windows as one assignment, and for memory-mapped entries a
copy loop over plain integers (``out[i, a0:a1, b0:b1] = array[r0:r1, c0:c1]``).
Other windows go through :func:`~ndpatch.cache.base.read_window` (decoded on
the reader threads); scaled and multi-file windows are resampled.
:func:`select_annots` finds every window's annotations with one array test per
image (:meth:`~ndpatch.annots.ImageAnnots.select_windows`) and returns
:class:`BatchAnnots`: the per-window ``annots`` built on access, and the
batch's stacked boxes, classes and ids.

Example:
    >>> import numpy as np
    >>> from ndpatch.target import Target
    >>> table = WindowTable.from_targets([Target(1, (slice(0, 4), slice(2, 6))),
    ...                                   Target(2, (slice(-1, 3), slice(0, 4)), pad=(1, 0))])
    >>> table.gid.tolist(), table.row.tolist(), table.height.tolist()
    ([1, 2], [0, -2], [4, 6])
    >>> table[1] == Target(2, (slice(-1, 3), slice(0, 4)), pad=(1, 0))
    True
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.annots import WindowAnnots, stack_windows
from ndpatch.cache.base import fill_value, read_window
from ndpatch.cache.casting import reads_exactly, served_dtype
from ndpatch.errors import NdpatchError, TargetError, UnknownImageError
from ndpatch.readers import READERS
from ndpatch.target import Target

#: The columns of a window table, in order.
COLUMNS = ("gid", "row", "col", "height", "width", "pad_rows", "pad_cols", "aid", "option")
GID, ROW, COL, HEIGHT, WIDTH, PAD_ROWS, PAD_COLS, AID, OPTION = range(len(COLUMNS))
#: The ``aid`` column of a row whose target names no annotation.
NO_AID = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How the windows of a row are read, beyond where: what a Target has besides its geometry."""

    channels: Any = None
    dtype: np.dtype | None = None
    fill: float | None = None
    scale: float = 1.0
    interpolation: str = "linear"
    antialias: bool = True


def _hashable(value: Any) -> Any:
    """A hashable stand-in for an option value (channel lists), keeping its type apart."""
    try:
        hash(value)
        return type(value), value
    except TypeError:
        return type(value), tuple(_hashable(v) for v in value)


class RowEncoder:
    """Targets → table rows; options shared by equal rows are stored once."""

    def __init__(self):
        self.options: list[ReadOptions] = []
        self._keys: dict[Any, int] = {}

    def encode(self, tr: Target) -> tuple[int, ...]:
        """The row of a parsed target (its option registered on first sight)."""
        key = (_hashable(tr.channels), tr.dtype, _hashable(tr.fill), tr.scale, tr.interpolation, tr.antialias)
        option = self._keys.get(key)
        if option is None:
            option = self._keys[key] = len(self.options)
            self.options.append(ReadOptions(tr.channels, tr.dtype, tr.fill, tr.scale, tr.interpolation,
                                            tr.antialias))
        rows, cols = tr.rows, tr.cols
        return (tr.gid, rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start,
                tr.pad[0], tr.pad[1], NO_AID if tr.aid is None else tr.aid, option)

    def rows(self, targets: Sequence[Target], offset: int = 0) -> np.ndarray:
        """An (n, len(COLUMNS)) int64 array of ``targets``' rows; ids that are not integers raise."""
        encoded = [self.encode(tr) for tr in targets]
        try:
            return np.array(encoded, dtype=np.int64).reshape(-1, len(COLUMNS))
        except (TypeError, ValueError, OverflowError):
            for k, tr in enumerate(targets):
                for name, value in (("image", tr.gid), ("annotation", tr.aid)):
                    if value is not None and not isinstance(value, (int, np.integer)):
                        raise (UnknownImageError if name == "image" else TargetError)(
                            f"target {offset + k}: {name} id {value!r} is not an integer") from None
            raise


@dataclass(frozen=True, eq=False)
class WindowTable(Sequence):
    """Parsed targets as columns (:data:`COLUMNS`); ``table[i]`` is row ``i``'s Target.

    ``data`` is an (n, len(COLUMNS)) int64 array; ``options`` the read options
    its ``option`` column points into. ``row``/``col``/``height``/``width`` are
    what is read (padding included), as ``Target.rows``/``cols``.
    """

    data: np.ndarray
    options: tuple[ReadOptions, ...]

    @classmethod
    def from_targets(cls, targets: Sequence[Target]) -> "WindowTable":
        """The table of parsed targets (see :meth:`CocoSampler.window_table` for dicts)."""
        encoder = RowEncoder()
        data = encoder.rows(targets)
        return cls(data, tuple(encoder.options))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            gid, row, col, height, width, pad_rows, pad_cols, aid, option = self.data[index].tolist()
            opts = self.options[option]
            space_slice = (slice(row + pad_rows, row + height - pad_rows), slice(col + pad_cols, col + width - pad_cols))
            return Target(gid=gid, space_slice=space_slice, pad=(pad_rows, pad_cols), channels=opts.channels,
                          dtype=opts.dtype, fill=opts.fill, aid=None if aid == NO_AID else aid,
                          scale=opts.scale, interpolation=opts.interpolation, antialias=opts.antialias)
        return self.take(np.arange(len(self))[index] if isinstance(index, slice) else index)

    def take(self, indices) -> "WindowTable":
        """The rows at ``indices``, in that order."""
        return WindowTable(self.data[np.asarray(indices, dtype=np.int64)], self.options)

    def column(self, name: str) -> np.ndarray:
        return self.data[:, COLUMNS.index(name)]

    gid = property(lambda self: self.data[:, GID], doc="image ids")
    row = property(lambda self: self.data[:, ROW], doc="first row read (padding included)")
    col = property(lambda self: self.data[:, COL], doc="first column read (padding included)")
    height = property(lambda self: self.data[:, HEIGHT], doc="rows read")
    width = property(lambda self: self.data[:, WIDTH], doc="columns read")

    def __repr__(self) -> str:
        return f"WindowTable({len(self)} windows, {len(self.options)} read options)"


class TargetColumns:
    """A dataset's targets converted into table rows on first use, each dict parsed once.

    ``parse(target)`` turns a dict into a Target (``CocoSampler.parse``). A
    target that names the whole image keeps the image size it had when it
    was converted.

    Example:
        >>> import ndpatch
        >>> sampler = ndpatch.CocoSampler.demo("shapes8")
        >>> columns = TargetColumns([{"gid": 1, "cx": 20, "cy": 20, "width": 8, "height": 8}] * 3, sampler.parse)
        >>> table = columns.take([2, 0])
        >>> len(table), table[0].space_slice
        (2, (slice(16, 24, None), slice(16, 24, None)))
    """

    def __init__(self, targets: Sequence[dict | Target], parse: Callable[[dict], Target]):
        self.targets = targets
        self.parse = parse
        self.data = np.zeros((len(targets), len(COLUMNS)), dtype=np.int64)
        self.known = np.zeros(len(targets), dtype=bool)
        self.encoder = RowEncoder()
        self._options: tuple[ReadOptions, ...] = ()

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, indices: Sequence[int]) -> WindowTable:
        """The rows of targets ``indices`` (parsing those seen for the first time)."""
        indices = np.asarray(indices, dtype=np.int64)
        missing = indices[~self.known[indices]]
        if len(missing):
            missing = np.unique(missing).tolist()
            parsed = []
            for i in missing:
                target = self.targets[i]
                try:
                    parsed.append(target if isinstance(target, Target) else self.parse(target))
                except NdpatchError as err:
                    raise at_target(err, i, target) from err
            self.data[missing] = self.encoder.rows(parsed)
            self.known[missing] = True
            if len(self.encoder.options) != len(self._options):
                self._options = tuple(self.encoder.options)
        return WindowTable(self.data[indices], self._options)


def at_target(err: NdpatchError, index: int, target: Any) -> NdpatchError:
    """``err`` again (same class), its message prefixed with which target of a batch it is about.

    Example:
        >>> str(at_target(TargetError("image 1: width must be positive"), 3, {"gid": 1}))
        "target 3 of the batch ({'gid': 1}): image 1: width must be positive"
    """
    try:
        named = type(err)(f"target {index} of the batch ({target!r}): {err}")
    except TypeError:  # an error class with its own constructor: keep it as raised
        return err
    return named


# -- pixels --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Group:
    """Rows of one image and one read option: where they are in the batch and how they read."""

    rows: list[int]           # batch positions, in batch order
    record: Any
    options: ReadOptions
    resampled: bool


def _groups(records, table: WindowTable, named: Sequence) -> list[_Group]:
    """The batch's rows grouped by image and read option (one record lookup per image)."""
    members: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(table.data[:, GID].tolist(), table.data[:, OPTION].tolist())):
        members.setdefault(key, []).append(i)
    held = {}
    groups = []
    for (gid, option), rows in members.items():
        record = held.get(gid)
        if record is None:
            try:
                record = held[gid] = records.get(gid)
            except NdpatchError as err:
                raise at_target(err, rows[0], named[rows[0]]) from err
        opts = table.options[option]
        groups.append(_Group(rows, record, opts, opts.scale != 1 or record.multi))
    return groups


def read_batch(records, backend, table: WindowTable, out: np.ndarray | None = None, threads: int = 1,
               resample: Callable[[Target], np.ndarray] | None = None,
               named: Sequence | None = None) -> np.ndarray:
    """Read every window of ``table`` into one (B, H, W, C) array (``out`` when given).

    ``records`` is the sampler's :class:`~ndpatch.record.ImageRecords`;
    ``resample(target)`` reads a scaled or multi-file window; ``named[i]`` is
    what an error about row ``i`` shows (default: its Target). Windows that
    GDAL decodes are read on ``threads`` reader threads.
    """
    if len(table) == 0:
        raise TargetError("load_batch needs at least one target")
    named = table if named is None else named
    data = table.data
    groups = _groups(records, table, named)
    resampled: dict[int, np.ndarray] = {}
    layouts: list[tuple | None] = []   # per group: (n_bands, dtype, bands); None when resampled
    for group in groups:
        if group.resampled:
            layouts.append(None)
            for i in group.rows:
                try:
                    resampled[i] = resample(table[i])
                except NdpatchError as err:
                    raise at_target(err, i, named[i]) from err
            continue
        entry = group.record.entry
        try:
            bands = group.record.bands(group.options.channels)
        except NdpatchError as err:
            raise at_target(err, group.rows[0], named[group.rows[0]]) from err
        dtype = entry.dtype if group.options.dtype is None else group.options.dtype
        layouts.append((entry.bands if bands is None else len(bands), dtype, bands))
    shape, dtype = _batch_layout(groups, layouts, resampled, data, named)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise TargetError(f"{groups[0].record.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the batch needs {shape} {dtype}")
    for i, im in resampled.items():
        out[i] = im
    spans, padded = _spans(groups, data)
    windowed, decoded = [], False
    for group, layout in zip(groups, layouts):
        if layout is None:
            continue
        _, dtype, bands = layout
        entry = group.record.entry
        fill = group.options.fill
        try:
            exact = dtype == entry.dtype or reads_exactly(entry.dtype, served_dtype(dtype))
        except NdpatchError as err:
            raise at_target(err, group.rows[0], named[group.rows[0]]) from err
        array = _memory_array(backend, entry) if exact else None
        if array is None or (fill is not None and math.isnan(fill) and entry.nodata is not None):
            windowed += [(i, entry, bands, group.options) for i in group.rows]
            decoded = decoded or entry.kind != "npy"
            continue
        _copy_group(out, array, entry, group, bands, spans, padded, named, dtype)
    if windowed:
        def read(chunk) -> None:
            for i, entry, bands, opts in chunk:
                row, col, height, width = data[i, ROW:WIDTH + 1].tolist()
                try:
                    read_window(backend, entry, slice(row, row + height), slice(col, col + width), bands,
                                opts.fill, opts.dtype, out[i])
                except NdpatchError as err:
                    raise at_target(err, i, named[i]) from err
        READERS.run(read, windowed, threads if decoded else 1)
    return out


def _batch_layout(groups: list[_Group], layouts: list, resampled: dict, data: np.ndarray,
                  named: Sequence) -> tuple[tuple[int, ...], np.dtype]:
    """The batch's (B, H, W, C) and dtype: the first row's; TargetError naming the first row that differs."""
    def layout_of(i: int) -> tuple:
        if i in resampled:
            return (*resampled[i].shape, resampled[i].dtype)
        k = next(k for k, group in enumerate(groups) if i in group.rows)
        return (int(data[i, HEIGHT]), int(data[i, WIDTH]), *layouts[k][:2])

    first = layout_of(0)
    odd = [group.rows[0] for group, layout in zip(groups, layouts) if layout is not None and layout[:2] != first[2:]]
    sizes = (data[:, HEIGHT] != first[0]) | (data[:, WIDTH] != first[1])
    if resampled:
        odd += [i for i in resampled if layout_of(i) != first]
        sizes[list(resampled)] = False
    if sizes.any():
        odd.append(int(np.argmax(sizes)))
    if odd:
        i = min(odd)
        record = next(group.record for group in groups if i in group.rows)
        layout = layout_of(i)
        raise at_target(TargetError(f"{record.describe()}: its window is {layout[:3]} {layout[3]} but "
                                    f"the batch's first is {first[:3]} {first[3]}; a batch needs one shape "
                                    "and dtype"), i, named[i])
    return (len(data), *first[:3]), np.dtype(first[3])


def _memory_array(backend, entry) -> np.ndarray | None:
    """The entry's pixels as an in-memory (mapped) H×W×C array, when the backend has one (npy)."""
    array_of = getattr(backend, "array", None)
    return None if array_of is None else array_of(entry)


def _spans(groups: list[_Group], data: np.ndarray) -> tuple[list[list[int]], list[bool]]:
    """Per row: the in-image rectangle and where it lands in the window, and whether it is padded.

    ``spans[i]`` is ``[r0, c0, r1, c1, a0, b0, a1, b1]``: image rows and
    columns ``r0:r1, c0:c1`` go to window rows and columns ``a0:a1, b0:b1``
    (empty when the window is outside the image); computed for the whole
    batch at once (:func:`~ndpatch.target.clip_window`'s rule).
    """
    if len(groups) == 1:
        dims = np.array([groups[0].record.dims], dtype=np.int64)
    else:
        dims = np.empty((len(data), 2), dtype=np.int64)
        for group in groups:
            dims[group.rows] = group.record.dims
    first = data[:, ROW:COL + 1]
    size = data[:, HEIGHT:WIDTH + 1]
    start = np.minimum(np.maximum(first, 0), dims)
    stop = np.maximum(np.minimum(first + size, dims), start)
    padded = (stop - start < size).any(axis=1)
    return np.concatenate([start, stop, start - first, stop - first], axis=1).tolist(), padded.tolist()


def _copy_group(out: np.ndarray, array: np.ndarray, entry, group: _Group, bands, spans: list[list[int]],
                padded: list[bool], named: Sequence, dtype) -> None:
    """Fill the group's padded windows at once, then copy each in-image rectangle from ``array``."""
    pad = [i for i in group.rows if padded[i]]
    if pad:
        try:
            value = fill_value(entry, group.options.fill, np.dtype(dtype))
        except NdpatchError as err:
            raise at_target(err, pad[0], named[pad[0]]) from err
        out[pad] = value
    picked = slice(None) if bands is None else _band_index(bands)
    for i in group.rows:
        y0, x0, y1, x1, a0, b0, a1, b1 = spans[i]
        if y1 > y0 and x1 > x0:
            out[i, a0:a1, b0:b1] = array[y0:y1, x0:x1, picked]


def _band_index(bands: list[int]) -> slice | list[int]:
    """Bands as a slice when they are consecutive (a view, no gather), else the list.

    >>> _band_index([2, 3, 4]), _band_index([2, 0])
    (slice(2, 5, None), [2, 0])
    """
    if bands and bands == list(range(bands[0], bands[0] + len(bands))):
        return slice(bands[0], bands[0] + len(bands))
    return bands


# -- annotations ---------------------------------------------------------------------------------
#: Largest windows × annotations test done at once over a batch's images (above: one test per image).
JOINT_TEST_CELLS = 1 << 16


def select_annots(index, table: WindowTable, scaled: Callable[[Target], Mapping]) -> "BatchAnnots":
    """The annotations touching each window of ``table``, found by array tests over the whole batch.

    ``index`` is the sampler's :class:`~ndpatch.index.DatasetIndex`;
    ``scaled(target)`` gives the (scaled) annotations of a window read at a
    scale other than 1. Each window's annotations equal ``load_sample``'s.
    The batch's images' boxes are tested against every window at once (a
    window only counts its own image's), or one image at a time when that
    test would exceed :data:`JOINT_TEST_CELLS`.
    """
    data = table.data
    gids = data[:, GID].tolist()
    image_of: dict[int, int] = {}
    parts = []
    for gid in gids:
        if gid not in image_of:
            image_of[gid] = len(parts)
            parts.append(index.image_annots(gid))
    image = np.array([image_of[gid] for gid in gids], dtype=np.int64)
    lengths = [len(part) for part in parts]
    offsets = np.cumsum([0] + lengths)
    edges = np.concatenate([part.edges for part in parts], axis=1)
    limits = np.stack([data[:, COL] + data[:, WIDTH], -data[:, COL], data[:, ROW] + data[:, HEIGHT],
                       -data[:, ROW]], axis=1).astype(np.float64)   # the window test's right-hand sides
    is_scaled = np.array([opts.scale != 1 for opts in table.options], dtype=bool)[data[:, OPTION]]
    if len(data) * edges.shape[1] <= JOINT_TEST_CELLS:
        owner = np.repeat(np.arange(len(parts)), lengths)
        hits = owner == np.where(is_scaled, -1, image)[:, None]
        for k in range(4):
            hits &= edges[k] < limits[:, k:k + 1]
        window, column = np.nonzero(hits)
    else:
        windows, columns = [], []
        for k, part in enumerate(parts):
            rows = np.flatnonzero((image == k) & ~is_scaled)
            hits = np.ones((len(rows), lengths[k]), dtype=bool)
            for j in range(4):
                hits &= part.edges[j] < limits[rows, j:j + 1]
            found, annot = np.nonzero(hits)
            windows.append(rows[found])
            columns.append(annot + offsets[k])
        window = np.concatenate(windows)
        order = np.argsort(window, kind="stable")
        window, column = window[order], np.concatenate(columns)[order]
    own = {int(i): scaled(table[int(i)]) for i in np.flatnonzero(is_scaled)}
    return BatchAnnots(parts, image, data[:, GID], data[:, COL], data[:, ROW], window, column, offsets, own)


class BatchAnnots(Sequence):
    """The annotations of every window of a batch: ``annots[i]`` is window ``i``'s (a WindowAnnots).

    :meth:`stacked` gives the batch's boxes, classes and ids as the
    concatenated columns :func:`~ndpatch.annots.stack_windows` makes, without
    building a per-window object. Pickles as a list of plain dicts.
    """

    def __init__(self, parts: list, image: np.ndarray, gids: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                 window: np.ndarray, column: np.ndarray, offsets: np.ndarray, own: dict[int, Mapping]):
        self.parts, self.image = parts, image        # the batch's ImageAnnots; each window's part
        self.gids, self.x0, self.y0 = gids, x0, y0
        self.window, self.column, self.offsets = window, column, offsets  # (window, annotation) pairs
        self.counts = np.bincount(window, minlength=len(image))
        self.starts = np.concatenate([[0], np.cumsum(self.counts)])
        self.own = own
        self._built: dict[int, Mapping] = {}

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]
        if index in self.own:
            return self.own[index]
        built = self._built.get(index)
        if built is None:
            k = int(self.image[index])
            start, stop = int(self.starts[index]), int(self.starts[index + 1])
            built = self._built[index] = WindowAnnots(self.parts[k], self.column[start:stop] - self.offsets[k],
                                                      int(self.x0[index]), int(self.y0[index]),
                                                      int(self.gids[index]))
        return built

    def stacked(self) -> dict[str, np.ndarray]:
        """``xyxy`` (N×4 float64, each box in its own window's frame), ``cids``, ``aids``, ``counts``."""
        if self.own:
            return stack_windows(list(self))
        if len(self.parts) == 1:
            part = self.parts[0]
            xywh, cids, aids = part.boxes[self.column], part.cids[self.column], part.aids[self.column]
        else:
            xywh = np.concatenate([part.boxes for part in self.parts])[self.column]
            cids = np.concatenate([part.cids for part in self.parts])[self.column]
            aids = np.concatenate([part.aids for part in self.parts])[self.column]
        origins = np.stack([self.x0, self.y0], axis=1).astype(np.float64)[self.window]
        top_left = xywh[:, :2] - origins
        return {"xyxy": np.concatenate([top_left, top_left + xywh[:, 2:]], axis=1), "cids": cids, "aids": aids,
                "counts": self.counts}

    def __reduce__(self):
        return list, ([dict(window) for window in self],)

    def __repr__(self) -> str:
        return f"BatchAnnots({len(self)} windows, {len(self.annot)} annotations)"
