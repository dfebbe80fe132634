"""``spidarknet train``: darknet detector train on an exported data set, then a model card."""

from __future__ import annotations

import argparse

from spidarknet import cli
from spidarknet.engine.train import SEED_MAX
from spidarknet.jobs.train import TrainSettings, train_model


def seed_arg(text: str) -> int | str:
    """``--seed``: a whole number 0 to 2**32 - 2, or ``random``."""
    if text == "random":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a whole number nor 'random'") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0 to {SEED_MAX})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = cli.new_parser(
        "train",
        "Train the data set's network with darknet (our patched build: CPU with OpenMP, or GPU), "
        "then score the validation images, pick the max-F1 threshold and write a model card "
        "(JSON beside the final weights) so that 'detect --weights' needs nothing else.",
        "spidarknet train ds/            # then: spidarknet detect run.cxi --weights ds/backup/yolov2-tiny-spi_final.weights")
    parser.add_argument("dataset", metavar="DIR", help="folder made by export-dataset")
    parser.add_argument("--cfg", help="network cfg to train (default: the one export-dataset wrote)")
    parser.add_argument("--darknet", metavar="PATH",
                        help="darknet binary (default: the repository's build, else the one in the user's cache, "
                             "built there on first need: see 'spidarknet build-engine')")
    parser.add_argument("--gpus", metavar="LIST", help="GPU indices for darknet, e.g. 0 or 0,1 (GPU builds)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the newest backup weights")
    start.add_argument("--pretrained", metavar="W",
                       help="start from these (possibly partial) weights; the iteration count restarts")
    parser.add_argument("--force", action="store_true", help="train again over existing final weights")
    parser.add_argument("--seed", type=seed_arg, default=0, metavar="N|random",
                        help="seed of darknet's initial weights and data augmentation (default 0: training "
                             "the same data set again gives the same weights); 'random' draws a new one, "
                             "recorded in the model card like any other")
    parser.add_argument("--omp-wait", choices=("auto", "active", "passive"), default="auto",
                        help="OpenMP threads spin (active: fastest on an idle machine) or sleep (passive: far "
                             "faster when other work shares the cores); auto picks by the current load")
    parser.add_argument("--backend", default="opencv", choices=("opencv", "darknet", "darknet-cli"),
                        help="backend that scores the validation images (default opencv)")
    cli.add_common_args(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """The job's settings from the options."""
    return TrainSettings(dataset=args.dataset, cfg=args.cfg, darknet=args.darknet, gpus=args.gpus,
                         resume=args.resume, pretrained=args.pretrained, force=args.force, seed=args.seed,
                         omp_wait=args.omp_wait, backend=args.backend)


def run(args: argparse.Namespace) -> int:
    result = train_model(settings_from_args(args), cli.Console(args.quiet))
    if result.interrupted:
        return cli.EXIT_INTERRUPTED
    loss = f", final avg loss {result.final_avg_loss:.3f}" if result.final_avg_loss is not None else ""
    print(f"trained {result.iterations} iterations in {result.seconds:.0f} s{loss}; weights: {result.weights}")
    _print_validation(result.model)
    print(f"model card: {result.card}")
    return 0


def _print_validation(model) -> None:
    """The validation figures at the chosen threshold, with their bootstrap intervals."""
    validation = model.validation
    if not validation:
        print(f"no validation images: threshold left at {model.threshold}")
        return
    spread = ""
    if "threshold_interval" in validation:
        (t0, t1), (f0, f1) = validation["threshold_interval"], validation["f1_interval"]
        spread = (f"; 68 % bootstrap intervals: threshold {t0:.3f}-{t1:.3f}, F1 {f0:.3f}-{f1:.3f} "
                  f"({validation['n_single']} single hits among them)")
    print(f"validation ({validation['n_frames']} frames): precision {validation['precision']:.3f}, "
          f"recall {validation['recall']:.3f}, F1 {validation['f1']:.3f} at threshold "
          f"{validation['threshold']:.3f} (ROC AUC {validation['roc_auc']:.3f}){spread}")
    if "screening_threshold" in validation:
        print(f"with detect --size-range the network screens at {validation['screening_threshold']:.3f}, "
              f"keeping {validation['screening_recall']:.0%} of the validation singles")


def main(argv=None) -> int:
    return cli.run_main(build_parser, run, argv)
