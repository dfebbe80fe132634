"""Does the selector learn what labels mean?  Rules the network never saw, learning curves,
and labels needed with proposals against random frames (issue "Right on measured frames",
items 4 and 6).

Two simulated runs (default settings, every kind; seeds ``--seeds A B``): run A is the pool
the labels are drawn from, run B is judged.  Every frame of both is scored by the built-in
model and fitted once; labels come from the truth through a *rule*:

* ``simulator``: the simulator's own label (a single of 60-75 nm);
* ``bright``: those singles with at least the photons of the dimmest quarter of such singles
  in run A (a photon cut: labellers reject dim singles);
* ``narrow``: singles of 63-72 nm (narrower than the network was taught);
* ``spheres``: those singles that are spheres, not icosahedra (the simulator has no
  ellipsoids; an icosahedron is the nearest not-round single it draws);
* ``centred``: those singles whose beam centre lies within 4.5 pixels of the nominal one
  (the third of them nearest the beam stop's edge rejected; runs with 3-pixel jitter).

For each rule and each label count (20, 40, 80, 160; ``--draws`` random draws from run A)
the selector is learnt (:func:`spidarknet.selection.selector.learn_selector`) and judged:
its 5-fold cross-validated F1 on the labels, and its F1 on every frame of run B; so are 40
labels chosen by :func:`spidarknet.selection.propose.propose` (10 at a time: representative
first, then half uncertain), and, as the ceiling of the features, every frame of run A
labelled.  Then, for each rule of ``--reach-rules``, labels are added 10 at a time, chosen
at random or by ``propose``, until F1 on run B reaches 0.95.  With ``--finetuned RULE ...``
the network arms of the learning curve join (``tools/selection_finetune.py`` fine-tunes the
built-in network on the first draw's labels; the same labels give the selector alone).
Features are cached beside each run (``RUN.cxi.features.pkl``) and fitted again, the
network's scores kept, when :data:`~spidarknet.selection.features.FEATURES` grows.  Writes
JSON and a Markdown table.

    python tools/selection_bench.py --seeds 8101 8102 --reach-rules simulator bright \
        --finetuned simulator narrow --out build/selector/dev.md
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
import warnings

import h5py
import numpy as np

from spidarknet.core.metrics import confusion
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.frames.source import FrameSource
from spidarknet.selection.features import FEATURES, measure
from spidarknet.selection.pipeline import score_frames
from spidarknet.selection.propose import propose
from spidarknet.selection.selector import fit_selector, learn_selector, screen_for
from spidarknet.simulate import simulate_file

COUNTS = (20, 40, 80, 160)
RULES = ("simulator", "bright", "narrow", "spheres", "centred")


def run_table(path: str, model):
    """(measured features of every frame, truth dict) of one run (kept beside the run)."""
    cache = path + ".features.pkl"
    if os.path.exists(cache):
        with open(cache, "rb") as handle:
            table = pickle.load(handle)
        if all(name in table[0].values for name in FEATURES):
            return table
        table = _refit(path, *table)  # features added since: the network's scores are kept
    else:
        table = _run_table(path, model)
    with open(cache, "wb") as handle:
        pickle.dump(table, handle)
    return table


def _refit(path: str, measured, truth):
    """The table of a run whose cached features predate some of :data:`FEATURES`: fitted again."""
    source = FrameSource(sorted({key.file for key in measured.keys}))  # the paths the cache names
    scores = measured.values["score"]
    return measure(source, measured.keys, scores, -np.inf, jobs=2), truth


def _run_table(path: str, model):
    source = FrameSource([path])
    hits = score_frames(source, model)
    measured = measure(source, hits.keys, hits.scores, -np.inf, jobs=2)
    with h5py.File(path) as f:
        truth = {name: f[f"truth/{name}"][()] for name in ("label", "kind", "photons", "diameter_nm", "shape",
                                                          "centre_x_px", "centre_y_px")}
    order = [k.index for k in hits.keys]
    return measured, {k: v[order] for k, v in truth.items()}


def rule_labels(rule: str, t: dict, median_photons: float) -> np.ndarray:
    single = t["label"].astype(bool)
    if rule == "bright":
        return single & (t["photons"] >= median_photons)  # the dimmest quarter rejected
    if rule == "narrow":
        return (t["kind"].astype(str) == "single") & (t["diameter_nm"] >= 63) & (t["diameter_nm"] <= 72)
    if rule == "spheres":
        return single & (t["shape"].astype(str) == "sphere")
    if rule == "centred":
        nominal_x, nominal_y = 511.5, 511.5
        return single & (np.hypot(t["centre_x_px"] - nominal_x, t["centre_y_px"] - nominal_y) <= 4.5)
    return single


def draw(labels: np.ndarray, n: int, rng) -> np.ndarray:
    """n random frames holding at least 3 of each class."""
    for _ in range(1000):
        pick = rng.choice(len(labels), n, replace=False)
        if 3 <= labels[pick].sum() <= n - 3:
            return pick
    raise RuntimeError("cannot draw labels of both classes")


def proposed(measured, labels: np.ndarray, n: int, card, seed: int, step: int = 10) -> np.ndarray:
    """n frames labelled ``step`` at a time as :func:`propose` asks: representative ones first,
    then half uncertain ones of the selector learnt from the labels so far."""
    *_, pick = _proposal_rounds(measured, labels, card, seed, step, n, fit_seed=seed)
    return pick


def judged(selector, measured, labels) -> float:
    selected, _ = selector.decide(measured)
    return confusion(selected.astype(float), labels, 0.5).f1


def _proposed_figures(mA, yA, mB, yB, card, draws: int) -> dict:
    """40 labels chosen by proposals instead of at random: CV and held-out F1."""
    cv, held = [], []
    for d in range(draws):
        pick = proposed(mA, yA, 40, card, seed=d)
        if not 3 <= yA[pick].sum() <= len(pick) - 3:
            cv.append(0.0)
            held.append(0.0)
            continue
        sel = learn_selector(mA.subset(pick), yA[pick], card_screen=card, weights={}, seed=d)
        cv.append(sel.figures["f1"])
        held.append(judged(sel, mB, yB))
    return {"proposed_cv_f1": float(np.mean(cv)), "proposed_heldout_f1": float(np.mean(held)),
            "proposed_heldout_f1_min": float(np.min(held))}


def curves(tables, model, draws: int) -> dict:
    (mA, tA), (mB, tB) = tables
    median = float(np.percentile(tA["photons"][tA["label"].astype(bool)], 25))
    card = model.validation.get("screening_threshold")
    out = {}
    for rule in RULES:
        yA, yB = rule_labels(rule, tA, median), rule_labels(rule, tB, median)
        rows = {}
        for n in COUNTS:
            cv, held = [], []
            for d in range(draws):
                pick = draw(yA, n, np.random.default_rng(1000 * n + d))
                part = mA.subset(pick)
                sel = learn_selector(part, yA[pick], card_screen=card, weights={}, seed=d)
                cv.append(sel.figures["f1"])
                held.append(judged(sel, mB, yB))
            rows[n] = {"cv_f1": float(np.mean(cv)), "cv_f1_min": float(np.min(cv)), "heldout_f1_first": held[0],
                       "heldout_f1": float(np.mean(held)), "heldout_f1_min": float(np.min(held))}
            if n == 40:
                rows[n].update(_proposed_figures(mA, yA, mB, yB, card, draws))
            print(rule, n, rows[n], flush=True)
        every = learn_selector(mA, yA, card_screen=card, weights={}, seed=0)  # the ceiling: all of run A labelled
        rows["all"] = {"cv_f1": every.figures["f1"], "heldout_f1": judged(every, mB, yB)}
        out[rule] = {"positives_A": int(yA.sum()), "positives_B": int(yB.sum()), "counts": rows}
    return out


def _first_reaching(picks, mA, yA, mB, yB, card, target: float):
    """The first label count of ``picks`` (label sets, growing) whose selector reaches
    ``target`` F1 on run B; None if none does."""
    for pick in picks:
        if not 2 <= yA[pick].sum() <= len(pick) - 2:
            continue
        sel = fit_selector(mA.subset(pick), yA[pick], screen_for(mA.values["score"][pick], yA[pick], card))
        if judged(sel, mB, yB) >= target:
            return len(pick)
    return None


def _proposal_rounds(mA, yA, card, seed: int, step: int, most: int, fit_seed: int = 0):
    """Growing label sets, ``step`` proposals at a time (the last round fewer, to end at
    ``most``) from the selector learnt so far."""
    labelled = np.zeros(len(yA), dtype=bool)
    sel = None
    while labelled.sum() < most:
        chosen, _ = propose(mA, min(step, most - int(labelled.sum())), selector=sel, labelled=labelled, seed=seed,
                            screen=card)
        labelled[chosen] = True
        pick = np.flatnonzero(labelled)
        yield pick
        if 2 <= yA[pick].sum() <= len(pick) - 2:
            sel = fit_selector(mA.subset(pick), yA[pick], screen_for(mA.values["score"][pick], yA[pick], card),
                               seed=fit_seed)


def labels_to_reach(tables, model, target: float, draws: int, step: int = 10, most: int = 200,
                    rule: str = "simulator") -> dict:
    (mA, tA), (mB, tB) = tables
    cut = float(np.percentile(tA["photons"][tA["label"].astype(bool)], 25))
    yA, yB = rule_labels(rule, tA, cut), rule_labels(rule, tB, cut)
    card = model.validation.get("screening_threshold")
    result = {"random": [], "proposals": []}
    for d in range(draws):
        order = np.random.default_rng(77 + d).permutation(len(yA))
        random_sets = (order[:n] for n in range(step, most + 1, step))
        result["random"].append(_first_reaching(random_sets, mA, yA, mB, yB, card, target))
        rounds = _proposal_rounds(mA, yA, card, d, step, most)
        result["proposals"].append(_first_reaching(rounds, mA, yA, mB, yB, card, target))
        print("labels to reach", rule, target, d, result, flush=True)
    return result


def finetune_arms(tables, work: str, rules, counts, iterations: int, seeds) -> dict:
    """The learning curve's network arms from ``tools/selection_finetune.py``'s cells: the
    fine-tuned network alone (its own threshold) and the selector learnt on its scores."""
    (mA, tA), (mB, tB) = tables
    cut = float(np.percentile(tA["photons"][tA["label"].astype(bool)], 25))
    out = {}
    for rule in rules:
        yA, yB = rule_labels(rule, tA, cut), rule_labels(rule, tB, cut)
        for n in counts:
            cell = os.path.join(work, "finetune", f"{seeds[0]}-{rule}-n{n}-i{iterations}")
            if not os.path.exists(os.path.join(cell, "cell.json")):
                continue
            with open(os.path.join(cell, "cell.json")) as handle:
                info = json.load(handle)
            with open(os.path.splitext(info["weights"])[0] + ".json") as handle:
                card = json.load(handle)
            a, b = _rescored(mA, np.load(os.path.join(cell, "scores-A.npy"))), \
                _rescored(mB, np.load(os.path.join(cell, "scores-B.npy")))
            pick = draw(yA, n, np.random.default_rng(1000 * n))
            alone = confusion((b.values["score"] >= info["threshold"]).astype(float), yB, 0.5).f1
            screen_card = card.get("validation", {}).get("screening_threshold", info["threshold"])
            sel = learn_selector(a.subset(pick), yA[pick], card_screen=screen_card, weights={}, seed=0)
            out.setdefault(rule, {})[n] = {"network_alone": alone, "both_cv_f1": sel.figures["f1"],
                                           "both_heldout_f1": judged(sel, b, yB),
                                           "train_seconds": info["train_seconds"]}
            print("fine-tuned", rule, n, out[rule][n], flush=True)
    return out


def _rescored(measured, scores_by_index: np.ndarray):
    """``measured`` with the network's scores replaced (the fit does not depend on them)."""
    values = dict(measured.values)
    values["score"] = scores_by_index[[k.index for k in measured.keys]]
    return type(measured)(measured.keys, values, measured.fit_reason, measured.fitted)


def markdown(results: dict) -> str:
    lines = ["| rule | positives (A / B) | " + " | ".join(f"{n} random labels: CV F1 / held-out F1" for n in COUNTS)
             + " | 40 proposed labels: CV F1 / held-out F1 | every frame of run A labelled |",
             "| --- | --- | " + " | ".join("---" for _ in COUNTS) + " | --- | --- |"]
    for rule, r in results["curves"].items():
        counts = {(int(k) if k != "all" else k): v for k, v in r["counts"].items()}
        cells = [f"{counts[n]['cv_f1']:.3f} / {counts[n]['heldout_f1']:.3f}" for n in COUNTS]
        cells.append(f"{counts[40]['proposed_cv_f1']:.3f} / {counts[40]['proposed_heldout_f1']:.3f}")
        cells.append(f"{counts['all']['cv_f1']:.3f} / {counts['all']['heldout_f1']:.3f}")
        lines.append(f"| {rule} | {r['positives_A']} / {r['positives_B']} | " + " | ".join(cells) + " |")
    lines += ["", f"Labels to reach held-out F1 {results['target']} (per draw; None: not within 200):", ""]
    for rule, reach in results["labels_to_reach"].items():
        lines.append(f"- {rule}: random {reach['random']}, proposals {reach['proposals']}")
    if results.get("finetuned"):
        lines += ["", "| rule | labels | selector alone (held-out F1) | fine-tuned network alone | both: CV / held-out F1 |",
                  "| --- | --- | --- | --- | --- |"]
        for rule, rows in results["finetuned"].items():
            for n, r in rows.items():
                alone = results["curves"][rule]["counts"][n]
                lines.append(f"| {rule} | {n} | {alone['heldout_f1_first']:.3f} | {r['network_alone']:.3f} | "
                             f"{r['both_cv_f1']:.3f} / {r['both_heldout_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="build/selector")
    parser.add_argument("--out", default="build/selector/selection.md")
    parser.add_argument("--seeds", nargs=2, type=int, default=(8101, 8102))
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--reach-rules", nargs="+", default=["simulator"], choices=RULES,
                        help="rules whose labels to reach the target are counted (default simulator)")
    parser.add_argument("--finetuned", nargs="*", choices=RULES, default=[],
                        help="rules whose network arms (tools/selection_finetune.py, in --work) join the table")
    parser.add_argument("--finetune-iterations", type=int, default=200)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.makedirs(args.work, exist_ok=True)
    started = time.perf_counter()
    model = load_model(builtin_weights())
    tables = []
    for seed in args.seeds:
        path = os.path.join(args.work, f"run{seed}.cxi")
        if not os.path.exists(path):
            simulate_file(path, args.frames, seed=seed, centre_jitter_px=3.0)
        tables.append(run_table(path, model))
        print(f"run {seed}: scored and fitted ({time.perf_counter() - started:.0f} s)", flush=True)
    results = {"seeds": list(args.seeds), "frames": args.frames, "draws": args.draws, "target": args.target,
               "curves": curves(tables, model, args.draws),
               "labels_to_reach": {rule: labels_to_reach(tables, model, args.target, args.draws, rule=rule)
                                   for rule in args.reach_rules},
               "finetuned": finetune_arms(tables, args.work, args.finetuned, COUNTS, args.finetune_iterations,
                                          args.seeds)}
    results["seconds"] = round(time.perf_counter() - started, 1)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as handle:
        json.dump(results, handle, indent=1)
    with open(args.out, "w") as handle:
        handle.write(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
