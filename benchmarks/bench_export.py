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
from report import save_results


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


#: Warm exports are timed this many times each (best kept): one run is noisy on a shared 2-core machine.
REPEATS = 3


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
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        dset = make_scene(root / "src", args.height, args.width)
        cache = str(root / "cache")
        cold_s = timed_export(dset, root / "cold", args.window, 1, cache)
        windows = np.load(root / "cold/.ndpatch-export/plan.npy")
        n = len(windows)
        naive_s = naive(str(dset.get_image_fpath(1)), windows, args.window, root / "naive")
        # warm runs: best of REPEATS, alternating 1 and 2 workers so both see the same machine state
        warm1_s = warm2_s = float("inf")
        for k in range(REPEATS):
            warm1_s = min(warm1_s, timed_export(dset, root / f"warm1_{k}", args.window, 1, cache))
            warm2_s = min(warm2_s, timed_export(dset, root / f"warm2_{k}", args.window, 2, cache))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rates = {"naive": n / naive_s, "cold_1w": n / cold_s, "warm_1w": n / warm1_s, "warm_2w": n / warm2_s}
    ratios = {"warm_1w_vs_naive": rates["warm_1w"] / rates["naive"],
              "warm_2w_vs_naive": rates["warm_2w"] / rates["naive"],
              "cold_1w_vs_naive": rates["cold_1w"] / rates["naive"],
              "2w_vs_1w_warm": rates["warm_2w"] / rates["warm_1w"]}
    lines = [
        "# bench_export",
        "",
        f"{n} chips of {args.window}x{args.window} from one {args.height}x{args.width} RGB LZW GeoTIFF "
        f"(40 polygons); ndpatch writes image + label chips, naive writes image chips; warm runs best of {REPEATS}.",
        "",
        "| method | chips/s | vs naive |",
        "|---|---|---|",
        *(f"| {name} | {rate:.1f} | {rate / rates['naive']:.2f} |" for name, rate in rates.items()),
        "",
        f"2 workers / 1 worker (warm): {ratios['2w_vs_1w_warm']:.2f}. "
        "Targets: warm ≥ 3× naive; 2 workers ≥ 1.6× 1 worker.",
    ]
    report = "\n".join(lines)
    print(report)
    save_results("bench_export", report, {"chips": n, "rates": rates, "ratios": ratios})


if __name__ == "__main__":
    main()
