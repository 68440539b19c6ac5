"""PyTorch input: batched datasets, collate, and distributed, balanced, resumable samplers.

:class:`PatchDataset` is a map-style ``Dataset`` over a list of targets whose
``__getitems__`` reads a whole batch with one :meth:`CocoSampler.load_batch`
call (one (B, H, W, C) buffer, no per-sample transfer); :class:`PatchStream`
is its endless iterable form, mixing positive and negative windows.
:func:`collate` is the ``collate_fn`` for both. A batch holds ``im``, the
images as a (B, C, H, W) tensor (a channels-last view of the read buffer: no
copy in native dtype), ``gid`` and ``origin`` (B×2: image ``x, y`` of each
window's pixel (0, 0)), ``index`` (dataset indices; map-style only) and the
labels of the ``task``:

* ``None``: the image only.
* ``"detection"``: per image, a target dict with ``boxes`` (N×4 float32,
  ``x0, y0, x1, y1`` in the window's pixel frame, not clipped), ``labels``
  (category ids, int64), ``aids`` and ``image_id``, the torchvision layout.
* ``"segmentation"``: also ``masks`` (N×H×W uint8 instance masks), and a
  stacked ``class_map`` (B×H×W int64: category id, 0 = background; the rules
  of :mod:`ndpatch.masks`).
* ``"classification"``: stacked ``multi_hot`` (B×K float32, K = largest
  category id + 1, slot = category id) and ``label`` (B int64: the category of
  the target's ``aid``, else of the annotation covering most of the window,
  else 0).

The samplers (:class:`ShardedSampler`, :class:`BalancedSampler`) shard an
epoch across distributed ranks, reshuffle with ``set_epoch`` and resume
mid-epoch from ``state_dict()``. :func:`worker_init` configures GDAL and
seeds each DataLoader worker.

Example:
    >>> import torch, ndpatch
    >>> from ndpatch.torch import PatchDataset, ShardedSampler, collate
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> targets = [{"gid": gid, "cx": 300, "cy": 300, "width": 96, "height": 64} for gid in (1, 2, 3)]
    >>> dataset = PatchDataset(sampler, targets, task="detection")
    >>> loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate,
    ...                                      sampler=ShardedSampler(dataset, seed=0))
    >>> batch = next(iter(loader))
    >>> batch["im"].shape, batch["im"].dtype, sorted(batch["targets"][0])
    (torch.Size([2, 3, 64, 96]), torch.uint8, ['aids', 'boxes', 'image_id', 'labels'])
"""
from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from ndpatch import gdalio
from ndpatch.batch import AID, COL, HEIGHT, NO_AID, OPTION, ROW, WIDTH, TargetColumns, WindowTable, select_annots
from ndpatch.errors import NdpatchError
from ndpatch.rng import RngLike, coerce_rng
from ndpatch.target import Target
from ndpatch.video import is_video_target

TASKS = (None, "detection", "segmentation", "classification")
#: Per-sample keys a ``transform`` receives and returns, per task (besides ``im``, ``gid``, ``origin``).
SAMPLE_KEYS = {None: (), "detection": ("boxes", "labels", "aids"),
               "classification": ("boxes", "labels", "aids"),
               "segmentation": ("boxes", "labels", "aids", "masks", "class_map")}


class Batch(dict):
    """A batch dict (what :class:`PatchDataset` and :class:`PatchStream` return).

    A ``DataLoader`` left with its default ``collate_fn`` indexes the batch
    as a list of samples (``batch[0]``); that gets a clear error saying to pass
    ``collate_fn=ndpatch.torch.collate`` instead of a bare ``KeyError: 0``.
    """

    def __missing__(self, key):
        if isinstance(key, int):
            raise NdpatchError("this batch was indexed as a list of samples (batch[0]): the DataLoader uses "
                               "its default collate_fn; pass collate_fn=ndpatch.torch.collate "
                               "(PatchDataset reads whole batches in __getitems__)")
        raise KeyError(key)


class BatchReader:
    """Targets → one training batch: the images as a (B, C, H, W) tensor and the task's labels.

    ``dtype`` (a torch dtype) converts the images; ``mean``/``std`` (one value
    per channel, or one for all) normalise them, as floats (default float32).
    ``threads`` is passed to :meth:`CocoSampler.load_batch`. ``output_dims``,
    ``transform``, ``batch_transform`` and ``contiguous``: see :class:`PatchDataset`.
    """

    def __init__(self, sampler, task: str | None = None, dtype: torch.dtype | None = None,
                 mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                 threads: int | None = None, transform: Callable[[dict], dict] | None = None,
                 batch_transform: Callable[[dict], dict] | None = None,
                 output_dims: tuple[int, int] | None = None, contiguous: bool = False):
        if task not in TASKS:
            raise NdpatchError(f"unknown task {task!r}; expected one of {TASKS}")
        if (mean is None) != (std is None):
            raise NdpatchError("give both mean and std to normalise, or neither")
        if mean is not None and dtype is None:
            dtype = torch.float32
        if mean is not None and not dtype.is_floating_point:
            raise NdpatchError(f"normalised images need a float dtype, not {dtype}")
        for name, hook in (("transform", transform), ("batch_transform", batch_transform)):
            if hook is not None and not callable(hook):
                raise NdpatchError(f"{name} must be a callable, got {type(hook).__name__}")
        if output_dims is not None:
            output_dims = tuple(int(d) for d in output_dims)
            if len(output_dims) != 2 or min(output_dims) < 1:
                raise NdpatchError(f"output_dims must be (height, width) of positive ints, got {output_dims}")
        self.sampler = sampler
        self.task = task
        self.dtype = dtype
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=dtype).reshape(1, -1, 1, 1)
        self.std = None if std is None else torch.as_tensor(std, dtype=dtype).reshape(1, -1, 1, 1)
        self.threads = threads
        self.transform = transform
        self.batch_transform = batch_transform
        self.output_dims = output_dims
        self.contiguous = bool(contiguous)
        self.num_classes = int(max(sampler.dset.cats, default=0)) + 1

    def __call__(self, targets: WindowTable | Sequence[dict | Target], index: Sequence[int] | None = None) -> Batch:
        if not isinstance(targets, WindowTable):
            if any(is_video_target(target) for target in targets):
                raise NdpatchError("PatchDataset serves image windows (B, H, W, C); these targets name video "
                                   "frames (video targets: use sampler.load_batch directly)")
            targets = self.sampler.window_table(targets)
        read = self._read if self.output_dims is None else self._read_resized
        im, labels = read(targets)
        if self.transform is not None:
            im, labels = self._transformed(im, labels, targets)
        tensor = torch.from_numpy(im).permute(0, 3, 1, 2)
        if self.dtype is not None:
            tensor = tensor.to(self.dtype)
            if self.mean is not None:
                tensor = tensor.sub_(self.mean).div_(self.std)
        if self.contiguous:
            tensor = tensor.contiguous()
        batch = Batch(im=tensor, gid=torch.from_numpy(targets.gid.copy()),
                      origin=torch.from_numpy(targets.data[:, [COL, ROW]]))
        if index is not None:
            batch["index"] = torch.as_tensor(index, dtype=torch.int64)
        if self.task is not None:
            batch.update(self._labels(targets, labels, tuple(im.shape[1:3])))
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        return batch

    def _read(self, table: WindowTable) -> tuple[np.ndarray, dict | None]:
        """The batch's pixels (B, H, W, C) and, with a task, its labels as arrays (see :meth:`_label_arrays`)."""
        raw = self.sampler.load_batch(table, with_annots=self.task is not None, threads=self.threads)
        labels = None if self.task is None else self._label_arrays(raw["annots"], raw["im"].shape[1:3])
        return raw["im"], labels

    def _label_arrays(self, annots, shape: tuple[int, int]) -> dict:
        """``xyxy``, ``cids``, ``aids``, ``counts`` of the batch (and the masks for segmentation)."""
        labels = dict(annots.stacked())
        if self.task == "segmentation":
            from ndpatch import masks
            dtype = masks.label_dtype(self.num_classes - 1)
            labels["class_map"] = np.stack([masks.class_map(window, shape, dtype) for window in annots])
            labels["masks"] = np.concatenate([masks.instance_masks(window, shape).astype(np.uint8)
                                              for window in annots]).reshape(-1, *shape)
        return labels

    def _read_resized(self, table: WindowTable) -> tuple[np.ndarray, dict | None]:
        """Windows of any size, each resized to ``output_dims`` with its boxes (and masks) scaled to match."""
        import kwimage
        height, width = self.output_dims
        sizes = np.stack([table.height, table.width], axis=1)
        keys, which = np.unique(sizes, axis=0, return_inverse=True)
        parts = {}
        for k, (h, w) in enumerate(keys.tolist()):
            rows = np.flatnonzero(which.ravel() == k)
            im, labels = self._read(table.take(rows))
            resized = np.stack([kwimage.imresize(window, dsize=(width, height), interpolation="linear")
                                .reshape(height, width, -1) for window in im])
            if labels is not None:
                labels["xyxy"] = labels["xyxy"] * np.array([width / w, height / h] * 2)
                for key in ("class_map", "masks"):
                    if key in labels:
                        labels[key] = np.stack([kwimage.imresize(m, dsize=(width, height), interpolation="nearest")
                                                for m in labels[key]]).reshape(-1, height, width)
            parts[k] = (rows, resized, labels)
        return _merge_parts(list(parts.values()), len(table), self.task is not None)

    def _transformed(self, im: np.ndarray, labels: dict | None, table: WindowTable) -> tuple[np.ndarray, dict | None]:
        """Apply ``transform`` to each sample dict; the results stacked back into a batch."""
        keys = SAMPLE_KEYS[self.task]
        samples = _split_samples(im, labels, table, keys)
        results = []
        for k, sample in enumerate(samples):
            result = self.transform(sample)
            if not isinstance(result, dict) or "im" not in result:
                raise NdpatchError(f"transform must return the sample dict (with 'im'), got {type(result).__name__} "
                                   f"for target {k} of the batch")
            results.append(result)
        try:
            stacked = np.stack([np.asarray(result["im"]) for result in results])
        except ValueError as err:
            raise NdpatchError(f"transform returned images of different shapes in one batch "
                               f"({sorted({np.shape(r['im']) for r in results})}): {err}") from None
        if labels is None:
            return stacked, None
        return stacked, _join_samples(results, keys)

    def _labels(self, table: WindowTable, labels: dict, shape: tuple[int, int]) -> dict:
        counts = labels["counts"].tolist()
        columns = {"boxes": torch.from_numpy(np.asarray(labels["xyxy"], dtype=np.float32)),
                   "labels": torch.from_numpy(np.asarray(labels["cids"], dtype=np.int64)),
                   "aids": torch.from_numpy(np.asarray(labels["aids"], dtype=np.int64))}
        out = {}
        if self.task == "segmentation":
            columns["masks"] = torch.from_numpy(np.ascontiguousarray(labels["masks"], dtype=np.uint8))
            out["class_map"] = torch.from_numpy(labels["class_map"].astype(np.int64))
        out["targets"] = BatchTargets(columns, counts, table.gid.tolist())
        if self.task == "classification":
            cids = columns["labels"]
            multi_hot = torch.zeros((len(counts), self.num_classes), dtype=torch.float32)
            rows = torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(counts, dtype=torch.int64))
            named = cids > 0
            multi_hot[rows[named], cids[named]] = 1
            out["multi_hot"] = multi_hot
            aids = table.data[:, AID].tolist()
            starts = np.cumsum([0] + counts)  # window k's annotations are rows starts[k]:starts[k + 1]
            out["label"] = torch.tensor(
                [main_class(None if aid == NO_AID else aid, labels["aids"][a:b], labels["cids"][a:b],
                            labels["xyxy"][a:b], shape) for aid, a, b in zip(aids, starts, starts[1:])],
                dtype=torch.int64)
        return out


def _split_samples(im: np.ndarray, labels: dict | None, table: WindowTable, keys: tuple[str, ...]) -> list[dict]:
    """The per-sample dicts a ``transform`` gets: ``im`` (H×W×C), ``gid``, ``origin`` and the task's labels."""
    samples = [{"im": im[k], "gid": int(table.gid[k]), "origin": (int(table.col[k]), int(table.row[k]))}
               for k in range(len(im))]
    if labels is None:
        return samples
    starts = np.cumsum([0] + labels["counts"].tolist())
    names = {"boxes": "xyxy", "labels": "cids", "aids": "aids", "masks": "masks"}
    for k, sample in enumerate(samples):
        a, b = starts[k], starts[k + 1]
        for key in keys:
            if key == "class_map":
                sample[key] = labels["class_map"][k]
            else:
                value = labels[names[key]][a:b]
                sample[key] = value.astype(np.float32) if key == "boxes" else value
    return samples


def _join_samples(results: list[dict], keys: tuple[str, ...]) -> dict:
    """Transformed sample dicts → the batch's label arrays (``xyxy``, ``cids``, ``aids``, ``counts``, masks)."""
    def column(key: str, width: tuple[int, ...], dtype) -> np.ndarray:
        parts = [np.asarray(result[key], dtype=dtype).reshape(-1, *width) for result in results]
        return np.concatenate(parts) if parts else np.zeros((0, *width), dtype)

    labels = {"xyxy": column("boxes", (4,), np.float64), "cids": column("labels", (), np.int64),
              "aids": column("aids", (), np.int64),
              "counts": np.array([len(np.asarray(result["labels"])) for result in results], dtype=np.int64)}
    for key in ("boxes", "aids"):
        lengths = [len(np.asarray(result[key]).reshape(-1, 4) if key == "boxes" else np.asarray(result[key]))
                   for result in results]
        if lengths != labels["counts"].tolist():
            raise NdpatchError(f"transform returned {key} and labels of different lengths ({lengths} vs "
                               f"{labels['counts'].tolist()}): keep them together (e.g. albumentations' "
                               "label_fields=['labels', 'aids'])")
    if "class_map" in keys:
        shape = np.asarray(results[0]["im"]).shape[:2]
        labels["class_map"] = np.stack([np.asarray(result["class_map"]) for result in results])
        labels["masks"] = column("masks", shape, np.uint8)
    return labels


def _merge_parts(parts: list[tuple], n: int, with_labels: bool) -> tuple[np.ndarray, dict | None]:
    """Size groups read apart (``(rows, im, labels)`` each) put back in batch order."""
    first = parts[0][1]
    im = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    for rows, part, _ in parts:
        im[rows] = part
    if not with_labels:
        return im, None
    per_window = [None] * n
    for rows, _, labels in parts:
        starts = np.cumsum([0] + labels["counts"].tolist())
        for k, row in enumerate(rows.tolist()):
            a, b = starts[k], starts[k + 1]
            per_window[row] = {key: labels[key][a:b] for key in ("xyxy", "cids", "aids", "masks") if key in labels}
            if "class_map" in labels:
                per_window[row]["class_map"] = labels["class_map"][k]
    merged = {key: np.concatenate([w[key] for w in per_window]) for key in per_window[0] if key != "class_map"}
    merged["counts"] = np.array([len(w["cids"]) for w in per_window], dtype=np.int64)
    if "class_map" in per_window[0]:
        merged["class_map"] = np.stack([w["class_map"] for w in per_window])
    return im, merged


class BatchTargets(list):
    """The per-image target dicts of a batch: a list that pickles as one tensor per key.

    A DataLoader worker sends every tensor through its own shared-memory
    handle, so a few small label tensors per image would cost more than the
    pixels. This list sends the batch's concatenated ``columns`` (and the
    annotation ``counts`` per image) and rebuilds the per-image views on arrival.

    >>> import torch, pickle
    >>> targets = BatchTargets({"labels": torch.tensor([3, 1, 2])}, [2, 0, 1], [7, 8, 9])
    >>> [t["labels"].tolist() for t in pickle.loads(pickle.dumps(targets))], targets[2]["image_id"]
    ([[3, 1], [], [2]], 9)
    """

    def __init__(self, columns: dict[str, torch.Tensor], counts: list[int], image_ids: list[int]):
        self.columns, self.counts, self.image_ids = columns, counts, image_ids
        keys = (*columns, "image_id")
        super().__init__(dict(zip(keys, values))
                         for values in zip(*(column.split_with_sizes(counts) for column in columns.values()),
                                           image_ids))   # split_with_sizes: split's Python wrapper costs 2 µs a column

    def __reduce__(self):
        return BatchTargets, (self.columns, self.counts, self.image_ids)


def main_class(aid: int | None, aids: np.ndarray, cids: np.ndarray, xyxy: np.ndarray,
               shape: tuple[int, int]) -> int:
    """The category of a window: its target's ``aid``, else the annotation covering most of it, else 0.

    ``aids``, ``cids`` and ``xyxy`` describe the window's annotations (boxes in
    its pixel frame); ``shape`` is its (height, width).

    >>> import numpy as np
    >>> aids, cids = np.array([5, 6]), np.array([2, 3])
    >>> xyxy = np.array([[0., 0, 4, 4], [-10, -10, 30, 30]])
    >>> main_class(None, aids, cids, xyxy, (8, 8)), main_class(5, aids, cids, xyxy, (8, 8))
    (3, 2)
    """
    if aid is not None and aid in aids:
        return max(int(cids[list(aids).index(aid)]), 0)
    if len(aids) == 0:
        return 0
    height, width = shape
    inside_w = np.clip(xyxy[:, 2], 0, width) - np.clip(xyxy[:, 0], 0, width)
    inside_h = np.clip(xyxy[:, 3], 0, height) - np.clip(xyxy[:, 1], 0, height)
    return max(int(cids[int(np.argmax(inside_w * inside_h))]), 0)


class PatchDataset(Dataset):
    """A map-style dataset over targets (a grid, preselected positives/negatives, or your own).

    Give it to a ``DataLoader`` with ``collate_fn=ndpatch.torch.collate``: the
    loader then calls ``__getitems__`` once per batch, which reads all the
    windows with one :meth:`CocoSampler.load_batch`. Each target is parsed once,
    the first time it is read, into a :class:`~ndpatch.batch.WindowTable` row
    (a target naming the whole image keeps the size the image had then).
    Pickles with no open handles (each worker opens its own on first read).

    Args:
        sampler: the :class:`~ndpatch.CocoSampler`.
        targets: target dicts or parsed :class:`~ndpatch.target.Target` values.
        task: ``None``, ``"detection"``, ``"segmentation"`` or ``"classification"``.
        dtype, mean, std, threads: see :class:`BatchReader`.
        output_dims: ``(height, width)``: resize every window to this size, its
            boxes (and masks) scaled to match, so windows of different sizes
            (e.g. fitted to annotations) batch together. Without it, every
            target of a batch must give the same window size, bands and dtype.
        transform: a callable on each sample dict, returning it: ``im``
            (H×W×C numpy array, native dtype, writable), ``gid``, ``origin`` and,
            with a task, ``boxes`` (N×4 float32 xyxy), ``labels``, ``aids``
            (segmentation: also ``masks`` N×H×W, ``class_map`` H×W). Runs after
            ``output_dims``, before ``dtype``/``mean``/``std``.
        batch_transform: a callable on the finished batch dict (tensors, e.g.
            kornia augmentations of ``batch["im"]``), returning it.
        contiguous: make ``im`` a C-contiguous (B, C, H, W) tensor (one copy);
            by default it is a channels-last view of the read buffer.
    """

    def __init__(self, sampler, targets: Sequence[dict | Target], task: str | None = None,
                 dtype: torch.dtype | None = None, mean=None, std=None, threads: int | None = None,
                 transform: Callable[[dict], dict] | None = None,
                 batch_transform: Callable[[dict], dict] | None = None,
                 output_dims: tuple[int, int] | None = None, contiguous: bool = False):
        self.sampler = sampler
        self.targets = list(targets)
        self.columns = TargetColumns(self.targets, self._parse)
        self.reader = BatchReader(sampler, task, dtype, mean, std, threads, transform, batch_transform,
                                  output_dims, contiguous)

    def _parse(self, target: dict) -> Target:
        if is_video_target(target):
            raise NdpatchError("PatchDataset serves image windows (B, H, W, C); this target names video frames "
                               "(video targets: use sampler.load_batch directly)")
        return self.sampler.parse(target)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        return self.reader(self.columns.take(indices), indices)

    def __getitem__(self, index: int) -> dict:
        batch = self.__getitems__([index])
        item = {key: value[0] for key, value in batch.items() if key != "targets"}
        if "targets" in batch:
            item["target"] = batch["targets"][0]
        return item

    def target_classes(self, batch_size: int = 256) -> np.ndarray:
        """The main category of each target's window (see :func:`main_class`), for class balancing."""
        classes = np.zeros(len(self.targets), dtype=np.int64)
        for start in range(0, len(self.targets), batch_size):
            rows = np.arange(start, min(start + batch_size, len(self.targets)))
            table = self.columns.take(rows)
            stacked = select_annots(self.sampler.index, table, self.sampler._window_annots).stacked()
            bounds = np.cumsum([0] + stacked["counts"].tolist())
            for k, (aid, height, width, option) in enumerate(table.data[:, [AID, HEIGHT, WIDTH, OPTION]].tolist()):
                scale = table.options[option].scale
                shape = (height, width) if scale == 1 else table[k].shape
                a, b = bounds[k], bounds[k + 1]
                classes[start + k] = main_class(None if aid == NO_AID else aid, stacked["aids"][a:b],
                                                stacked["cids"][a:b], stacked["xyxy"][a:b], shape)
        return classes


class PatchStream(IterableDataset):
    """An endless stream of batches mixing positive and negative windows of one size.

    Each window is drawn by :meth:`ndpatch.regions.Regions.draw` from the
    stream's own :class:`~ndpatch.regions.Regions` (configured with
    ``window_dims`` and ``**config``, e.g. ``neg_to_pos_ratio=1``,
    ``balance='category'``), so the sampler's own ``regions`` are left alone.
    Use it as ``DataLoader(stream, batch_size=None, collate_fn=collate)``.
    ``rng`` follows :func:`ndpatch.rng.coerce_rng`: a seed gives the same
    stream run to run, and every DataLoader worker and rank its own; ``None``
    seeds each worker from torch's worker seed. ``transform``,
    ``batch_transform`` and ``contiguous`` are :class:`PatchDataset`'s.
    """

    def __init__(self, sampler, batch_size: int, window_dims: tuple[int, int], task: str | None = None,
                 rng: RngLike = None, dtype: torch.dtype | None = None, mean=None, std=None,
                 threads: int | None = None, transform: Callable[[dict], dict] | None = None,
                 batch_transform: Callable[[dict], dict] | None = None, contiguous: bool = False, **config):
        from ndpatch.regions import Regions
        self.regions = Regions(sampler, window_dims=window_dims, **config)
        self.batch_size = int(batch_size)
        self.rng = rng
        self.reader = BatchReader(sampler, task, dtype, mean, std, threads, transform, batch_transform,
                                  contiguous=contiguous)

    def __iter__(self) -> Iterator[dict]:
        gen = coerce_rng(self.rng)
        while True:
            yield self.reader([self.regions.draw(gen) for _ in range(self.batch_size)])


def collate(items: dict | list[dict]) -> dict:
    """Batch PatchDataset items: stack images and fixed-size labels, list the per-image targets.

    A batch that ``__getitems__`` already built is returned as is.

    >>> import torch
    >>> items = [{"im": torch.zeros(3, 4, 5), "index": i, "target": {"boxes": torch.zeros(i, 4)}}
    ...          for i in range(2)]
    >>> batch = collate(items)
    >>> batch["im"].shape, batch["index"].tolist(), [len(t["boxes"]) for t in batch["targets"]]
    (torch.Size([2, 3, 4, 5]), [0, 1], [0, 1])
    """
    if isinstance(items, dict):
        return items
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "target":
            batch["targets"] = values
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.as_tensor(values)
    return batch


def worker_init(worker_id: int, gdal_cachemax_mb: int | None = None) -> None:
    """``worker_init_fn`` for DataLoaders: GDAL settings (bounded block cache) and worker seeds.

    Seeds Python's ``random`` and numpy's legacy global state from torch's
    worker seed, so user augmentations differ per worker and repeat run to run;
    ndpatch's own streams already do (:mod:`ndpatch.rng`). Pass a cache size
    with ``functools.partial(worker_init, gdal_cachemax_mb=32)``.
    """
    gdalio.configure(gdal_cachemax_mb)
    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank): given, else torch.distributed's when initialised, else (1, 0)."""
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise NdpatchError(f"rank {rank} is not in [0, {num_replicas}) ranks")
    return int(num_replicas), int(rank)


class EpochSampler(Sampler[int], ABC):
    """A per-rank epoch of dataset indices that reshuffles with ``set_epoch`` and resumes mid-epoch.

    ``position`` counts the indices of this rank's epoch already handed out;
    iterating continues from it. An iteration that runs to its end resets it,
    so iterating again without ``set_epoch`` repeats the epoch, as
    ``DistributedSampler`` does. ``state_dict(consumed=...)`` records where to resume: with
    ``num_workers=0`` the default (what was handed out) is exact; with workers
    the DataLoader prefetches ahead, so pass the number of samples your loop
    actually consumed this epoch.
    """

    def __init__(self, num_samples: int, num_replicas: int | None, rank: int | None, seed: int):
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self.total_size = self.num_replicas * int(num_samples)

    def rank_indices(self) -> list[int]:
        """This rank's indices of the current epoch, in order."""
        return self.epoch_indices()[self.rank:self.total_size:self.num_replicas]

    @abstractmethod
    def epoch_indices(self) -> list[int]:
        """All ranks' indices of the current epoch (``total_size`` of them), interleaved by rank."""

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        indices = self.rank_indices()
        while self.position < len(indices):
            self.position += 1
            yield indices[self.position - 1]
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order; a new epoch starts from its beginning."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def state_dict(self, consumed: int | None = None) -> dict:
        """Where this rank is: epoch, samples consumed this epoch, and what the order depends on."""
        return {"epoch": self.epoch, "position": self.position if consumed is None else int(consumed),
                "seed": self.seed, "num_replicas": self.num_replicas, "rank": self.rank,
                "total_size": self.total_size}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields exactly this rank's remaining samples of that epoch."""
        for key in ("seed", "num_replicas", "total_size"):
            if state[key] != getattr(self, key):
                raise NdpatchError(f"cannot resume: the saved sampler has {key}={state[key]}, "
                                   f"this one {getattr(self, key)}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


class ShardedSampler(EpochSampler):
    """Dataset indices sharded across ranks with ``DistributedSampler``'s semantics, resumable.

    Each epoch is a permutation seeded by ``seed + epoch`` (the same on every
    rank; identical to ``torch.utils.data.DistributedSampler``'s). Rank ``r``
    takes positions ``r, r + R, r + 2R, ...``. Without ``drop_last`` the
    permutation is padded by repeating its start so every rank gets
    ``ceil(n / R)`` indices (a few samples appear twice per epoch); with
    ``drop_last`` its tail is dropped so each gets ``floor(n / R)``. Works
    unsharded too (one rank: a resumable random sampler).

    >>> sampler = ShardedSampler(range(5), num_replicas=2, rank=1, shuffle=False)
    >>> list(sampler), len(sampler)
    ([1, 3, 0], 3)
    """

    def __init__(self, data_source: Sequence | int, num_replicas: int | None = None,
                 rank: int | None = None, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        self.n = data_source if isinstance(data_source, int) else len(data_source)
        replicas, _ = _world(num_replicas, rank)
        per_rank = self.n // replicas if drop_last else math.ceil(self.n / replicas)
        super().__init__(per_rank, num_replicas, rank, seed)
        self.shuffle = shuffle
        self.drop_last = drop_last

    def epoch_indices(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator()
            gen.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        if self.total_size > self.n:
            order += (order * math.ceil(self.total_size / max(self.n, 1)))[:self.total_size - self.n]
        return order[:self.total_size]


class BalancedSampler(EpochSampler):
    """Class-balanced draws: each sample picks a class uniformly, then one of its targets.

    ``classes`` gives each dataset index a class (e.g.
    :meth:`PatchDataset.target_classes`; 0 = background is a class like any
    other). An epoch is ``num_samples`` draws in all (default: the number of
    targets), made once from ``seed`` and ``epoch`` and sharded like
    :class:`ShardedSampler`, so ranks split one balanced sequence.

    >>> sampler = BalancedSampler([0, 0, 0, 0, 1], num_samples=1000, seed=0)
    >>> picks = np.array([0, 0, 0, 0, 1])[list(sampler)]
    >>> 400 < int((picks == 1).sum()) < 600
    True
    """

    def __init__(self, classes: Sequence[int], num_samples: int | None = None,
                 num_replicas: int | None = None, rank: int | None = None, seed: int = 0):
        classes = np.asarray(classes, dtype=np.int64)
        if classes.ndim != 1 or len(classes) == 0:
            raise NdpatchError(f"classes must give one class per target, got shape {classes.shape}")
        self.order = np.argsort(classes, kind="stable")
        _, self.starts, self.counts = np.unique(classes[self.order], return_index=True, return_counts=True)
        replicas, _ = _world(num_replicas, rank)
        num_samples = len(classes) if num_samples is None else int(num_samples)
        super().__init__(math.ceil(num_samples / replicas), num_replicas, rank, seed)

    def epoch_indices(self) -> list[int]:
        gen = np.random.default_rng([self.seed, self.epoch])
        picked = gen.integers(len(self.counts), size=self.total_size)
        within = (gen.random(self.total_size) * self.counts[picked]).astype(np.int64)
        return self.order[self.starts[picked] + within].tolist()
