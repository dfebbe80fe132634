"""A reconstruction judged: against the truth of a simulated selection
(:func:`judge_selection`) or its other half (:func:`judge_halves`), and judgements ranked."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.judge.structure.alignment import Alignment, align
from spidarknet.judge.structure.grid import _check_cube, _radius_voxels, read_volume, valid_voxels
from spidarknet.judge.structure.model import TruthModel, truth_from_simulation
from spidarknet.judge.structure.shells import (DEFAULT_THRESHOLD, Resolution, ShellCorrelation, resolution,
                                               shell_correlation)

#: the first shell (voxels from q = 0) a resolution scan and a ranking look at
MIN_SHELL = 3


def measured_range(volume: np.ndarray, q_per_voxel_inv_nm: float) -> tuple[float, float]:
    """(q_lo, q_hi) nm⁻¹: from the first shell with ≥ 90 % of its voxels measured (past
    the beam stop), and at least :data:`MIN_SHELL` voxels out (the shells within hold under
    ~100 voxels, too few for a correlation), to the last with ≥ 50 % (the detector's edge)."""
    v = _check_cube(volume, "the volume")
    shells = np.rint(_radius_voxels(v.shape[0])).astype(np.int64)
    total = np.bincount(shells.ravel())
    valid = np.bincount(shells[valid_voxels(v)], minlength=len(total))
    frac = valid / np.maximum(total, 1)
    good = np.flatnonzero(frac >= 0.9)
    good = good[good >= MIN_SHELL]
    edge = np.flatnonzero(frac >= 0.5)
    if good.size == 0 or edge.size == 0:
        raise InputError("the reconstruction has no well-measured shell (≥ 90 % of voxels > 0); "
                         "is it empty? rerun 'spidarknet reconstruct' with more frames")
    return float(good[0] * q_per_voxel_inv_nm), float(edge[-1] * q_per_voxel_inv_nm)


def default_alignment_range(q_lo: float, q_hi: float) -> tuple[float, float]:
    """The shells the alignment works on: from q_lo over the inner 60 % of the measured range."""
    return q_lo, q_lo + 0.6 * (q_hi - q_lo)


@dataclass
class StructureJudgement:
    """A reconstruction judged against a reference (the truth, or the other half set)."""

    name: str
    folder: str
    reference: str              # what it was compared with
    shells: ShellCorrelation
    resolution: Resolution
    q_measured_inv_nm: tuple    # (q_lo, q_hi) of the well-measured shells
    alignment: dict = field(default_factory=dict)   # score, seconds, rotation (empty: none)
    n_frames: int | None = None
    note: str = ""

    def q_range(self) -> tuple[float, float]:
        """The shells the means are taken over: from where the resolution scan starts (the
        first well-measured shell that reaches the threshold; else the first well-measured
        one) to the last well-measured one."""
        lo, hi = self.q_measured_inv_nm
        start = self.resolution.start_q_inv_nm
        return (max(lo, start) if math.isfinite(start) else lo), hi

    def _mean(self, values, q_lo, q_hi) -> float:
        if values is None:
            return float("nan")
        own = self.q_range()
        lo = own[0] if q_lo is None else q_lo
        hi = own[1] if q_hi is None else q_hi
        q = self.shells.q_inv_nm
        use = (q >= lo - 1e-12) & (q <= hi + 1e-12) & np.isfinite(values)
        return float(np.mean(values[use])) if use.any() else float("nan")

    def figure(self, q_lo: float | None = None, q_hi: float | None = None) -> float:
        """Mean per-shell figure (CC) over [q_lo, q_hi] (default: :meth:`q_range`)."""
        return self._mean(self.shells.cc, q_lo, q_hi)

    def contrast(self, q_lo: float | None = None, q_hi: float | None = None) -> float:
        """Mean per-shell contrast (Pearson mode; NaN otherwise) over [q_lo, q_hi]."""
        return self._mean(self.shells.contrast, q_lo, q_hi)

    def rank_figure(self, q_lo: float | None = None, q_hi: float | None = None) -> float:
        """What :func:`rank` sorts by: against the truth in Pearson mode the mean contrast
        (it sees contamination and blurring, and noise does not raise it), otherwise the
        mean per-shell figure."""
        if self.shells.method == "pearson" and self.reference.startswith("truth"):
            return self.contrast(q_lo, q_hi)
        return self.figure(q_lo, q_hi)

    def line(self) -> str:
        frames = f"{self.n_frames} frames, " if self.n_frames is not None else ""
        what = "CC" if self.shells.method == "pearson" else "radial-band CC"
        lo, hi = self.q_range()
        contrast = self.contrast()
        extra = (f", contrast {contrast:.3f}" if math.isfinite(contrast) and self.reference.startswith("truth")
                 else "")
        return (f"{self.name}: {frames}{what} vs {self.reference}: mean {self.figure():.3f}{extra} over "
                f"q {lo:.3f}-{hi:.3f} nm⁻¹; resolution {self.resolution.text()}")

    def to_dict(self) -> dict:
        return {"name": self.name, "folder": self.folder, "reference": self.reference,
                "n_frames": self.n_frames, "method": self.shells.method, "band_shells": self.shells.band,
                "shell_width_voxels": self.shells.shell_width,
                "q_measured_inv_nm": list(self.q_measured_inv_nm), "q_mean_range_inv_nm": list(self.q_range()),
                "mean_cc": self.figure(), "mean_contrast": self.contrast(),
                "resolution": {"q_inv_nm": self.resolution.q_inv_nm, "d_nm": self.resolution.d_nm,
                               "convention": "d = 2π/q (full period)",
                               "threshold": self.resolution.threshold,
                               "reached_edge": self.resolution.reached_edge,
                               "scan_from_q_inv_nm": self.resolution.start_q_inv_nm},
                "alignment": self.alignment, "note": self.note, "shells": self.shells.rows(),
                "summary": self.line()}


def _alignment_dict(al: Alignment) -> dict:
    return {"score": al.score, "coarse_score": al.coarse_score, "seconds": al.seconds,
            "n_rotations": al.n_rotations, "rotation": al.rotation.tolist()}


def judge_selection(recon_folder: str | os.PathLike, truth: TruthModel | str | os.PathLike, *,
                    name: str | None = None, q_range: Sequence[float] | None = None,
                    shell_width: float = 1.0, threshold: float = DEFAULT_THRESHOLD, band: int = 2,
                    n_frames: int | None = None) -> StructureJudgement:
    """A simulated selection's reconstruction against the truth intensity of its particle.

    ``truth``: a :class:`TruthModel`, or the simulated CXI file (its size range's spread).
    Icosahedra: the truth in its standard orientation is aligned onto the reconstruction
    (:func:`align` over ``q_range``, default :func:`default_alignment_range`), then computed
    exactly in the found orientation, and the per-shell Pearson correlation taken with the
    reconstruction as it is (no interpolation of the measured volume).  Spheres: the
    "radial-band" figure (see :mod:`spidarknet.judge.structure`), no alignment.  The
    resolution scans from the first well-measured shell (:func:`measured_range`).
    """
    if not isinstance(truth, TruthModel):
        truth = truth_from_simulation(truth)
    volume, dq = read_volume(recon_folder)
    n = volume.shape[0]
    q_lo, q_hi = measured_range(volume, dq)
    alignment = {}
    r_max = q_hi / dq + band + 2.0          # beyond the measured shells nothing is compared
    if truth.shape == "sphere":
        reference = truth.intensity(n, dq, r_max_voxels=r_max)
        shells = shell_correlation(volume, reference, dq, shell_width, method="radial-band", band=band)
    else:
        al = align(volume, lambda p: truth.values(p * dq), dq, q_range or default_alignment_range(q_lo, q_hi),
                   rotate_volume=False)
        # recon(R q) ≈ truth(q), so in the reconstruction's frame the truth is I(Rᵀ q)
        reference = truth.intensity(n, dq, rotation=al.rotation, r_max_voxels=r_max)
        shells = shell_correlation(volume, reference, dq, shell_width, method="pearson")
        alignment = _alignment_dict(al)
    res = resolution(shells.q_inv_nm, shells.cc, threshold, q_min_inv_nm=q_lo)
    return StructureJudgement(name or Path(recon_folder).name, str(recon_folder), f"truth ({truth.text()})",
                              shells, res, (q_lo, q_hi), alignment, n_frames)


def judge_halves(recon_folder: str | os.PathLike, *, name: str | None = None, method: str = "pearson",
                 q_range: Sequence[float] | None = None, shell_width: float = 1.0,
                 threshold: float = DEFAULT_THRESHOLD, band: int = 2,
                 n_frames: int | None = None) -> StructureJudgement:
    """Measured data: half 1 against half 2 of a reconstruction made with ``halves=True``
    (sub-folders ``half1/`` and ``half2/``).

    Half 2 is aligned onto half 1 (:func:`align`, no symmetry assumed) and rotated
    (trilinear), then the per-shell figure taken (``method``: "pearson"; "radial-band" for
    spherical particles, whose halves then need no alignment); resolution at ``threshold``
    (0.5).  A half-set correlation measures the consistency of half the data, not the full
    set's agreement with the truth (see :mod:`spidarknet.judge.structure`).
    """
    folder = Path(recon_folder)
    halves = [folder / "half1", folder / "half2"]
    missing = [str(h) for h in halves if not h.is_dir()]
    if missing:
        raise InputError(f"{folder} has no {' and '.join(Path(m).name for m in missing)}; "
                         "reconstruct with --halves to judge measured data by its half sets")
    a, dqa = read_volume(halves[0])
    b, dqb = read_volume(halves[1])
    if a.shape != b.shape or not math.isclose(dqa, dqb, rel_tol=1e-6):
        raise InputError(f"{folder}: half1 and half2 lie on different grids; reconstruct both with one setting")
    q_lo, q_hi = measured_range(a, dqa)
    alignment = {}
    if method == "pearson":
        al = align(b, a, dqa, q_range or default_alignment_range(q_lo, q_hi))
        b = al.rotated
        alignment = _alignment_dict(al)
    shells = shell_correlation(a, b, dqa, shell_width, method=method, band=band)
    res = resolution(shells.q_inv_nm, shells.cc, threshold, q_min_inv_nm=q_lo)
    return StructureJudgement(name or folder.name, str(folder), "its other half (half1 vs half2)", shells, res,
                              (q_lo, q_hi), alignment, n_frames,
                              note="half-set correlation: consistency of half the frames, not the full "
                                   "set's correlation with the truth")


def rank(judgements: Sequence[StructureJudgement]) -> list[int]:
    """Indices of ``judgements``, best structure first, by :meth:`StructureJudgement.rank_figure`
    over the shells all of them measured (:func:`common_range`), ties by resolution."""
    lo, hi = common_range(judgements)
    scores = [j.rank_figure(lo, hi) for j in judgements]
    return sorted(range(len(judgements)),
                  key=lambda i: (-(scores[i] if math.isfinite(scores[i]) else -np.inf),
                                 -(judgements[i].resolution.q_inv_nm
                                   if math.isfinite(judgements[i].resolution.q_inv_nm) else 0.0)))


def common_range(judgements: Sequence[StructureJudgement]) -> tuple[float, float]:
    """The shells every judgement's means cover (:meth:`StructureJudgement.q_range`); where
    they share none, the union."""
    ranges = [j.q_range() for j in judgements]
    lo = max(r[0] for r in ranges)
    hi = min(r[1] for r in ranges)
    return (lo, hi) if hi > lo else (min(r[0] for r in ranges), max(r[1] for r in ranges))
