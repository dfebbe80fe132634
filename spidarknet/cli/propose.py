"""``spidarknet propose``: the frames of a run whose labels teach a selection most."""

from __future__ import annotations

import argparse
import csv

import numpy as np

from spidarknet import cli
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import atomic_path, check_destination
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.selection.pipeline import labelled_among, measure_pool, score_frames
from spidarknet.selection.propose import propose
from spidarknet.selection.selector import Selector

COLUMNS = ["file", "dataset", "index", "why", "score", "probability", "diameter_nm", "signal_photons", "misfit",
           "second_particle_z"]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "propose",
        "List the frames to label next: representative ones that cover the run (k-means over what\n"
        "the network and the sphere fit measure: kinds, photon levels, sizes, empty shots too) and,\n"
        "with --selector, uncertain ones near its boundary (half of them).  Frames already in\n"
        "--positives/--negatives are left out.  Label the list (1 single, 0 not), then\n"
        "'spidarknet learn' with the labels, and propose again with the new selection.",
        "spidarknet propose run7.cxi --n 40 --out to-label.csv\n"
        "  spidarknet propose run7.cxi --n 20 --selector selection.json --positives p.csv --negatives n.csv "
        "--out next.csv")
    cli.add_input_args(parser, adu_option=True)
    parser.add_argument("--n", type=int, default=40, help="frames to propose (default 40)")
    parser.add_argument("--out", required=True, metavar="CSV", help="the list to write (file,dataset,index,why,...)")
    parser.add_argument("--selector", metavar="JSON", help="the selection learnt so far ('spidarknet learn')")
    parser.add_argument("--positives", nargs="+", default=[], metavar="CSV", help="frames labelled single already")
    parser.add_argument("--negatives", nargs="+", default=[], metavar="CSV", help="frames labelled not single already")
    parser.add_argument("--weights", help="the network (default: the selector's, else the built-in model)")
    parser.add_argument("--pool", type=int, default=2000,
                        help="frames the network lets through that are fitted to choose from (default 2000; as "
                             "many others at most)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool and the clustering (default 0)")
    parser.add_argument("--jobs", type=int, help="processes for the sphere fits (default: one per core)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.pool < 1:
        raise ConfigError("--n and --pool must be at least 1")
    check_destination(args.out, args.force, "proposal list")
    selector = Selector.load(args.selector) if args.selector else None
    weights = args.weights or (selector.weights.get("path") if selector else None) or str(builtin_weights())
    model = load_model(weights)
    screen = selector.screen if selector else model.validation.get("screening_threshold", model.threshold)
    source = cli.frame_source_from_args(args)
    with cli.progress(total=len(source), desc="score", quiet=args.quiet) as bar:
        hits = score_frames(source, model, on_chunk=bar.update)
    labelled = labelled_among(source, hits, args.positives + args.negatives)
    with cli.progress(desc="fit", quiet=args.quiet) as bar:
        pool, measured = measure_pool(source, hits, screen, size=args.pool, seed=args.seed, labelled=labelled,
                                      jobs=args.jobs, on_frames=bar.update)
    chosen, why = propose(measured, args.n, selector=selector, seed=args.seed, screen=screen)
    p = selector.probability(measured) if selector else np.full(len(measured), np.nan)
    _write(args, measured, chosen, why, p)
    kinds = {w: why.count(w) for w in dict.fromkeys(why)}
    print(f"proposed {len(chosen)} frames to label (" + ", ".join(f"{v} {k}" for k, v in kinds.items())
          + f") from {len(pool)} fitted of {len(hits)}; wrote {args.out}")
    return 0


def _write(args, measured, chosen, why, p) -> None:
    def cell(value: float) -> str:
        return f"{value:.4g}" if np.isfinite(value) else ""
    v = measured.values
    with atomic_path(args.out, args.force, "proposal list") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for i, reason in zip(chosen, why):
                key = measured.keys[i]
                writer.writerow([key.file, key.dataset, key.index, reason, cell(v["score"][i]), cell(p[i]),
                                 *(cell(v[name][i]) for name in COLUMNS[6:])])


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
