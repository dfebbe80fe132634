"""``spidarknet learn``: a selection learnt from a few labelled frames of the user's run."""

from __future__ import annotations

import argparse
import sys

from spidarknet import cli
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import check_destination
from spidarknet.dataset import labels_from_dataset, labels_from_selections
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.selection.pipeline import learn_from_labels


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


def _labels(args: argparse.Namespace, source) -> dict:
    if bool(args.labels_dataset) == bool(args.positives):
        raise ConfigError("give the labels as --positives CSV (with optional --negatives CSV) or as "
                          "--labels-dataset PATH, one of the two")
    if args.negatives and not args.positives:
        raise ConfigError("--negatives needs --positives")
    if args.labels_dataset:
        return labels_from_dataset(source, args.labels_dataset)
    return labels_from_selections(source, args.positives, args.negatives)


def run(args: argparse.Namespace) -> int:
    if args.folds < 2:
        raise ConfigError(f"--folds {args.folds}: give at least 2")
    if args.screen is not None and not 0 <= args.screen <= 1:
        raise ConfigError(f"--screen {args.screen:g} must lie between 0 and 1")
    check_destination(args.out, args.force, "selection")
    source = cli.frame_source_from_args(args)
    labels = _labels(args, source)
    model = load_model(args.weights or str(builtin_weights()))
    bars = []

    def progress(stage: str, total: int):
        bars.append(cli.progress(total=total, desc=stage, quiet=args.quiet))
        return bars[-1].update
    try:
        selector = learn_from_labels(source, labels, model, screen=args.screen, backend=args.backend,
                                     folds=args.folds, seed=args.seed, jobs=args.jobs, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    selector.save(args.out, force=args.force)
    _print(selector, args.out)
    return 0


def _print(selector, out: str) -> None:
    f = selector.figures
    print(f"learnt from {f['labels']} labelled frames ({f['single']} single); {f['folds']}-fold "
          f"cross-validated: precision {f['precision']:.3f}, recall {f['recall']:.3f}, F1 {f['f1']:.3f} "
          f"(68 % interval {f['f1_interval_68'][0]:.3f}-{f['f1_interval_68'][1]:.3f}, 95 % "
          f"{f['f1_interval_95'][0]:.3f}-{f['f1_interval_95'][1]:.3f}); the network screens at "
          f"{selector.screen:.3g}")
    print("weights (standardised feature z, and z²):")
    for name, linear, square in selector.weight_table():
        print(f"  {name:<30s} {linear:+.3f} {square:+.3f}")
    print(f"wrote {out}; apply it with: spidarknet detect FILES --selector {out} --out hits.csv")
    if f["labels"] < 30:
        print(f"warning: {f['labels']} labels give wide intervals; 40 or more (spidarknet propose) do better",
              file=sys.stderr)


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
