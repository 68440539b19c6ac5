"""The ``ndpatch`` command line.

Each subcommand is one ``add_<name>(subparsers)`` function that declares its
arguments and points ``func`` at the code that runs it. ndpatch errors are
printed as one line (``ndpatch: error: ...``) with exit status 2.

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["demo", "--out", "/tmp/x"]).out
    '/tmp/x'
"""
from __future__ import annotations

import argparse
import sys

from ndpatch.errors import NdpatchError


def add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="sample a toy dataset and write a mosaic of the windows",
        description="Build kwcoco's 'shapes8' toy dataset, sample positive, negative and "
                    "arbitrary windows, and write them as one PNG mosaic with annotations drawn.")
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--backend", default=None, help="pixel backend (default: read sources directly)")
    parser.add_argument("--workdir", default=None, help="cache folder for cache backends")
    parser.add_argument("--seed", type=int, default=0)

    def run(args) -> int:
        from ndpatch.showcase import run_demo
        summary = run_demo(args.out, backend=args.backend, workdir=args.workdir, seed=args.seed)
        print(summary)
        return 0

    parser.set_defaults(func=run)


def add_import_vectors(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-vectors", help="add polygons from a vector file to a kwcoco dataset",
        description="Read a GeoJSON, GeoPackage or Shapefile through OGR, reproject each polygon to "
                    "each georeferenced image's CRS and add it as an annotation; the dataset is "
                    "written atomically (in place unless --out is given).")
    parser.add_argument("dataset", help="kwcoco json to add annotations to")
    parser.add_argument("vectors", help="vector file (GeoJSON, GeoPackage, Shapefile, ...)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--category-field", help="attribute holding each polygon's category name")
    group.add_argument("--category", help="one category for every polygon")
    parser.add_argument("--layer", default=None, help="layer to read (default: all)")
    parser.add_argument("--out", default=None, help="output kwcoco json (default: overwrite DATASET)")

    def run(args) -> int:
        from ndpatch.geo import import_vectors
        counts = import_vectors(args.dataset, args.vectors, category_field=args.category_field,
                                category=args.category, layer=args.layer, out=args.out or args.dataset)
        print(" ".join(f"{key}={value}" for key, value in sorted(counts.items())))
        return 0

    parser.set_defaults(func=run)


def add_show(subparsers) -> None:
    parser = subparsers.add_parser(
        "show", help="write one sampled window as a GeoTIFF",
        description="Sample one window of an image (optionally scaled or at a ground sample "
                    "distance, with chosen channels) and write it as a GeoTIFF that lines up "
                    "with the source in GDAL.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("--gid", type=int, required=True, help="image id")
    parser.add_argument("--cx", type=float, help="window centre x (image pixels; default: whole image)")
    parser.add_argument("--cy", type=float, help="window centre y")
    parser.add_argument("--width", type=float, default=256)
    parser.add_argument("--height", type=float, default=256)
    parser.add_argument("--channels", default=None, help="e.g. 'red|green|nir'")
    parser.add_argument("--scale", type=float, default=None, help="output pixels per image pixel")
    parser.add_argument("--gsd", type=float, default=None, help="output ground sample distance (CRS units)")
    parser.add_argument("--interpolation", default="linear")
    parser.add_argument("--backend", default=None, help="pixel backend (default: read sources directly)")
    parser.add_argument("--workdir", default=None, help="cache folder for cache backends")
    parser.add_argument("--out", required=True, help="output GeoTIFF path")

    def run(args) -> int:
        from ndpatch.geo import write_sample
        from ndpatch.sampler import CocoSampler
        sampler = CocoSampler(args.dataset, workdir=args.workdir, backend=args.backend)
        target = {"gid": args.gid, "channels": args.channels, "scale": args.scale, "gsd": args.gsd,
                  "interpolation": args.interpolation}
        if args.cx is not None or args.cy is not None:
            target.update(cx=args.cx, cy=args.cy, width=args.width, height=args.height)
        sample = write_sample(sampler, target, args.out)
        print(f"wrote {args.out}: {'x'.join(map(str, sample['im'].shape))} {sample['im'].dtype}")
        return 0

    parser.set_defaults(func=run)


#: Every subcommand, in the order ``ndpatch --help`` lists them.
SUBCOMMANDS = [add_demo, add_import_vectors, add_show]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndpatch", description="Fast training patches from large images.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NdpatchError as err:
        print(f"ndpatch: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
