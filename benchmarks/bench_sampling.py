"""Random 256×256 windows: ndpatch's npy, cog and direct backends against raw baselines.

One process, one seeded list of windows over generated 4096×4096×3 uint8
landscape images (:mod:`texture`; striped DEFLATE GeoTIFFs, so the COG backend
converts them). For each reader: windows/s (the median of ``--repeats``
interleaved runs, min–max beside it), p50/p99 latency and the ratio to the raw
memmap slice-and-copy of the very same ``.npy`` cache files. The direct
``gdal.Open(...).ReadAsArray(window)`` of the very same COG files is the limit
for compressed data. GDAL's block cache is bounded below the data
(``--cachemax``, 8 MB). ndsampler 0.8.1's npy and cog backends are measured
when it is installed (its cog default for uint8 RGB is lossy YCbCr JPEG;
ndpatch's is lossless ZSTD, so ndpatch's cog is also measured with
``compress='JPEG'``, and with the previous default of 256-pixel tiles).
``backend=None`` reads a tenth of the windows (it decodes whole strips).
Warmup: seconds per image for ndpatch's npy and cog conversions next to
``gdal_translate -of COG`` with the same creation options on the same file.

Writes ``benchmarks/results/bench_sampling.{md,json}``.

Example:
    .venv/bin/python benchmarks/bench_sampling.py                 # the full run
    .venv/bin/python benchmarks/bench_sampling.py --images 2 --windows 200
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

from ndpatch import gdalio
from ndpatch.cache import make_backend
from ndpatch.cache.cog import cog_options
from ndpatch.index import DatasetIndex
from ndpatch.sampler import CocoSampler
from report import median_row, save_results, spread, target_row, target_table
from texture import landscape_dataset

HERE = Path(__file__).resolve().parent
SIZE = 4096
WINDOW = 256


def timed(name: str, read, windows: list[tuple[int, int, int]], repeats: int) -> dict:
    """Run ``read(gid, row, col)`` over ``windows`` once untimed, then time ``repeats`` passes.

    The untimed pass maps every page a memmap reader touches (each reader has
    its own mapping), so no reader pays first-touch page faults the others don't.
    Returns the passes' rates and the pooled latencies' p50/p99.
    """
    for gid, row, col in windows:
        read(gid, row, col)
    rates, latencies = [], []
    clock = time.perf_counter
    for _ in range(repeats):
        start = clock()
        for gid, row, col in windows:
            t0 = clock()
            read(gid, row, col)
            latencies.append(clock() - t0)
        rates.append(len(windows) / (clock() - start))
    return {"name": name, "rates": rates, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3)}


def measure(readers: list[tuple[str, object, list]], repeats: int) -> list[dict]:
    """Every reader's :func:`timed` pass, interleaved: round r runs each reader once."""
    rows = {name: None for name, *_ in readers}
    for _ in range(repeats):
        for name, read, windows in readers:
            one = timed(name, read, windows, 1)
            if rows[name] is None:
                rows[name] = one
            else:
                rows[name]["rates"] += one["rates"]
                rows[name]["p50_ms"] = max(rows[name]["p50_ms"], one["p50_ms"])
                rows[name]["p99_ms"] = max(rows[name]["p99_ms"], one["p99_ms"])
    out = []
    for name, row in rows.items():
        row["windows_per_s"] = median_row(row.pop("rates"))
        print(f"  {name:<28} {spread(row['windows_per_s']):>22} windows/s  p50 {row['p50_ms']:.3f} ms  "
              f"p99 {row['p99_ms']:.3f} ms", flush=True)
        out.append(row)
    return out


def warmup_times(sources, npy, cog, translate_opts: list[str], scratch: Path) -> dict:
    """Seconds per image (median over images, min–max): npy and cog conversions, gdal_translate, same options."""
    times = {"npy": [], "cog": [], "gdal_translate": []}
    scratch.mkdir()
    for k, source in enumerate(sources):
        args = ["gdal_translate", "-q", "-of", "COG"]
        for option in translate_opts:
            args += ["-co", option]
        t0 = time.perf_counter()
        subprocess.run([*args, source.path, str(scratch / f"{k}.tif")], check=True)
        times["gdal_translate"].append(time.perf_counter() - t0)
        for name, backend in (("cog", cog), ("npy", npy)):
            t0 = time.perf_counter()
            entry = backend.ensure(source)
            times[name].append(time.perf_counter() - t0)
            assert entry.meta["converted"]
    shutil.rmtree(scratch)
    ratios = [c / g for c, g in zip(times["cog"], times["gdal_translate"])]
    return {**{name: median_row(values) for name, values in times.items()}, "cog_vs_translate": median_row(ratios)}


def ndsampler_readers(dset_path: str, workdir: str, windows, sources) -> list[tuple]:
    """ndsampler 0.8.1's npy and cog backends as readers (none when ndsampler is not installed)."""
    if importlib.util.find_spec("ndsampler") is None:
        print("  ndsampler not installed: its rows are skipped (make bench installs it)")
        return []
    import kwcoco
    import ndsampler
    readers = []
    for backend in ("npy", "cog"):
        sampler = ndsampler.CocoSampler(kwcoco.CocoDataset(dset_path), workdir=workdir, backend=backend)
        for source in sources:  # convert before timing
            sampler.load_sample({"gid": source.gid, "cx": 128, "cy": 128, "width": 256, "height": 256},
                                with_annots=False)

        def read(gid, row, col, sampler=sampler):
            return sampler.load_sample({"gid": gid, "space_slice": (slice(row, row + WINDOW),
                                                                   slice(col, col + WINDOW))},
                                       with_annots=False)["im"]
        readers.append((f"ndsampler {ndsampler.__version__} {backend}", read, windows))
    return readers


def run(n_images: int, n_windows: int, cachemax: int, seed: int, data_dir: Path, repeats: int) -> dict:
    gdalio.configure(cachemax_mb=cachemax)
    dset_path = landscape_dataset(data_dir, n_images, SIZE)
    workdir = Path(tempfile.mkdtemp(prefix="cache-", dir=data_dir))
    try:
        index = DatasetIndex(dset_path)
        sources = [index.source(gid) for gid in sorted(index.dset.imgs)]
        npy = make_backend("npy", workdir=str(workdir), progress=False)
        cog = make_backend("cog", workdir=str(workdir), progress=False)
        translate_opts = cog_options({**cog.settings, "threads": cog.threads}, np.dtype("uint8"), 3)
        print(f"warmup ({n_images} images of {SIZE}x{SIZE}x3 uint8; COG options {translate_opts})")
        warm = warmup_times(sources, npy, cog, translate_opts, workdir / "gdal_translate")
        print("  " + ", ".join(f"{k} {spread(v, 2)}" for k, v in warm.items()))

        rng = np.random.default_rng(seed)
        gids = rng.integers(1, n_images + 1, n_windows)
        corners = rng.integers(0, SIZE - WINDOW + 1, (n_windows, 2))
        windows = [(int(g), int(r), int(c)) for g, (r, c) in zip(gids, corners)]
        print(f"{n_windows} random {WINDOW}x{WINDOW} windows, GDAL_CACHEMAX {cachemax} MB, {repeats} runs")

        samplers = {name: CocoSampler(dset_path, workdir=str(workdir), backend=backend, progress=False, **options)
                    if backend else CocoSampler(dset_path, backend=None)
                    for name, backend, options in (("npy", "npy", {}), ("cog", "cog", {}), ("none", None, {}),
                                                   ("cog256", "cog", {"blocksize": 256}),
                                                   ("cogjpeg", "cog", {"compress": "JPEG"}))}
        for name in ("cog256", "cogjpeg"):  # convert before timing
            for source in sources:
                samplers[name].entry(source.gid)
        memmaps = {s.gid: np.load(npy.ensure(s).path, mmap_mode="r") for s in sources}
        cog_paths = {s.gid: cog.ensure(s).path for s in sources}
        handles = {gid: gdal.Open(path) for gid, path in cog_paths.items()}

        def sample(sampler):
            def read(gid, row, col):
                return sampler.load_sample({"gid": gid, "space_slice": (slice(row, row + WINDOW),
                                                                       slice(col, col + WINDOW))},
                                           with_annots=False)["im"]
            return read

        readers = [
            ("raw memmap slice+copy", lambda g, r, c: memmaps[g][r:r + WINDOW, c:c + WINDOW].copy(), windows),
            ("ndpatch npy", sample(samplers["npy"]), windows),
            ("gdal ReadAsArray on COG", lambda g, r, c: handles[g].ReadAsArray(c, r, WINDOW, WINDOW), windows),
            ("ndpatch cog", sample(samplers["cog"]), windows),
            ("ndpatch None (direct)", sample(samplers["none"]), windows[:max(1, n_windows // 10)]),
            ("ndpatch cog blocksize=256", sample(samplers["cog256"]), windows),
            ("ndpatch cog JPEG (lossy)", sample(samplers["cogjpeg"]), windows),
        ]
        readers += ndsampler_readers(dset_path, str(workdir / "ndsampler"), windows, sources)
        rows = measure(readers, repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    raw = rows[0]["windows_per_s"]["median"]
    for row in rows:
        row["ratio_to_raw"] = row["windows_per_s"]["median"] / raw
    by_name = {row["name"]: row["windows_per_s"]["median"] for row in rows}
    nds_cog = next((v for k, v in by_name.items() if k.startswith("ndsampler") and k.endswith("cog")), None)
    targets = [
        target_row("npy load_sample >= 0.8x raw memmap slice+copy", by_name["ndpatch npy"] / raw, 0.8),
        target_row("cog >= 0.8x gdal ReadAsArray", by_name["ndpatch cog"] / by_name["gdal ReadAsArray on COG"], 0.8),
        target_row("cog warmup <= 1.2x gdal_translate", warm["cog_vs_translate"]["median"], 1.2, "<="),
        target_row("cog (lossless) >= 2x ndsampler 0.8.1 cog (lossy JPEG)",
                   None if nds_cog is None else by_name["ndpatch cog"] / nds_cog, 2.0),
        target_row("cog with the former 256-pixel tiles / ndsampler 0.8.1 cog",
                   None if nds_cog is None else by_name["ndpatch cog blocksize=256"] / nds_cog, None),
    ]
    return {"rows": rows, "warmup_s_per_image": warm, "targets": targets,
            "setup": {"images": n_images, "size": SIZE, "window": WINDOW, "windows": n_windows,
                      "repeats": repeats, "seed": seed, "gdal_cachemax_mb": cachemax, "gdal": gdal.__version__,
                      "numpy": np.__version__, "python": platform.python_version(),
                      "cpus": os.cpu_count(), "machine": platform.machine()}}


def markdown(result: dict) -> str:
    setup = result["setup"]
    lines = [f"# bench_sampling: {setup['windows']} random {setup['window']}x{setup['window']} windows "
             f"over {setup['images']} {setup['size']}x{setup['size']}x3 uint8 landscape images",
             "", f"GDAL {setup['gdal']}, GDAL_CACHEMAX {setup['gdal_cachemax_mb']} MB, "
             f"{setup['cpus']} CPUs, seed {setup['seed']}; windows/s: median of {setup['repeats']} interleaved "
             "runs (min–max).", "",
             "| reader | windows/s | p50 ms | p99 ms | ratio to raw memmap |",
             "|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['name']} | {spread(row['windows_per_s'])} | {row['p50_ms']:.3f} | "
                     f"{row['p99_ms']:.3f} | {row['ratio_to_raw']:.2f} |")
    warm = result["warmup_s_per_image"]
    lines += ["", "| warmup | s/image (median over images, min–max) |", "|---|---:|"]
    for name, seconds in warm.items():
        lines.append(f"| {name} | {spread(seconds, 2)} |")
    lines += ["", *target_table(result["targets"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--cachemax", type=int, default=8, help="GDAL block cache, MB (smaller than the data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=HERE / ".data", help="generated images (not committed)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    result = run(args.images, args.windows, args.cachemax, args.seed, args.data, args.repeats)
    text = markdown(result)
    print(text)
    save_results("bench_sampling", text, result, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
