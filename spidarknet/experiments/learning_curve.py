"""Pretrain on simulation, fine-tune on a few labels: the path, and how far it gets.

The path a user follows (each step is one spidarknet command)::

    # 1. frames like the run: its geometry, mask, photon level and background
    spidarknet simulate sim.cxi --like run.cxi --count 3200
    # 2. learn on the simulation
    spidarknet export-dataset sim.cxi --labels-dataset /truth/label --out sim-ds/
    spidarknet train sim-ds/
    # 3. label N frames of the run (file,index CSVs) and fine-tune, with the pretrained
    #    model's own preprocessing and network (its model card holds both)
    spidarknet export-dataset run.cxi --positives pos.csv --negatives neg.csv --out ft-ds/ \\
        --net pretrained.cfg --width-scale 1 --max-batches 300 PREPROCESSING-OF-THE-CARD
    spidarknet train ft-ds/ --pretrained sim-ds/backup/yolov2-tiny-spi_final.weights
    # 4. select
    spidarknet detect run.cxi --weights ft-ds/backup/yolov2-tiny-spi_final.weights

:func:`run_learning_curve` measures what step 3 buys: F1 on a held-out test file against
the number of labels N, fine-tuning from the pretrained weights and training the same
network from scratch on the same N labels with the same iteration budget.  It also
judges the pretrained model with no fine-tuning at all, at its own threshold (chosen on
the simulation it was trained on) and at a threshold chosen on the N labels: a threshold
learnt on simulation need not transfer to an experiment.

The "experiment" is simulated in conditions the pretraining set does not repeat
(:data:`EXPERIMENT_OPTIONS`): frames written 2 × 2-binned (150 µm pixels) at 0.25 m, so a
pixel spans the same angle as the pnCCD's 75 µm at 0.125 m and the same crop covers the
same q range (the result records the crop's q reach on both), single hits at ~800 photons
on one working half.  Two files are simulated: the *labelled* file, of which the N user
labels are drawn (the rest of it stays unused), and the *test* file (another seed), used
for nothing but the figures.  The N labels are nested (the 20 are among the 50, ...), and
stratified at the labelled file's hit ratio unless ``positive_share`` asks for enriched
sets.  Fine-tuned models take their threshold from ``train`` as a user's would: the
max-F1 threshold on the validation share (``valid_fraction``) of their N labels.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from spidarknet.core import metrics
from spidarknet.core.defaults import ORIENTATIONS, VALID_FRACTION
from spidarknet.core.errors import ConfigError, EngineError, InputError
from spidarknet.core.feedback import SILENT, Feedback
from spidarknet.core.outputs import write_json

#: numbers of user labels of the measurement
DEFAULT_COUNTS = (20, 50, 100, 200)
#: the simulated experiment's settings (:class:`spidarknet.simulate.settings.SimulationSettings`)
EXPERIMENT_OPTIONS = {"binning": 2, "distance_m": 0.25, "photons": 800.0, "half_detector": True,
                      "centre_jitter_px": 3.0}
#: fine-tuning iterations of both arms: a few hundred, fewer than a training from scratch
DEFAULT_ITERATIONS = 300
ARMS = ("scratch", "pretrained")
LABELS_DATASET = "/truth/label"


@dataclass
class Experiment:
    """The simulated experiment: a labelled file and a held-out test file (other seed)."""

    labelled_frames: int = 600
    test_frames: int = 1000
    labelled_seed: int = 701
    test_seed: int = 702
    options: dict = field(default_factory=lambda: dict(EXPERIMENT_OPTIONS))

    @property
    def background_per_written_pixel(self) -> float:
        """Expected background photons in one pixel of the written (binned) frames."""
        from spidarknet.simulate.settings import DEFAULT_SETTINGS
        per_pixel = self.options.get("background_photons_per_pixel",
                                     DEFAULT_SETTINGS.background_photons_per_pixel)
        return float(per_pixel) * int(self.options.get("binning", 1)) ** 2


# -- helpers -------------------------------------------------------------------------------

def _say_nothing(_: str) -> None:
    pass


def _export(options: dict, feedback: Feedback = SILENT) -> dict:
    """``export-dataset`` with ``options`` (settings names; ``inputs`` the files); the settings it ran with."""
    from spidarknet.frames.options import FrameOptions
    from spidarknet.jobs import with_options
    from spidarknet.jobs.export_dataset import ExportSettings, export_dataset
    record, options = _clean(options), dict(options)
    settings = ExportSettings(FrameOptions(tuple(map(str, options.pop("inputs")))), out=str(options.pop("out")))
    export_dataset(with_options(settings, options), feedback)
    return {"export-dataset": record}


def _train(options: dict, feedback: Feedback = SILENT) -> dict:
    """``train`` with ``options`` (settings names; ``dataset`` the folder); the settings it ran with."""
    from spidarknet.jobs import with_options
    from spidarknet.jobs.train import TrainSettings, train_model
    record, options = _clean(options), dict(options)
    result = train_model(with_options(TrainSettings(str(options.pop("dataset"))), options), feedback)
    if result.interrupted:
        raise KeyboardInterrupt
    return {"train": record}


def _train_seed(seed: int) -> int | str:
    """``train``'s seed: ours when darknet takes one, else darknet seeds from the clock."""
    from spidarknet.engine.locate import find_darknet
    from spidarknet.engine.train import takes_seed
    return seed if takes_seed(find_darknet()) else "random"


def simulate_cached(path: Path, count: int, seed: int, options: dict,
                    say: Callable[[str], None] = _say_nothing, **extra) -> Path:
    """Simulate ``path`` unless it exists with the same settings (kept in ``path``.json)."""
    from spidarknet.simulate import simulate_file
    stamp = _clean({"count": int(count), "seed": int(seed), "options": options,
                    **{k: str(v) for k, v in extra.items()}})
    settings = path.with_suffix(".json")
    if path.exists() and settings.exists() and json.loads(settings.read_text()) == stamp:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    say(f"simulating {path.name}: {count} frames (seed {seed}) ...")
    simulate_file(path, count, seed=seed, **extra, **options)
    write_json(stamp, settings, True, "simulation settings")
    return path


def preprocess_options(settings) -> dict:
    """``export-dataset`` settings that reproduce ``settings`` (a
    :class:`~spidarknet.preprocess.Preprocessing`), so that fine-tuning sees the images the
    pretrained model was trained on.  Raises :class:`ConfigError` for settings export-dataset
    cannot express."""
    from spidarknet.preprocess import Preprocessing
    default = Preprocessing()
    if (settings.vmax_percentile, settings.vmax_floor) != (default.vmax_percentile, default.vmax_floor):
        raise ConfigError(f"the pretrained model's full scale (percentile {settings.vmax_percentile}, floor "
                          f"{settings.vmax_floor}) has no export-dataset option; export its frames "
                          "through the library with those settings")
    options = {"size": settings.size, "scale": settings.scale, "colormap": settings.colormap}
    q_min = getattr(settings, "q_min_inv_nm", None)
    if settings.q_max_inv_nm is not None:
        # q_min always: left out, export would take it from the user's files' beam stop
        options.update(q_max_inv_nm=settings.q_max_inv_nm, q_min_inv_nm=q_min or 0.0)
    else:
        options["crop"] = settings.crop
        if q_min:
            options["q_min_inv_nm"] = q_min
        if settings.centre_px is not None:
            options["centre_px"] = tuple(settings.centre_px)
    if settings.vmax is not None:
        options["vmax"] = settings.vmax
    if settings.adu_per_photon is not None:
        options["adu_per_photon"] = settings.adu_per_photon
    return options


def net_options(model, folder: Path) -> dict:
    """``export-dataset`` settings for the pretrained model's own network: its cfg (from the
    card) as the template, unscaled, with its batch; writes the cfg into ``folder``."""
    stem = model.weights.stem
    base = (stem.rsplit("_", 1)[0] if "_" in stem else stem).replace(".", "-")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{base}.cfg"
    model.cfg.save(path)
    net = model.cfg.net
    return {"net": str(path), "width_scale": 1.0, "batch": net.get_int("batch", 16),
            "subdivisions": net.get_int("subdivisions", 1)}


def crop_q_inv_nm(settings, path: str | Path) -> float | None:
    """|q| (nm⁻¹) at the edge of ``settings``' crop along a detector axis of ``path``'s
    geometry, or None where the file is gone or lacks its geometry."""
    from spidarknet.frames.source import FrameSource
    from spidarknet.preprocess import q_at_px
    try:
        info = FrameSource([str(path)]).files[0]
        if None in (info.geometry.distance_m, info.geometry.pixel_size_m, info.geometry.wavelength_m):
            return None
        return q_at_px(info.geometry, settings.for_file(info).crop / 2.0) * 1e-9
    except InputError:
        return None


def pick_labels(labels: np.ndarray, counts: Sequence[int], *, seed: int = 0,
                positive_share: float | None = None) -> dict[int, np.ndarray]:
    """Nested sets of frame indices, one per count (each holds the smaller ones).

    Each set has ``round(N * share)`` positives (at least one, and at least one negative),
    ``share`` being the hit ratio of ``labels`` (stratified) or ``positive_share``
    (enriched).  Raises :class:`InputError` when the file has too few of either.
    """
    labels = np.asarray(labels).astype(bool)
    share = float(labels.mean()) if positive_share is None else float(positive_share)
    if not 0 < share < 1:
        raise InputError(f"a share of positives of {share:g} leaves no positives or no negatives to label; "
                         "the labelled file needs both (or give positive_share between 0 and 1)")
    rng = np.random.default_rng(seed)
    pos = rng.permutation(np.flatnonzero(labels))
    neg = rng.permutation(np.flatnonzero(~labels))
    out = {}
    for n in sorted(counts):
        n_pos = min(n - 1, max(1, int(round(n * share))))
        n_neg = n - n_pos
        if n_pos < 1 or n_pos > len(pos) or n_neg > len(neg):
            raise InputError(f"{n} labels need {n_pos} positives and {n_neg} negatives, the labelled file has "
                             f"{len(pos)} and {len(neg)}: simulate a larger labelled file")
        out[n] = np.sort(np.r_[pos[:n_pos], neg[:n_neg]])
    return out


def write_selections(folder: Path, path: Path, indices: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    """positives.csv and negatives.csv (``file,index``) of the labelled frames ``indices``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, want in (("positives.csv", True), ("negatives.csv", False)):
        rows = ["file,index"] + [f"{path},{i}" for i in indices if bool(labels[i]) == want]
        target = folder / name
        target.write_text("\n".join(rows) + "\n")
        out.append(target)
    return out[0], out[1]


def dataset_frames(ds: Path) -> dict:
    """Which source frames an exported data set holds: ``{subset: [(file, index), ...]}``."""
    frames: dict[str, set] = {}
    with open(ds / "frames.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            frames.setdefault(row["subset"], set()).add((row["file"], int(row["index"])))
    return {k: sorted(v) for k, v in frames.items()}


def train_log_losses(path: Path) -> dict:
    """First-iteration loss and last average loss of a darknet training log."""
    from spidarknet.engine.train import parse_progress
    history = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            p = parse_progress(line)
            if p is not None:
                history.append(p)
    if not history:
        return {"first_loss": None, "final_avg_loss": None, "iterations": 0}
    return {"first_loss": history[0].loss, "final_avg_loss": history[-1].avg_loss,
            "iterations": history[-1].iteration}


def _detect_scores(work: Path, name: str, cxi: Path, weights: Path) -> tuple[np.ndarray, float, float]:
    """Scores of every frame of ``cxi`` (by index), the model's threshold and detect's seconds."""
    from spidarknet.frames.options import FrameOptions
    from spidarknet.hits import read_hits
    from spidarknet.jobs.detect import DetectSettings, detect_to_file
    out = work / f"hits-{name}.csv"
    t0 = time.perf_counter()
    detect_to_file(DetectSettings(FrameOptions((str(cxi),)), out=str(out), weights=str(weights), force=True, jobs=1))
    seconds = time.perf_counter() - t0
    hits = read_hits(out)
    from spidarknet.frames.source import open_h5
    with open_h5(str(cxi)) as h:
        n = len(h[LABELS_DATASET])
    scores = np.full(n, np.nan)
    scores[[k.index for k in hits.keys]] = hits.scores
    if np.isnan(scores).any():
        raise EngineError(f"detect left {int(np.isnan(scores).sum())} frames of {cxi} unscored; see {out}")
    return scores, float(hits.threshold), seconds


def _figures(scores: np.ndarray, threshold: float, truth: dict, background: float) -> dict:
    from spidarknet.experiments.science import judge
    out = judge(scores, scores >= threshold, truth, background)
    out["threshold"] = float(threshold)
    return out


def _clean(value):
    """JSON-comparable (tuples as lists, NaN kept)."""
    return json.loads(json.dumps(value, default=str))


# -- pretraining -----------------------------------------------------------------------------

def pretrain(workdir: str | Path, *, frames: int = 3200, seed: int = 101, like: str | None = None,
             options: dict | None = None, export_options: dict | None = None, train_options: dict | None = None,
             train_seed: int = 0, say: Callable[[str], None] = print) -> Path:
    """Steps 1-2 of the path: simulate ``frames`` frames (``like`` a user's run, and/or with
    simulator ``options``), export them with their truth labels and train with ``export_options``
    / ``train_options`` (settings names) on top of the defaults; returns the final weights (kept and reused when
    asked again with the same settings)."""
    work = Path(workdir) / "pretrain"
    stamp = {"frames": frames, "seed": seed, "like": str(like) if like else None, "options": options or {},
             "export_options": _clean(export_options or {}), "train_options": _clean(train_options or {}),
             "train_seed": train_seed}
    extra = {"like": like} if like else {}
    sim = simulate_cached(work / f"sim-s{seed}-n{frames}.cxi", frames, seed, dict(options or {}), say, **extra)
    ds = work / "ds"
    done = work / "pretrain.json"
    finals = sorted((ds / "backup").glob("*_final.weights"))
    if finals and done.is_file() and json.loads(done.read_text()) == _clean(stamp):
        return finals[0]
    say(f"pretraining on {sim.name} ...")
    _export({"inputs": [str(sim)], "labels_dataset": LABELS_DATASET, "out": str(ds), "force": True,
             **(export_options or {})})
    _train({"dataset": str(ds), "force": True, "seed": _train_seed(train_seed), **(train_options or {})})
    write_json(stamp, done, True, "pretraining settings")
    return sorted((ds / "backup").glob("*_final.weights"))[0]


# -- the learning curve ----------------------------------------------------------------------

def run_learning_curve(workdir: str | Path, pretrained_weights: str | Path,
                       label_counts: Sequence[int] = DEFAULT_COUNTS, *,
                       experiment: Experiment | None = None, iterations: int = DEFAULT_ITERATIONS,
                       orientations: int = ORIENTATIONS, valid_fraction: float = VALID_FRACTION,
                       positive_share: float | None = None, seed: int = 0,
                       export_options: dict | None = None, train_options: dict | None = None,
                       say: Callable[[str], None] = print) -> dict:
    """F1 on the experiment's test file against the number of user labels, from scratch and
    fine-tuned from ``pretrained_weights`` (see the module notes); returns the figures.

    Both arms export the same N labelled frames with the pretrained model's preprocessing
    and network (from its model card, or its data set folder) and train ``iterations``
    iterations with the same seed; ``export_options`` / ``train_options`` (settings names) are added to both.
    Finished runs are kept in ``workdir`` and reused when asked again with the same
    settings.  Raises :class:`~spidarknet.core.errors.SpidarknetError` subclasses saying what
    to fix, before any heavy work where it can.
    """
    from spidarknet.engine.locate import describe
    from spidarknet.engine.model import load_model
    from spidarknet.experiments.science import read_truth
    work = Path(workdir)
    experiment = experiment or Experiment()
    counts = _checked_counts(label_counts, iterations)
    pretrained = Path(pretrained_weights).resolve()
    model = load_model(pretrained)  # cfg, preprocessing and threshold; checks they agree
    darknet = _training_engine()
    pre_options = preprocess_options(model.preprocessing)
    work.mkdir(parents=True, exist_ok=True)
    network = net_options(model, work / "net")

    labelled, test = _experiment_files(work / "data", experiment, say)
    label_truth, test_truth = read_truth(labelled), read_truth(test)
    background = experiment.background_per_written_pixel
    chosen = pick_labels(label_truth["label"], counts, seed=seed, positive_share=positive_share)
    pre_inputs = _pretraining_inputs(model, pretrained)
    result = {
        "pretrained": _pretrained_record(pretrained, model, pre_inputs),
        "experiment": _experiment_record(experiment, labelled, test, label_truth, test_truth),
        "crop_q_max_inv_nm": {"experiment": crop_q_inv_nm(model.preprocessing, test),
                              "pretraining": crop_q_inv_nm(model.preprocessing, pre_inputs[0]) if pre_inputs else None},
        "schedule": {"iterations": iterations, "orientations": orientations, "valid_fraction": valid_fraction,
                     "seed": seed, "export_options": _clean(export_options or {}),
                     "train_options": _clean(train_options or {})},
        "labels": "stratified" if positive_share is None else f"enriched to {positive_share:g} positives",
        "preprocess_options": _clean(pre_options), "net_options": network, "engine": describe(darknet),
        "zero_shot": {}, "rows": [],
    }
    result["zero_shot"] = _zero_shot(work, pretrained, labelled, test, label_truth, test_truth, background,
                                     chosen, say)

    plan = _Plan(labelled=labelled, labels=label_truth["label"].astype(bool), test=test, test_truth=test_truth,
                 background=background, pretrained=pretrained,
                 export_common=export_common(network, pre_options, iterations, orientations, valid_fraction,
                                             seed, export_options or {}),
                 train_common={"seed": _train_seed(seed), **(train_options or {})}, say=say)
    for n, idx in chosen.items():
        positives, negatives = write_selections(work / "labels" / f"n{n}", labelled, idx, plan.labels)
        for arm in ARMS:
            result["rows"].append(_run_arm(plan, work / "runs" / f"n{n}-{arm}", n, arm, idx, positives, negatives))
    return result


def export_common(network: dict, pre_options: dict, iterations: int, orientations: int,
                  valid_fraction: float, seed: int, export_options: dict) -> dict:
    """The export-dataset settings every (N, arm) cell shares, beside the labels and the folder."""
    return {**network, "max_batches": iterations, **pre_options, "orientations": orientations,
            "valid_fraction": valid_fraction, "seed": seed, **export_options}


def _checked_counts(label_counts: Sequence[int], iterations: int) -> list[int]:
    """The label counts, sorted and without repeats; refuses counts below 2 and no iterations."""
    counts = sorted({int(n) for n in label_counts})
    if not counts or counts[0] < 2:
        raise ConfigError(f"label counts {list(label_counts)} must be whole numbers ≥ 2 (a positive and a negative)")
    if iterations < 1:
        raise ConfigError(f"iterations {iterations} must be at least 1")
    return counts


def _pretrained_record(pretrained: Path, model, pre_inputs: list[str]) -> dict:
    """The pretrained model's weights, threshold, preprocessing, training files and validation."""
    return {"weights": str(pretrained), "threshold": model.threshold,
            "preprocessing": model.preprocessing.to_dict(), "trained_on": pre_inputs,
            "validation": model.validation}


def _experiment_record(experiment: Experiment, labelled: Path, test: Path, label_truth: dict,
                       test_truth: dict) -> dict:
    """The experiment's settings, files, hit ratio and test-set size, as the figures record them."""
    return {**asdict(experiment), "labelled_file": str(labelled), "test_file": str(test),
            "hit_ratio": float(label_truth["label"].mean()),
            "test_frames": int(len(test_truth["label"])),
            "test_positives": int(test_truth["label"].sum())}


def _training_engine():
    """The darknet binary, refused when it cannot train YOLOv2 here."""
    from spidarknet.engine.locate import describe, find_darknet
    darknet = find_darknet()
    if not darknet.trains_on_cpu and not darknet.gpu:
        raise EngineError(f"{describe(darknet)} cannot train YOLOv2 on the CPU; build the patched engine "
                          "with 'make darknet OPENMP=1'")
    return darknet


def _experiment_files(data: Path, experiment: Experiment, say: Callable[[str], None]) -> tuple[Path, Path]:
    """The experiment's labelled file and test file, simulated once and kept in ``data``."""
    labelled = simulate_cached(data / f"labelled-s{experiment.labelled_seed}-n{experiment.labelled_frames}.cxi",
                               experiment.labelled_frames, experiment.labelled_seed, experiment.options, say)
    test = simulate_cached(data / f"test-s{experiment.test_seed}-n{experiment.test_frames}.cxi",
                           experiment.test_frames, experiment.test_seed, experiment.options, say)
    return labelled, test


def _pretraining_inputs(model, pretrained: Path) -> list[str]:
    """The files the pretrained model was trained on, from its data set's export.json (none if gone)."""
    card = json.loads(model.card_path.read_text()) if model.card_path.is_file() else {}
    pre_ds = Path(card["dataset"]) if card.get("dataset") else pretrained.parent.parent
    if (pre_ds / "export.json").is_file():
        return [i["file"] for i in json.loads((pre_ds / "export.json").read_text()).get("inputs", [])]
    return []


def _zero_shot(work: Path, pretrained: Path, labelled: Path, test: Path, label_truth: dict, test_truth: dict,
               background: float, chosen: dict, say: Callable[[str], None]) -> dict:
    """The pretrained model as it is: its own threshold, and one chosen on the N labels."""
    say("scoring the experiment with the pretrained model ...")
    test_scores, card_threshold, _ = _detect_scores(work, "pretrained-test", test, pretrained)
    label_scores, _, _ = _detect_scores(work, "pretrained-labelled", labelled, pretrained)
    zero = {"own_threshold": _figures(test_scores, card_threshold, test_truth, background), "from_labels": {}}
    for n, idx in chosen.items():
        t = metrics.best_f_threshold(label_scores[idx], label_truth["label"][idx].astype(bool))
        if not math.isfinite(t):
            t = card_threshold
        zero["from_labels"][str(n)] = _figures(test_scores, t, test_truth, background)
    return zero


@dataclass
class _Plan:
    """What every (N, arm) cell of one learning curve shares."""

    labelled: Path
    labels: np.ndarray          # bool, per frame of the labelled file
    test: Path
    test_truth: dict
    background: float           # photons per written pixel
    pretrained: Path
    export_common: dict         # export-dataset settings beside the labels and the folder
    train_common: dict          # train settings beside the data set and the pretrained weights
    say: Callable[[str], None]


def _run_arm(plan: _Plan, run: Path, n: int, arm: str, idx: np.ndarray, positives: Path,
             negatives: Path) -> dict:
    """One (N, arm) cell: export, train, detect the test file, judge; reused when done."""
    ds = run / "ds"
    export = {"inputs": [str(plan.labelled)], "positives": [str(positives)], "negatives": [str(negatives)],
              "out": str(ds), "force": True, **plan.export_common}
    train = {"dataset": str(ds), "force": True, **({"pretrained": str(plan.pretrained)} if arm == "pretrained" else {}),
             **plan.train_common}
    key = _clean({"export": export, "train": train, "frames": idx.tolist()})
    done = run / "row.json"
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("key") == key:
            return old["row"]
    plan.say(f"{n} labels, {arm}: export + train ...")
    run.mkdir(parents=True, exist_ok=True)
    steps = [_export(export)]
    t0 = time.perf_counter()
    steps.append(_train(train))
    train_s = time.perf_counter() - t0
    weights = sorted((ds / "backup").glob("*_final.weights"))[0]
    scores, threshold, detect_s = _detect_scores(run, "test", plan.test, weights)
    steps.append({"detect": {"inputs": [str(plan.test)], "weights": str(weights), "out": str(run / "hits-test.csv")}})
    frames = dataset_frames(ds)
    card = json.loads(weights.with_suffix(".json").read_text())
    picked = plan.labels[idx]
    row = {"labels": n, "arm": arm, "n_positive": int(picked.sum()), "n_negative": int((~picked).sum()),
           "train_frames": len(frames.get("train", [])), "valid_frames": len(frames.get("valid", [])),
           "files": sorted({f for subset in frames.values() for f, _ in subset}),
           "dataset": str(ds), "weights": str(weights), "train_seconds": round(train_s, 1),
           "detect_frames_per_s": round(len(scores) / detect_s, 1) if detect_s > 0 else None,
           "validation": card.get("validation", {}), **train_log_losses(ds / "train.log"),
           "test": _figures(scores, threshold, plan.test_truth, plan.background), "steps": steps}
    write_json({"key": key, "row": row}, done, True, "learning-curve cell")
    return row


# -- the table -------------------------------------------------------------------------------

def _num(x, fmt: str = "6.3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return f"{'-':>{int(fmt.split('.')[0])}}"
    return format(x, fmt)


def format_learning_curve(result: dict) -> str:
    """The learning curve for people: labels × start → threshold, P, R, F1, AUC, training
    seconds and the first iteration's loss (low when the pretrained weights were loaded)."""
    e, s = result["experiment"], result["schedule"]
    q = result.get("crop_q_max_inv_nm", {})
    qtext = ", ".join(f"{k} {v:.3f}" for k, v in q.items() if v is not None)
    lines = [f"test file {e['test_file']}: {e['test_frames']} frames, {e['test_positives']} single hits; "
             f"labels from {e['labelled_file']} ({result['labels']}, hit ratio {e['hit_ratio']:.2f}); "
             f"{s['iterations']} iterations, orientations {s['orientations']}, valid share {s['valid_fraction']:g}",
             f"crop reaches q (nm⁻¹): {qtext or 'unknown'}",
             f"{'labels':>6}  {'start':<31}{'thr':>6}{'P':>7}{'R':>7}{'F1':>7}{'AUC':>7}{'train s':>9}{'loss@1':>9}"]

    def line(n, start, t, train_s=None, loss=None):
        lines.append(f"{n:>6}  {start:<31}{_num(t['threshold'])}{_num(t['precision'], '7.3f')}"
                     f"{_num(t['recall'], '7.3f')}{_num(t['f1'], '7.3f')}{_num(t['roc_auc'], '7.3f')}"
                     f"{_num(train_s, '9.0f')}{_num(loss, '9.2f')}")

    zero = result["zero_shot"]
    line(0, "pretrained, own threshold", zero["own_threshold"])
    for row in result["rows"]:
        n = row["labels"]
        if row["arm"] == "scratch" and str(n) in zero["from_labels"]:
            line(n, "pretrained, threshold of N", zero["from_labels"][str(n)])
        name = "from scratch" if row["arm"] == "scratch" else "pretrained + fine-tuned"
        line(n, f"{name} ({row['n_positive']}+)", row["test"], row["train_seconds"], row["first_loss"])
    return "\n".join(lines)
