"""Chip export rate: ndpatch export (cold and warm npy cache; 1 and 2 workers) against the naive way.

The naive way, measured in the same run on the same windows: one
``gdal.Translate(srcWin=...)`` per chip from the source (an LZW-compressed,
stripped GeoTIFF, as large scenes often arrive: each chip decodes the full
width of its strips, so its cost grows with the scene width), writing the same
DEFLATE GeoTIFF chip. It writes image chips only; ndpatch also rasterises and writes a
label chip per window and the provenance files, and still has to be faster.

Targets (issue 10): warm-cache export ≥ 3× the naive approach; 2 workers ≥ 1.6× 1 worker.

Run: .venv/bin/python benchmarks/bench_export.py [--height 1536] [--width 8192] [--window 256]
Writes benchmarks/results/bench_export.{md,json}.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import kwcoco
import numpy as np
from osgeo import gdal

from ndpatch.demo import write_raster
from ndpatch.export import export
from ndpatch.export.base import GEOTIFF_OPTIONS
from ndpatch.sampler import CocoSampler
from report import interleaved, save_results, spread, target_row, target_table


def make_scene(root: Path, height: int, width: int) -> kwcoco.CocoDataset:
    """One height×width RGB scene (LZW, strips) with 40 polygon annotations."""
    rng = np.random.default_rng(0)
    pixels = (rng.integers(0, 40, (height, width, 3)) + np.linspace(0, 200, width)[None, :, None]).astype(np.uint8)
    (root / "images").mkdir(parents=True)
    write_raster(root / "images/scene.tif", pixels, options=["COMPRESS=LZW"],
                 geotransform=(500000.0, 0.5, 0.0, 4600000.0, 0.0, -0.5), crs_epsg=32633)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "data.kwcoco.json")
    dset.add_category("field")
    dset.add_category("building")
    gid = dset.add_image(file_name="images/scene.tif", width=width, height=height)
    for _ in range(40):
        x, y = rng.uniform(0, width - 200), rng.uniform(0, height - 200)
        w, h = rng.uniform(20, 200, 2)
        poly = [x, y, x + w, y + h * 0.2, x + w * 0.8, y + h, x + w * 0.1, y + h * 0.9]
        dset.add_annotation(gid, category_id=int(rng.integers(1, 3)), bbox=[x, y, w, h], segmentation=[poly])
    dset.dump(dset.fpath)
    return dset


def naive(src: str, windows: np.ndarray, window: int, out: Path) -> float:
    out.mkdir()
    t0 = time.perf_counter()
    for i, (_, r0, c0) in enumerate(windows):  # as a script of gdal_translate -srcwin calls does
        options = gdal.TranslateOptions(srcWin=[int(c0), int(r0), window, window],
                                        creationOptions=list(GEOTIFF_OPTIONS))
        gdal.Translate(str(out / f"chip_{i:06d}.tif"), gdal.Open(src), options=options)
    return time.perf_counter() - t0


def timed_export(dset, out: Path, window: int, workers: int, workdir: str) -> float:
    sampler = CocoSampler(dset, backend="npy", workdir=workdir)
    t0 = time.perf_counter()
    export(sampler, out, window=window, workers=workers, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=4096, help="scene height (512 chips at the defaults: enough to amortise worker start-up)")
    parser.add_argument("--width", type=int, default=8192, help="scene width (the naive way decodes whole strips)")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        dset = make_scene(root / "src", args.height, args.width)
        cache = str(root / "cache")
        timed_export(dset, root / "plan", args.window, 1, cache)  # converts the source: warms `cache`
        windows = np.load(root / "plan/.ndpatch-export/plan.npy")
        n = len(windows)
        runs = itertools.count()  # a fresh output folder (and, cold, a fresh cache) for every run

        def run(kind: str):
            def measure() -> float:
                k = next(runs)
                if kind == "naive":
                    return n / naive(str(dset.get_image_fpath(1)), windows, args.window, root / f"naive_{k}")
                workers = 2 if kind == "warm_2w" else 1
                workdir = str(root / f"cold_cache_{k}") if kind == "cold_1w" else cache
                return n / timed_export(dset, root / f"{kind}_{k}", args.window, workers, workdir)
            return measure
        # interleaved: every method sees the same machine state in each round
        rates = interleaved({kind: run(kind) for kind in ("naive", "cold_1w", "warm_1w", "warm_2w")}, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = {kind: row["median"] for kind, row in rates.items()}
    ratios = {"warm_1w_vs_naive": median["warm_1w"] / median["naive"],
              "warm_2w_vs_naive": median["warm_2w"] / median["naive"],
              "cold_1w_vs_naive": median["cold_1w"] / median["naive"],
              "2w_vs_1w_warm": median["warm_2w"] / median["warm_1w"]}
    targets = [target_row("export warm 1 worker >= 3x naive", ratios["warm_1w_vs_naive"], 3.0),
               target_row("export 2 workers >= 1.6x 1 worker (warm)", ratios["2w_vs_1w_warm"], 1.6)]
    lines = [
        "# bench_export",
        "",
        f"{n} chips of {args.window}x{args.window} from one {args.height}x{args.width} RGB LZW GeoTIFF "
        f"(40 polygons); ndpatch writes image + label chips, naive writes image chips; chips/s: median of "
        f"{args.repeats} interleaved runs (min–max).",
        "",
        "| method | chips/s | vs naive |",
        "|---|---|---|",
        *(f"| {name} | {spread(row, 1)} | {row['median'] / median['naive']:.2f} |" for name, row in rates.items()),
        "",
        *target_table(targets),
    ]
    report = "\n".join(lines)
    print(report)
    save_results("bench_export", report, {"chips": n, "rates": rates, "ratios": ratios, "targets": targets})


if __name__ == "__main__":
    main()
