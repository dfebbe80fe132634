"""``spidarknet seed-questions``: the seed's three questions on a simulated beamtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from spidarknet import cli

EXAMPLE = "spidarknet seed-questions --workdir build/seed-questions"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "seed-questions",
        "Answer the seed's three questions -- can a reasonable selection be made; can training\n"
        "data from the first runs alone be used; linear or log scale -- on a simulated beamtime\n"
        "of five runs whose conditions drift (photons, background, size spread, share of\n"
        "multiples, aggregates and droplets).  Four recipes are trained (labelled frames from all\n"
        "runs or from the first two; linear or log input), each selects the runs' frames, and\n"
        "every selection and the true one are reconstructed with EMC (Dragonfly) and judged\n"
        "against the particle's true intensity.  All seeds are fixed: anyone gets the same\n"
        "table.  Files are kept in --workdir and reused by a later run (about 18 minutes on two\n"
        "cores the first time).",
        EXAMPLE)
    parser.add_argument("--workdir", default="build/seed-questions", metavar="DIR",
                        help="folder for the simulated runs, models, selections and reconstructions "
                             "(default build/seed-questions); seed-questions.json is written there")
    parser.add_argument("--frames-per-run", type=int, default=300, metavar="N",
                        help="frames of each run's data (default 300)")
    parser.add_argument("--labelled-frames", type=int, default=800, metavar="N",
                        help="labelled training frames of each recipe (default 800)")
    parser.add_argument("--max-batches", type=int, default=600, metavar="N",
                        help="training iterations of each recipe (default 600)")
    parser.add_argument("--iterations", type=int, default=20, metavar="N",
                        help="EMC iterations of each reconstruction (default 20)")
    parser.add_argument("--starts", type=int, default=2, metavar="K",
                        help="EMC random starts per selection, seeds 0..K-1; the figures are their mean "
                             "(default 2)")
    parser.add_argument("--no-reconstruct", action="store_true",
                        help="only the selections and their table, no EMC (no Dragonfly needed)")
    cli.add_common_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from spidarknet.core.errors import ConfigError
    from spidarknet.experiments.seed_questions import SeedConfig, format_result, run_seed_questions
    for name in ("frames_per_run", "labelled_frames", "max_batches", "iterations", "starts"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 1")
    config = SeedConfig(workdir=Path(args.workdir), frames_per_run=args.frames_per_run,
                        labelled_frames=args.labelled_frames,
                        export_options={"max_batches": args.max_batches},
                        recon_iterations=args.iterations, recon_seeds=tuple(range(args.starts)),
                        reconstruct=not args.no_reconstruct,
                        feedback=cli.Console(args.quiet))
    result = run_seed_questions(config, say=lambda line: print(line, flush=True))
    print(format_result(result))
    print(f"wrote {Path(args.workdir) / 'seed-questions.json'}")
    return 0


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
