"""``spidarknet export-dataset``: labelled CXI frames -> a Darknet training data set."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from spidarknet import cli
from spidarknet.core.version import __version__
from spidarknet.dataset import (DarknetDatasetWriter, check_trainable, labels_from_dataset,
                                labels_from_selections, split_subsets, used_frames, write_frames)
from spidarknet.core.defaults import ORIENTATIONS, READ_CHUNK_FRAMES, TRAIN_BATCH, TRAIN_ITERATIONS, VALID_FRACTION
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import check_destination, staged_dir
from spidarknet.engine.cfg import configure_network, load_template
from spidarknet.engine.train import MAX_PASSES
from spidarknet.frames.source import expand_inputs
from spidarknet.preprocess import Preprocessor

log = logging.getLogger(__name__)


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


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cfg, cfg_name = _network(args, cli.preprocessing_from_args(args).size)
    check_destination(args.out, args.force, "output folder")
    if args.chunk < 1:
        raise InputError("--chunk must be at least 1")
    _check_label_options(args)
    valid_paths = set(expand_inputs(args.valid_files)) if args.valid_files else None
    extra = sorted(valid_paths - set(expand_inputs(args.inputs))) if valid_paths else []
    source = cli.frame_source_from_args(args, extra_inputs=extra)
    settings = cli.preprocessing_from_args(args, source.files)  # checked against each file's geometry

    if args.labels_dataset:
        labels = labels_from_dataset(source, args.labels_dataset)
    else:
        labels = labels_from_selections(source, args.positives, args.negatives)
    subsets = split_subsets(source, labels, valid_fraction=args.valid_fraction, seed=args.seed,
                            valid_files=valid_paths)
    used = used_frames(source, labels)
    source = source.select(used)
    check_trainable(labels, subsets, used)

    pre = Preprocessor(settings)
    with staged_dir(args.out, args.force) as stage:
        writer = DarknetDatasetWriter(stage)
        try:
            with cli.progress(total=len(source), desc="export", quiet=args.quiet) as bar:
                n_bad = write_frames(writer, source, pre, labels, subsets, chunk_frames=args.chunk,
                                     orientations=args.orientations, on_chunk=bar.update)
        finally:
            writer.close()
        writer.write_definitions(cfg, cfg_name)
        settings.save(stage / "preprocess.json")
        seconds = time.perf_counter() - started
        writer.write_summary(_summary(args, source, pre, valid_paths, writer.counts, cfg_name, n_bad, seconds))
    if n_bad:
        print(f"warning: {n_bad} NaN or negative pixel values were masked", file=sys.stderr)
    c = writer.counts
    rate = c.total / seconds if seconds > 0 else float("inf")
    print(f"exported {c.total} frames to {args.out}: train {c.train_pos + c.train_neg} "
          f"({c.train_pos} single), valid {c.valid_pos + c.valid_neg} ({c.valid_pos} single); "
          f"network {cfg_name}.cfg at {settings.size}x{settings.size}; {seconds:.1f} s, {rate:.0f} frames/s")
    return 0


def _network(args: argparse.Namespace, size: int):
    """The network cfg configured from ``--net`` and its options, and the name to save it under."""
    net_name = args.net
    template = load_template(net_name)
    if args.width_scale is None:
        args.width_scale = 0.25 if net_name == "yolov2-tiny-spi" else 1.0
    cfg = configure_network(template, size=size, batch=args.batch, subdivisions=args.subdivisions,
                            max_batches=args.max_batches or TRAIN_ITERATIONS, learning_rate=args.learning_rate,
                            burn_in=args.burn_in, width_scale=args.width_scale, jitter=args.jitter)
    cfg_name = os.path.basename(net_name)[:-4] if net_name.endswith(".cfg") else net_name
    cfg_name = cfg_name.split(".")[0]  # darknet names backups after the cfg up to its first dot
    return cfg, cfg_name


def _check_label_options(args: argparse.Namespace) -> None:
    label_sources = [bool(args.labels_dataset), bool(args.positives)]
    if sum(label_sources) != 1:
        raise ConfigError("give the labels either as --labels-dataset PATH or as --positives CSV "
                          "(with optional --negatives CSV), not both and not neither")
    if args.negatives and not args.positives:
        raise ConfigError("--negatives needs --positives")


def _summary(args: argparse.Namespace, source, pre: Preprocessor, valid_paths, c, cfg_name: str,
             n_bad: int, seconds: float) -> dict:
    """The contents of export.json."""
    return {
        "spidarknet_version": __version__,
        "inputs": [{"file": f.path, "dataset": f.dataset, "frames": len(f.indices),
                    "crop_px": pre.for_file(f).crop} for f in source.files],
        "labels": args.labels_dataset or {"positives": args.positives, "negatives": args.negatives},
        "split": {"valid_files": sorted(valid_paths)} if valid_paths else
                 {"valid_fraction": args.valid_fraction, "seed": args.seed},
        "counts": {"train_single": c.train_pos, "train_other": c.train_neg,
                   "valid_single": c.valid_pos, "valid_other": c.valid_neg},
        "orientations": args.orientations,
        "max_batches_given": args.max_batches is not None,     # else train may shorten a small set's
        "cfg": f"{cfg_name}.cfg", "net": args.net, "masked_bad_values": n_bad,
        "seconds": round(seconds, 3),
    }


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
