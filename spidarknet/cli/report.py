"""``spidarknet report``: an HTML page with the figures that judge a selection."""

from __future__ import annotations

import argparse
import os

from spidarknet import cli
from spidarknet.judge.breakdown import DEFAULT_PHOTONS_DATASET
from spidarknet.report.page import ReportOptions, build_report


def build_parser() -> argparse.ArgumentParser:
    d = ReportOptions()
    parser = cli.new_parser(
        "report",
        "Write DIR/index.html with PNG figures: a summary table, the PR and ROC curves with the\n"
        "thresholds marked (with truth), score histograms, montages of top hits, borderline frames\n"
        "and (with truth) top-scoring negatives and missed positives with their detection boxes,\n"
        "the radial profiles of the selected hits sorted by size, and the size histogram.  With\n"
        "truth and --by, a table and a chart of the selected share and recall per category; with\n"
        "truth and a per-frame photon count, precision, recall and F1 per photon-count bin.\n"
        "Frames are read again from the files the hit list names (European XFEL runs assembled with\n"
        "the geometry and photon conversion detect used, as the hit list records them).",
        "spidarknet report --hits hits.csv --truth-dataset /truth/label --by /truth/kind --sizes sizes.csv "
        "--out report/")
    parser.add_argument("--hits", required=True, metavar="CSV", help="hit list (from detect or select)")
    truth = parser.add_mutually_exclusive_group()
    truth.add_argument("--truth-dataset", metavar="PATH",
                       help="0/1 label dataset in the frame files (e.g. /truth/label)")
    truth.add_argument("--truth", metavar="CSV", help="labels as file,index,label rows")
    parser.add_argument("--common-only", action="store_true",
                        help="with truth: use only the frames both the hit list and the truth cover")
    parser.add_argument("--by", action="append", default=[], metavar="DATASET|COLUMN",
                        help="with truth: selected share and recall per category, from a per-frame dataset "
                             "(e.g. /truth/kind) or a column of the --truth CSV; repeat for several")
    parser.add_argument("--photons-dataset", metavar="PATH",
                        help="with truth: per-frame photon count for the photon-count bins (default: "
                             f"{DEFAULT_PHOTONS_DATASET} when every file has it)")
    parser.add_argument("--photon-bins", nargs="+", type=float, default=list(d.photon_edges), metavar="EDGE",
                        help="edges of the photon-count bins, photons per frame (default "
                             f"{' '.join(f'{e:g}' for e in d.photon_edges)})")
    parser.add_argument("--sizes", metavar="CSV",
                        help="size table from 'spidarknet size' (default: fit the selected frames)")
    parser.add_argument("--target-recall", type=float, default=d.target_recall,
                        help=f"recall of the suggested high-recall threshold (default {d.target_recall:g})")
    parser.add_argument("--tiles", type=int, default=d.tiles, help=f"frames per montage (default {d.tiles})")
    parser.add_argument("--crop", type=int, default=d.crop_px,
                        help=f"side of the square shown around the beam centre, pixels (default {d.crop_px})")
    parser.add_argument("--max-profiles", type=int, default=d.max_sized,
                        help=f"at most this many selected frames get radial profiles (default {d.max_sized})")
    parser.add_argument("--out", required=True, metavar="DIR", help="report folder to write")
    parser.add_argument("--force", action="store_true", help="replace an existing report folder")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    options = ReportOptions(truth_dataset=args.truth_dataset, truth_csv=args.truth, sizes_csv=args.sizes,
                            common_only=args.common_only, target_recall=args.target_recall,
                            tiles=args.tiles, crop_px=args.crop, max_sized=args.max_profiles,
                            by=tuple(args.by), photons_dataset=args.photons_dataset,
                            photon_edges=tuple(args.photon_bins))

    def step(text: str) -> None:
        if args.verbose:
            print(text)

    summary = build_report(args.hits, args.out, options, force=args.force, on_step=step)
    line = f"{summary['selected']} of {summary['frames']} frames selected"
    if summary.get("no_valid_pixel_frames"):
        line += f" ({summary['no_valid_pixel_frames']} without a valid pixel, never selected)"
    if "truth" in summary:
        at = summary["truth"]["at_threshold"]
        line += f"; precision {at['precision']:.3f}, recall {at['recall']:.3f}, F1 {at['f1']:.3f}"
    print(f"{line}; wrote {os.path.join(args.out, 'index.html')}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
