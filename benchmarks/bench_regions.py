"""Targets table build and draw rates at two dataset sizes (synthetic index, no pixels).

Builds COCO-style dataset dicts with N annotations over N/10 images, then:
- the targets table: time, peak RSS growth (psutil, sampled), and its ratio to a
  raw baseline measured in the same run (pulling the boxes out of the
  annotation list into one numpy array, nothing else);
- 100,000 positive and 100,000 negative draws: rate, and the per-draw cost at
  the large size over the small one (size independence: ~1).

Every figure is the median of ``--repeats`` runs (small and large interleaved),
min–max beside it.

Targets (issue 5): table for 1,000,000 annotations ≤ 10 s and ≤ 2 GB; per-draw ratio ~1.

Run: .venv/bin/python benchmarks/bench_regions.py [--small 100000] [--large 1000000] [--draws 100000]
Writes benchmarks/results/bench_regions.{md,json}.
"""
from __future__ import annotations

import argparse
import threading
import time
from types import SimpleNamespace

import numpy as np
import psutil

from ndpatch.regions import Regions
from report import median_row, save_results, spread, target_row, target_table


def synthetic_dataset(n_annots: int, seed: int = 0) -> dict:
    """A COCO dict: n/10 images of 2000x2000, boxes 8-120 px, 20 categories with Zipf-like counts."""
    rng = np.random.default_rng(seed)
    n_images = max(1, n_annots // 10)
    xy = rng.uniform(0, 1880, size=(n_annots, 2)).round(1).tolist()
    wh = rng.uniform(8, 120, size=(n_annots, 2)).round(1).tolist()
    gids = rng.integers(1, n_images + 1, size=n_annots).tolist()
    cids = np.minimum(rng.zipf(1.6, size=n_annots), 20).tolist()
    return {
        "images": [{"id": g, "file_name": f"img_{g}.tif", "width": 2000, "height": 2000}
                   for g in range(1, n_images + 1)],
        "annotations": [{"id": i + 1, "image_id": gids[i], "category_id": cids[i],
                         "bbox": [xy[i][0], xy[i][1], wh[i][0], wh[i][1]]} for i in range(n_annots)],
        "categories": [{"id": c, "name": f"class_{c}"} for c in range(1, 21)],
    }


def stub_sampler(dataset: dict) -> SimpleNamespace:
    """What Regions reads from a sampler when no pixels are involved: ``dset.dataset``."""
    return SimpleNamespace(dset=SimpleNamespace(dataset=dataset, fpath="<synthetic>"))


class PeakRSS:
    """Peak resident set size growth over a block, sampled every 5 ms with psutil."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.growth_mb = (self.peak - self.base) / 2**20


def measure(n_annots: int, n_draws: int) -> dict:
    dataset = synthetic_dataset(n_annots)
    t0 = time.perf_counter()
    raw = np.array([ann["bbox"] for ann in dataset["annotations"]], dtype=np.float64)
    raw_s = time.perf_counter() - t0
    del raw
    regions = Regions(stub_sampler(dataset), rng=0, window_dims=(64, 64))
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        regions.targets
        table_s = time.perf_counter() - t0
    regions.get_positive()  # first draw builds the epoch permutation: measured apart
    t0 = time.perf_counter()
    for _ in range(n_draws):
        regions.get_positive()
    pos_s = time.perf_counter() - t0
    regions.configure(window_dims=(64, 64), balance="category")
    regions.get_positive()
    t0 = time.perf_counter()
    for _ in range(n_draws):
        regions.get_positive()
    bal_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_draws):
        regions.get_negative()
    neg_s = time.perf_counter() - t0
    return {
        "annotations": n_annots, "images": len(dataset["images"]),
        "raw_extract_s": raw_s, "table_s": table_s, "table_vs_raw": table_s / raw_s,
        "table_peak_rss_mb": rss.growth_mb, "process_rss_mb": psutil.Process().memory_info().rss / 2**20,
        "positive_us": 1e6 * pos_s / n_draws, "balanced_positive_us": 1e6 * bal_s / n_draws,
        "negative_us": 1e6 * neg_s / n_draws,
    }


ROWS = [("table build (s)", "table_s", 2), ("table build / raw box extraction", "table_vs_raw", 2),
        ("table peak RSS growth (MB)", "table_peak_rss_mb", 0), ("process RSS incl. dataset dicts (MB)",
                                                                  "process_rss_mb", 0),
        ("positive draw (µs)", "positive_us", 1), ("balanced positive draw (µs)", "balanced_positive_us", 1),
        ("negative draw (µs)", "negative_us", 1)]
DRAWS = ("positive_us", "balanced_positive_us", "negative_us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = {"small": [], "large": []}
    for _ in range(args.repeats):
        runs["small"].append(measure(args.small, args.draws))
        runs["large"].append(measure(args.large, args.draws))
    small, large = ({key: median_row([run[key] for run in runs[size]]) for key in runs[size][0]}
                    for size in ("small", "large"))
    ratios = {key: large[key]["median"] / small[key]["median"] for key in DRAWS}
    lines = [
        "# bench_regions",
        "",
        f"Median of {args.repeats} runs (min–max), small and large interleaved.",
        "",
        "| measure | small | large | large / small |",
        "|---|---|---|---|",
        f"| annotations / images | {args.small:,} / {int(small['images']['median']):,} | "
        f"{args.large:,} / {int(large['images']['median']):,} | {args.large / args.small:.0f} |",
    ]
    for name, key, digits in ROWS:
        ratio = f"{ratios[key]:.2f}" if key in ratios else (
            f"{large[key]['median'] / small[key]['median']:.1f}" if key == "table_s" else "")
        lines.append(f"| {name} | {spread(small[key], digits)} | {spread(large[key], digits)} | {ratio} |")
    targets = [target_row(f"targets table at {args.large:,} annotations <= 10 s", large["table_s"]["median"],
                          10.0, "<="),
               target_row(f"targets table peak RSS at {args.large:,} annotations <= 2048 MB",
                          large["table_peak_rss_mb"]["median"], 2048.0, "<="),
               *(target_row(f"{name} large / small <= 1.5", value, 1.5, "<=") for name, value in ratios.items())]
    lines += ["", f"{args.draws:,} draws of each kind; per-draw ratios ~1: cost independent of dataset size.", "",
              *target_table(targets)]
    report = "\n".join(lines)
    print(report)
    save_results("bench_regions", report, {"small": small, "large": large, "ratios": ratios, "targets": targets})


if __name__ == "__main__":
    main()
