"""``spidarknet bench``: frames/s of detect per backend and stage, against the naive pipeline.

Each variant is timed on every mix of frames asked for (``--mixes``): the beam-time
mix (10 % single hits, 60 % empty shots, 30 % weak ones from tiny particles), a file of
single hits only (the most the network has to do), or the simulator's default mix.
"""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import write_json
from spidarknet.experiments.benchmark import MIXES, ThroughputSettings, format_table, run_throughput
from spidarknet.experiments.science import RecipeSettings, run_recipes


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "bench",
        "Measure detect end to end (HDF5 -> hit list) on frames it simulates itself: every backend with "
        "the same weights on the same 1024x1024 frames, the naive hand-written pipeline as the baseline, "
        "the network behind its prefilter (cascade), on a beam-time mix and on hits only; frames/s per stage, "
        "and peak memory on a short and a long file.",
        "spidarknet bench --frames 2000 --out bench.json")
    parser.add_argument("--frames", type=int, default=2000, help="frames in the timed file (default 2000)")
    parser.add_argument("--distinct", type=int, default=300, help="distinct simulated frames tiled (default 300)")
    parser.add_argument("--weights", help="trained weights with a model card (default: untrained weights "
                                          "for the default CPU network; speed is the same); with --science, "
                                          "judge these instead of training (no training files are made)")
    parser.add_argument("--backends", nargs="+",
                        default=["naive", "darknet-cli", "darknet", "opencv", "cascade", "window"],
                        choices=["naive", "darknet-cli", "darknet", "opencv", "cascade", "window"],
                        help="what to time: the network alone per backend, 'cascade' (OpenCV behind "
                             "detect's prefilter, its default) and 'window' (the cascade with the size "
                             "window --size-range 60 75: the sphere fit of what the network lets through)")
    parser.add_argument("--mixes", nargs="+", default=["realistic", "hits"], choices=list(MIXES),
                        help="frame mixes to time on: " + "; ".join(f"{k}: {v['about']}".replace('%', '%%') for k, v in MIXES.items())
                             + " (default realistic hits)")
    parser.add_argument("--memory-frames", type=int, nargs="*", default=[1000, 10000],
                        help="file lengths for the peak-memory check (default 1000 10000; none to skip)")
    science = parser.add_argument_group(
        "science benchmark (--science): is the selection right? simulate training, development and held-out "
        "test files (dim half-detector, bright and measured-like regimes; dim and bright also at three more "
        "detector geometries, equal fluence; European XFEL AGIPD runs), export-dataset + train with the "
        "defaults, detect, judge; with --weights, judge that model instead of training one")
    science.add_argument("--science", action="store_true", help="run the science benchmark instead of the "
                                                               "throughput one (about 20 min on 2 cores)")
    science.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                         help="also judge a recipe variant: NAME=export-dataset options, e.g. "
                              "'linear=--scale linear --max-batches 500' (repeatable)")
    science.add_argument("--no-default", action="store_true", help="judge only the --variant recipes")
    science.add_argument("--positives", choices=("single", "window"), default="single",
                         help="what the network learns as a single hit: one particle of any size, the size "
                              "window left to detect's sphere fit (single, default), or only particles in the "
                              "label's 60-75 nm window (window)")
    science.add_argument("--no-size-window", action="store_true",
                         help="judge the network's selection alone (default: detect --size-range 60 75)")
    _add_icosahedron_options(science)
    science.add_argument("--scale-counts", type=float, default=1.0, metavar="F",
                         help="multiply every simulated file's frame count (quick look: 0.25)")
    science.add_argument("--regimes", nargs="+", metavar="REGIME",
                         help="judge only these regimes' development and test files: dim, bright, measured, "
                              "or dim and bright at another geometry (equal fluence): dim@binned4, "
                              "bright@binned8-581mm, dim@far-1.2keV, ...; agipd, agipd-sparse: simulated AGIPD runs, "
                              "each with its pnCCD twin and the lit-pixel hit finder beside (default all), e.g. "
                              "'--regimes measured --weights spidarknet/models/spi-default.weights'")
    _add_training_args(science)
    parser.add_argument("--workdir", help="keep the files here (default: a temporary folder, removed; "
                                          "--science reuses the simulated files it finds there)")
    parser.add_argument("--out", help="write the figures as JSON here")
    cli.add_common_args(parser)
    return parser


def _add_icosahedron_options(science) -> None:
    """--icosahedron / --no-icosahedron of --science (detect's refinement near the window's edges)."""
    icosahedron = science.add_mutually_exclusive_group()
    icosahedron.add_argument("--icosahedron", action="store_const", const=True, default=None,
                             help="detect with --icosahedron: the size window's fits near its edges refined by an "
                                  "icosahedron (detect's default with a window)")
    icosahedron.add_argument("--no-icosahedron", dest="icosahedron", action="store_const", const=False,
                             help="detect with --no-icosahedron: the sphere fit's diameters alone")


def _add_training_args(science) -> None:
    """The science benchmark's options of what the default recipe trains on, and where it goes."""
    science.add_argument("--train-geometries", action="store_true",
                         help="also train on 400 dim and 400 bright frames at each other geometry (equal fluence; "
                              "5,600 frames instead of 3,200) for 3,000 iterations: held-out F1 closer to the "
                              "pnCCD's at every geometry, but 0.12 lower on the measured-like regime (docs/recipe.md)")
    science.add_argument("--train-stray", action="store_true",
                         help="also train on 800 dim and 800 bright half-detector frames with beamline and "
                              "injector stray light: the measured-like development file 0.913 -> 0.963, the held-out "
                              "one unchanged (0.909), 8 x 8-binned dim 0.973 -> 0.938 (docs/recipe.md)")
    science.add_argument("--save-model", metavar="WEIGHTS",
                         help="copy the default recipe's model here with a card holding the figures "
                              "('make model' writes the built-in one)")
    science.add_argument("--into-card", action="store_true",
                         help="with --weights W: add the sets judged (and their rows of the per-geometry "
                              "tables) to the science figures of W's card, e.g. the AGIPD regime's to the "
                              "built-in model's")


def run(args: argparse.Namespace) -> int:
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    if args.science:
        run_recipes(RecipeSettings(
            variants=_variants(args.variant), no_default=args.no_default, weights=args.weights,
            positives=args.positives, size_window=not args.no_size_window, icosahedron=args.icosahedron,
            scale_counts=args.scale_counts,
            regimes=args.regimes, train_geometries=args.train_geometries, train_stray=args.train_stray,
            save_model=args.save_model, into_card=args.into_card, workdir=args.workdir, out=args.out,
            feedback=cli.Console(quiet=True)), say)
        return 0
    results = run_throughput(ThroughputSettings(
        frames=args.frames, distinct=args.distinct, weights=args.weights, backends=args.backends, mixes=args.mixes,
        memory_frames=args.memory_frames, workdir=args.workdir), say)
    print(format_table(results))
    if args.out:
        write_json(results, args.out, True, "benchmark figures")
        print(f"figures written to {args.out}")
    return 0


def _variants(texts: list[str]) -> list[tuple[str, dict]]:
    """--variant NAME=OPTIONS: (name, the export settings the options change)."""
    import shlex

    from spidarknet.cli.export_dataset import options_of
    variants = []
    for text in texts:
        name, sep, options = text.partition("=")
        if not sep or not name.strip() or "/" in name:
            raise ConfigError(f"--variant {text!r}: give NAME=OPTIONS, e.g. 'linear=--scale linear'")
        variants.append((name.strip(), options_of(shlex.split(options))))
    return variants


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
