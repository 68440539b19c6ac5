"""Targets table build and draw rates at two dataset sizes (synthetic index, no pixels).

Builds COCO-style dataset dicts with N annotations over N/10 images, then:
- the targets table: time, peak RSS growth (psutil, sampled), and its ratio to a
  raw baseline measured in the same run (pulling the boxes out of the
  annotation list into one numpy array, nothing else);
- 100,000 positive and 100,000 negative draws: rate, and the per-draw cost at
  the large size over the small one (size independence: ~1).

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
from report import save_results


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--draws", type=int, default=100_000)
    args = parser.parse_args()
    small = measure(args.small, args.draws)
    large = measure(args.large, args.draws)
    ratios = {key: large[key] / small[key] for key in ("positive_us", "balanced_positive_us", "negative_us")}
    lines = [
        "# bench_regions",
        "",
        "| measure | small | large | large / small |",
        "|---|---|---|---|",
        f"| annotations / images | {small['annotations']:,} / {small['images']:,} | "
        f"{large['annotations']:,} / {large['images']:,} | {large['annotations'] / small['annotations']:.0f} |",
        f"| table build (s) | {small['table_s']:.2f} | {large['table_s']:.2f} | "
        f"{large['table_s'] / small['table_s']:.1f} |",
        f"| table build / raw box extraction | {small['table_vs_raw']:.2f} | {large['table_vs_raw']:.2f} | |",
        f"| table peak RSS growth (MB) | {small['table_peak_rss_mb']:.0f} | {large['table_peak_rss_mb']:.0f} | |",
        f"| process RSS incl. dataset dicts (MB) | {small['process_rss_mb']:.0f} | "
        f"{large['process_rss_mb']:.0f} | |",
        f"| positive draw (µs) | {small['positive_us']:.1f} | {large['positive_us']:.1f} | "
        f"{ratios['positive_us']:.2f} |",
        f"| balanced positive draw (µs) | {small['balanced_positive_us']:.1f} | "
        f"{large['balanced_positive_us']:.1f} | {ratios['balanced_positive_us']:.2f} |",
        f"| negative draw (µs) | {small['negative_us']:.1f} | {large['negative_us']:.1f} | "
        f"{ratios['negative_us']:.2f} |",
        "",
        f"{args.draws:,} draws of each kind. Targets: table ≤ 10 s and ≤ 2 GB at 1,000,000 "
        "annotations; per-draw ratios ~1 (cost independent of dataset size).",
    ]
    report = "\n".join(lines)
    print(report)
    save_results("bench_regions", report, {"small": small, "large": large, "ratios": ratios})


if __name__ == "__main__":
    main()
