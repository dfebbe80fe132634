"""The learning curve's network arms (issue "Right on measured frames", item 6): the built-in
network fine-tuned with ``train --pretrained`` on the same labels the selector learns from.

For each rule and label count, the labels are the first draw of ``tools/selection_bench.py``
(the same frames of run A).  The frames are exported with the built-in model's own
preprocessing and network, the network is fine-tuned from the built-in weights for
``--iterations`` iterations, and both runs are scored by it.  The scores are kept
(``scores-A.npy``, ``scores-B.npy`` and the fine-tuned card's threshold) for
``selection_bench.py --finetuned DIR``, which judges:

* network alone: F1 on run B of the fine-tuned network at its own threshold (the max-F1
  threshold on the validation share of the labels, as ``train`` picks it);
* both: the selector learnt on the same labels from the fine-tuned network's scores and
  the fit's features (the fit does not depend on the network), judged on run B.

    flock /work/heavy.lock python tools/selection_finetune.py --work build/selection \\
        --rules simulator narrow --counts 20 40 80 160 --iterations 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from selection_bench import draw, rule_labels, run_table  # noqa: E402

from spidarknet.engine.model import builtin_weights, load_model  # noqa: E402
from spidarknet.experiments.learning_curve import (_export, _train, _train_seed, export_common,  # noqa: E402
                                                   net_options, preprocess_options, write_selections)


def _scores(path: Path, model, frames=None) -> np.ndarray:
    """The network's score of ``frames`` of ``path`` (all by default; NaN for the others), by
    frame index, as the bench scores its runs (one process, no prefilter)."""
    from spidarknet.frames.source import FrameSource
    from spidarknet.selection.pipeline import score_frames
    source = FrameSource([str(path)])
    n = source.files[0].n_frames
    if frames is not None:
        source = source.select({source.files[0].path: np.sort(np.asarray(frames, dtype=np.int64))})
    hits = score_frames(source, model)
    scores = np.full(n, np.nan)
    scores[[k.index for k in hits.keys]] = hits.scores
    return scores


def finetune_cell(work: Path, run_a: Path, run_b: Path, labels: np.ndarray, pick: np.ndarray, model,
                  iterations: int, seed: int = 0) -> dict:
    """Export the labelled frames ``pick`` of run A, fine-tune, score both runs; kept in ``work``."""
    done = work / "cell.json"
    if done.is_file():
        return json.loads(done.read_text())
    work.mkdir(parents=True, exist_ok=True)
    positives, negatives = write_selections(work / "labels", run_a, pick, labels)
    common = export_common(net_options(model, work / "net"), preprocess_options(model.preprocessing), iterations, 4,
                           0.2, seed, {})
    ds = work / "ds"
    _export({"inputs": [str(run_a)], "positives": [str(positives)], "negatives": [str(negatives)], "out": str(ds),
             "force": True, **common})
    t0 = time.perf_counter()
    _train({"dataset": str(ds), "force": True, "pretrained": str(model.weights), "seed": _train_seed(seed)})
    train_s = time.perf_counter() - t0
    weights = sorted((ds / "backup").glob("*_final.weights"))[0]
    tuned = load_model(weights)
    threshold = tuned.threshold
    np.save(work / "scores-A.npy", _scores(run_a, tuned, pick))  # the labelled frames: all the selector sees of A
    np.save(work / "scores-B.npy", _scores(run_b, tuned))
    cell = {"labels": int(len(pick)), "positives": int(labels[pick].sum()), "threshold": threshold,
            "weights": str(weights), "train_seconds": round(train_s, 1), "iterations": iterations,
            "frames": pick.tolist()}
    (work / "cell.json").write_text(json.dumps(cell, indent=1))
    return cell


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="build/selector")
    parser.add_argument("--seeds", nargs=2, type=int, default=(8101, 8102))
    parser.add_argument("--rules", nargs="+", default=["simulator", "narrow"])
    parser.add_argument("--counts", nargs="+", type=int, default=[20, 40, 80, 160])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args(argv)
    model = load_model(builtin_weights())
    runs = [Path(args.work) / f"run{seed}.cxi" for seed in args.seeds]
    tables = [run_table(str(p), model) for p in runs]
    truth_a = tables[0][1]
    index = np.array([k.index for k in tables[0][0].keys])  # frame index of each row of the table
    cut = float(np.percentile(truth_a["photons"][truth_a["label"].astype(bool)], 25))
    for rule in args.rules:
        rows = rule_labels(rule, truth_a, cut)
        y = np.zeros(len(rows), dtype=bool)
        y[index] = rows  # by frame index of run A
        for n in args.counts:
            pick = np.sort(index[draw(rows, n, np.random.default_rng(1000 * n))])
            cell_dir = Path(args.work) / "finetune" / f"{args.seeds[0]}-{rule}-n{n}-i{args.iterations}"
            cell = finetune_cell(cell_dir, runs[0], runs[1], y, pick, model, args.iterations)
            print(rule, n, {k: v for k, v in cell.items() if k != "frames"}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
