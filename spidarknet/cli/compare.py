"""``spidarknet compare``: selections side by side — counts, intersections, Jaccard, and with
``--recon`` the structure each gives (shell correlations, resolution, rank)."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.compare import CompareSettings, compare_to_files


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "compare",
        "Set two or more selections side by side: how many frames each selects and, for every\n"
        "pair, how many they share and their Jaccard index |A∩B|/|A∪B|.  Each input is a hit list\n"
        "(its rows with hit=1) or a selection CSV (file,index).  Frames match by (file name or\n"
        "absolute path, index).\n\n"
        "With --recon (one 'spidarknet reconstruct' folder per selection) each selection is also judged\n"
        "by its structure: with --truth SIM.cxi against the simulated particle's intensity (Pearson\n"
        "correlation per shell after alignment; for spheres the radial-band correlation of the radial\n"
        "profiles), without it half 1 against half 2 (folders made with --halves).  Printed: frames,\n"
        "the correlation at a few q, the resolution (q where it first drops below --threshold, and\n"
        "d = 2π/q) and the rank by structure.",
        "spidarknet compare hits.csv manual.csv em.csv --names cnn manual em --out table.csv\n"
        "  spidarknet compare cnn.csv truth.csv --recon recon_cnn recon_truth --truth sim.cxi "
        "--structure-out structure")
    parser.add_argument("inputs", nargs="+", metavar="CSV", help="hit lists or selection CSVs (two or more)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="a short name per input (default: the file names without extension)")
    parser.add_argument("--out", metavar="TABLE", help="also write the table (.csv: one row per pair; .json)")
    parser.add_argument("--recon", nargs="+", metavar="DIR",
                        help="a reconstruction folder per input (same order): judge the selections by structure")
    parser.add_argument("--truth", metavar="SIM.cxi",
                        help="the simulated file the selections come from (its particle is the truth); "
                             "without it the half sets of each --recon folder are compared")
    parser.add_argument("--shell-method", choices=("pearson", "radial-band"), default="pearson",
                        help="without --truth: the per-shell figure of the half sets (radial-band for "
                             "spherical particles; default pearson)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="the per-shell correlation the resolution is quoted at (default 0.5)")
    parser.add_argument("--structure-out", metavar="DIR",
                        help="write DIR/structure.json and DIR/structure.md (needs --recon)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file or --structure-out folder")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    result, structure = compare_to_files(CompareSettings(
        inputs=args.inputs, names=args.names, out=args.out, recon=args.recon, truth=args.truth,
        shell_method=args.shell_method, threshold=args.threshold, structure_out=args.structure_out,
        force=args.force))
    print(result.table())
    if structure is not None:
        print()
        print(structure.table())
        for j in structure.judgements:
            print(j.line())
    if args.out:
        print(f"wrote {args.out}")
    if args.structure_out:
        print(f"wrote {args.structure_out}/structure.json and structure.md")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
