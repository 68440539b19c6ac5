"""DataLoader throughput: ndpatch's batched torch input against the plainest hand-written loader.

The same 256x256x3 uint8 windows (batch 16) from warmed npy and COG caches of
the same images (:mod:`texture` landscapes), with and without detection
annotations. References, measured in the same run:

(a) the hand-written loader a user would write first: a map-style ``Dataset``
    whose ``__getitem__`` returns one memmap slice of the npy cache file, through
    ``DataLoader`` with the default collate, ``num_workers`` 0 and 2 (the best of
    the two is "hand-written");
(b) raw memmap windows copied into one preallocated (16, 256, 256, 3) array
    (the limit: the copy alone);
(c) ``gdal.Open(...).ReadAsArray`` of the same COG windows, one thread.

ndpatch: ``PatchDataset`` through ``DataLoader`` (num_workers 0 and 2) and the
columnar path (``sampler.load_batch(table.take(indices), out=buffer)``, the
table made once by ``sampler.window_table``), for npy and cog. Every figure is
the median of ``--repeats`` runs (min–max beside it), the configurations
interleaved within each run; loaders are measured in steady state (one warm
epoch first: workers started, targets parsed, pages mapped). GDAL's block cache
is bounded below the decoded size of the images (``--gdal-cache-mb``).

Targets (issue 18): npy best >= 1.0x hand-written and >= 0.9x the limit; npy
with detection boxes >= 0.8x hand-written without; cog batched >= 1.3x (c).
Also: RSS of each DataLoader worker after 1,000 and 10,000 samples, and a
profile of what remains per sample on the columnar npy path with boxes.

Run: .venv/bin/python benchmarks/bench_dataloader.py [--windows 2048] [--repeats 3]
Writes benchmarks/results/bench_dataloader.{md,json}.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
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
from report import interleaved, save_results, spread, target_row, target_table
from texture import landscape

WINDOW = 256
BATCH = 16


def make_images(dpath: Path, n_images: int, size: int, seed: int = 0) -> kwcoco.CocoDataset:
    """Striped RGB GeoTIFFs of landscape texture, 40 boxes each."""
    rng = np.random.default_rng(seed)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(dpath / "data.kwcoco.json")
    for name in ("car", "tree", "house"):
        dset.add_category(name)
    for i in range(n_images):
        path = write_raster(dpath / f"img_{i}.tif", landscape(size, seed=200 + i))
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


def timed(run, n_samples: int) -> float:
    """Samples per second of one ``run()`` that delivers ``n_samples``."""
    t0 = time.perf_counter()
    run()
    return n_samples / (time.perf_counter() - t0)


def loader_run(dataset, num_workers: int, **kwargs):
    """A measurement: a fresh DataLoader, one warm epoch, then one timed epoch (samples/s)."""
    def run() -> float:
        loader = DataLoader(dataset, batch_size=BATCH, num_workers=num_workers,
                            persistent_workers=num_workers > 0, **kwargs)
        for _ in loader:  # warm: workers started, handles opened, targets parsed, pages mapped
            pass

        def epoch():
            for _ in loader:
                pass
        rate = timed(epoch, len(dataset))
        del loader
        return rate
    return run


def batches(items: list, size: int = BATCH) -> list[list]:
    return [items[k:k + size] for k in range(0, len(items), size)]


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


def profile_remaining(sampler, table, out: np.ndarray, limit_us: float) -> tuple[str, dict]:
    """What the columnar npy path with boxes spends per sample beyond the copy (the limit), and where."""
    dataset = PatchDataset(sampler, [table[i] for i in range(len(table))], task="detection")
    chunks = batches(list(range(len(table))))
    for chunk in chunks:  # parse once, map pages
        dataset.__getitems__(chunk)
    t0 = time.perf_counter()
    for chunk in chunks:
        dataset.__getitems__(chunk)
    total_us = (time.perf_counter() - t0) / len(table) * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    for chunk in chunks:
        dataset.__getitems__(chunk)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(14)
    return text.getvalue(), {"total_us_per_sample": total_us, "copy_us_per_sample": limit_us,
                             "remaining_us_per_sample": total_us - limit_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2048)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-samples", type=int, default=10_000)
    parser.add_argument("--gdal-cache-mb", type=int, default=16,
                        help="GDAL block cache, smaller than the decoded images as in real use")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
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

    samplers = {name: ndpatch.CocoSampler(dset, backend=name, workdir=str(tmp / "cache"), progress=False)
                for name in ("npy", "cog")}
    paths = {name: [s.entry(gid).path for gid in sorted(dset.imgs)] for name, s in samplers.items()}
    tables = {name: s.window_table(targets) for name, s in samplers.items()}
    index_chunks = [np.arange(k, min(k + BATCH, n)) for k in range(0, n, BATCH)]
    for name, sampler in samplers.items():  # warm: converted, pages cached
        for chunk in index_chunks:
            sampler.load_batch(tables[name].take(chunk))

    arrays = [np.load(p, mmap_mode="r") for p in paths["npy"]]
    out = np.empty((BATCH, WINDOW, WINDOW, 3), np.uint8)
    handles = [gdal.Open(p) for p in paths["cog"]]

    def limit():
        for chunk in batches(windows):
            for k, (g, r, c) in enumerate(chunk):
                out[k] = arrays[g][r:r + WINDOW, c:c + WINDOW]

    def direct_gdal():
        for g, r, c in windows:
            handles[g].ReadAsArray(c, r, WINDOW, WINDOW)

    def columnar(sampler, table, with_annots):
        def run():
            for chunk in index_chunks:
                batch = sampler.load_batch(table.take(chunk), with_annots=with_annots, out=out[:len(chunk)])
                if with_annots:
                    batch["annots"].stacked()  # the batch's boxes, classes and ids as arrays
        return lambda: timed(run, n)

    raw = RawMemmapDataset(paths["npy"], windows)
    configs = {
        "a: hand-written DataLoader w0": loader_run(raw, 0),
        "a: hand-written DataLoader w2": loader_run(raw, 2),
        "b: raw memmap into one batch (limit)": lambda: timed(limit, n),
        "c: direct GDAL COG, 1 thread": lambda: timed(direct_gdal, n),
    }
    for name, sampler in samplers.items():
        for task in (None, "detection"):
            label = "" if task is None else " +det"
            dataset = PatchDataset(sampler, targets, task=task)
            for workers in (0, 2):
                configs[f"ndpatch {name}{label} DataLoader w{workers}"] = loader_run(
                    dataset, workers, collate_fn=collate, worker_init_fn=worker_init)
            configs[f"ndpatch {name}{label} batched"] = columnar(sampler, tables[name], task is not None)
    results = interleaved(configs, args.repeats)

    def best(prefix: str, annots: bool) -> tuple[str, float]:
        return max(((k, v["median"]) for k, v in results.items()
                    if k.startswith(prefix) and ("+det" in k) == annots), key=lambda kv: kv[1])
    hand_key = max(("a: hand-written DataLoader w0", "a: hand-written DataLoader w2"),
                   key=lambda k: results[k]["median"])
    hand = results[hand_key]["median"]
    limit_rate = results["b: raw memmap into one batch (limit)"]["median"]
    npy_key, npy_best = best("ndpatch npy ", annots=False)
    det_key, det_best = best("ndpatch npy ", annots=True)
    cog_batched = results["ndpatch cog batched"]["median"]
    targets_rows = [
        target_row(f"npy best ({npy_key}) / hand-written ({hand_key})", npy_best / hand, 1.0),
        target_row(f"npy best ({npy_key}) / limit", npy_best / limit_rate, 0.9),
        target_row(f"npy +det best ({det_key}) / hand-written without boxes", det_best / hand, 0.8),
        target_row("cog batched / direct GDAL COG", cog_batched / results["c: direct GDAL COG, 1 thread"]["median"],
                   1.3),
    ]
    rss = {name: worker_rss(PatchDataset(sampler, targets, task="detection"), args.rss_samples)
           for name, sampler in samplers.items()}
    profile, remaining = profile_remaining(samplers["npy"], tables["npy"].take(np.arange(min(n, 1024))),
                                           out, 1e6 / limit_rate)

    lines = ["# bench_dataloader", "",
             f"{n} windows of {WINDOW}x{WINDOW}x3 uint8 from {args.images} landscape images of {args.size}^2, "
             f"batch {BATCH}; median of {args.repeats} interleaved runs (min–max); caches warmed; loaders in "
             f"steady state (after one epoch); torch {torch.get_num_threads()} intra-op threads, "
             f"{psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (the default "
             "collate's torch.stack slows down sharply when those threads compete for busy cores).", "",
             "| configuration | samples/s |", "|---|---:|"]
    lines += [f"| {k} | {spread(v)} |" for k, v in results.items()]
    lines += ["", *target_table(targets_rows)]
    lines += ["", f"RSS per DataLoader worker (MB), PatchDataset +det, 2 workers, after 1,000 and "
              f"{args.rss_samples:,} samples:", "", "| backend | after 1,000 | after "
              f"{args.rss_samples:,} |", "|---|---|---|"]
    lines += [f"| {name} | {', '.join(f'{v:.0f}' for v in r.get('1000', []))} | "
              f"{', '.join(f'{v:.0f}' for v in r.get(str(args.rss_samples), []))} |" for name, r in rss.items()]
    lines += ["", "What remains per sample, `PatchDataset(task='detection').__getitems__` on npy, 1,024 windows "
              f"(one run): {remaining['total_us_per_sample']:.1f} µs a sample, of which the copy (the limit) is "
              f"{remaining['copy_us_per_sample']:.1f} µs; the rest, "
              f"{remaining['remaining_us_per_sample']:.1f} µs, by function (tottime):", "",
              "```", profile.strip(), "```"]
    save_results("bench_dataloader", "\n".join(lines),
                 {"samples_per_s": results, "targets": targets_rows, "worker_rss_mb": rss, "remaining": remaining},
                 out=args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
