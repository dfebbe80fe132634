"""``spidarknet select``: re-threshold a hit list and keep the hits in a size window."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.select import SelectSettings, select_to_file


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "select",
        "Write a new hit list in which hit=1 only for frames scoring at least the threshold and,\n"
        "with --size-range, whose fitted diameter lies in the window.  Sizes come from --sizes\n"
        "(a table by 'spidarknet size' that covers those frames) or are fitted here from the\n"
        "frame files the hit list names.",
        "spidarknet select hits.csv --threshold 0.4 --size-range 60 75 --sizes sizes.csv --out sel.csv")
    parser.add_argument("hits", metavar="HITS.csv", help="hit list to select from")
    parser.add_argument("--out", required=True, metavar="CSV", help="hit list to write")
    parser.add_argument("--threshold", type=float, help="score threshold (default: the hit list's)")
    parser.add_argument("--size-range", nargs=2, type=float, metavar=("MIN_NM", "MAX_NM"),
                        help="keep hits whose diameter lies in [MIN, MAX] nm")
    parser.add_argument("--sizes", metavar="CSV", help="size table to use (default: fit the sizes now)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    r = select_to_file(SelectSettings(hits=args.hits, out=args.out, threshold=args.threshold,
                                      size_range=args.size_range, sizes=args.sizes, force=args.force),
                       cli.Console(args.quiet))
    message = f"{r.above} of {r.frames} frames score ≥ {r.threshold:.3g}"
    if r.unusable:
        message += f" ({r.unusable} without a valid pixel, never selected)"
    if r.counts is not None:
        lo, hi, counts = *args.size_range, r.counts
        message += (f"; {counts['inside']} with a diameter in {lo:g}-{hi:g} nm, {counts['outside']} outside, "
                    f"{counts['failed']} left out (no size, not a sphere, or {counts['second_particle']} with the "
                    "fringes of a second particle)")
    print(f"{message}: {r.selected} selected; wrote {r.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
