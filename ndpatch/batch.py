"""The columnar hot path: a batch of windows as numpy columns, read into one (B, H, W, C) array.

A :class:`WindowTable` holds parsed targets as integer columns (image id,
first row and column read, height and width with the padding, the padding,
the annotation id) and an index into a short tuple of :class:`ReadOptions`
(channels, dtype, fill, scale, ...) shared by the rows that use them. Dict
targets are parsed once into it (:meth:`CocoSampler.window_table`,
:class:`TargetColumns` for a dataset's targets); ``table[i]`` gives back the
:class:`~ndpatch.target.Target`.

:func:`read_batch` reads a table with per-batch work only: one image record per
image, the clipping and padding decisions on plain integers (none for a window
inside its image), the fill of padded windows as one assignment per image, and
for memory-mapped entries one view copy per window
(``out[i, a0:a1, b0:b1] = array[r0:r1, c0:c1]``), through torch's intra-op
threads for batches of :data:`THREADED_COPY_BYTES` or more when ``threads`` > 1
(:func:`_copy_windows`). Other windows go through
:func:`~ndpatch.cache.base.read_window` (decoded on the reader threads); scaled
and multi-file windows are resampled.
:func:`select_annots` finds every window's annotations with one array test over
the batch (against :attr:`~ndpatch.annots.ImageAnnots.edges`) and returns
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

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ndpatch.annots import WindowAnnots, stack_windows
from ndpatch.cache.base import fill_value, read_window
from ndpatch.cache.casting import reads_exactly, served_dtype
from ndpatch.errors import NdpatchError, TargetError, UnknownImageError
from ndpatch.readers import READERS
from ndpatch.target import Target, clip_window

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


#: Batches of at least this many bytes copy their memory-mapped windows on torch's intra-op threads.
THREADED_COPY_BYTES = 1 << 20


# -- pixels --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Group:
    """Rows of one image and one read option: where they are in the batch and how they read."""

    rows: list[int]           # batch positions, in batch order
    record: Any
    options: ReadOptions
    resampled: bool


def _groups(records, table: WindowTable, rows: list[list[int]], named: Sequence) -> list[_Group]:
    """The batch's rows grouped by image and read option (one record lookup per image)."""
    members: dict[tuple[int, int], list[int]] = {}
    for i, row in enumerate(rows):
        members.setdefault((row[GID], row[OPTION]), []).append(i)
    held = {}
    groups = []
    for (gid, option), positions in members.items():
        record = held.get(gid)
        if record is None:
            try:
                record = held[gid] = records.get(gid)
            except NdpatchError as err:
                raise at_target(err, positions[0], named[positions[0]]) from err
        opts = table.options[option]
        groups.append(_Group(positions, record, opts, opts.scale != 1 or record.multi))
    return groups


def read_batch(records, backend, table: WindowTable, out: np.ndarray | None = None, threads: int = 1,
               resample: Callable[[Target], np.ndarray] | None = None,
               named: Sequence | None = None) -> np.ndarray:
    """Read every window of ``table`` into one (B, H, W, C) array (``out`` when given).

    ``records`` is the sampler's :class:`~ndpatch.record.ImageRecords`;
    ``resample(target)`` reads a scaled or multi-file window; ``named[i]`` is
    what an error about row ``i`` shows (default: its Target). Windows that GDAL
    decodes are read on ``threads`` reader threads; memory-mapped windows are
    copied by torch's intra-op threads when ``threads`` > 1 and the batch is
    :data:`THREADED_COPY_BYTES` or more, else in this thread.
    """
    if len(table) == 0:
        raise TargetError("load_batch needs at least one target")
    named = table if named is None else named
    rows = table.data.tolist()
    groups = _groups(records, table, rows, named)
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
    shape, dtype = _batch_layout(groups, layouts, resampled, rows, named)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise TargetError(f"{groups[0].record.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the batch needs {shape} {dtype}")
    for i, im in resampled.items():
        out[i] = im
    windowed, copies, decoded = [], [], False
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
        copies += _group_copies(out, array, entry, group, bands, rows, named, dtype)
    if copies:
        _copy_windows(copies, threads > 1 and out.nbytes >= THREADED_COPY_BYTES)
    if windowed:
        def read(job) -> None:
            i, entry, bands, opts = job
            _, row, col, height, width = rows[i][:WIDTH + 1]
            try:
                read_window(backend, entry, slice(row, row + height), slice(col, col + width), bands,
                            opts.fill, opts.dtype, out[i])
            except NdpatchError as err:
                raise at_target(err, i, named[i]) from err
        READERS.share(read, windowed, threads if decoded else 1)
    return out


def _batch_layout(groups: list[_Group], layouts: list, resampled: dict, rows: list[list[int]],
                  named: Sequence) -> tuple[tuple[int, ...], np.dtype]:
    """The batch's (B, H, W, C) and dtype: the first row's; TargetError naming the first row that differs."""
    group_of = {i: k for k, group in enumerate(groups) for i in group.rows}

    def layout_of(i: int) -> tuple:
        if i in resampled:
            return (*resampled[i].shape, resampled[i].dtype)
        return (rows[i][HEIGHT], rows[i][WIDTH], *layouts[group_of[i]][:2])

    first = layout_of(0)
    alike = (not resampled and all(layout[:2] == first[2:] for layout in layouts)
             and all(row[HEIGHT] == first[0] and row[WIDTH] == first[1] for row in rows))  # the common case
    odd = None if alike else next((i for i in range(len(rows)) if layout_of(i) != first), None)
    if odd is not None:
        record = groups[group_of[odd]].record
        layout = layout_of(odd)
        raise at_target(TargetError(f"{record.describe()}: its window is {layout[:3]} {layout[3]} but "
                                    f"the batch's first is {first[:3]} {first[3]}; a batch needs one shape "
                                    "and dtype"), odd, named[odd])
    return (len(rows), *first[:3]), np.dtype(first[3])


def _memory_array(backend, entry) -> np.ndarray | None:
    """The entry's pixels as an in-memory (mapped) H×W×C array, when the backend has one (npy)."""
    array_of = getattr(backend, "array", None)
    return None if array_of is None else array_of(entry)


def _group_copies(out: np.ndarray, array: np.ndarray, entry, group: _Group, bands, rows: list[list[int]],
                  named: Sequence, dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fill the group's padded windows; the (destination, source) views of their in-image rectangles
    (:func:`~ndpatch.target.clip_window`'s, for a window not wholly inside its image)."""
    height, width = group.record.dims
    picked = slice(None) if bands is None else _band_index(bands)
    padded, copies = [], []
    for i in group.rows:
        _, row, col, rows_read, cols_read = rows[i][:WIDTH + 1]
        if 0 <= row and row + rows_read <= height and 0 <= col and col + cols_read <= width:  # inside
            copies.append((out[i], array[row:row + rows_read, col:col + cols_read, picked]))
            continue
        inner_rows, inner_cols = clip_window(slice(row, row + rows_read), slice(col, col + cols_read),
                                             height, width)
        y0, y1, x0, x1 = inner_rows.start, inner_rows.stop, inner_cols.start, inner_cols.stop
        padded.append(i)
        if y1 > y0 and x1 > x0:
            copies.append((out[i, y0 - row:y1 - row, x0 - col:x1 - col], array[y0:y1, x0:x1, picked]))
    if padded:
        try:
            value = fill_value(entry, group.options.fill, np.dtype(dtype))
        except NdpatchError as err:
            raise at_target(err, padded[0], named[padded[0]]) from err
        out[padded] = value
    return copies


def _copy_windows(copies: list[tuple[np.ndarray, np.ndarray]], parallel: bool) -> None:
    """Copy each source view into its destination; ``parallel``: through torch's intra-op threads.

    Sharing a batch's numpy copies between Python threads made it slower here, not
    faster (256² uint8 windows, batches of 16, 2 CPUs: 21k windows/s on 2 threads, 36k
    on one); torch's ``copy_`` splits each copy over its ``torch.get_num_threads()``
    intra-op threads (42k; one thread in a DataLoader worker).

    >>> out = np.zeros((2, 3), np.uint8)
    >>> _copy_windows([(out[0], np.arange(3, dtype=np.uint8))], parallel=True)
    >>> out.tolist()
    [[0, 1, 2], [0, 0, 0]]
    """
    if not parallel:
        for destination, source in copies:
            destination[...] = source
        return
    import torch
    _spend_torch_read_only_warning()
    for destination, source in copies:
        torch.from_numpy(destination).copy_(torch.from_numpy(source))


@functools.cache
def _spend_torch_read_only_warning() -> None:
    """torch warns, once per process, that an array is not writable: spend it, unseen, on a probe.

    The memory-mapped sources are read-only and only read; without this a
    caller's first parallel batch would show that warning.
    """
    import torch
    probe = np.zeros(1, np.uint8)
    probe.flags.writeable = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        torch.from_numpy(probe)


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


#: ``table.data[:, ROW:WIDTH + 1] @ WINDOW_LIMITS`` gives each window's ``x1, -x0, y1, -y0``:
#: the right-hand sides of the window test (:attr:`~ndpatch.annots.ImageAnnots.edges`).
WINDOW_LIMITS = np.array([[0, 0, 1, -1],    # row
                          [1, -1, 0, 0],    # col
                          [0, 0, 1, 0],     # height
                          [1, 0, 0, 0]],    # width
                         dtype=np.float64)


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
    image_of: dict[int, int] = {}
    parts, image = [], []
    for gid in data[:, GID].tolist():
        k = image_of.get(gid)
        if k is None:
            k = image_of[gid] = len(parts)
            parts.append(index.image_annots(gid))
        image.append(k)
    image = np.array(image, dtype=np.int64)
    lengths = [len(part) for part in parts]
    offsets = np.cumsum([0] + lengths)
    limits = data[:, ROW:WIDTH + 1] @ WINDOW_LIMITS
    scaled_options = [k for k, opts in enumerate(table.options) if opts.scale != 1]
    tested = image if not scaled_options else np.where(np.isin(data[:, OPTION], scaled_options), -1, image)
    if len(data) * offsets[-1] <= JOINT_TEST_CELLS:
        edges = parts[0].edges if len(parts) == 1 else np.concatenate([part.edges for part in parts], axis=1)
        hits = (edges < limits[:, :, None]).all(axis=1)
        if len(parts) > 1 or scaled_options:
            hits &= np.repeat(np.arange(len(parts)), lengths) == tested[:, None]
        window, column = np.nonzero(hits)
    else:
        windows, columns = [], []
        for k, part in enumerate(parts):
            rows = np.flatnonzero(tested == k)
            found, annot = np.nonzero((part.edges < limits[rows, :, None]).all(axis=1))
            windows.append(rows[found])
            columns.append(annot + offsets[k])
        window = np.concatenate(windows)
        order = np.argsort(window, kind="stable")
        window, column = window[order], np.concatenate(columns)[order]
    own = {int(i): scaled(table[int(i)]) for i in np.flatnonzero(tested < 0)} if scaled_options else {}
    return BatchAnnots(parts, image, data[:, GID], data[:, [COL, ROW]], window, column, offsets, own)


class BatchAnnots(Sequence):
    """The annotations of every window of a batch: ``annots[i]`` is window ``i``'s (a WindowAnnots).

    :meth:`stacked` gives the batch's boxes, classes and ids as the
    concatenated columns :func:`~ndpatch.annots.stack_windows` makes, without
    building a per-window object. Pickles as a list of plain dicts.
    """

    def __init__(self, parts: list, image: np.ndarray, gids: np.ndarray, origins: np.ndarray,
                 window: np.ndarray, column: np.ndarray, offsets: np.ndarray, own: dict[int, Mapping]):
        self.parts, self.image = parts, image        # the batch's ImageAnnots; each window's part
        self.gids, self.origins = gids, origins      # per window: image id, image (x, y) of its pixel (0, 0)
        self.window, self.column, self.offsets = window, column, offsets  # (window, annotation) pairs
        self.counts = np.bincount(window, minlength=len(image))
        self.own = own
        self._starts: list[int] | None = None
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
            if self._starts is None:
                self._starts = [0, *np.cumsum(self.counts).tolist()]
            k = int(self.image[index])
            start, stop = self._starts[index], self._starts[index + 1]
            x0, y0 = self.origins[index].tolist()
            built = self._built[index] = WindowAnnots(self.parts[k], self.column[start:stop] - self.offsets[k],
                                                      x0, y0, int(self.gids[index]))
        return built

    def stacked(self) -> dict[str, np.ndarray]:
        """``xyxy`` (N×4 float64, each box in its own window's frame), ``cids``, ``aids``, ``counts``."""
        if self.own:
            return stack_windows(list(self))
        if len(self.parts) == 1:
            part = self.parts[0]
            xyxy, cids, aids = part.boxes[self.column], part.cids[self.column], part.aids[self.column]
        else:
            xyxy = np.concatenate([part.boxes for part in self.parts])[self.column]
            cids = np.concatenate([part.cids for part in self.parts])[self.column]
            aids = np.concatenate([part.aids for part in self.parts])[self.column]
        xyxy[:, :2] -= self.origins[self.window]   # a gathered copy: xywh in place → xyxy
        xyxy[:, 2:] += xyxy[:, :2]
        return {"xyxy": xyxy, "cids": cids, "aids": aids, "counts": self.counts}

    def __reduce__(self):
        return list, ([dict(window) for window in self],)

    def __repr__(self) -> str:
        return f"BatchAnnots({len(self)} windows, {len(self.column)} annotations)"
