"""Train a tiny centre-heatmap detector with ndpatch as the input pipeline (torch only).

The data are kwcoco's toy ``shapes8`` images (shapes drawn on noise). ndpatch
preselects 96x96 windows (one around each annotation, plus half as many
windows free of annotations), reads each batch of windows with one batched
read from an ``.npy`` cache, and hands the model float images plus
torchvision-style box targets. The model predicts, for every 4x4 cell and
class, whether an object of that class is centred in the cell.

Run:
    python examples/train_detector.py --iterations 100
"""
from __future__ import annotations

import argparse
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader

import ndpatch
from ndpatch.torch import PatchDataset, ShardedSampler, collate, worker_init

STRIDE = 4


class TinyDetector(nn.Module):
    """Three convolutions down to stride 4, then one logit per class per cell."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Conv2d(32, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def centre_heatmaps(targets: list[dict], num_classes: int, height: int, width: int) -> torch.Tensor:
    """(B, K, H/4, W/4): 1 where a box of class k has its centre, 0 elsewhere."""
    heat = torch.zeros(len(targets), num_classes, height // STRIDE, width // STRIDE)
    for b, target in enumerate(targets):
        boxes = target["boxes"]
        cx = ((boxes[:, 0] + boxes[:, 2]) / 2 / STRIDE).long()
        cy = ((boxes[:, 1] + boxes[:, 3]) / 2 / STRIDE).long()
        inside = (cx >= 0) & (cx < width // STRIDE) & (cy >= 0) & (cy < height // STRIDE)
        heat[b, target["labels"][inside], cy[inside], cx[inside]] = 1
    return heat


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workdir", default=None, help="cache directory (default: a temporary one)")
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="ndpatch-train-")

    torch.manual_seed(0)
    sampler = ndpatch.CocoSampler.demo("shapes8", backend="npy", workdir=workdir)
    regions = sampler.regions
    n_pos, n_neg = regions.preselect(neg_to_pos_ratio=0.5, window_dims=(96, 96), rng=0)
    targets = [regions.get_item(i) for i in range(n_pos + n_neg)]
    dataset = PatchDataset(sampler, targets, task="detection", mean=127.5, std=64.0)
    batches = ShardedSampler(dataset, seed=0)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=batches, collate_fn=collate,
                        num_workers=args.num_workers, worker_init_fn=worker_init, drop_last=True)
    num_classes = dataset.reader.num_classes

    model = TinyDetector(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(20.0))
    iteration, epoch, loss = 0, 0, torch.tensor(float("nan"))
    while iteration < args.iterations:
        batches.set_epoch(epoch)
        for batch in loader:
            images = batch["im"]
            heat = centre_heatmaps(batch["targets"], num_classes, *images.shape[2:])
            loss = loss_fn(model(images), heat)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if iteration % 10 == 0 or iteration == args.iterations - 1:
                print(f"iteration {iteration} loss {loss.item():.4f}", flush=True)
            iteration += 1
            if iteration == args.iterations:
                break
        epoch += 1
    return loss.item()


if __name__ == "__main__":
    main()
