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


#: Every subcommand, in the order ``ndpatch --help`` lists them.
SUBCOMMANDS = [add_demo]


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
