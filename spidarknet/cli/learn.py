"""``spidarknet learn``: a selection learnt from a few labelled frames of the user's run."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.learn import LearnSettings, learn_to_file


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "learn",
        "Learn what 'single' means on your run from a few labelled frames.  The network scores\n"
        "each labelled frame, the sphere fit measures it (diameter, σ, misfit, second-particle\n"
        "score, photons, background, centre), and a calibrated logistic regression (scikit-learn)\n"
        "learns the labels from those numbers.  Prints and stores the cross-validated precision,\n"
        "recall and F1 with bootstrap intervals and the features' weights; 'detect --selector'\n"
        "applies it.  Without --negatives every other frame of the inputs is a negative.\n"
        "Which frames to label: 'spidarknet propose'.",
        "spidarknet learn run7.cxi --positives singles.csv --negatives others.csv --out selection.json")
    cli.add_input_args(parser, adu_option=True)
    labels = parser.add_argument_group("labels")
    labels.add_argument("--positives", nargs="+", default=[], metavar="CSV",
                        help="frames labelled single (file,index rows, e.g. from 'propose' or a hit list)")
    labels.add_argument("--negatives", nargs="+", default=[], metavar="CSV", help="frames labelled not single")
    labels.add_argument("--labels-dataset", metavar="PATH", help="or: a per-frame 0/1 dataset in the files")
    parser.add_argument("--out", required=True, metavar="JSON", help="the selection file to write")
    parser.add_argument("--weights", help="the network (default: the built-in model)")
    parser.add_argument("--screen", type=float,
                        help="the network's screen (default: the card's screening threshold, or lower "
                             "where it would lose more than 2 %% of the labelled singles)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and bootstrap (default 0)")
    parser.add_argument("--backend", default="opencv", choices=("opencv", "darknet"),
                        help="inference backend (default opencv)")
    parser.add_argument("--jobs", type=int, help="processes for the sphere fits (default: one per core)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = LearnSettings(frames=cli.frame_options(args), out=args.out, positives=args.positives,
                             negatives=args.negatives, labels_dataset=args.labels_dataset, weights=args.weights,
                             screen=args.screen, folds=args.folds, seed=args.seed, backend=args.backend,
                             jobs=args.jobs, force=args.force)
    _print(learn_to_file(settings, cli.Console(args.quiet)), args.out)
    return 0


def _print(selector, out: str) -> None:
    f = selector.figures
    print(f"learnt from {f['labels']} labelled frames ({f['single']} single); {f['folds']}-fold "
          f"cross-validated: precision {f['precision']:.3f}, recall {f['recall']:.3f}, F1 {f['f1']:.3f} "
          f"(68 % interval {f['f1_interval_68'][0]:.3f}-{f['f1_interval_68'][1]:.3f}, 95 % "
          f"{f['f1_interval_95'][0]:.3f}-{f['f1_interval_95'][1]:.3f}); the network screens at "
          f"{selector.screen:.3g}")
    if f.get("model_cv_f1"):
        print("model chosen by cross-validated F1 on these labels: " + ", ".join(
            f"{name} {value:.3f}" for name, value in f["model_cv_f1"].items()) + f" -> {selector.model}")
    if selector.model != "gates":
        print("weights (standardised feature z, and z²; ordered counting each feature's hinges too):")
        for name, linear, square in selector.weight_table():
            print(f"  {name:<30s} {linear:+.3f} {square:+.3f}")
    for name, side, cut in selector.gate_table():
        print(f"  gate: {name} {side} {cut:.4g}")
    print(f"wrote {out}; apply it with: spidarknet detect FILES --selector {out} --out hits.csv")


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
