"""``spidarknet label``: a page to label the frames ``propose`` ranks, one at a time."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.pages import LabelSettings, label_page


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "label",
        "Serve a page (on 127.0.0.1 unless --host says otherwise) that shows the frames 'propose'\n"
        "ranks, one at a time: the frame (log scale, mask shaded, the network's box), its radial\n"
        "profile with the sphere fit, the score and the diameter.  Keys: 1 single, 0 not single,\n"
        "s skip, z undo (buttons too).  Every label is written at once to --positives or\n"
        "--negatives (file,dataset,index rows, what 'learn' reads; existing rows are kept and their\n"
        "frames not proposed again).  Every --every labels the proposals are drawn again with the\n"
        "selector learnt so far; the learn button runs 'learn' on the files and writes --selection.",
        "spidarknet label run7.cxi --positives singles.csv --negatives others.csv --n 40")
    cli.add_input_args(parser)
    parser.add_argument("--positives", required=True, metavar="CSV", help="where frames labelled single go")
    parser.add_argument("--negatives", required=True, metavar="CSV", help="where frames labelled not single go")
    parser.add_argument("--selection", default="selection.json", metavar="JSON",
                        help="what the learn button writes (default selection.json)")
    parser.add_argument("--n", type=int, default=40, help="frames proposed at a time (default 40)")
    parser.add_argument("--every", type=int, default=10, metavar="N",
                        help="draw the proposals again after every N labels (default 10)")
    parser.add_argument("--weights", help="the network (default: the selector's, else the built-in model)")
    parser.add_argument("--selector", metavar="JSON", help="a selection learnt earlier, for the first proposals")
    parser.add_argument("--pool", type=int, default=2000,
                        help="frames the network lets through that are fitted to choose from (default 2000; as "
                             "many others at most)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the learn button (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool, the clustering and learn (default 0)")
    parser.add_argument("--jobs", type=int, help="processes for the sphere fits (default: one per core)")
    parser.add_argument("--force", action="store_true", help="replace an existing --selection file")
    cli.add_page_args(parser)
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    settings = LabelSettings(frames=cli.frame_options(args), positives=args.positives, negatives=args.negatives,
                             selection=args.selection, n=args.n, every=args.every, weights=args.weights,
                             selector=args.selector, pool=args.pool, folds=args.folds, seed=args.seed,
                             jobs=args.jobs, force=args.force, page=cli.page_settings(args))
    return label_page(settings, cli.Console(args.quiet))


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
