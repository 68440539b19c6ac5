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

    rows: np.ndarray          # batch positions, ordered by first row read
    record: Any
    options: ReadOptions
    resampled: bool


def _groups(records, table: WindowTable, named: Sequence) -> list[_Group]:
    """The batch's rows grouped by image and read option (one record lookup per image)."""
    data = table.data
    gids, first, inverse = np.unique(data[:, GID], return_index=True, return_inverse=True)
    keys = inverse * len(table.options) + data[:, OPTION]
    order = np.lexsort((data[:, ROW], keys))
    starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
    held = {}
    groups = []
    for start, stop in zip(starts.tolist(), np.r_[starts[1:], len(order)].tolist()):
        rows = order[start:stop]
        k = int(inverse[rows[0]])
        if k not in held:
            try:
                held[k] = records.get(int(gids[k]))
            except NdpatchError as err:
                raise at_target(err, int(first[k]), named[int(first[k])]) from err
        opts = table.options[int(data[rows[0], OPTION])]
        groups.append(_Group(rows, held[k], opts, opts.scale != 1 or held[k].multi))
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
    groups = _groups(records, table, named)
    data = table.data
    resampled: dict[int, np.ndarray] = {}
    layouts: dict[int, tuple] = {}   # group index -> (bands, dtype) of its rows (resampled: per row)
    for g, group in enumerate(groups):
        if group.resampled:
            for i in group.rows.tolist():
                try:
                    resampled[i] = resample(table[i])
                except NdpatchError as err:
                    raise at_target(err, i, named[i]) from err
        else:
            entry = group.record.entry
            try:
                bands = group.record.bands(group.options.channels)
            except NdpatchError as err:
                raise at_target(err, int(group.rows[0]), named[int(group.rows[0])]) from err
            dtype = entry.dtype if group.options.dtype is None else group.options.dtype
            layouts[g] = (entry.bands if bands is None else len(bands), dtype, bands)
    shape, dtype = _batch_layout(groups, layouts, resampled, data, named)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise TargetError(f"{groups[0].record.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the batch needs {shape} {dtype}")
    for i, im in resampled.items():
        out[i] = im
    windowed, decoded = [], False
    for g, group in enumerate(groups):
        if group.resampled:
            continue
        n_bands, dtype, bands = layouts[g]
        entry = group.record.entry
        array = _memory_array(backend, entry)
        fill = group.options.fill
        try:
            exact = dtype == entry.dtype or reads_exactly(entry.dtype, served_dtype(dtype))
        except NdpatchError as err:
            raise at_target(err, int(group.rows[0]), named[int(group.rows[0])]) from err
        if array is None or not exact or (fill is not None and math.isnan(fill) and entry.nodata is not None):
            windowed += [(i, entry, bands, group.options) for i in group.rows.tolist()]
            decoded = decoded or entry.kind != "npy"
            continue
        _copy_group(out, array, entry, group, bands, data, named, dtype)
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


def _batch_layout(groups, layouts, resampled, data, named) -> tuple[tuple[int, ...], np.dtype]:
    """The batch's (B, H, W, C) and dtype: the first row's; TargetError naming the first row that differs."""
    def layout_of(g: int, i: int) -> tuple:
        if groups[g].resampled:
            return (*resampled[i].shape, resampled[i].dtype)
        return (int(data[i, HEIGHT]), int(data[i, WIDTH]), *layouts[g][:2])

    first = next(layout_of(g, 0) for g, group in enumerate(groups) if 0 in group.rows)
    odd = []
    for g, group in enumerate(groups):
        if group.resampled:
            odd += [i for i in group.rows.tolist() if layout_of(g, i) != first]
        elif layouts[g][:2] != first[2:]:
            odd.append(int(group.rows.min()))
        else:
            sizes = (data[group.rows, HEIGHT] != first[0]) | (data[group.rows, WIDTH] != first[1])
            if sizes.any():
                odd.append(int(group.rows[sizes].min()))
    if odd:
        i = min(odd)
        g = next(g for g, group in enumerate(groups) if i in group.rows)
        layout = layout_of(g, i)
        raise at_target(TargetError(f"{groups[g].record.describe()}: its window is {layout[:3]} {layout[3]} but "
                                    f"the batch's first is {first[:3]} {first[3]}; a batch needs one shape "
                                    "and dtype"), i, named[i])
    return (len(data), *first[:3]), np.dtype(first[3])


def _memory_array(backend, entry) -> np.ndarray | None:
    """The entry's pixels as an in-memory (mapped) H×W×C array, when the backend has one (npy)."""
    array_of = getattr(backend, "array", None)
    return None if array_of is None else array_of(entry)


def _copy_group(out: np.ndarray, array: np.ndarray, entry, group: _Group, bands, data: np.ndarray,
                named: Sequence, dtype) -> None:
    """Fill the padded windows of one group at once, then copy each in-image rectangle."""
    rows = group.rows
    row, col = data[rows, ROW], data[rows, COL]
    height, width = data[rows, HEIGHT], data[rows, WIDTH]
    r0, c0 = np.clip(row, 0, entry.height), np.clip(col, 0, entry.width)
    r1, c1 = np.clip(row + height, r0, entry.height), np.clip(col + width, c0, entry.width)
    padded = (r1 - r0 < height) | (c1 - c0 < width)
    if padded.any():
        i = int(rows[np.argmax(padded)])
        try:
            value = fill_value(entry, group.options.fill, np.dtype(dtype))
        except NdpatchError as err:
            raise at_target(err, i, named[i]) from err
        out[rows[padded]] = value
    inside = (r1 > r0) & (c1 > c0)
    spans = np.stack([rows, r0, r1, c0, c1, r0 - row, r1 - row, c0 - col, c1 - col], axis=1)[inside].tolist()
    if bands is None:
        for i, y0, y1, x0, x1, a0, a1, b0, b1 in spans:
            out[i, a0:a1, b0:b1] = array[y0:y1, x0:x1]
    else:
        picked = _band_index(bands)
        for i, y0, y1, x0, x1, a0, a1, b0, b1 in spans:
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
def select_annots(index, table: WindowTable, scaled: Callable[[Target], Mapping]) -> "BatchAnnots":
    """The annotations touching each window of ``table``, one vectorised test per image.

    ``index`` is the sampler's :class:`~ndpatch.index.DatasetIndex`;
    ``scaled(target)`` gives the (scaled) annotations of a window read at a
    scale other than 1. Each window's annotations equal ``load_sample``'s.
    """
    data = table.data
    n = len(data)
    is_scaled = np.array([opts.scale != 1 for opts in table.options], dtype=bool)[data[:, OPTION]]
    own = {int(i): scaled(table[int(i)]) for i in np.flatnonzero(is_scaled)}
    gids, inverse = np.unique(data[:, GID], return_inverse=True)
    per_image = [index.image_annots(int(gid)) for gid in gids.tolist()]
    windows, annots, images = [], [], []
    x0, y0 = data[:, COL], data[:, ROW]
    x1, y1 = x0 + data[:, WIDTH], y0 + data[:, HEIGHT]
    for k, image_annots in enumerate(per_image):
        rows = np.flatnonzero((inverse == k) & ~is_scaled)
        if len(rows) == 0 or len(image_annots) == 0:
            continue
        win, ann = image_annots.select_windows(x0[rows], y0[rows], x1[rows], y1[rows])
        windows.append(rows[win])
        annots.append(ann)
        images.append(np.full(len(ann), k, dtype=np.int64))
    window = np.concatenate(windows) if windows else np.zeros(0, np.int64)
    order = np.argsort(window, kind="stable")
    counts = np.bincount(window, minlength=n)
    return BatchAnnots([per_image[k] for k in inverse.tolist()], data[:, GID], x0, y0,
                       window[order], (np.concatenate(annots) if annots else np.zeros(0, np.int64))[order],
                       (np.concatenate(images) if images else np.zeros(0, np.int64))[order],
                       per_image, counts, own)


class BatchAnnots(Sequence):
    """The annotations of every window of a batch: ``annots[i]`` is window ``i``'s (a WindowAnnots).

    :meth:`stacked` gives the batch's boxes, classes and ids as the
    concatenated columns :func:`~ndpatch.annots.stack_windows` makes, without
    building a per-window object. Pickles as a list of plain dicts.
    """

    def __init__(self, image_annots: list, gids: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                 window: np.ndarray, annot: np.ndarray, image: np.ndarray, per_image: list,
                 counts: np.ndarray, own: dict[int, Mapping]):
        self.image_annots = image_annots
        self.gids, self.x0, self.y0 = gids, x0, y0
        self.window, self.annot, self.image, self.per_image = window, annot, image, per_image
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)])
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
            start, stop = int(self.starts[index]), int(self.starts[index + 1])
            built = self._built[index] = WindowAnnots(self.image_annots[index], self.annot[start:stop],
                                                      int(self.x0[index]), int(self.y0[index]),
                                                      int(self.gids[index]))
        return built

    def stacked(self) -> dict[str, np.ndarray]:
        """``xyxy`` (N×4 float64, each box in its own window's frame), ``cids``, ``aids``, ``counts``."""
        if self.own:
            return stack_windows(list(self))
        xywh = np.zeros((len(self.annot), 4))
        cids = np.zeros(len(self.annot), np.int64)
        aids = np.zeros(len(self.annot), np.int64)
        for k, image_annots in enumerate(self.per_image):
            mine = self.image == k
            picked = self.annot[mine]
            xywh[mine] = image_annots.boxes[picked]
            cids[mine] = image_annots.cids[picked]
            aids[mine] = image_annots.aids[picked]
        origins = np.stack([self.x0, self.y0], axis=1).astype(np.float64)[self.window]
        top_left = xywh[:, :2] - origins
        return {"xyxy": np.concatenate([top_left, top_left + xywh[:, 2:]], axis=1), "cids": cids, "aids": aids,
                "counts": self.counts.astype(np.int64)}

    def __reduce__(self):
        return list, ([dict(window) for window in self],)

    def __repr__(self) -> str:
        return f"BatchAnnots({len(self)} windows, {len(self.annot)} annotations)"
