"""Train the tiny centre-heatmap detector with Lightning, fed by ndpatch.PatchDataModule.

The data are kwcoco's toy ``shapes8`` images, split by image into train/val/test
files (what ``ndpatch split`` writes). The data module reads 96x96 windows from
an ``.npy`` cache made in ``prepare_data``: train windows around every annotation
plus half as many free of annotations, val windows on a grid. The model and its
targets are examples/train_detector.py's.

Run:
    python examples/train_lightning.py --max-steps 50
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from train_detector import TinyDetector, centre_heatmaps

from ndpatch.demo import kwcoco_demo
from ndpatch.lightning import PatchDataModule
from ndpatch.splits import split_dataset


class HeatmapDetector(pl.LightningModule):
    """TinyDetector trained on centre heatmaps with a weighted binary cross-entropy."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.model = TinyDetector(num_classes)
        self.num_classes = num_classes
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(20.0))

    def loss(self, batch: dict) -> torch.Tensor:
        images = batch["im"]
        heat = centre_heatmaps(batch["targets"], self.num_classes, *images.shape[2:])
        return self.loss_fn(self.model(images), heat)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train_loss", loss, batch_size=len(batch["im"]))
        if self.global_step % 10 == 0:
            print(f"step {self.global_step} loss {loss.item():.4f}", flush=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch), batch_size=len(batch["im"]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="folder for the splits and the cache (default: a temporary one)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ndpatch-lightning-"))

    pl.seed_everything(0, verbose=False)
    splits = workdir / "splits"
    if not (splits / "train.kwcoco.json").exists():
        split_dataset(kwcoco_demo("shapes8"), splits, {"train": 0.75, "val": 0.25, "test": 0.0})
    data = PatchDataModule(splits, window_dims=(96, 96), batch_size=args.batch_size, task="detection",
                           neg_to_pos_ratio=0.5, backend="npy", workdir=str(workdir / "cache"),
                           warmup_workers=0, num_workers=args.num_workers, mean=127.5, std=64.0)
    model = HeatmapDetector(data.num_classes)
    trainer = pl.Trainer(max_steps=args.max_steps, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, val_check_interval=min(args.max_steps, 20))
    trainer.fit(model, datamodule=data)
    loss = float(trainer.callback_metrics["train_loss"])
    print(f"trained {trainer.global_step} steps, last train loss {loss:.4f}")
    return loss


if __name__ == "__main__":
    main()
