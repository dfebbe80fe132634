"""``spidarknet select``: re-threshold a hit list and keep the hits in a size window."""

from __future__ import annotations

import argparse
import math


from spidarknet import cli
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import check_destination
from spidarknet.hits import read_selected, write_selected
from spidarknet.sizing import select_size_window


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
    if args.threshold is None and args.size_range is None:
        raise ConfigError("nothing to select by: give --threshold and/or --size-range")
    if args.sizes and not args.size_range:
        raise ConfigError("--sizes goes with --size-range MIN MAX")
    cli.check_size_range(args.size_range)
    check_destination(args.out, args.force, "hit list")
    hits, _ = read_selected(args.hits)
    threshold = hits.threshold if args.threshold is None else args.threshold
    if not math.isfinite(threshold):
        raise ConfigError(f"{args.hits} records no usable threshold; give --threshold")
    above = (hits.scores >= threshold) & ~hits.unusable  # frames without a valid pixel: never
    flags = above.copy()
    meta = {"selected_from": args.hits}
    message = f"{int(above.sum())} of {len(hits)} frames score ≥ {threshold:.3g}"
    if hits.n_unusable:
        message += f" ({hits.n_unusable} without a valid pixel, never selected)"
    if args.size_range:
        lo, hi = args.size_range
        bar = cli.progress(total=int(above.sum()), desc="size", quiet=args.quiet or bool(args.sizes))
        try:
            flags, counts = select_size_window(hits, above, args.size_range, args.sizes, on_frames=bar.update)
        finally:
            bar.close()
        meta.update(size_range_nm=[lo, hi], sizes=args.sizes or "fitted by select")
        message += (f"; {counts['inside']} with a diameter in {lo:g}-{hi:g} nm, {counts['outside']} outside, "
                    f"{counts['failed']} left out (no size, not a sphere, or {counts['second_particle']} with the "
                    "fringes of a second particle)")
    hits.threshold = threshold
    write_selected(hits, flags, args.out, force=args.force, meta=meta)
    print(f"{message}: {int(flags.sum())} selected; wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
