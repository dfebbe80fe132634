"""``spidarknet merge``: join the hit lists of ``detect --shard K/N`` into one."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.detection.shards import merge_to_file


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "merge",
        "Join the parts of a job array into one hit list, identical to a single run: checks that every "
        "part K of N is there once, that all were made with the same weights, preprocessing and "
        "threshold, and that every frame is scored exactly once (names what is missing).",
        "spidarknet merge parts/hits-*.csv --out hits.csv")
    parser.add_argument("parts", nargs="+", metavar="PART", help="hit lists written by detect --shard")
    parser.add_argument("--out", required=True, metavar="CSV", help="merged hit list")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    hits = merge_to_file(args.parts, args.out, force=args.force)
    print(f"merged {len(args.parts)} parts: {hits.summary_line()}; wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
