"""Scale-out: warmup on Dask against the local process pool, and reads from a loopback S3 server.

1. Warmup of 16 images (striped DEFLATE GeoTIFFs → the COG cache, the
   CPU-bound conversion) into a fresh cache each time: the local process pool
   with 1 and with 2 workers, and a Dask ``LocalCluster`` of 2 worker processes
   (``--dask local:2``: ndpatch's settings), started before the clock (a running cluster; its
   start-up timed apart, and it is stopped before the next run, so that no idle cluster takes
   CPU from the other runs) and started by the run; then a cluster with Dask's default worker
   environment.
   Targets (issue 20): Dask ≥ 0.9× the 2-worker pool, ≥ 1.6× one worker.
2. Random 256×256 windows of a tiled COG in a loopback moto S3 server:
   ``backend=None`` (GDAL range reads over HTTP, each repeat in a fresh
   process so that nothing is cached) against the npy cache of the same
   object (converted once, then local); the bytes GDAL fetched per window
   (its network statistics) against the object's size.

Each figure is the median of ``--repeats`` runs (min–max beside it), all in
one run, so the ratios compare like with like. Needs the dask extra and moto.

The warmup images are 2048×2048, so that a run lasts seconds: a 1024×1024 image converted
in 0.18 s here, a 16-image run on two workers in 1.5 s, and the ~0.25 s a ``local:N`` cluster
costs to start and stop was then a sixth of it (the table states the start-up time apart).

Run: .venv/bin/python benchmarks/bench_scale.py [--repeats 3] [--size 2048] [--windows 200]
Writes benchmarks/results/bench_scale.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import kwcoco
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ["CPL_VSIL_NETWORK_STATS_ENABLED"] = "YES"  # read by GDAL when it starts counting

from loopback import S3Server  # noqa: E402  (tests/loopback.py: the servers the tests use)
from osgeo import gdal  # noqa: E402
from report import median_row, save_results, spread, target_row, target_table  # noqa: E402

from ndpatch.cache.budget import human_bytes  # noqa: E402
from ndpatch.demo import random_pixels, write_raster  # noqa: E402
from ndpatch.distributed import connect, environ_kept  # noqa: E402
from ndpatch.sampler import CocoSampler  # noqa: E402
from ndpatch.warmup import WORKER_MODULES, warmup  # noqa: E402
from ndpatch.workers import start_fork_server  # noqa: E402

N_IMAGES = 16
BUCKET = "bench-scale"


def make_images(root: Path, size: int) -> kwcoco.CocoDataset:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "data.kwcoco.json")
    gradient = np.linspace(0, 200, size)[None, :, None]
    for i in range(N_IMAGES):
        pixels = (rng.integers(0, 50, (size, size, 3)) + gradient).astype(np.uint8)
        write_raster(root / f"images/{i:02d}.tif", pixels, options=["COMPRESS=DEFLATE"])
        dset.add_image(file_name=f"images/{i:02d}.tif", width=size, height=size)
    dset.dump(dset.fpath)
    return dset


def timed_warmup(dset_path: str, tmp: Path, **kwargs) -> float:
    workdir = tempfile.mkdtemp(dir=tmp)
    started = time.perf_counter()
    summary = warmup(dset_path, backend="cog", workdir=workdir, progress=False, **kwargs)
    elapsed = time.perf_counter() - started
    assert summary.converted == N_IMAGES and not summary.failed, summary
    return N_IMAGES / elapsed


def bench_warmup(tmp: Path, size: int, repeats: int) -> dict:
    import distributed
    # One fork server for every row, holding what both engines' workers need: a CLI run (one
    # engine per process) has its server import that engine's modules; here the first pool would
    # otherwise decide for the Dask runs too, whose workers then import distributed themselves
    start_fork_server(("distributed", *WORKER_MODULES))
    dset = make_images(tmp / "data", size)
    rates = {"pool_1": [], "pool_2": [], "dask_2": [], "dask_2_cli": []}
    cluster_starts = []
    for _ in range(repeats):  # interleaved, so that machine noise hits each alike
        rates["pool_1"].append(timed_warmup(dset.fpath, tmp, workers=1))
        rates["pool_2"].append(timed_warmup(dset.fpath, tmp, workers=2))
        # the cluster --dask local:2 makes, started before the clock (a running cluster) and stopped
        # after: an idle cluster beside the other runs would take CPU from them
        started = time.perf_counter()
        with connect("local:2", preload=WORKER_MODULES) as client:
            cluster_starts.append(time.perf_counter() - started)
            rates["dask_2"].append(timed_warmup(dset.fpath, tmp, client=client))
        rates["dask_2_cli"].append(timed_warmup(dset.fpath, tmp, client="local:2"))  # cluster start included
    # Dask's defaults (workers spawned with MALLOC_TRIM_THRESHOLD_=65536), after the rest: its nanny
    # writes that variable into this process's environment while it runs
    with environ_kept(), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        rates["dask_2_defaults"] = [timed_warmup(dset.fpath, tmp, client=client) for _ in range(repeats)]
    stats = {name: median_row(values) for name, values in rates.items()}
    return {"images": N_IMAGES, "size": size, "images_per_s": stats, "cluster_start_s": median_row(cluster_starts),
            "dask_vs_pool_2": stats["dask_2"]["median"] / stats["pool_2"]["median"],
            "dask_vs_pool_1": stats["dask_2"]["median"] / stats["pool_1"]["median"]}


def network_bytes() -> int:
    stats = json.loads(gdal.NetworkStatsGetAsSerializedJSON() or "{}")
    return sum(method.get("downloaded_bytes", 0) for method in stats.get("methods", {}).values())


def read_windows(sampler: CocoSampler, size: int, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, size - 256, (n, 2))
    started = time.perf_counter()
    for row, col in corners:
        sampler.load_sample({"gid": 1, "space_slice": (slice(row, row + 256), slice(col, col + 256))},
                            with_annots=False)
    return n / (time.perf_counter() - started)


def cold_direct_read(dataset: dict, size: int, windows: int, seed: int) -> tuple[float, float]:
    """Windows/s and bytes fetched per window with ``backend=None``, in a fresh process.

    A fresh process is the only sure cold start: GDAL's block cache, its curl
    cache and ndpatch's open handles all start empty (clearing them from inside
    one process left blocks behind, so later repeats fetched almost nothing).
    """
    gdal.NetworkStatsReset()
    rate = read_windows(CocoSampler(kwcoco.CocoDataset(dataset), backend=None), size, windows, seed)
    return rate, network_bytes() / windows


def bench_s3(tmp: Path, size: int, windows: int, repeats: int) -> dict:
    local = write_raster(tmp / "scene.tif", random_pixels((size, size, 3), "uint8", np.random.default_rng(1)),
                         driver="COG", options=["BLOCKSIZE=256", "COMPRESS=DEFLATE"])
    with S3Server() as s3:
        os.environ.update(s3.gdal_env())  # before the child processes start: they inherit it
        s3.client().create_bucket(Bucket=BUCKET)
        s3.client().upload_file(local, BUCKET, "scene.tif")
        dset = kwcoco.CocoDataset()
        dset.add_image(file_name=f"s3://{BUCKET}/scene.tif", width=size, height=size)
        rates = {"direct": [], "npy_cache": []}
        fetched = []
        spawn = multiprocessing.get_context("spawn")
        for k in range(repeats):  # direct reads cold each time; the cache converted once, then found
            with spawn.Pool(1) as child:
                rate, per_window = child.apply(cold_direct_read, (dset.dataset, size, windows, k))
            rates["direct"].append(rate)
            fetched.append(per_window)
            cached = CocoSampler(dset, backend="npy", workdir=str(tmp / "cache"))
            cached.entry(1)
            rates["npy_cache"].append(read_windows(cached, size, windows, seed=k))
    stats = {name: median_row(values) for name, values in rates.items()}
    object_bytes = os.path.getsize(local)
    return {"windows": windows, "size": size, "object_bytes": object_bytes, "windows_per_s": stats,
            "cache_vs_direct": stats["npy_cache"]["median"] / stats["direct"]["median"],
            "bytes_per_window": median_row(fetched),
            "fraction_of_object_per_window": float(np.median(fetched)) / object_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=2048, help="side of each warmup image")
    parser.add_argument("--s3-size", type=int, default=4096, help="side of the COG in the S3 server")
    parser.add_argument("--windows", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scale = bench_warmup(tmp / "warmup", args.size, args.repeats)
        s3 = bench_s3(Path(tempfile.mkdtemp(dir=tmp)), args.s3_size, args.windows, args.repeats)
    w, r = scale["images_per_s"], s3["windows_per_s"]
    cli_vs_pool_2 = w["dask_2_cli"]["median"] / w["pool_2"]["median"]
    targets = [
        target_row("Dask running cluster >= 0.9x the 2-worker pool", scale["dask_vs_pool_2"], 0.9),
        target_row("Dask running cluster >= 1.6x one worker", scale["dask_vs_pool_1"], 1.6),
        target_row("--dask local:2 >= 0.9x the 2-worker pool", cli_vs_pool_2, 0.9),
        target_row("--dask local:2 >= 1.6x one worker", w["dask_2_cli"]["median"] / w["pool_1"]["median"], 1.6),
        target_row("S3: npy cache / backend=None (cold)", s3["cache_vs_direct"], None),
        target_row("S3: % of the object fetched per window", 100 * s3["fraction_of_object_per_window"], None),
    ]
    markdown = "\n".join([
        "# bench_scale", "",
        f"Warmup of {N_IMAGES} {args.size}×{args.size}×3 DEFLATE GeoTIFFs into the COG cache "
        f"(images/s, median of {args.repeats}, min–max):", "",
        "| how | images/s | vs pool, 1 worker | vs pool, 2 workers |", "|---|---|---|---|",
        f"| pool, 1 worker | {spread(w['pool_1'], 2)} | 1.00× | |",
        f"| pool, 2 workers | {spread(w['pool_2'], 2)} | {w['pool_2']['median'] / w['pool_1']['median']:.2f}× | 1.00× |",
        f"| Dask LocalCluster, 2 workers (running) | {spread(w['dask_2'], 2)} | {scale['dask_vs_pool_1']:.2f}× "
        f"| {scale['dask_vs_pool_2']:.2f}× |",
        f"| `--dask local:2` (cluster started and stopped by the run) | {spread(w['dask_2_cli'], 2)} "
        f"| {w['dask_2_cli']['median'] / w['pool_1']['median']:.2f}× "
        f"| {cli_vs_pool_2:.2f}× |",
        f"| Dask LocalCluster with Dask's default worker environment, running (measured after the rest) "
        f"| {spread(w['dask_2_defaults'], 2)} | {w['dask_2_defaults']['median'] / w['pool_1']['median']:.2f}× "
        f"| {w['dask_2_defaults']['median'] / w['pool_2']['median']:.2f}× |", "",
        f"Starting the `local:2` cluster took {spread(scale['cluster_start_s'], 2)} s. The local pool starts its "
        "worker processes for each run (forked from a warm server, as `local:N`'s are); Dask's running workers "
        "are warm. Dask's default worker environment sets `MALLOC_TRIM_THRESHOLD_=65536`, which slows GDAL's "
        f"conversions, and runs its profiler: {w['dask_2']['median'] / w['dask_2_defaults']['median']:.2f}× "
        "faster without them (`ndpatch.distributed.LOCAL_CLUSTER_CONFIG`).", "",
        f"{args.windows} random 256×256 windows of a {args.s3_size}×{args.s3_size}×3 COG (256-pixel DEFLATE tiles, "
        f"{s3['object_bytes'] / 2**20:.1f} MB) in a loopback S3 server (windows/s; each direct run in a fresh "
        "process, so nothing is cached; the npy cache converted once, before the first timed run):", "",
        "| backend | windows/s | vs direct |", "|---|---|---|",
        f"| None (range reads over HTTP) | {spread(r['direct'], 2)} | 1.00× |",
        f"| npy cache | {spread(r['npy_cache'], 2)} | {s3['cache_vs_direct']:.1f}× |", "",
        f"GDAL fetched {human_bytes(s3['bytes_per_window']['median'])} per window with backend=None "
        f"({human_bytes(s3['bytes_per_window']['min'])}–{human_bytes(s3['bytes_per_window']['max'])}; a window "
        f"is {human_bytes(256 * 256 * 3)} of pixels, about four 256-pixel tiles): "
        f"{100 * s3['fraction_of_object_per_window']:.2f}% of the object. The npy cache read the object once.", "",
        *target_table(targets),
    ])
    print(markdown)
    save_results("bench_scale", markdown, {"warmup": scale, "s3": s3, "targets": targets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
