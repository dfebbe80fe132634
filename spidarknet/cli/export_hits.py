"""``spidarknet export-hits``: a hit list as a CrystFEL/OM event list and as CXI score sidecars."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.jobs.export_hits import ExportHitsSettings, export_hits

EXAMPLE = ("spidarknet export-hits hits.csv --lst hits.lst --cxi-scores scores/\n"
           "  indexamajig -i hits.lst -g pnccd.geom -o hits.stream ...")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "export-hits",
        "Hand a hit list to the field's other tools.\n\n"
        "--lst FILE writes the selected frames (the hit list's 'hit' column) as a CrystFEL/OM\n"
        "event list, one frame per line: '/absolute/path/run.cxi //INDEX', which\n"
        "'indexamajig -i FILE' and CrystFEL's other tools read (the geometry file must mark the\n"
        "frame dimension as the placeholder, dim0 = %).\n\n"
        "--cxi-scores DIR writes one CXI sidecar per input file, DIR/<name>-scores.cxi, holding\n"
        "for every frame of that file /entry_1/instrument_1/detector_1/score (NaN where unscored)\n"
        "and tags (1 = selected), each with a 'headings' attribute as the CXI specification\n"
        "asks, and an external link to the frames.  The raw files are only read, never written.",
        EXAMPLE)
    parser.add_argument("hits", metavar="HITS.csv", help="hit list (from detect, select or merge)")
    parser.add_argument("--lst", metavar="FILE", help="event list of the selected frames to write")
    parser.add_argument("--cxi-scores", metavar="DIR", help="folder of CXI score/tag sidecars to create")
    run = parser.add_argument_group("hit lists of European XFEL runs (docs/euxfel.md)")
    run.add_argument("--hitflags", metavar="FILE.h5",
                     help="per-pulse data.hitFlag, data.hitscore keyed by data.trainId/data.pulseId in the "
                          "facility's file layout, as its SPI hit finder writes them (EXtra-data reads it)")
    run.add_argument("--vds", metavar="RUN.cxi",
                     help="with --lst: the run's virtual CXI file (extra-data-make-virtual-cxi RUN -o RUN.cxi), "
                          "the file the event list names; frames found in it by trainId and pulseId")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    out = export_hits(ExportHitsSettings(hits=args.hits, lst=args.lst, cxi_scores=args.cxi_scores,
                                         hitflags=args.hitflags, vds=args.vds, force=args.force))
    if out.run:
        if out.flagged is not None:
            print(f"{out.flagged} of {out.frames} pulses flagged in {out.trains} trains -> {args.hitflags}")
        if out.listed is not None:
            print(f"{out.listed} of {out.frames} frames of {args.vds} -> {args.lst}")
        return 0
    if out.unusable:
        print(f"{out.unusable} frames without a valid pixel (status no-valid-pixels): not selected, "
              "score NaN in the sidecars")
    if out.listed is not None:
        print(f"{out.listed} of {out.frames} frames -> {args.lst}")
    if out.sidecars is not None:
        print(f"{out.sidecars} CXI sidecar(s), {out.tagged} frames tagged single_hit -> {args.cxi_scores}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
