"""Large striped GeoTIFF: random windows read directly vs after COG caching, as ratios.

The scene (10,000 × 10,000, uint8, DEFLATE strips of 32 rows, UTM) is generated
once outside git, in ``$NDPATCH_BENCH_DATA`` (default ``~/.cache/ndpatch-bench``).
Every row is a ratio against the direct read of the same windows, measured in
the same run: full-resolution 256² windows, and 1024² windows at ``scale=0.25``
(256² out), where the COG's overviews spare GDAL the full-resolution decode.
Every time is the median of ``--repeats`` interleaved runs, min–max beside it.

Run: ``.venv/bin/python benchmarks/bench_geo.py [--windows 100]``; writes
``benchmarks/results/bench_geo.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

import ndpatch
from report import interleaved, save_results, spread

SIZE = 10_000


def scene(data_dir: Path) -> str:
    """The kwcoco json of the striped scene, generated on first use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tif, coco = data_dir / "striped_10k.tif", data_dir / "striped_10k.kwcoco.json"
    if not tif.exists():
        tmp = str(tif) + ".tmp.tif"
        ds = gdal.GetDriverByName("GTiff").Create(tmp, SIZE, SIZE, 1, gdal.GDT_Byte,
                                                  ["COMPRESS=DEFLATE", "BLOCKYSIZE=32"])
        ds.SetGeoTransform((500000.0, 1.0, 0.0, 4200000.0, 0.0, -1.0))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32631)
        ds.SetProjection(srs.ExportToWkt())
        rng = np.random.default_rng(0)
        ramp = (np.arange(SIZE) % 251).astype(np.uint8)
        for r0 in range(0, SIZE, 1000):  # texture + noise, written in bands of rows
            rows = (ramp[r0:r0 + 1000, None] + ramp[None, :]) // 2
            ds.GetRasterBand(1).WriteArray(rows + rng.integers(0, 4, rows.shape, dtype=np.uint8), 0, r0)
        ds = None
        os.replace(tmp, tif)
    if not coco.exists():
        coco.write_text(json.dumps({"images": [{"id": 1, "file_name": tif.name, "width": SIZE, "height": SIZE}],
                                    "categories": [], "annotations": []}))
    return str(coco)


def per_window(sampler, targets):
    """A measurement: milliseconds per window over ``targets`` (one warm-up read made now)."""
    sampler.load_sample(targets[0], with_annots=False)

    def run() -> float:
        start = time.perf_counter()
        for target in targets:
            sampler.load_sample(target, with_annots=False)
        return (time.perf_counter() - start) / len(targets) * 1e3
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=os.environ.get("NDPATCH_BENCH_DATA",
                                                        str(Path.home() / ".cache" / "ndpatch-bench")))
    args = parser.parse_args()
    coco = scene(Path(args.data))
    rng = np.random.default_rng(1)
    full = [{"gid": 1, "cx": float(x), "cy": float(y), "width": 256, "height": 256}
            for x, y in rng.integers(128, SIZE - 128, (args.windows, 2))]
    scaled = [{"gid": 1, "cx": float(x), "cy": float(y), "width": 1024, "height": 1024, "scale": 0.25}
              for x, y in rng.integers(512, SIZE - 512, (args.windows, 2))]

    direct = ndpatch.CocoSampler(coco, backend=None)
    workdir = str(Path(args.data) / "cache")
    cog = ndpatch.CocoSampler(coco, backend="cog", workdir=workdir)
    convert_s = cog.entry(1).meta["sidecar"]["convert_seconds"]  # recorded when the entry was built
    cases = (("256² windows, full resolution", full), ("1024² windows at scale 0.25", scaled))
    runs = {}
    for name, targets in cases:
        runs[f"{name}: direct"] = per_window(direct, targets)
        runs[f"{name}: cog"] = per_window(cog, targets)
    ms = interleaved(runs, args.repeats)
    rows = [{"case": name, "direct_ms": ms[f"{name}: direct"], "cog_ms": ms[f"{name}: cog"],
             "speedup": ms[f"{name}: direct"]["median"] / ms[f"{name}: cog"]["median"]} for name, _ in cases]
    result = {"scene": f"{SIZE}x{SIZE} uint8 DEFLATE strips of 32 rows", "windows": args.windows,
              "repeats": args.repeats, "cog_conversion_s": convert_s, "rows": rows}
    lines = ["| case | direct ms/window | COG ms/window | speedup (direct / COG) |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {spread(r['direct_ms'], 2)} | {spread(r['cog_ms'], 2)} | {r['speedup']:.1f}× |"
              for r in rows]
    table = "\n".join(lines)
    print(table)
    print(f"COG conversion (first touch, from the cache sidecar): {convert_s:.1f} s")
    save_results("bench_geo", f"# bench_geo\n\n{result['scene']}, {args.windows} random windows, median of "
                              f"{args.repeats} interleaved runs (min–max)\n\n{table}\n\n"
                              f"COG conversion (first touch, from the cache sidecar): {convert_s:.1f} s", result)


if __name__ == "__main__":
    main()
