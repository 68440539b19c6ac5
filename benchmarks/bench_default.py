"""The default backend on a photo dataset: ``CocoSampler(dset)`` against an explicit npy cache.

A COCO-style dataset of PNG photos (:func:`texture.photo`, 1024×768 RGB: PNG
has no random access, so a direct read decodes every row down to the window).
Random 256×256 windows through ``load_sample``, after the first touch (each
image converted once, untimed), for: the default (``backend='auto'``), an
explicit ``backend='npy'`` cache, and ``backend=None`` (direct GDAL reads,
ndsampler 0.8.1's default and ndpatch's before issue 18), which reads a tenth
of the windows. Each figure is the median of ``--repeats`` interleaved runs
(min–max). Target: the default ≥ 0.8× the npy cache. Also: seconds of the
first touch (conversion) per image.

Run: .venv/bin/python benchmarks/bench_default.py [--images 16] [--windows 2000]
Writes benchmarks/results/bench_default.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kwcoco
import numpy as np

from ndpatch import CocoSampler
from ndpatch.demo import write_raster
from report import interleaved, median_row, save_results, spread, target_row, target_table
from texture import photo

WINDOW = 256
HEIGHT, WIDTH = 768, 1024


def make_photos(dpath: Path, n_images: int) -> kwcoco.CocoDataset:
    dset = kwcoco.CocoDataset()
    dset.fpath = str(dpath / "photos.kwcoco.json")
    for i in range(n_images):
        path = write_raster(dpath / f"photo_{i:03d}.png", photo(HEIGHT, WIDTH, seed=300 + i), driver="PNG")
        dset.add_image(file_name=path, width=WIDTH, height=HEIGHT)
    return dset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-default-") as tmp:
        tmp = Path(tmp)
        dset = make_photos(tmp, args.images)
        rng = np.random.default_rng(0)
        windows = [(int(rng.integers(1, args.images + 1)), int(rng.integers(0, HEIGHT - WINDOW)),
                    int(rng.integers(0, WIDTH - WINDOW))) for _ in range(args.windows)]
        targets = [{"gid": g, "space_slice": (slice(r, r + WINDOW), slice(c, c + WINDOW))} for g, r, c in windows]
        samplers = {"default (auto)": CocoSampler(dset, workdir=str(tmp / "auto"), progress=False),
                    "npy": CocoSampler(dset, workdir=str(tmp / "npy"), backend="npy", progress=False),
                    "None (direct)": CocoSampler(dset, backend=None)}
        first_touch = {}
        for name, sampler in samplers.items():
            seconds = []
            for gid in sorted(dset.imgs):
                t0 = time.perf_counter()
                sampler.entry(gid)
                seconds.append(time.perf_counter() - t0)
            first_touch[name] = median_row(seconds)

        def reader(sampler, chosen):
            def run() -> float:
                t0 = time.perf_counter()
                for target in chosen:
                    sampler.load_sample(target, with_annots=False)
                return len(chosen) / (time.perf_counter() - t0)
            run()  # maps pages, opens handles
            return run

        runs = {name: reader(sampler, targets if name != "None (direct)" else targets[:max(1, len(targets) // 10)])
                for name, sampler in samplers.items()}
        rates = interleaved(runs, args.repeats)
    default, npy, direct = (rates[k]["median"] for k in ("default (auto)", "npy", "None (direct)"))
    targets_rows = [target_row("default backend / npy cache, after first touch", default / npy, 0.8),
                    target_row("backend=None / npy cache", direct / npy, None)]
    lines = ["# bench_default", "",
             f"{args.windows} random {WINDOW}x{WINDOW} windows over {args.images} PNG photos of {WIDTH}x{HEIGHT}x3 "
             f"uint8 through load_sample, after the first touch; median of {args.repeats} interleaved runs "
             "(min–max).", "",
             "| backend | windows/s | first touch s/image |", "|---|---:|---:|"]
    lines += [f"| {name} | {spread(rates[name])} | {spread(first_touch[name], 3)} |" for name in samplers]
    lines += ["", *target_table(targets_rows)]
    text = "\n".join(lines)
    save_results("bench_default", text, {"windows_per_s": rates, "first_touch_s": first_touch,
                                         "targets": targets_rows}, out=args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
