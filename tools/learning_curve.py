#!/usr/bin/env python3
"""Learning curve: F1 against the number of user labels, with and without pretraining.

Fine-tunes a model pretrained on simulation (``--pretrained W``, e.g. the science
benchmark's) on N labelled frames of a simulated experiment in other conditions (2 × 2-
binned frames at 0.25 m, singles ~800 photons, one half dead), trains the same network
from scratch on the same labels with the same iterations, and judges both, and the
pretrained model untouched, on a held-out test file of the experiment; see
:mod:`spidarknet.experiments.learning_curve`.  Without ``--pretrained`` it first pretrains a model
itself (``--pretrain-frames`` simulated frames of the default settings, or ``--like`` a
run, with the export/train defaults)::

    python tools/learning_curve.py --work /tmp/lc --pretrained ds/backup/yolov2-tiny-spi_final.weights \\
        --out lc.json [--counts 20 50 100 200] [--iterations 300]

Prints the table and writes every figure as JSON (refusing to overwrite without --force).
"""

from __future__ import annotations

import argparse
import sys

from spidarknet.core.errors import SpidarknetError
from spidarknet.experiments.learning_curve import (DEFAULT_COUNTS, DEFAULT_ITERATIONS, Experiment, format_learning_curve,
                                       pretrain, run_learning_curve)
from spidarknet.core.outputs import check_destination, write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, metavar="DIR", help="working folder (simulations, runs; reused)")
    p.add_argument("--out", required=True, metavar="JSON", help="figures to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--pretrained", metavar="W", help="pretrained weights (with their model card)")
    p.add_argument("--pretrain-frames", type=int, default=3200,
                   help="without --pretrained: simulated frames to pretrain on (default 3200)")
    p.add_argument("--like", metavar="CXI", help="without --pretrained: simulate frames like this run")
    p.add_argument("--counts", type=int, nargs="+", default=list(DEFAULT_COUNTS), metavar="N",
                   help=f"numbers of user labels (default {' '.join(map(str, DEFAULT_COUNTS))})")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help=f"training iterations of both arms (default {DEFAULT_ITERATIONS})")
    p.add_argument("--orientations", type=int, default=4, choices=(1, 2, 4, 8),
                   help="export-dataset --orientations of the labelled frames (default 4)")
    p.add_argument("--valid-fraction", type=float, default=0.2,
                   help="share of the N labels that picks the threshold (default 0.2)")
    p.add_argument("--positive-share", type=float,
                   help="enrich the labels to this share of positives (default: the experiment's hit ratio)")
    p.add_argument("--labelled-frames", type=int, default=Experiment.labelled_frames,
                   help=f"frames of the labelled experiment file (default {Experiment.labelled_frames})")
    p.add_argument("--test-frames", type=int, default=Experiment.test_frames,
                   help=f"frames of the held-out test file (default {Experiment.test_frames})")
    p.add_argument("--seed", type=int, default=0, help="seed of the label draw, split and training (default 0)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        check_destination(args.out, args.force, "figures")
        weights = args.pretrained or pretrain(args.work, frames=args.pretrain_frames, like=args.like, say=say)
        experiment = Experiment(labelled_frames=args.labelled_frames, test_frames=args.test_frames)
        result = run_learning_curve(args.work, weights, args.counts, experiment=experiment,
                                    iterations=args.iterations, orientations=args.orientations,
                                    valid_fraction=args.valid_fraction, positive_share=args.positive_share,
                                    seed=args.seed, say=say)
        write_json(result, args.out, args.force, "figures")
    except SpidarknetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_learning_curve(result))
    print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
