"""``spidarknet train``: darknet detector train on an exported data set, then a model card."""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
from pathlib import Path

from spidarknet import cli
from spidarknet.cli.build_engine import engine_for_training
from spidarknet.core.errors import OutputError
from spidarknet.detection.threshold import validated_model
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.data_folder import ExportedDataset, darknet_label_path
from spidarknet.engine.locate import describe
from spidarknet.engine.train import (MAX_PASSES, SEED_MAX, final_weights, fit_iterations_to_set, newest_backup,
                                     omp_wait_policy, takes_seed, train)


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


def run(args: argparse.Namespace) -> int:
    ds = ExportedDataset.open(args.dataset, args.cfg)
    darknet = engine_for_training(args.darknet, args.quiet)
    weights = _starting_weights(args, ds)
    _warn_small(ds)
    if not args.resume:
        _fit_iterations(ds)
    seed = args.seed
    if seed == "random":  # an engine without our seed patch seeds from the clock, unrecorded
        seed = secrets.randbelow(SEED_MAX + 1) if takes_seed(darknet) else None
    started = time.perf_counter()
    result = _train_with_progress(args, ds, darknet, weights, seed)
    if result is None:
        return cli.EXIT_INTERRUPTED
    seconds = time.perf_counter() - started
    last = result.history[-1] if result.history else None
    model = validated_model(ds, result.weights, backend=args.backend)
    card = model.save_card({"dataset": str(ds.root.resolve()), "iterations": result.iterations, "seed": seed,
                            "final_avg_loss": last.avg_loss if last else None,
                            "train_seconds": round(seconds, 1)})
    loss = f", final avg loss {last.avg_loss:.3f}" if last else ""
    print(f"trained {result.iterations} iterations in {seconds:.0f} s{loss}; weights: {result.weights}")
    _print_validation(model)
    print(f"model card: {card}")
    return 0


def _starting_weights(args: argparse.Namespace, ds: ExportedDataset) -> Path | None:
    """The weights training starts from: the newest backup (--resume), --pretrained, or none;
    refuses to train over a finished training without --force."""
    final = final_weights(ds)
    weights = None
    if args.resume:
        weights = newest_backup(ds)
        if weights is None:
            raise OutputError(f"nothing to resume: no backup weights in {ds.backup_dir}")
    elif final.exists() and not args.force:
        raise OutputError(f"{final} exists from an earlier training; use --resume to continue it, "
                          "--force to train again, or export a new data set")
    else:
        _set_aside_backups(ds)
    if args.pretrained:
        weights = Path(args.pretrained)
    return weights


def _set_aside_backups(ds: ExportedDataset) -> None:
    """Move an earlier training's weights into ``backup/previous/`` before training anew, so
    that a --resume after an interruption continues this training, never the old one."""
    base = ds.weights_base
    old = [p for p in ds.backup_dir.glob(f"{base}*") if p.suffix in (".weights", ".backup")
           and (p.name == f"{base}.backup" or p.name.startswith(f"{base}_"))]
    if not old:
        return
    previous = ds.backup_dir / "previous"
    if previous.is_dir():
        shutil.rmtree(previous)
    previous.mkdir()
    for path in old:
        path.rename(previous / path.name)
    print(f"the earlier training's {len(old)} weight files are now in {previous}", file=sys.stderr)


#: fewer labelled singles than this among the validation images give figures too uncertain to trust
FEW_VALIDATION_SINGLES = 10


def _warn_small(ds: ExportedDataset) -> None:
    """A warning where the validation images hold too few singles for a threshold or an F1."""
    singles = 0
    for image in ds.valid_images:
        label = ds.root / darknet_label_path(image)
        singles += label.is_file() and label.stat().st_size > 0
    if singles < FEW_VALIDATION_SINGLES:
        print(f"warning: the validation images hold {singles} labelled singles (of {len(ds.valid_images)}): "
              "the threshold and F1 chosen on them will be uncertain; label or export more frames "
              f"(at least {FEW_VALIDATION_SINGLES} singles among the validation frames)", file=sys.stderr)


def _fit_iterations(ds: ExportedDataset) -> None:
    """A small data set trains fewer iterations than the default (and says so)."""
    changed = fit_iterations_to_set(ds)
    if changed:
        before, after = changed
        print(f"a small data set ({len(ds.train_images)} training images): training {after} iterations instead "
              f"of {before}, at most {MAX_PASSES} passes over the images (export-dataset --max-batches N "
              "sets the count)", file=sys.stderr)


def _train_with_progress(args: argparse.Namespace, ds: ExportedDataset, darknet, weights: Path | None,
                         seed: int | None):
    """darknet's training with a progress bar of iterations and loss; None when interrupted
    (after saying where the newest backup is)."""
    max_batches = DarknetCfg.load(ds.cfg_path).net.get_int("max_batches", 0) or None
    log_path = ds.root / "train.log"
    omp_wait = omp_wait_policy(args.omp_wait)
    print(f"training {ds.cfg_path.name} on {len(ds.train_images)} images with {describe(darknet)} "
          f"(OpenMP wait policy {omp_wait}, seed {'from the clock' if seed is None else seed}); log: {log_path}",
          file=sys.stderr)
    bar = cli.progress(total=max_batches, desc="train", quiet=args.quiet, unit="it")

    def on_progress(p) -> None:
        bar.n = p.iteration
        bar.set_postfix(loss=f"{p.loss:.3f}", avg=f"{p.avg_loss:.3f}", refresh=False)
        bar.refresh()

    try:
        return train(ds, darknet, weights=weights, clear=bool(args.pretrained), gpus=args.gpus,
                     log_path=log_path, on_progress=on_progress, omp_wait=omp_wait, seed=seed)
    except KeyboardInterrupt:
        bar.close()
        backup = newest_backup(ds)
        where = f"newest backup: {backup}" if backup else "no backup was written yet (one every 100 iterations)"
        print(f"interrupted: darknet stopped; {where}; continue with 'spidarknet train {args.dataset} --resume'",
              file=sys.stderr)
        return None
    finally:
        bar.close()


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
