"""Lightning: :class:`PatchDataModule`, train/val/test loaders over a split dataset.

Built from the folder ``ndpatch split`` writes (``train.kwcoco.json``,
``val.kwcoco.json``, ``test.kwcoco.json``) or a mapping of split names to
dataset files. Each split is a :class:`ndpatch.torch.PatchDataset` read in
batches (``__getitems__``): train over preselected positives and negatives
(or a grid), val and test over a grid covering every pixel. Every loader is
sharded across ranks by ndpatch's own samplers (the same order as
``DistributedSampler``, so Lightning leaves them as they are), reshuffled per
epoch by Lightning's ``set_epoch`` calls, and the train loader resumes
mid-epoch from a checkpoint: its ``state_dict`` (:class:`ResumableLoader`,
saved by Lightning in each checkpoint) records how many samples the training
steps consumed in the current epoch.

Example:
    >>> import tempfile
    >>> from ndpatch.demo import kwcoco_demo
    >>> from ndpatch.splits import split_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = split_dataset(kwcoco_demo("shapes8"), folder, {"train": 0.75, "val": 0.25, "test": 0.0})
    >>> data = PatchDataModule(folder, window_dims=(64, 64), batch_size=4, backend=None)
    >>> data.setup("fit")
    >>> batch = next(iter(data.train_dataloader()))
    >>> batch["im"].shape, len(batch["targets"])
    (torch.Size([4, 3, 64, 64]), 4)
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from ndpatch.errors import NdpatchError
from ndpatch.sampler import CocoSampler
from ndpatch.sampling.regions import Regions
from ndpatch.torch import BalancedSampler, PatchDataset, ShardedSampler, collate, worker_init

SPLITS = ("train", "val", "test")
#: How the train split's windows are chosen (val and test always use a grid).
TRAIN_WINDOWS = ("positives", "grid")


class DistributedShardedSampler(ShardedSampler, DistributedSampler):
    """:class:`~ndpatch.torch.ShardedSampler`, marked as the ``DistributedSampler`` it equals.

    Lightning wraps any other sampler in its own distributed wrapper under
    multi-process training, which would shard an already sharded epoch again.
    """


class DistributedBalancedSampler(BalancedSampler, DistributedSampler):
    """:class:`~ndpatch.torch.BalancedSampler`, marked as distributed (it shards itself) for Lightning."""


class EvalSampler(DistributedShardedSampler):
    """An unshuffled sharded sampler whose every iteration covers its whole shard from the start."""

    def __iter__(self) -> Iterator[int]:
        self.position = 0   # an evaluation cut short (limit_val_batches) must not shorten the next one
        yield from super().__iter__()


def split_files(splits: str | os.PathLike | Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """``{split: dataset path}``: the ``<split>.kwcoco.json`` files of a folder, or the mapping given."""
    if isinstance(splits, Mapping):
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise NdpatchError(f"unknown split names {sorted(unknown)}; expected some of {', '.join(SPLITS)}")
        return {name: str(path) for name, path in splits.items() if path is not None}
    folder = Path(splits)
    if not folder.is_dir():
        raise NdpatchError(f"{folder} is not a folder of split files (`ndpatch split DATASET {folder}` writes one)")
    found = {name: str(folder / f"{name}.kwcoco.json") for name in SPLITS
             if (folder / f"{name}.kwcoco.json").exists()}
    if not found:
        raise NdpatchError(f"{folder} holds none of {', '.join(f'{n}.kwcoco.json' for n in SPLITS)}")
    return found


class PatchDataModule(pl.LightningDataModule):
    """Train, val and test loaders of ndpatch windows for a ``lightning.pytorch.Trainer``.

    Args:
        splits: the folder ``ndpatch split`` wrote, or ``{'train': path, 'val': path, 'test': path}``
            (any of them; a missing split has no loader).
        window_dims: (height, width) of every window.
        batch_size: windows per batch (per rank).
        task: ``PatchDataset``'s task (``None``, ``'detection'``, ``'segmentation'``, ``'classification'``).
        train_windows: ``'positives'`` (one window around each annotation, jittered by
            ``sampling`` settings, plus ``neg_to_pos_ratio`` times as many negatives; drawn once
            from ``seed``) or ``'grid'`` (the full-coverage grid, as val and test).
        neg_to_pos_ratio: negatives per positive in the train split.
        window_overlap: overlap of neighbouring grid windows, in [0, 1).
        balance: draw train windows class-balanced (:class:`~ndpatch.torch.BalancedSampler`)
            instead of a shuffled epoch of each window once.
        seed: seeds the train windows and every epoch's order (the same on every rank).
        backend, workdir: the pixel backend of every split (``'npy'``: a cache made by
            ``prepare_data``, before training starts); ``warmup_workers`` converts in
            that many processes (default one per CPU; 0 in this process).
        num_workers, pin_memory: as for ``DataLoader`` (workers are persistent).
        sampling: :class:`~ndpatch.SamplingConfig` settings for the train positives
            (e.g. ``center_jitter``).
        train_options: ``PatchDataset`` arguments for the train split only, over
            ``dataset_options`` (e.g. an augmenting hook that val and test must not get).
        train_device_transform: a callable on each training batch dict once it is on the
            device (e.g. kornia augmentations of ``batch["im"]`` on the GPU), returning it.
            Lightning calls the data module's ``on_after_batch_transfer`` instead of a
            LightningModule's own, so augmentations that torchgeo puts there go here.
        **dataset_options: further ``PatchDataset`` arguments of every split (``dtype``, ``mean``, ``std``, ...).
    """

    def __init__(self, splits: str | os.PathLike | Mapping[str, str | os.PathLike],
                 window_dims: tuple[int, int], batch_size: int = 16, task: str | None = "detection",
                 train_windows: str = "positives", neg_to_pos_ratio: float = 1.0, window_overlap: float = 0.0,
                 balance: bool = False, seed: int = 0, backend: Any = "npy", workdir: str | None = None,
                 warmup_workers: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 sampling: Mapping[str, Any] | None = None, train_options: Mapping[str, Any] | None = None,
                 train_device_transform: Callable[[dict], dict] | None = None, **dataset_options):
        super().__init__()
        if train_windows not in TRAIN_WINDOWS:
            raise NdpatchError(f"unknown train_windows {train_windows!r}; expected one of {', '.join(TRAIN_WINDOWS)}")
        self.files = split_files(splits)
        self.window_dims = (int(window_dims[0]), int(window_dims[1]))
        self.batch_size = int(batch_size)
        self.task = task
        self.train_windows = train_windows
        self.neg_to_pos_ratio = float(neg_to_pos_ratio)
        self.window_overlap = float(window_overlap)
        self.balance = balance
        self.seed = int(seed)
        self.backend, self.workdir, self.warmup_workers = backend, workdir, warmup_workers
        self.num_workers, self.pin_memory = int(num_workers), pin_memory
        self.dataset_options = {split: dict(dataset_options) for split in SPLITS}
        self.dataset_options["train"].update(train_options or {})
        self.train_device_transform = train_device_transform
        self.sampling = dict(sampling or {})
        self.datasets: dict[str, PatchDataset | None] = {}
        self._train_loader: ResumableLoader | None = None

    # -- data --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Convert every split's images into the cache (once per machine, before training)."""
        from ndpatch.cache import CACHE_BACKENDS
        from ndpatch.warmup import warmup
        if isinstance(self.backend, str) and self.backend in CACHE_BACKENDS:
            for path in self.files.values():
                summary = warmup(path, backend=self.backend, workers=self.warmup_workers,
                                 workdir=self.workdir, progress=False)
                if summary.failed:
                    raise NdpatchError(str(summary))

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train and val; ``validate``; ``test``; ``predict``: test)."""
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            if split in self.files and split not in self.datasets:
                self.datasets[split] = self.split_dataset(split)
        if stage == "fit" and "train" not in self.files:
            raise NdpatchError(f"fitting needs a train split; have {', '.join(sorted(self.files))}")

    def split_dataset(self, split: str) -> PatchDataset | None:
        """The :class:`PatchDataset` of one split: its windows, in a fixed order (None: an empty val/test split)."""
        sampler = CocoSampler(self.files[split], backend=self.backend, workdir=self.workdir)
        regions = Regions(sampler, window_dims=self.window_dims, neg_to_pos_ratio=self.neg_to_pos_ratio,
                          **(self.sampling if split == "train" else {}))
        if split == "train" and self.train_windows == "positives":
            n_pos, n_neg = regions.preselect(rng=np.random.default_rng(self.seed))  # a Generator: same on every rank
            targets = [regions.get_item(i) for i in range(n_pos + n_neg)]
        else:
            grid = regions.new_sample_grid(window_dims=self.window_dims, window_overlap=self.window_overlap)
            targets = grid["positives"] + grid["negatives"]
        if not targets and split == "train":
            raise NdpatchError(f"split {split!r} ({self.files[split]}) has no {self.window_dims} windows")
        if not targets:
            return None   # an empty val or test split (``ndpatch split --test 0``): no loader
        return PatchDataset(sampler, targets, task=self.task, **self.dataset_options[split])

    @property
    def num_classes(self) -> int:
        """Largest category id + 1 (the size of a class dimension indexed by category id)."""
        self.setup("fit" if "train" in self.files else None)
        return next(iter(self.datasets.values())).reader.num_classes

    def loader(self, dataset: PatchDataset, sampler, train: bool) -> DataLoader:
        return (ResumableLoader if train else DataLoader)(
            dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
            worker_init_fn=worker_init, drop_last=train, persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory)

    def train_dataloader(self) -> ResumableLoader:
        self.setup("fit")
        dataset = self.datasets["train"]
        if self.balance:
            sampler = DistributedBalancedSampler(dataset.target_classes(), seed=self.seed)
        else:
            sampler = DistributedShardedSampler(dataset, seed=self.seed, drop_last=True)
        self._train_loader = self.loader(dataset, sampler, train=True)
        return self._train_loader

    def eval_dataloader(self, split: str) -> DataLoader | list:
        self.setup({"val": "validate", "test": "test"}[split])
        dataset = self.datasets.get(split)
        if dataset is None:
            return []
        return self.loader(dataset, EvalSampler(dataset, shuffle=False), train=False)

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("test")

    def predict_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("test")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Per-image targets as a plain list, which Lightning's device transfer rebuilds element by element."""
        if "targets" in batch:
            batch["targets"] = list(batch["targets"])
        return batch

    # -- resuming ------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the samples handed to training steps (what a checkpoint resumes after), then
        apply ``train_device_transform`` to them."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return batch
        if self._train_loader is not None:
            self._train_loader.consumed(len(batch["index"]))
        return batch if self.train_device_transform is None else self.train_device_transform(batch)


class ResumableLoader(DataLoader):
    """The train ``DataLoader``: its ``state_dict`` is where the training steps are in the epoch.

    Lightning saves it in every checkpoint and gives it back on resume (it is
    "stateful" to Lightning). The count comes from :meth:`consumed`, called by
    :class:`PatchDataModule` for each batch handed to a training step, so the
    batches Lightning and the workers fetch ahead are not counted.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch, self.count = self.sampler.epoch, 0

    def consumed(self, n: int) -> None:
        """``n`` more samples of the sampler's current epoch went to training."""
        if self.sampler.epoch != self.epoch:
            self.epoch, self.count = self.sampler.epoch, 0
        self.count += n

    def state_dict(self) -> dict:
        return self.sampler.state_dict(consumed=self.count if self.sampler.epoch == self.epoch else 0)

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields exactly the samples of that epoch not yet consumed."""
        self.sampler.load_state_dict(state)
        self.epoch, self.count = int(state["epoch"]), int(state["position"])
