"""The AGIPD regime: the built-in model on simulated European XFEL runs against the pnCCD, and
the facility's lit-pixel hit finder beside spidarknet's selection (issue 21, items 3 and 4).

For each seed, the same simulation settings (every kind of shot, ``photons`` per labelled
single, the simulator's default mix) are written twice: as a pnCCD CXI file (1.7 keV, 0.125 m,
the default detector) and as an AGIPD 1M run folder (6 keV, 0.705 m, 16 modules in keV-like
ADU with per-cell gain errors; :mod:`spidarknet.simulate.agipd`).  Both are scored the same
way (the built-in model at its card's threshold, the background prefilter; then the size
window 60-75 nm at the card's screening threshold, as ``detect --size-range 60 75``), and
on the AGIPD run the lit-pixel rule (``detect --prefilter-litpixels K``: lit pixels of the
region read above the median + K x IQR of the frames of its window) decides on its own.
Reported per regime: precision, recall and F1 against the truth's label, and how many frames of
each kind each selection passes.

Two mixes of shots: the simulator's default (25 % empty: hits are most frames) and a sparse
one nearer a real SPI run (:data:`SPARSE`: 85 % empty), fixed before anything was measured:
the lit-pixel rule's threshold comes from the frames of its window, and works only where
most of them are empty.

No setting is chosen here: the model, its thresholds and the window are the built-in ones,
K = 3 and the sparse mix are fixed in advance (not tuned), so every seed is held out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import h5py
import numpy as np

from spidarknet.api import detect, load_model, open_frames
from spidarknet.core.defaults import DETECT_CHUNK_FRAMES, LABEL_RANGE_NM as SIZE_WINDOW
from spidarknet.detection.local import lit_pixel_pass, lit_pixels
from spidarknet.frames.euxfel import values_file
from spidarknet.preprocess import Preprocessor
from spidarknet.simulate import simulate_file
from spidarknet.simulate.agipd import AgipdRunSettings, simulate_agipd_run

KINDS = ("single", "multiple", "empty", "aggregate", "droplet", "tiny")
LIT_K = 3.0
#: a sparse mix of shots, nearer a real run's hit rate
SPARSE = {"empty": 0.85, "single": 0.06, "multiple": 0.03, "aggregate": 0.02, "droplet": 0.01, "tiny": 0.03}
MIXES = {"default": None, "sparse": SPARSE}


@dataclass
class Selection:
    """One selection's figures on one regime."""

    name: str
    selected: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray

    def row(self) -> dict:
        tp = int(np.count_nonzero(self.selected & self.labels))
        fp = int(np.count_nonzero(self.selected & ~self.labels))
        fn = int(np.count_nonzero(~self.selected & self.labels))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        passed = {k: int(np.count_nonzero(self.selected & (self.kinds == k))) for k in KINDS}
        total = {k: int(np.count_nonzero(self.kinds == k)) for k in KINDS}
        return {"selection": self.name, "precision": p, "recall": r, "f1": f1, "selected": int(self.selected.sum()),
                "passed": passed, "frames": total}


@dataclass
class Regime:
    name: str
    path: str
    rows: list = field(default_factory=list)
    seconds: float = 0.0


def _truth(path: str, keys) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(values_file(path), "r") as handle:
        labels = handle["truth/label"][()].astype(bool)
        kinds = np.array([k.decode() if isinstance(k, bytes) else k for k in handle["truth/kind"][()]])
    index = np.array([k.index for k in keys])
    return labels[index], kinds[index]


def lit_pixel_flags(frames, model, k: float = LIT_K) -> np.ndarray:
    """The lit-pixel rule's decision per frame (in key order), on the region the model reads."""
    return lit_pixel_counts(frames, model, k)[2]


def lit_pixel_counts(frames, model, k: float = LIT_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lit-pixel rule on the region the model reads, window by window as ``detect
    --prefilter-litpixels K`` reads them (up to ``DETECT_CHUNK_FRAMES`` frames of one train):
    (frame indices, lit pixels per frame, passed) in key order."""
    pre = Preprocessor(model.preprocessing)
    indices, counts, flags = [], [], []
    for chunk in frames.chunks(DETECT_CHUNK_FRAMES, roi=pre.roi):
        indices.append(chunk.indices)
        counts.append(lit_pixels(chunk))
        flags.append(lit_pixel_pass(chunk, k))
    return np.concatenate(indices), np.concatenate(counts), np.concatenate(flags)


def judge_regime(regime: Regime, frames, with_lit: bool) -> None:
    """Score ``frames`` with the built-in model, alone and with the size window (and the lit-pixel rule)."""
    t0 = time.perf_counter()
    model = load_model()
    network = detect(frames, model, jobs=1)
    labels, kinds = _truth(regime.path, network.keys)
    regime.rows.append(Selection("network at its threshold", network.hits, labels, kinds).row())
    window = detect(frames, load_model(), size_range=SIZE_WINDOW, jobs=1)
    regime.rows.append(Selection("network + size window 60-75 nm", window.hits, labels, kinds).row())
    if with_lit:
        lit = lit_pixel_flags(frames, model)
        regime.rows.append(Selection(f"lit-pixel hit finder (k = {LIT_K:g})", lit, labels, kinds).row())
        both = lit & window.hits
        regime.rows.append(Selection("lit-pixel prefilter + network + size window", both, labels, kinds).row())
    regime.seconds = time.perf_counter() - t0


def run_regimes(work: str, seed: int, count: int, photons: float, mix: str = "default") -> list[Regime]:
    """Simulate the pnCCD file and the AGIPD run of ``seed`` (reused when present) and judge both."""
    os.makedirs(work, exist_ok=True)
    cxi = os.path.join(work, f"pnccd-{mix}-s{seed}.cxi")
    run = os.path.join(work, f"agipd-{mix}-s{seed}")
    if not os.path.exists(cxi):
        simulate_file(cxi, count, seed=seed, photons=photons, fractions=MIXES[mix])
    if not os.path.exists(run):
        simulate_agipd_run(run, count, seed=seed, run=AgipdRunSettings(), photons=photons, fractions=MIXES[mix])
    pnccd = Regime(f"pnCCD (1.7 keV, 0.125 m), {mix} mix", cxi)
    agipd = Regime(f"AGIPD 1M (6 keV, 0.705 m), {mix} mix", run)
    judge_regime(pnccd, open_frames(cxi), with_lit=True)
    judge_regime(agipd, open_frames(run, adu_per_photon=6.0), with_lit=True)
    return [pnccd, agipd]


def markdown(regimes: list[Regime], seed: int, count: int, photons: float) -> str:
    lines = [f"Seed {seed}, {count} frames per regime, median labelled single {photons:g} photons "
             "(held out: nothing was chosen on it).", "",
             "| regime | selection | selected | precision | recall | F1 | " + " | ".join(KINDS) + " |",
             "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in KINDS) + " |"]
    for regime in regimes:
        for row in regime.rows:
            kinds = " | ".join(f"{row['passed'][k]}/{row['frames'][k]}" for k in KINDS)
            lines.append(f"| {regime.name} | {row['selection']} | {row['selected']} | {row['precision']:.3f} | "
                         f"{row['recall']:.3f} | {row['f1']:.3f} | {kinds} |")
    return "\n".join(lines) + "\n"
