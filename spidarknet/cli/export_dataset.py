"""``spidarknet export-dataset``: labelled CXI frames -> a Darknet training data set."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

from spidarknet import __version__, cli
from spidarknet.dataset import (NEGATIVE, POSITIVE, UNUSED, DarknetDatasetWriter, box_for,
                                labels_from_dataset, labels_from_selections, split_subsets)
from spidarknet.core.errors import InputError
from spidarknet.core.outputs import check_destination, staged_dir
from spidarknet.engine.cfg import configure_network, load_template
from spidarknet.frames.source import expand_inputs
from spidarknet.preprocess import Preprocessor, pattern_extent

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
    split.add_argument("--valid-fraction", type=float, default=0.2,
                       help="random share of frames for validation, stratified by class (default 0.2)")
    split.add_argument("--valid-files", action="append", metavar="FILE",
                       help="validate on these files (globs allowed, repeatable) and train on the others")
    split.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    split.add_argument("--orientations", type=int, default=4, choices=(1, 2, 4, 8),
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
    net.add_argument("--batch", type=int, default=16, help="training batch (default 16)")
    net.add_argument("--subdivisions", type=int, default=1, help="darknet subdivisions (default 1)")
    net.add_argument("--max-batches", type=int, default=1500,
                     help="training iterations (default 1500: about 6 min for the default network on 2 cores)")
    net.add_argument("--learning-rate", type=float, help="default: the template's")
    net.add_argument("--burn-in", type=int, help="warm-up iterations (default: the template's)")
    net.add_argument("--jitter", type=float,
                     help="darknet's training-time distortion: each image squeezed to a random aspect "
                          "ratio up to this fraction and padded with grey (default: the template's)")
    cli.add_preprocess_args(parser)
    parser.add_argument("--chunk", type=int, default=32, help="frames read at a time (default 32)")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    settings = cli.preprocessing_from_args(args)
    net_name = args.net
    template = load_template(net_name)
    if args.width_scale is None:
        args.width_scale = 0.25 if net_name == "yolov2-tiny-spi" else 1.0
    cfg = configure_network(template, size=settings.size, batch=args.batch, subdivisions=args.subdivisions,
                            max_batches=args.max_batches, learning_rate=args.learning_rate,
                            burn_in=args.burn_in, width_scale=args.width_scale, jitter=args.jitter)
    cfg_name = os.path.basename(net_name)[:-4] if net_name.endswith(".cfg") else net_name
    cfg_name = cfg_name.split(".")[0]  # darknet names backups after the cfg up to its first dot
    check_destination(args.out, args.force, "output folder")
    if args.chunk < 1:
        raise InputError("--chunk must be at least 1")

    label_sources = [bool(args.labels_dataset), bool(args.positives)]
    if sum(label_sources) != 1:
        raise InputError("give the labels either as --labels-dataset PATH or as --positives CSV "
                         "(with optional --negatives CSV), not both and not neither")
    if args.negatives and not args.positives:
        raise InputError("--negatives needs --positives")

    valid_paths = None
    extra = []
    if args.valid_files:
        valid_paths = set(expand_inputs(args.valid_files))
        extra = sorted(valid_paths - set(expand_inputs(args.inputs)))
    source = cli.frame_source_from_args(args, extra_inputs=extra)
    settings = cli.preprocessing_from_args(args, source.files)  # checked against each file's geometry

    if args.labels_dataset:
        labels = labels_from_dataset(source, args.labels_dataset)
    else:
        labels = labels_from_selections(source, args.positives, args.negatives)
    subsets = split_subsets(source, labels, valid_fraction=args.valid_fraction, seed=args.seed,
                            valid_files=valid_paths)
    used = {f.path: f.indices[labels[f.path][f.indices] != UNUSED] for f in source.files}
    source = source.select(used)
    n_pos = sum(int(np.count_nonzero(labels[p][i] == POSITIVE)) for p, i in used.items())
    n_neg = sum(int(np.count_nonzero(labels[p][i] == NEGATIVE)) for p, i in used.items())
    if n_pos == 0:
        raise InputError("no single-hit (positive) frames among the selected frames: "
                         "the network cannot learn from negatives alone; check the labels and --frames")
    if n_neg == 0:
        raise InputError("no negative frames among the selected frames: the network needs examples of "
                         "what is not a single hit; add --negatives or check the labels")
    n_train = sum(int(np.count_nonzero(subsets[p][i] == "train")) for p, i in used.items())
    if n_train == 0:
        raise InputError("every frame went to validation; lower --valid-fraction or train on other files")

    pre = Preprocessor(settings)
    n_bad = 0
    with staged_dir(args.out, args.force) as stage:
        writer = DarknetDatasetWriter(stage)
        try:
            with cli.progress(total=len(source), desc="export", quiet=args.quiet) as bar:
                for chunk in source.chunks(args.chunk, roi=pre.roi):
                    processed = pre.process(chunk)
                    n_bad += processed.n_bad_values
                    in_pixels = processed.settings  # the crop in this file's pixels
                    cx, cy = in_pixels.centre_for(chunk.info)
                    r0, c0 = processed.crop_origin
                    f = in_pixels.bin_factor
                    centre_img = ((cx - c0 + 0.5) / f, (cy - r0 + 0.5) / f)
                    lab = labels[chunk.info.path][chunk.indices]
                    radius = np.zeros(len(chunk), dtype=np.float32)
                    if (lab == POSITIVE).any():
                        radius = pattern_extent(processed.photons,
                                                (centre_img[0] - 0.5, centre_img[1] - 0.5))
                    for j, index in enumerate(chunk.indices):
                        box = box_for(centre_img, radius[j], settings.size) if lab[j] == POSITIVE else None
                        writer.add(chunk.info, int(index), processed.images[j], int(lab[j]),
                                   subsets[chunk.info.path][index], box, args.orientations)
                    bar.update(len(chunk))
        finally:
            writer.close()
        writer.write_definitions(cfg, cfg_name)
        settings.save(stage / "preprocess.json")
        seconds = time.perf_counter() - started
        c = writer.counts
        writer.write_summary({
            "spidarknet_version": __version__,
            "inputs": [{"file": f.path, "dataset": f.dataset, "frames": len(f.indices),
                        "crop_px": pre.for_file(f).crop} for f in source.files],
            "labels": args.labels_dataset or {"positives": args.positives, "negatives": args.negatives},
            "split": {"valid_files": sorted(valid_paths)} if valid_paths else
                     {"valid_fraction": args.valid_fraction, "seed": args.seed},
            "counts": {"train_single": c.train_pos, "train_other": c.train_neg,
                       "valid_single": c.valid_pos, "valid_other": c.valid_neg},
            "orientations": args.orientations,
            "cfg": f"{cfg_name}.cfg", "net": net_name, "masked_bad_values": n_bad,
            "seconds": round(seconds, 3),
        })
    if n_bad:
        print(f"warning: {n_bad} NaN or negative pixel values were masked", file=sys.stderr)
    rate = c.total / seconds if seconds > 0 else float("inf")
    print(f"exported {c.total} frames to {args.out}: train {c.train_pos + c.train_neg} "
          f"({c.train_pos} single), valid {c.valid_pos + c.valid_neg} ({c.valid_pos} single); "
          f"network {cfg_name}.cfg at {settings.size}x{settings.size}; {seconds:.1f} s, {rate:.0f} frames/s")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
