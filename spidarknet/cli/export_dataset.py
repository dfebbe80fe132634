"""``spidarknet export-dataset``: labelled CXI frames -> a Darknet training data set."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.core.defaults import ORIENTATIONS, READ_CHUNK_FRAMES, TRAIN_BATCH, TRAIN_ITERATIONS, VALID_FRACTION
from spidarknet.engine.train import MAX_PASSES
from spidarknet.jobs.export_dataset import ExportSettings, export_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "export-dataset",
        "Convert labelled CXI/HDF5 frames into the files darknet trains on: images/, labels/, "
        "train.txt, valid.txt, obj.names, obj.data, a network .cfg and preprocess.json.",
        "spidarknet export-dataset sim.cxi --labels-dataset /truth/label --out ds/ --net yolov2-tiny-spi --size 128")
    cli.add_input_args(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists")
    labels = parser.add_argument_group("labels (one of)")
    labels.add_argument("--labels-dataset", metavar="PATH",
                        help="per-frame 0/1 dataset in each file, e.g. /truth/label")
    labels.add_argument("--positives", action="append", default=[], metavar="CSV",
                        help="selection of single hits (file,index per line); repeatable")
    labels.add_argument("--negatives", action="append", default=[], metavar="CSV",
                        help="selection of negatives; without it every unlisted frame is a negative")
    split = parser.add_argument_group("train/validation split")
    split.add_argument("--valid-fraction", type=float, default=VALID_FRACTION,
                       help=f"random share of frames for validation, stratified by class (default {VALID_FRACTION:g})")
    split.add_argument("--valid-files", action="append", metavar="FILE",
                       help="validate on these files (globs allowed, repeatable) and train on the others")
    split.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    split.add_argument("--orientations", type=int, default=ORIENTATIONS, choices=(1, 2, 4, 8),
                       help="write each training frame in this many of its 8 turns and mirror images "
                            "(orientation is random in SPI, so all are equally likely; default 4: with "
                            "darknet's own random mirror in training that covers all 8)")
    net = parser.add_argument_group("network")
    net.add_argument("--net", default="yolov2-tiny-spi",
                     help="template: yolov2-tiny-spi (CPU, small inputs), yolov2-spi (the seed's 416x416 "
                          "YOLOv2), or a path to a .cfg (default yolov2-tiny-spi)")
    net.add_argument("--width-scale", type=float,
                     help="multiply the filter counts (default: 0.25 for yolov2-tiny-spi, the fast CPU "
                          "model; 1 for the others)")
    net.add_argument("--batch", type=int, default=TRAIN_BATCH, help=f"training batch (default {TRAIN_BATCH})")
    net.add_argument("--subdivisions", type=int, default=1, help="darknet subdivisions (default 1)")
    net.add_argument("--max-batches", type=int,
                     help=f"training iterations (default {TRAIN_ITERATIONS}: about 6 min for the default network "
                          "on 2 cores; train shortens it for a small data set, to at most "
                          f"{MAX_PASSES} passes over the training images)")
    net.add_argument("--learning-rate", type=float, help="default: the template's")
    net.add_argument("--burn-in", type=int, help="warm-up iterations (default: the template's)")
    net.add_argument("--jitter", type=float,
                     help="darknet's training-time distortion: each image squeezed to a random aspect "
                          "ratio up to this fraction and padded with grey (default: the template's)")
    cli.add_preprocess_args(parser)
    parser.add_argument("--chunk", type=int, default=READ_CHUNK_FRAMES,
                        help=f"frames read at a time (default {READ_CHUNK_FRAMES})")
    cli.add_common_args(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> ExportSettings:
    """The job's settings from the options."""
    return ExportSettings(
        frames=cli.frame_options(args), out=args.out, force=args.force, labels_dataset=args.labels_dataset,
        positives=args.positives, negatives=args.negatives, valid_fraction=args.valid_fraction,
        valid_files=args.valid_files, seed=args.seed, orientations=args.orientations, net=args.net,
        width_scale=args.width_scale, batch=args.batch, subdivisions=args.subdivisions, max_batches=args.max_batches,
        learning_rate=args.learning_rate, burn_in=args.burn_in, jitter=args.jitter,
        preprocessing=cli.preprocess_options(args), chunk=args.chunk)


def run(args: argparse.Namespace) -> int:
    result = export_dataset(settings_from_args(args), cli.Console(args.quiet))
    c, seconds, size = result.counts, result.seconds, result.preprocessing.size
    rate = c.total / seconds if seconds > 0 else float("inf")
    print(f"exported {c.total} frames to {result.out}: train {c.train_pos + c.train_neg} "
          f"({c.train_pos} single), valid {c.valid_pos + c.valid_neg} ({c.valid_pos} single); "
          f"network {result.cfg_name}.cfg at {size}x{size}; {seconds:.1f} s, {rate:.0f} frames/s")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)


def options_of(argv: list[str]) -> dict:
    """The export settings that export-dataset options (``--scale linear --max-batches 3000``)
    change from the defaults, by their settings names (for :func:`spidarknet.jobs.with_options`);
    an option that is not export-dataset's is a usage error."""
    from dataclasses import asdict
    parser = build_parser()
    base = ["INPUT", "--out", "OUT", "--labels-dataset", "LABELS"]
    try:
        given, default = (settings_from_args(parser.parse_args(base + list(a))) for a in (argv, []))
    except SystemExit:  # argparse said what is wrong
        from spidarknet.core.errors import ConfigError
        raise ConfigError(f"export-dataset options {' '.join(argv)!r}: see above") from None
    flat = [_flat(asdict(s)) for s in (given, default)]
    return {k: v for k, v in flat[0].items() if v != flat[1][k]}


def _flat(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        out.update(_flat(value) if isinstance(value, dict) else {key: value})
    return out
