"""``spidarknet export-hits``: a hit list as a CrystFEL/OM event list and as CXI score sidecars."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import check_destination

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
    from spidarknet.export.interchange import inspect_datasets, write_event_list, write_score_sidecars
    from spidarknet.hits import read_selected

    if not args.lst and not args.cxi_scores and not args.hitflags:
        raise ConfigError("nothing to write: give --lst FILE, --cxi-scores DIR and/or --hitflags FILE.h5")
    hits, flags = read_selected(args.hits, unique=True)
    if "trainId" in hits.columns or args.hitflags or args.vds:
        return run_of_runs(args, hits, flags & ~hits.unusable)
    if args.lst:
        check_destination(args.lst, args.force, "event list")
    if args.cxi_scores:
        check_destination(args.cxi_scores, args.force, "sidecar folder")
    flags = flags & ~hits.unusable
    if hits.n_unusable:
        print(f"{hits.n_unusable} frames without a valid pixel (status no-valid-pixels): not selected, "
              "score NaN in the sidecars")
    # each frame file opened once: all of them for the sidecars, else the selected ones' files
    infos = inspect_datasets(hits.keys if args.cxi_scores else [k for k, f in zip(hits.keys, flags) if f])
    if args.lst:
        n = write_event_list(hits, flags, args.lst, force=args.force, checked=True)
        print(f"{n} of {len(hits)} frames -> {args.lst}")
    if args.cxi_scores:
        sidecars = write_score_sidecars(hits, flags, args.cxi_scores, force=args.force,
                                        hit_list_name=str(args.hits), infos=infos)
        tagged = sum(s.n_tagged for s in sidecars)
        print(f"{len(sidecars)} CXI sidecar(s), {tagged} frames tagged single_hit -> {args.cxi_scores}")
    return 0


def run_of_runs(args: argparse.Namespace, hits, flags) -> int:
    """A hit list of European XFEL runs: per-pulse flags, and the event list against the run's virtual CXI."""
    from spidarknet.export.euxfel import write_hit_flags, write_vds_event_list
    if args.cxi_scores:
        raise ConfigError("--cxi-scores writes sidecars of CXI files; a run's hit list goes back as --hitflags "
                          "FILE.h5 (and --lst FILE --vds RUN.cxi)")
    if args.lst and not args.vds:
        raise ConfigError("the event list of a run names its virtual CXI file: give --vds RUN.cxi "
                          "(made by extra-data-make-virtual-cxi RUN -o RUN.cxi)")
    for path, what in ((args.hitflags, "hit flags"), (args.lst, "event list")):
        if path:
            check_destination(path, args.force, what)
    if args.hitflags:
        trains = write_hit_flags(hits, flags, args.hitflags, force=args.force)
        print(f"{int(flags.sum())} of {len(hits)} pulses flagged in {trains} trains -> {args.hitflags}")
    if args.lst:
        n = write_vds_event_list(hits, flags, args.lst, args.vds, force=args.force)
        print(f"{n} of {len(hits)} frames of {args.vds} -> {args.lst}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
