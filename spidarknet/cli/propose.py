"""``spidarknet propose``: the frames of a run whose labels teach a selection most."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.propose import ProposeSettings, propose_to_file


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
    settings = ProposeSettings(frames=cli.frame_options(args), out=args.out, n=args.n, selector=args.selector,
                               positives=args.positives, negatives=args.negatives, weights=args.weights,
                               pool=args.pool, seed=args.seed, jobs=args.jobs, force=args.force)
    result = propose_to_file(settings, cli.Console(args.quiet))
    kinds = {w: result.why.count(w) for w in dict.fromkeys(result.why)}
    print(f"proposed {len(result.why)} frames to label (" + ", ".join(f"{v} {k}" for k, v in kinds.items())
          + f") from {result.pool} fitted of {result.frames}; wrote {args.out}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
