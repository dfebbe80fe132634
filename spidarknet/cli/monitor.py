"""``spidarknet monitor``: a page that shows a run's hit list while ``detect --follow`` writes it."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.pages import MonitorSettings, monitor_page


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "monitor",
        "Serve a page (on 127.0.0.1 unless --host says otherwise) that follows a hit list as\n"
        "'detect --follow' appends to it: totals, hit rate per minute (per train where the hit list\n"
        "has a train_id column), score and diameter histograms, the latest selected frames with\n"
        "their box and fitted size.  The hit list may not exist yet; the page waits for it.\n"
        "'detect --follow --monitor' starts this page beside the detection.",
        "spidarknet detect run7.cxi --follow --out hits.csv &   spidarknet monitor hits.csv --port 8765")
    parser.add_argument("hits", metavar="HITS.csv", help="the hit list detect --follow writes")
    parser.add_argument("--title", help="the page's title (default: the hit list's name)")
    parser.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                        help="how often the hit list is read for new rows (default 1)")
    cli.add_page_args(parser)
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    return monitor_page(MonitorSettings(hits=args.hits, title=args.title, poll=args.poll, page=cli.page_settings(args)),
                        cli.Console(args.quiet))


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
