"""``spidarknet evaluate``: a hit list against the truth — P/R/F1, curves, thresholds."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.core.outputs import check_destination, write_json
from spidarknet.hits import read_selected
from spidarknet.judge.breakdown import DEFAULT_PHOTONS_DATASET, PHOTON_EDGES, breakdown_text, breakdowns
from spidarknet.judge.evaluation import evaluate, summary_text
from spidarknet.judge.truth import load_truth


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
    if args.out:
        check_destination(args.out, args.force, "evaluation")
    hits, flags = read_selected(args.hits)
    truth = load_truth(hits, dataset=args.truth_dataset, csv_path=args.truth,
                       common_only=args.common_only)
    result = evaluate(truth.hits.scores, truth.labels, truth.hits.threshold, beta=args.beta,
                      target_recall=args.target_recall, selected=flags[truth.index],
                      unusable=truth.hits.unusable)
    parts = breakdowns(truth, flags[truth.index], by=args.by, truth_csv=args.truth,
                       photons_dataset=args.photons_dataset, photon_edges=args.photon_bins)
    result = {"hits": args.hits, "truth": truth.source, "frames_without_truth": truth.dropped,
              "truth_frames_not_scored": truth.unscored, **result, **parts}
    print(summary_text(result))
    if parts:
        print(breakdown_text(result))
    if truth.dropped or truth.unscored:
        print(f"(--common-only: left out {truth.dropped} hit-list frames without truth and "
              f"{truth.unscored} truth frames not in the hit list)")
    if args.out:
        write_json(result, args.out, force=args.force, what="evaluation")
        print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
