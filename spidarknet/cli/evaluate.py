"""``spidarknet evaluate``: a hit list against the truth — P/R/F1, curves, thresholds."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.evaluate import EvaluateSettings, evaluate_to_file
from spidarknet.judge.breakdown import DEFAULT_PHOTONS_DATASET, PHOTON_EDGES, breakdown_text
from spidarknet.judge.evaluation import summary_text


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "evaluate",
        "Judge a hit list against the truth: accuracy, precision, recall, F1 and F-beta at its\n"
        "threshold, the confusion matrix, PR and ROC curves, ROC AUC, average precision, and\n"
        "two suggested thresholds (max F1; best precision at the target recall).  With --by, the\n"
        "frames, selected share, positives and recall per category (e.g. the kind of shot), and\n"
        "precision, recall and F1 per photon-count bin (photons per frame: < 1e3, 1e3-3e3, 3e3-1e4,\n"
        f"1e4-3e4, >= 3e4 by default; from {DEFAULT_PHOTONS_DATASET} when the files have it).\n"
        "A hit list narrowed by a size window is judged by its own rule: the threshold sweep never\n"
        "selects the frames the window dropped.",
        "spidarknet evaluate hits.csv --truth-dataset /truth/label --by /truth/kind --out eval.json")
    parser.add_argument("hits", metavar="HITS.csv", help="hit list written by 'spidarknet detect'")
    truth = parser.add_mutually_exclusive_group(required=True)
    truth.add_argument("--truth-dataset", metavar="PATH",
                       help="0/1 label dataset in the frame files the hit list names (e.g. /truth/label)")
    truth.add_argument("--truth", metavar="CSV", help="labels as file,index,label rows (header optional)")
    parser.add_argument("--common-only", action="store_true",
                        help="evaluate only the frames both the hit list and the truth cover "
                             "(default: differing coverage is an error)")
    parser.add_argument("--beta", type=float, default=1.0,
                        help="beta of the F-beta score also reported (default 1; F1 is always reported)")
    parser.add_argument("--target-recall", type=float, default=0.9,
                        help="recall the high-recall threshold must reach (default 0.9)")
    parser.add_argument("--by", action="append", default=[], metavar="DATASET|COLUMN",
                        help="counts per category of frame: a per-frame dataset in the frame files "
                             "(text or numbers, e.g. /truth/kind) or a column of the --truth CSV; "
                             "repeat for several")
    parser.add_argument("--photons-dataset", metavar="PATH",
                        help="per-frame photon count in the frame files for the photon-count bins "
                             f"(default: {DEFAULT_PHOTONS_DATASET} when every file has it, else none)")
    parser.add_argument("--photon-bins", nargs="+", type=float, default=list(PHOTON_EDGES), metavar="EDGE",
                        help="edges of the photon-count bins, photons per frame (default "
                             f"{' '.join(f'{e:g}' for e in PHOTON_EDGES)})")
    parser.add_argument("--out", metavar="JSON", help="also write everything as JSON")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    result = evaluate_to_file(EvaluateSettings(
        hits=args.hits, truth_dataset=args.truth_dataset, truth=args.truth, common_only=args.common_only,
        beta=args.beta, target_recall=args.target_recall, by=args.by, photons_dataset=args.photons_dataset,
        photon_bins=args.photon_bins, out=args.out, force=args.force))
    print(summary_text(result))
    if "by" in result or "photon_bins" in result:  # breakdowns asked for
        print(breakdown_text(result))
    dropped, unscored = result["frames_without_truth"], result["truth_frames_not_scored"]
    if dropped or unscored:
        print(f"(--common-only: left out {dropped} hit-list frames without truth and "
              f"{unscored} truth frames not in the hit list)")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
