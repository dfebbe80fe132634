"""``spidarknet label``: a page to label the frames ``propose`` ranks, one at a time."""

from __future__ import annotations

import argparse
import os

from spidarknet import cli
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import check_destination


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


def _check(args: argparse.Namespace) -> None:
    if args.n < 1 or args.every < 1 or args.pool < 1:
        raise ConfigError("--n, --every and --pool must be at least 1")
    if args.folds < 2:
        raise ConfigError(f"--folds {args.folds}: give at least 2")
    if os.path.abspath(args.positives) == os.path.abspath(args.negatives):
        raise ConfigError("--positives and --negatives must be two files")
    for path, what in ((args.positives, "positives"), (args.negatives, "negatives")):
        check_destination(path, True, f"--{what} file")
    check_destination(args.selection, args.force, "selection")


def run(args: argparse.Namespace) -> int:
    from spidarknet.engine.model import builtin_weights, load_model
    from spidarknet.selection.selector import Selector
    from spidarknet.serve.label import LabelFiles, label_app, start_session
    _check(args)
    selector = Selector.load(args.selector) if args.selector else None
    weights = args.weights or (selector.weights.get("path") if selector else None) or str(builtin_weights())
    model = load_model(weights)
    source = cli.frame_source_from_args(args)
    bars = []

    def progress(stage: str, total):
        bars.append(cli.progress(total=total, desc=stage, quiet=args.quiet))
        return bars[-1].update
    try:
        session = start_session(source, model, LabelFiles(args.positives, args.negatives), n=args.n,
                                every=args.every, pool_size=args.pool, selection_out=args.selection,
                                seed=args.seed, jobs=args.jobs, folds=args.folds, selector=selector,
                                progress=progress)
    finally:
        for bar in bars:
            bar.close()
    names = ", ".join(os.path.basename(f.path) for f in source.files[:3]) + (" ..." if len(source.files) > 3 else "")
    return cli.serve_page(label_app(session, f"label {names}"), args, "labelling page")


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
