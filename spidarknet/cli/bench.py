"""``spidarknet bench``: frames/s of detect per backend and stage, against the naive pipeline.

Each variant is timed on every mix of frames asked for (``--mixes``): the beam-time
mix (10 % single hits, 60 % empty shots, 30 % weak ones from tiny particles), a file of
single hits only (the most the network has to do), or the simulator's default mix.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from spidarknet import cli
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import check_destination, write_json
from spidarknet.core.pool import core_count
from spidarknet.experiments.benchmark import (MIXES, bench_model, bench_variants, mix_files, peak_memory,
                                              time_variants)


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
        "detector geometries, equal fluence), export-dataset + train with the "
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
    science.add_argument("--scale-counts", type=float, default=1.0, metavar="F",
                         help="multiply every simulated file's frame count (quick look: 0.25)")
    science.add_argument("--regimes", nargs="+", metavar="REGIME",
                         help="judge only these regimes' development and test files: dim, bright, measured, "
                              "or dim and bright at another geometry (equal fluence): dim@binned4, "
                              "bright@binned8-581mm, dim@far-1.2keV, ... (default all), e.g. '--regimes measured "
                              "--weights spidarknet/models/spi-default.weights'")
    _add_training_args(science)
    parser.add_argument("--workdir", help="keep the files here (default: a temporary folder, removed; "
                                          "--science reuses the simulated files it finds there)")
    parser.add_argument("--out", help="write the figures as JSON here")
    cli.add_common_args(parser)
    return parser


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


def run(args: argparse.Namespace) -> int:
    if args.science:
        return run_science_bench(args)
    from spidarknet.engine.locate import find_darknet
    if args.frames < 1 or args.distinct < 1:
        raise InputError("--frames and --distinct must be at least 1")
    cores = core_count()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="spidarknet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    results: dict = {"frames": args.frames, "cores": cores, "mixes": {}, "memory": {}}
    try:
        model = bench_model(args.weights, work)
        results["network"] = {"weights": str(model.weights), "input": model.cfg.input_size[0]}
        darknet = find_darknet()
        variants = bench_variants(args.backends, cores)
        base = None
        for mix in args.mixes:
            distinct, data = mix_files(work, mix, args.distinct, args.frames, say)
            base = base or distinct
            runs = time_variants(data, args.frames, mix, variants, model, darknet.path, work, say)
            results["mixes"][mix] = {"about": MIXES[mix]["about"], "runs": runs}
            if not args.workdir:
                data.unlink()  # 2 GB per 1,000 frames
        results["memory"].update(peak_memory(base, args.memory_frames, model, work, cores, say))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(format_table(results))
    if args.out:
        write_json(results, args.out, True, "benchmark figures")
        print(f"figures written to {args.out}")
    return 0


def _science_recipes(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """The recipes --science judges, (name, export settings that differ from the defaults),
    after checking the options."""
    import shlex

    from spidarknet.cli.export_dataset import options_of
    from spidarknet.experiments.science import GEOMETRIES_EXPORT_OPTIONS
    if not args.scale_counts > 0:
        raise ConfigError("--scale-counts must be positive")
    # the default recipe is export-dataset's defaults; across the geometries, 3,000 iterations
    recipes = [] if args.no_default else [("default", dict(GEOMETRIES_EXPORT_OPTIONS) if args.train_geometries else {})]
    for text in args.variant:
        name, sep, options = text.partition("=")
        if not sep or not name.strip() or "/" in name:
            raise ConfigError(f"--variant {text!r}: give NAME=OPTIONS, e.g. 'linear=--scale linear'")
        recipes.append((name.strip(), options_of(shlex.split(options))))
    if not recipes:
        raise ConfigError("--no-default without --variant leaves nothing to judge")
    if args.save_model and args.no_default:
        raise ConfigError("--save-model saves the default recipe's model: drop --no-default")
    if args.weights and (args.save_model or args.variant or args.train_geometries or args.train_stray):
        raise ConfigError("--weights judges a model already trained: --save-model, --variant, "
                          "--train-geometries and --train-stray train their own, drop one or the other")
    return recipes


def run_science_bench(args: argparse.Namespace) -> int:
    """bench --science: each recipe trained and judged on the same simulated files."""
    from spidarknet.experiments.science import (GEOMETRIES_TRAIN_SETS, STRAY_TRAIN_SETS, TRAIN_SETS, ScienceConfig,
                                               comparison_markdown, format_result, options_text, run_science,
                                               save_model)
    recipes = _science_recipes(args)
    train_sets = ((GEOMETRIES_TRAIN_SETS if args.train_geometries else TRAIN_SETS)
                  + (STRAY_TRAIN_SETS if args.train_stray else ()))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="spidarknet-science-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.out:
        check_destination(args.out, True, "benchmark figures")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    results = []
    try:
        for name, options in recipes:
            say(f"judging {args.weights}" if args.weights else
                f"recipe {name}: export-dataset {options_text(options) or '(defaults)'}")
            detect = {} if args.no_size_window else {"size_range": (60.0, 75.0)}
            config = ScienceConfig(workdir=work, export_options=options, feedback=cli.Console(quiet=True),
                                   label=(Path(args.weights).stem if args.weights else
                                          name + "+geometries" * args.train_geometries
                                          + "+stray" * args.train_stray),
                                   positives=args.positives, detect_options=detect,
                                   scale_counts=args.scale_counts, train_sets=train_sets,
                                   weights=Path(args.weights) if args.weights else None)
            if args.regimes:
                config = config.for_regimes(args.regimes)
            result = run_science(config, say=say)
            say(format_result(result))
            results.append(result)
        if len(results) > 1:
            say("\nrecipes on the development files (what a recipe is chosen on):")
            say(comparison_markdown(results))
            say("\nthe same on the held-out test files (reported, never chosen on):")
            say(comparison_markdown(results, sets=tuple(results[0]["tests"])))
        if args.save_model:
            card = save_model(results[0], args.save_model)
            say(f"saved the default recipe's model: {args.save_model} (card {card})")
        if args.out:
            write_json({"recipes": results}, args.out, True, "benchmark figures")
            say(f"wrote {args.out}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def format_table(results: dict) -> str:
    lines = [f"{results['frames']} frames of 1024x1024 uint16, {results['cores']} cores, network input "
             f"{results['network']['input']}"]

    def rate(timing, key):
        seconds = timing.get(key)
        return f"{results['frames'] / seconds:9.0f}" if seconds else f"{'-':>9}"

    for mix, figures in results["mixes"].items():
        lines += [f"{mix} mix ({figures['about']}):",
                  f"{'variant':<16}{'total f/s':>10}{'read':>9}{'prep':>9}{'filter':>9}{'write':>9}{'infer':>9}"
                  f"{'to net':>9}{'vs naive':>10}{'peak MB':>9}"]
        for name, t in figures["runs"].items():
            ratio = f"{t['vs_naive']:9.1f}x" if "vs_naive" in t else f"{'-':>10}"
            peak = f"{t['peak_rss_mb']:9.0f}" if "peak_rss_mb" in t else f"{'-':>9}"
            lines.append(f"{name:<16}{t['frames_per_s']:10.0f}{rate(t, 'read_s')}{rate(t, 'preprocess_s')}"
                         f"{rate(t, 'prefilter_s')}{rate(t, 'write_s')}{rate(t, 'inference_s')}"
                         f"{t['network_frames']:9d}{ratio}{peak}")
        lines += stage_cost_lines(figures["runs"])
        for name, t in figures["runs"].items():
            alone = name.replace("cascade", "opencv")
            if name.startswith("cascade") and alone in figures["runs"]:
                ratio = t["frames_per_s"] / figures["runs"][alone]["frames_per_s"]
                lines.append(f"{name} vs {alone}: {ratio:.2f}x the frames/s, {t['network_frames']} of "
                             f"{results['frames']} frames reached the network")
    lines.append("stage columns: frames per second of that stage's own time, summed over processes "
                 "(per core when several run); to net: frames that reached the network")
    for count, m in results["memory"].items():
        lines.append(f"peak memory, {count}-frame file: {m['peak_rss_mb']:.0f} MB (largest process; parent "
                     f"{m['parent_rss_mb']:.0f} MB, worker {m['worker_rss_mb']:.0f} MB), {m['frames_per_s']:.0f} frames/s")
    if len(results["memory"]) >= 2:
        peaks = [m["peak_rss_mb"] for m in results["memory"].values()]
        lines.append(f"memory growth long/short: {100 * (peaks[-1] / peaks[0] - 1):+.1f} %")
    return "\n".join(lines)


def stage_cost_lines(runs: dict) -> list[str]:
    """The cost per frame of each stage of every run (ms; see
    :func:`spidarknet.experiments.benchmark.stage_costs`)."""
    names = ("read", "preprocess", "prefilter", "write", "network", "fit", "second_particle")
    heads = ("read", "prep", "filter", "write", "network", "fit cpu", "2nd cpu")
    lines = [f"  {'ms per frame':<16}" + "".join(f"{h:>9}" for h in heads)
             + "   (network: per frame it saw; fit: per frame fitted)"]
    for name, t in runs.items():
        costs = t.get("ms_per_frame", {})
        cells = "".join(f"{costs[n]:9.3f}" if n in costs else f"{'-':>9}" for n in names)
        fitted = f"   {t['fitted_frames']} fitted" if t.get("fitted_frames") else ""
        lines.append(f"  {name:<16}{cells}{fitted}")
    return lines


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
