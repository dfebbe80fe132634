"""``spidarknet compare``: selections side by side — counts, intersections, Jaccard."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.errors import ConfigError
from spidarknet.outputs import check_destination
from spidarknet.report.compare import compare, read_selection_like, write_comparison


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "compare",
        "Set two or more selections side by side: how many frames each selects and, for every\n"
        "pair, how many they share and their Jaccard index |A∩B|/|A∪B|.  Each input is a hit list\n"
        "(its rows with hit=1) or a selection CSV (file,index).  Frames match by (file name or\n"
        "absolute path, index).",
        "spidarknet compare hits.csv manual.csv em.csv --names cnn manual em --out table.csv")
    parser.add_argument("inputs", nargs="+", metavar="CSV", help="hit lists or selection CSVs (two or more)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="a short name per input (default: the file names without extension)")
    parser.add_argument("--out", metavar="TABLE", help="also write the table (.csv: one row per pair; .json)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if len(args.inputs) < 2:
        raise ConfigError("compare needs at least two selections (hit lists or file,index CSVs)")
    if args.names is not None and len(args.names) != len(args.inputs):
        raise ConfigError(f"--names gives {len(args.names)} names for {len(args.inputs)} inputs; "
                          "give one name per input")
    if args.out:
        if not args.out.lower().endswith((".csv", ".json")):
            raise ConfigError(f"--out {args.out}: give a .csv or .json file name")
        check_destination(args.out, args.force, "comparison table")
    names = args.names or [None] * len(args.inputs)
    selections = [read_selection_like(path, name) for path, name in zip(args.inputs, names)]
    result = compare(selections)
    print(result.table())
    if args.out:
        write_comparison(result, args.out, force=args.force)
        print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
