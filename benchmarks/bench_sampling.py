"""Random 256×256 windows: ndpatch's npy, cog and direct backends against raw baselines.

One process, one seeded list of windows over generated 4096×4096×3 uint8
images (striped DEFLATE GeoTIFFs, so the COG backend converts them). For
each reader: windows/s, p50/p99 latency and the ratio to the raw memmap
slice-and-copy of the very same ``.npy`` cache files. The direct
``gdal.Open(...).ReadAsArray(window)`` of the very same COG files is the limit
for compressed data. GDAL's block cache is bounded (``--cachemax``, 64 MB).
ndsampler 0.8.1's npy and cog backends are measured when it is installed
(its cog default for uint8 RGB is lossy YCbCr JPEG; ndpatch's is lossless ZSTD, so
ndpatch's cog is also measured with ``compress='JPEG'``, and with 128-pixel tiles).
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
from ndpatch.demo import write_raster
from ndpatch.index import DatasetIndex
from ndpatch.sampler import CocoSampler
from report import save_results

HERE = Path(__file__).resolve().parent
SIZE = 4096
WINDOW = 256


def make_images(dpath: Path, n_images: int, seed: int = 0) -> str:
    """``n_images`` smooth-plus-noise RGB images and a kwcoco json over them (made once)."""
    import kwcoco
    fpath = dpath / f"bench{n_images}.kwcoco.json"
    if fpath.exists():
        return str(fpath)
    dpath.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dset = kwcoco.CocoDataset()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    for i in range(n_images):
        path = dpath / f"img_{i:02d}.tif"
        if not path.exists():
            phase = rng.random(3) * 6.28
            base = np.stack([np.sin(6 * xx + 4 * yy + p) for p in phase], axis=-1) * 90 + 128
            noise = rng.normal(0, 6, (SIZE, SIZE, 3)).astype(np.float32)
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            write_raster(path, pixels, options=["COMPRESS=DEFLATE"])
        dset.add_image(file_name=str(path), width=SIZE, height=SIZE)
    dset.dump(str(fpath))
    return str(fpath)


def timed(name: str, read, windows: list[tuple[int, int, int]]) -> dict:
    """Run ``read(gid, row, col)`` over ``windows`` twice, timing the second pass; latency stats.

    The untimed pass maps every page a memmap reader touches (each reader has
    its own mapping), so no reader pays first-touch page faults the others don't.
    """
    for gid, row, col in windows:
        read(gid, row, col)
    latencies = np.empty(len(windows))
    clock = time.perf_counter
    start = clock()
    for k, (gid, row, col) in enumerate(windows):
        t0 = clock()
        read(gid, row, col)
        latencies[k] = clock() - t0
    total = clock() - start
    row = {"name": name, "windows_per_s": len(windows) / total,
           "p50_ms": float(np.percentile(latencies, 50) * 1e3),
           "p99_ms": float(np.percentile(latencies, 99) * 1e3)}
    print(f"  {name:<28} {row['windows_per_s']:9.0f} windows/s  p50 {row['p50_ms']:.3f} ms  "
          f"p99 {row['p99_ms']:.3f} ms", flush=True)
    return row


def warmup_times(sources, npy, cog, translate_opts: list[str], scratch: Path) -> dict:
    """Seconds per image: ndpatch npy and cog conversions, and gdal_translate with the same options."""
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
    return {name: float(np.mean(values)) for name, values in times.items()}


def ndsampler_rows(dset_path: str, workdir: str, windows, sources) -> list[dict]:
    """ndsampler 0.8.1's npy and cog backends (skipped when ndsampler is not installed)."""
    if importlib.util.find_spec("ndsampler") is None:
        print("  ndsampler not installed: its rows are skipped (make bench installs it)")
        return []
    import kwcoco
    import ndsampler
    rows = []
    for backend in ("npy", "cog"):
        sampler = ndsampler.CocoSampler(kwcoco.CocoDataset(dset_path), workdir=workdir, backend=backend)
        for source in sources:  # convert before timing
            sampler.load_sample({"gid": source.gid, "cx": 128, "cy": 128, "width": 256, "height": 256},
                                with_annots=False)

        def read(gid, row, col, sampler=sampler):
            return sampler.load_sample({"gid": gid, "space_slice": (slice(row, row + WINDOW),
                                                                   slice(col, col + WINDOW))},
                                       with_annots=False)["im"]
        rows.append(timed(f"ndsampler {ndsampler.__version__} {backend}", read, windows))
    return rows


def run(n_images: int, n_windows: int, cachemax: int, seed: int, data_dir: Path) -> dict:
    gdalio.configure(cachemax_mb=cachemax)
    dset_path = make_images(data_dir, n_images)
    workdir = Path(tempfile.mkdtemp(prefix="cache-", dir=data_dir))
    try:
        index = DatasetIndex(dset_path)
        sources = [index.source(gid) for gid in sorted(index.dset.imgs)]
        npy = make_backend("npy", workdir=str(workdir))
        cog = make_backend("cog", workdir=str(workdir))
        translate_opts = cog_options({**cog.settings, "threads": cog.threads}, np.dtype("uint8"), 3)
        print(f"warmup ({n_images} images of {SIZE}x{SIZE}x3 uint8; COG options {translate_opts})")
        warm = warmup_times(sources, npy, cog, translate_opts, workdir / "gdal_translate")
        print("  " + ", ".join(f"{k} {v:.2f} s/image" for k, v in warm.items()))

        rng = np.random.default_rng(seed)
        gids = rng.integers(1, n_images + 1, n_windows)
        corners = rng.integers(0, SIZE - WINDOW + 1, (n_windows, 2))
        windows = [(int(g), int(r), int(c)) for g, (r, c) in zip(gids, corners)]
        print(f"{n_windows} random {WINDOW}x{WINDOW} windows, GDAL_CACHEMAX {cachemax} MB")

        samplers = {name: CocoSampler(dset_path, workdir=str(workdir), backend=backend, **options)
                    for name, backend, options in (("npy", "npy", {}), ("cog", "cog", {}), ("none", None, {}),
                                                   ("cog128", "cog", {"blocksize": 128}),
                                                   ("cogjpeg", "cog", {"compress": "JPEG"}))}
        for name in ("cog128", "cogjpeg"):  # convert before timing
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

        rows = [
            timed("raw memmap slice+copy", lambda g, r, c: memmaps[g][r:r + WINDOW, c:c + WINDOW].copy(),
                  windows),
            timed("ndpatch npy", sample(samplers["npy"]), windows),
            timed("gdal ReadAsArray on COG", lambda g, r, c: handles[g].ReadAsArray(c, r, WINDOW, WINDOW),
                  windows),
            timed("ndpatch cog", sample(samplers["cog"]), windows),
            timed("ndpatch None (direct)", sample(samplers["none"]), windows),
            timed("ndpatch cog blocksize=128", sample(samplers["cog128"]), windows),
            timed("ndpatch cog JPEG (lossy)", sample(samplers["cogjpeg"]), windows),
        ]
        rows += ndsampler_rows(dset_path, str(workdir / "ndsampler"), windows, sources)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    raw = rows[0]["windows_per_s"]
    for row in rows:
        row["ratio_to_raw"] = row["windows_per_s"] / raw
    by_name = {row["name"]: row["windows_per_s"] for row in rows}
    nds_cog = next((v for k, v in by_name.items() if k.startswith("ndsampler") and k.endswith("cog")), None)
    targets = [
        ("npy >= 0.5x raw memmap", by_name["ndpatch npy"] / raw, 0.5, ">="),
        ("cog >= 0.8x gdal ReadAsArray", by_name["ndpatch cog"] / by_name["gdal ReadAsArray on COG"], 0.8, ">="),
        ("cog warmup <= 1.2x gdal_translate", warm["cog"] / warm["gdal_translate"], 1.2, "<="),
    ]
    if nds_cog:
        targets.append(("cog >= 2x ndsampler cog", by_name["ndpatch cog"] / nds_cog, 2.0, ">="))
        targets.append(("(info) cog JPEG vs ndsampler cog (JPEG)",
                        by_name["ndpatch cog JPEG (lossy)"] / nds_cog, 2.0, ">="))
    return {"rows": rows, "warmup_s_per_image": warm,
            "targets": [{"target": t, "value": v, "goal": g,
                         "met": bool(v >= g if op == ">=" else v <= g)} for t, v, g, op in targets],
            "setup": {"images": n_images, "size": SIZE, "window": WINDOW, "windows": n_windows,
                      "seed": seed, "gdal_cachemax_mb": cachemax, "gdal": gdal.__version__,
                      "numpy": np.__version__, "python": platform.python_version(),
                      "cpus": os.cpu_count(), "machine": platform.machine()}}


def markdown(result: dict) -> str:
    setup = result["setup"]
    lines = [f"# bench_sampling: {setup['windows']} random {setup['window']}x{setup['window']} windows "
             f"over {setup['images']} {setup['size']}x{setup['size']}x3 uint8 images",
             "", f"GDAL {setup['gdal']}, GDAL_CACHEMAX {setup['gdal_cachemax_mb']} MB, "
             f"{setup['cpus']} CPUs, seed {setup['seed']}.", "",
             "| reader | windows/s | p50 ms | p99 ms | ratio to raw memmap |",
             "|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['name']} | {row['windows_per_s']:.0f} | {row['p50_ms']:.3f} | "
                     f"{row['p99_ms']:.3f} | {row['ratio_to_raw']:.2f} |")
    warm = result["warmup_s_per_image"]
    lines += ["", "| warmup | s/image | ratio to gdal_translate |", "|---|---:|---:|"]
    for name, seconds in warm.items():
        lines.append(f"| {name} | {seconds:.2f} | {seconds / warm['gdal_translate']:.2f} |")
    lines += ["", "| target | value | met |", "|---|---:|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']:.2f} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--cachemax", type=int, default=64, help="GDAL block cache, MB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=HERE / ".data", help="generated images (not committed)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    result = run(args.images, args.windows, args.cachemax, args.seed, args.data)
    text = markdown(result)
    print(text)
    save_results("bench_sampling", text, result, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
