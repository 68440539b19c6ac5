"""DataLoader throughput: ndpatch's batched torch input against hand-written references.

One run, the same 256x256x3 uint8 windows (batch 16) from warmed npy and COG
(ZSTD, 256 tiles) caches of the same images, with and without detection
annotations. References measured in the same run:

(a) a hand-written map-style Dataset returning one raw memmap slice per item,
    through DataLoader with num_workers 0 and 2 (the best is "hand-written");
(b) raw memmap windows copied into one preallocated (16, 256, 256, 3) array
    (the limit);
(c) ``gdal.Open(...).ReadAsArray`` of the same COG windows, one thread.

GDAL's block cache is bounded below the decoded size of the images
(``--gdal-cache-mb``), as with real imagery, so COG windows are decoded.

ndpatch: PatchDataset through DataLoader (num_workers 0 and 2) and the batched
path (``sampler.load_batch``), for npy and cog. Targets (issue 11): npy best
without annotations >= 2x hand-written and >= 0.5x the limit; npy best with
detection annotations >= 1x hand-written without; cog batched >= 1.3x (c).
Also: RSS of each DataLoader worker after 1,000 and 10,000 samples, and a
profile of the batched npy path with annotations.

Run: .venv/bin/python benchmarks/bench_dataloader.py [--windows 2048] [--repeats 3]
Writes benchmarks/results/bench_dataloader.{md,json}.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import tempfile
import time
from pathlib import Path

import kwcoco
import numpy as np
import psutil
import torch
from osgeo import gdal
from torch.utils.data import DataLoader, Dataset

import ndpatch
from ndpatch.demo import write_raster
from ndpatch.torch import PatchDataset, collate, worker_init
from report import save_results

WINDOW = 256
BATCH = 16


def make_images(dpath: Path, n_images: int, size: int, seed: int = 0) -> kwcoco.CocoDataset:
    """RGB strip GeoTIFFs of smooth structure plus noise (compressible like imagery), 40 boxes each."""
    rng = np.random.default_rng(seed)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(dpath / "data.kwcoco.json")
    for name in ("car", "tree", "house"):
        dset.add_category(name)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n_images):
        base = np.stack([np.sin(xx / (37 + 9 * c + i)) * np.cos(yy / (53 - 7 * c)) for c in range(3)], -1)
        pixels = (base * 90 + 128 + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8)
        path = write_raster(dpath / f"img_{i}.tif", pixels)
        gid = dset.add_image(file_name=path, width=size, height=size)
        for _ in range(40):
            w, h = rng.uniform(8, 96, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            dset.add_annotation(gid, category_id=int(rng.integers(1, 4)), bbox=[x, y, w, h])
    return dset


class RawMemmapDataset(Dataset):
    """The hand-written reference: one memmap slice per item, default collate."""

    def __init__(self, paths: list[str], windows: list[tuple[int, int, int]]):
        self.paths = paths
        self.windows = windows
        self.arrays = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> np.ndarray:
        if self.arrays is None:
            self.arrays = [np.load(p, mmap_mode="r") for p in self.paths]
        g, r, c = self.windows[index]
        return self.arrays[g][r:r + WINDOW, c:c + WINDOW]


def rate(run, n_samples: int, repeats: int) -> float:
    """Best samples/s over ``repeats`` runs of ``run()`` (each delivers ``n_samples``)."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = max(best, n_samples / (time.perf_counter() - t0))
    return best


def loader_rate(dataset, num_workers: int, repeats: int, **kwargs) -> float:
    """Steady-state samples/s of one epoch through DataLoader (worker start-up excluded)."""
    loader = DataLoader(dataset, batch_size=BATCH, num_workers=num_workers,
                        persistent_workers=num_workers > 0, **kwargs)
    for _ in loader:  # start the workers, open handles, fault in pages
        break

    def run():
        for _ in loader:
            pass
    return rate(run, len(dataset), repeats)


def batches(items: list, size: int = BATCH) -> list[list]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def batched_epoch(sampler, chunks: list[list[dict]], with_annots: bool, out: np.ndarray) -> None:
    """The batched path as a training loop would use it: one reused (B, H, W, C) buffer."""
    for chunk in chunks:
        sampler.load_batch(chunk, with_annots=with_annots, out=out[:len(chunk)])


def worker_rss(dataset, n_samples: int) -> dict:
    """RSS (MB) of each of 2 workers after 1,000 and after ``n_samples`` samples."""
    indices = torch.arange(n_samples) % len(dataset)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=indices.tolist(), num_workers=2,
                        collate_fn=collate, worker_init_fn=worker_init, prefetch_factor=2)
    rss = {}
    for k, _ in enumerate(loader, start=1):
        if k * BATCH in (1000, n_samples) or (k * BATCH >= 1000 and "1000" not in rss):
            children = psutil.Process().children()
            rss["1000" if "1000" not in rss else str(n_samples)] = [c.memory_info().rss / 2**20 for c in children]
    return rss


def profile_batched(sampler, targets: list[dict]) -> str:
    """Top functions of the batched npy path with annotations (cumulative time)."""
    dataset = PatchDataset(sampler, targets, task="detection")
    profiler = cProfile.Profile()
    profiler.enable()
    for chunk in batches(list(range(len(targets)))):
        dataset.__getitems__(chunk)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(12)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2048)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-samples", type=int, default=10_000)
    parser.add_argument("--gdal-cache-mb", type=int, default=16,
                        help="GDAL block cache, smaller than the decoded images as in real use")
    args = parser.parse_args()
    gdal.SetCacheMax(args.gdal_cache_mb * 2**20)
    with tempfile.TemporaryDirectory(prefix="bench-dataloader-") as tmp:
        report(args, Path(tmp))


def report(args: argparse.Namespace, tmp: Path) -> None:
    """Measure everything on images written under ``tmp``; print and write the results."""
    dset = make_images(tmp, args.images, args.size)
    rng = np.random.default_rng(1)
    windows = [(int(rng.integers(args.images)), int(rng.integers(0, args.size - WINDOW)),
                int(rng.integers(0, args.size - WINDOW))) for _ in range(args.windows)]
    targets = [{"gid": g + 1, "space_slice": (slice(r, r + WINDOW), slice(c, c + WINDOW))} for g, r, c in windows]
    n = len(targets)

    samplers = {name: ndpatch.CocoSampler(dset, backend=name, workdir=str(tmp / "cache")) for name in ("npy", "cog")}
    paths = {name: [s.entry(gid).path for gid in sorted(dset.imgs)] for name, s in samplers.items()}
    for sampler in samplers.values():  # warm: converted, pages cached
        for chunk in batches(targets):
            sampler.load_batch(chunk)

    results = {}
    raw = RawMemmapDataset(paths["npy"], windows)
    results["a: hand-written DataLoader w0"] = loader_rate(raw, 0, args.repeats)
    results["a: hand-written DataLoader w2"] = loader_rate(raw, 2, args.repeats)
    arrays = [np.load(p, mmap_mode="r") for p in paths["npy"]]
    out = np.empty((BATCH, WINDOW, WINDOW, 3), np.uint8)

    def limit():
        for chunk in batches(windows):
            for k, (g, r, c) in enumerate(chunk):
                out[k] = arrays[g][r:r + WINDOW, c:c + WINDOW]
    results["b: raw memmap into one batch (limit)"] = rate(limit, n, args.repeats)
    handles = [gdal.Open(p) for p in paths["cog"]]

    def direct_gdal():
        for g, r, c in windows:
            handles[g].ReadAsArray(c, r, WINDOW, WINDOW)
    results["c: direct GDAL COG, 1 thread"] = rate(direct_gdal, n, args.repeats)

    for name, sampler in samplers.items():
        for task in (None, "detection"):
            label = "" if task is None else " +det"
            dataset = PatchDataset(sampler, targets, task=task)
            for workers in (0, 2):
                results[f"ndpatch {name}{label} DataLoader w{workers}"] = loader_rate(
                    dataset, workers, args.repeats, collate_fn=collate, worker_init_fn=worker_init)
            results[f"ndpatch {name}{label} batched"] = rate(
                functools.partial(batched_epoch, sampler, batches(targets), task is not None, out), n, args.repeats)

    def best(prefix: str, annots: bool) -> tuple[str, float]:
        return max(((k, v) for k, v in results.items() if k.startswith(prefix) and ("+det" in k) == annots),
                   key=lambda kv: kv[1])
    hand = max(results["a: hand-written DataLoader w0"], results["a: hand-written DataLoader w2"])
    npy_key, npy_best = best("ndpatch npy ", annots=False)
    det_key, det_best = best("ndpatch npy ", annots=True)
    ratios = {
        "npy best / hand-written (target >= 2)": (npy_key, npy_best / hand),
        "npy best / limit (target >= 0.5)": (npy_key, npy_best / results["b: raw memmap into one batch (limit)"]),
        "npy +det best / hand-written without annots (target >= 1)": (det_key, det_best / hand),
        "cog batched / direct GDAL (target >= 1.3)": ("ndpatch cog batched",
                                                      results["ndpatch cog batched"] / results["c: direct GDAL COG, 1 thread"]),
    }
    rss = {name: worker_rss(PatchDataset(sampler, targets, task="detection"), args.rss_samples)
           for name, sampler in samplers.items()}
    profile = profile_batched(samplers["npy"], targets[:1024])

    lines = ["# bench_dataloader", "",
             f"{n} windows of {WINDOW}x{WINDOW}x3 uint8 from {args.images} images of {args.size}^2, batch {BATCH}, "
             f"best of {args.repeats}; caches warmed; DataLoader rates exclude worker start-up.", "",
             "| configuration | samples/s |", "|---|---|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in results.items()]
    lines += ["", "| ratio | configuration | value |", "|---|---|---|"]
    lines += [f"| {k} | {cfg} | {v:.2f} |" for k, (cfg, v) in ratios.items()]
    lines += ["", f"RSS per DataLoader worker (MB), PatchDataset +det, 2 workers, after 1,000 and "
              f"{args.rss_samples:,} samples:", "", "| backend | after 1,000 | after "
              f"{args.rss_samples:,} |", "|---|---|---|"]
    lines += [f"| {name} | {', '.join(f'{v:.0f}' for v in r.get('1000', []))} | "
              f"{', '.join(f'{v:.0f}' for v in r.get(str(args.rss_samples), []))} |" for name, r in rss.items()]
    lines += ["", "Profile: batched npy path with detection annotations, 1,024 windows (tottime):", "",
              "```", profile.strip(), "```"]
    save_results("bench_dataloader", "\n".join(lines),
                 {"samples_per_s": results, "ratios": {k: v for k, (_, v) in ratios.items()}, "worker_rss_mb": rss})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
