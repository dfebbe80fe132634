"""Judge a selection by the 3D structure it gives: truth intensities, alignment, shell correlations.

A reconstruction (Dragonfly's EMC, see :mod:`spidarknet.reconstruct.run`) is a 3D intensity on a
cubic voxel grid ``n × n × n`` with q = 0 at index ``n // 2`` and one voxel step worth
``q_per_voxel_inv_nm`` (nm⁻¹).  Volume axes ``(0, 1, 2)`` are ``(q_x, q_y, q_z)``, the
simulator's convention: ``x`` along the detector's columns, ``y`` along its rows, ``z`` along
the beam.  Everything in q here is in nm⁻¹ (``q = 4π sin θ / λ``), sizes in nm.

The three steps of judging
--------------------------
* :func:`truth_intensity` — the model particle's normalised ``|A(q)|²`` (``A(0) = 1``) on
  the reconstruction's grid.  Spheres analytically; icosahedra by the exact (analytic)
  form factor of a polyhedron (:func:`icosahedron_amplitude`, divergence theorem twice:
  a sum over the 60 edges of the 20 faces), in the simulator's standard orientation
  (face normals :data:`spidarknet.simulate.physics.ICOSAHEDRON_FACE_NORMALS`, sizes as
  volume-equivalent sphere diameters).  A size spread (``sizes_nm``) averages the intensity
  over the sizes, each weighted by its scattering power ``n_e² ∝ D⁶`` (what EMC's
  photon-weighted average of the frames gives).
* :func:`align` — EMC leaves the orientation of its volume arbitrary: a coarse search over
  a uniform sample of rotations on a few shells, then a local refinement, maximising the
  mean per-shell Pearson correlation with the reference; returns the rotated volume.
* :func:`shell_correlation` and :func:`resolution` — per shell of ``shell_width`` voxels,
  the Pearson correlation of the two intensities over the voxels valid in both (valid:
  finite and > 0; Dragonfly leaves voxels no pixel reached at exactly 0, and some tools
  write -1), and the first q where it falls below a threshold.  Beside it the per-shell
  *contrast* (the share of the truth's anisotropy the reconstruction reproduces): a Pearson
  correlation is blind to what adds the same to every orientation — exactly what 30 %
  multiples do to an EMC average — and the contrast is not, so selections judged against
  the truth are ranked by it (:func:`rank`).

Conventions (stated once, used everywhere)
------------------------------------------
* Shell ``k`` holds the voxels with ``(k - 1/2) w ≤ |q|/Δq < (k + 1/2) w`` (``w`` =
  ``shell_width`` in voxels, ``Δq`` = ``q_per_voxel``); its q is ``k w Δq``.
* Resolution: the q (nm⁻¹) where the per-shell figure first drops below the threshold
  (default 0.5), linearly interpolated between the last shell above and the first below,
  scanning outwards from the first well-measured shell that reaches the threshold (shells
  at the beam stop's edge are often poorly measured); quoted as the full period
  ``d = 2π / q`` (nm; the Bragg spacing; the half-period is ``π / q``).  When it never
  drops, the resolution is the last shell's (a bound: ``reached_edge``).
* Spheres: a sphere's intensity is constant on a shell, so a per-shell Pearson correlation
  over the shell's voxels is undefined.  For spheres the per-shell figure is the Pearson
  correlation of the two *radial profiles* (``log`` of the shell means on quarter-voxel
  bins) over a band of ``± band`` shells around the shell (``method = "radial-band"``): it
  is 1 where the fringes sit at the same q with the same depth, whatever the scale.
* Half sets (measured data): the selection split into even and odd frames, each half
  reconstructed, half 2 aligned to half 1; the figure is their shell correlation, the
  resolution quoted at 0.5.  It measures the consistency of half the data; the full set's
  correlation with the (unknown) truth is not this number (for a noise-limited shell
  ``CC_full ≈ sqrt(2 CC_half / (1 + CC_half))``, not applied here).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.simulate.physics import (ICOSAHEDRON_FACE_NORMALS, _ICOSAHEDRON_INRADIUS_PER_EDGE,
                                         icosahedron_edge_m, sphere_amplitude)

log = logging.getLogger(__name__)

SHAPES = ("sphere", "icosahedron")
#: the per-shell threshold of the resolution
DEFAULT_THRESHOLD = 0.5
#: at most this many representative sizes for an icosahedron's size average
MAX_SIZE_SAMPLES = 4
#: the first shell (voxels from q = 0) a resolution scan and a ranking look at
MIN_SHELL = 3


# -- the icosahedron's form factor -----------------------------------------------------------------

def icosahedron_faces(diameter_nm: float) -> np.ndarray:
    """The 20 triangular faces (20 x 3 x 3, nm) of the simulator's icosahedron, centred at 0.

    Each face's vertices run anticlockwise seen from outside (along its outward normal).
    The body is ``|n·r| ≤ r_in`` for the ten normals ``n`` of
    :data:`~spidarknet.simulate.physics.ICOSAHEDRON_FACE_NORMALS`, ``r_in`` the in-radius of
    the icosahedron whose volume equals a sphere of ``diameter_nm``.
    """
    r_in = icosahedron_edge_m(diameter_nm * 1e-9) * 1e9 * _ICOSAHEDRON_INRADIUS_PER_EDGE
    normals = np.vstack([ICOSAHEDRON_FACE_NORMALS, -ICOSAHEDRON_FACE_NORMALS])
    vertices = []
    for i, j, k in combinations(range(len(normals)), 3):
        m = normals[[i, j, k]]
        if abs(np.linalg.det(m)) < 1e-6:
            continue
        v = np.linalg.solve(m, np.full(3, r_in))
        if np.all(normals @ v <= r_in * (1 + 1e-9)) and not any(np.allclose(v, w) for w in vertices):
            vertices.append(v)
    vertices = np.array(vertices)
    if len(vertices) != 12:
        raise RuntimeError(f"the icosahedron came out with {len(vertices)} vertices, not 12")
    faces = []
    for n in normals:
        on = vertices[np.abs(vertices @ n - r_in) < 1e-9 * r_in]
        centre = on.mean(axis=0)
        u = on[0] - centre
        u /= np.linalg.norm(u)
        w = np.cross(n, u)
        angle = np.arctan2((on - centre) @ w, (on - centre) @ u)
        faces.append(on[np.argsort(angle)])
    return np.array(faces)


def icosahedron_amplitude(q_inv_nm: np.ndarray, diameter_nm: float, *, chunk: int = 1 << 18) -> np.ndarray:
    """Normalised form factor amplitude ``A(q)`` (``A(0) = 1``, real) of the uniform icosahedron
    of volume-equivalent ``diameter_nm`` in the simulator's standard orientation.

    ``q_inv_nm``: (..., 3) scattering vectors (nm⁻¹).  Exact for the polyhedron: with the
    divergence theorem ``∫_V e^{-iq·r} dV = (i/q²) Σ_f (q·n_f) ∫_f e^{-iq·r} dS`` and, inside
    each face, again ``∫_f e^{-iq·r} dS = (i/q_t²) Σ_e (q·m_e) L_e e^{-iq·c_e} sinc(q·(b-a)/2)``
    (``q_t`` the part of q in the face's plane, ``m_e`` the edge's outward in-plane normal,
    ``c_e`` its midpoint, ``a → b`` its ends).  Where ``|q_t| L < 1e-3`` a face's integral is
    taken as ``area · e^{-iq·centroid}`` (error ~1e-7), and ``A = 1`` where ``|q| R < 1e-6``.
    """
    q = np.asarray(q_inv_nm, dtype=np.float64)
    shape = q.shape[:-1]
    q = q.reshape(-1, 3)
    faces = icosahedron_faces(diameter_nm)
    volume = math.pi / 6.0 * diameter_nm ** 3
    radius = float(np.max(np.linalg.norm(faces.reshape(-1, 3), axis=1)))
    # per face: normal, area, centroid; per edge: a -> b, midpoint, length, outward normal
    normals = np.cross(faces[:, 1] - faces[:, 0], faces[:, 2] - faces[:, 0])
    areas = 0.5 * np.linalg.norm(normals, axis=1)
    normals /= (2.0 * areas)[:, None]
    centroids = faces.mean(axis=1)
    starts = faces
    ends = np.roll(faces, -1, axis=1)
    half_edges = 0.5 * (ends - starts)                           # (20, 3, 3)
    mids = 0.5 * (ends + starts)
    lengths = np.linalg.norm(ends - starts, axis=2)               # (20, 3)
    edge_normals = np.cross(ends - starts, normals[:, None, :]) / lengths[..., None]
    edge_max = float(lengths.max())
    # the body is centrosymmetric: face f + 10 is face f mirrored, and its term is the complex
    # conjugate of face f's, so the sum over 20 faces is twice the real part over 10
    half = len(faces) // 2
    if not np.allclose(faces[half:].mean(axis=1), -centroids[:half]):
        raise RuntimeError("the icosahedron's faces are not in antipodal pairs")
    # per face one (3, 9) matrix: q·m_e, q·(b-a)/2, q·c_e for its three edges at once
    mats = [np.concatenate([edge_normals[f].T, half_edges[f].T, mids[f].T], axis=1) for f in range(half)]
    out = np.empty(len(q))
    for lo in range(0, len(q), chunk):
        qc = q[lo:lo + chunk]
        q2 = np.einsum("ij,ij->i", qc, qc)
        total = np.zeros(len(qc))
        for f in range(half):
            qn = qc @ normals[f]
            qt2 = np.maximum(q2 - qn * qn, 0.0)
            small = qt2 * edge_max ** 2 < 1e-6
            p = qc @ mats[f]
            qm, x, phase = p[:, 0:3], p[:, 3:6], p[:, 6:9]
            with np.errstate(divide="ignore", invalid="ignore"):
                sinc = np.where(np.abs(x) < 1e-8, 1.0, np.sin(x) / x)
                edges = (qm * lengths[f] * sinc * np.cos(phase)).sum(axis=1)
                # Re[(i/q²) qn (i/qt²) Σ_e ...] = -qn Σ_e (q·m) L sinc cos(q·c) / (q² qt²)
                term = -qn * edges / qt2
            # Re[(i/q²) qn · area e^{-iq·c}] = qn area sin(q·c) / q² for q_t → 0
            term[small] = (qn * areas[f] * np.sin(qc @ centroids[f]))[small]
            total += term
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = 2.0 * total / q2 / volume
        amp[q2 * radius ** 2 < 1e-12] = 1.0
        out[lo:lo + chunk] = amp
    return out.reshape(shape)


# -- truth on a voxel grid -------------------------------------------------------------------------

def voxel_q(n: int, q_per_voxel_inv_nm: float) -> np.ndarray:
    """The (n, n, n, 3) q vectors (nm⁻¹) of the voxels, q = 0 at index ``n // 2``."""
    axis = (np.arange(n) - n // 2) * float(q_per_voxel_inv_nm)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def _size_samples(diameter_nm: float, sizes_nm, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Representative sizes and weights (∝ D⁶, normalised): all sizes, or ``limit`` quantile
    bins of them (each at its D⁶-weighted mean size)."""
    if sizes_nm is None:
        return np.array([float(diameter_nm)]), np.array([1.0])
    sizes = np.sort(np.asarray(sizes_nm, dtype=np.float64).ravel())
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if sizes.size == 0:
        raise InputError("sizes_nm holds no positive size; give the selection's particle diameters in nm")
    weights = sizes ** 6
    if limit is not None and sizes.size > limit:
        parts = np.array_split(np.arange(sizes.size), limit)
        reps = np.array([np.sum(sizes[p] * weights[p]) / np.sum(weights[p]) for p in parts])
        weights = np.array([np.sum(weights[p]) for p in parts])
        sizes = reps
    return sizes, weights / weights.sum()


def truth_values(shape: str, diameter_nm: float, q_inv_nm: np.ndarray, *,
                 sizes_nm: Sequence[float] | None = None) -> np.ndarray:
    """The model particle's normalised intensity ``|A(q)|²`` at the (..., 3) vectors
    ``q_inv_nm`` (nm⁻¹), standard orientation; sizes as in :func:`truth_intensity`."""
    if shape not in SHAPES:
        raise ConfigError(f"unknown particle shape {shape!r}; use one of {', '.join(SHAPES)}")
    q = np.asarray(q_inv_nm, dtype=np.float64)
    out = np.zeros(q.shape[:-1])
    if shape == "sphere":
        qm = np.linalg.norm(q, axis=-1) * 1e9
        for d, w in zip(*_size_samples(diameter_nm, sizes_nm, None)):
            out += w * sphere_amplitude(qm, d * 1e-9) ** 2
        return out
    for d, w in zip(*_size_samples(diameter_nm, sizes_nm, MAX_SIZE_SAMPLES)):
        out += w * icosahedron_amplitude(q, d) ** 2
    return out


def truth_intensity(shape: str, diameter_nm: float, n: int, q_per_voxel_inv_nm: float, *,
                    sizes_nm: Sequence[float] | None = None, rotation: np.ndarray | None = None,
                    r_max_voxels: float | None = None) -> np.ndarray:
    """The model particle's normalised intensity ``|A(q)|²`` (float64, n × n × n, 1 at q = 0).

    ``shape``: "sphere" or "icosahedron" (volume-equivalent ``diameter_nm``, the simulator's
    standard orientation); ``n`` voxels a side, q = 0 at index ``n // 2``, axes (q_x, q_y,
    q_z); ``q_per_voxel_inv_nm``: |q| of one voxel step (nm⁻¹).  ``sizes_nm``: the true
    diameters of the selection's particles; the intensity is then averaged over them, each
    weighted by ``D⁶`` (spheres exactly, icosahedra over at most :data:`MAX_SIZE_SAMPLES`
    quantile bins).  ``rotation`` (3x3): the intensity of the body rotated by it,
    ``I(Rᵀq)`` — the truth in the frame of a volume :func:`align` found rotated by ``R``.
    ``r_max_voxels``: only voxels within this radius are computed, the rest are 0 (the
    icosahedron costs ~1 s per 100,000 voxels and size; Friedel's law halves that).
    """
    if shape not in SHAPES:
        raise ConfigError(f"unknown particle shape {shape!r}; use one of {', '.join(SHAPES)}")
    if not (diameter_nm > 0 and q_per_voxel_inv_nm > 0 and int(n) >= 3):
        raise ConfigError("truth_intensity needs diameter_nm > 0, q_per_voxel_inv_nm > 0 and n ≥ 3")
    n = int(n)
    c = n // 2
    axis = np.arange(n) - c
    r2 = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    if shape == "sphere":
        # exact: |q|² = Δq² (i² + j² + k²) takes at most 3 (n/2)² + 1 values, evaluated once each
        table_q = np.sqrt(np.arange(int(r2.max()) + 1)) * float(q_per_voxel_inv_nm)
        table = truth_values("sphere", diameter_nm, np.stack([table_q, 0 * table_q, 0 * table_q], -1),
                             sizes_nm=sizes_nm)
        out = table[r2]
        if r_max_voxels is not None:
            out[r2 > r_max_voxels ** 2] = 0.0
        return out
    inside = np.ones(r2.shape, dtype=bool) if r_max_voxels is None else r2 <= r_max_voxels ** 2
    offsets = np.argwhere(inside) - c                        # (m, 3) voxel offsets from q = 0
    mirror = c - offsets                                     # index of -offset
    has_mirror = np.all((mirror >= 0) & (mirror < n), axis=1)
    key = offsets[:, 2] * (4 * n * n) + offsets[:, 1] * (2 * n) + offsets[:, 0]
    primary = (key >= 0) | ~has_mirror                       # I(q) = I(-q): one of each pair
    q = offsets[primary] * float(q_per_voxel_inv_nm)
    if rotation is not None:
        q = q @ np.asarray(rotation, dtype=np.float64)      # rows Rᵀ q
    values = truth_values("icosahedron", diameter_nm, q, sizes_nm=sizes_nm)
    out = np.zeros((n, n, n))
    p = offsets[primary] + c
    out[p[:, 0], p[:, 1], p[:, 2]] = values
    both = has_mirror[primary]
    m = mirror[primary][both]
    out[m[:, 0], m[:, 1], m[:, 2]] = values[both]
    return out


# -- valid voxels, shells --------------------------------------------------------------------------

def valid_voxels(volume: np.ndarray) -> np.ndarray:
    """Voxels that hold a measurement: finite and > 0 (Dragonfly leaves voxels no pixel
    reached at 0; some tools write -1; a NaN marks voxels :func:`align` rotated in from
    outside the measured volume)."""
    v = np.asarray(volume)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v > 0)


def _check_cube(volume: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(volume, dtype=np.float64)
    if v.ndim != 3 or len(set(v.shape)) != 1:
        raise InputError(f"{what} must be a cubic n x n x n volume, got shape {v.shape}")
    return v


def _radius_voxels(n: int) -> np.ndarray:
    axis = np.arange(n) - n // 2
    return np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else float("nan")


@dataclass
class ShellCorrelation:
    """Per-shell figures of two volumes (see the module notes for the definitions)."""

    q_inv_nm: np.ndarray        # shell centres
    cc: np.ndarray              # per-shell figure (NaN: too few voxels)
    n_voxels: np.ndarray        # voxels valid in both volumes
    shell_width: float          # voxels
    method: str                 # "pearson" or "radial-band"
    band: int = 0               # radial-band: shells each side
    contrast: np.ndarray | None = None   # pearson: the share of b's anisotropy a reproduces

    def at(self, q_inv_nm: float) -> float:
        """The figure of the shell holding ``q_inv_nm`` (NaN outside)."""
        if len(self.q_inv_nm) < 2:
            return float("nan")
        step = self.q_inv_nm[1] - self.q_inv_nm[0]
        k = int(round((q_inv_nm - self.q_inv_nm[0]) / step))
        return float(self.cc[k]) if 0 <= k < len(self.cc) else float("nan")

    def contrast_at(self, q_inv_nm: float) -> float:
        if self.contrast is None or len(self.q_inv_nm) < 2:
            return float("nan")
        k = int(round((q_inv_nm - self.q_inv_nm[0]) / (self.q_inv_nm[1] - self.q_inv_nm[0])))
        return float(self.contrast[k]) if 0 <= k < len(self.contrast) else float("nan")

    def rows(self) -> list[dict]:
        contrast = self.contrast if self.contrast is not None else np.full(len(self.cc), np.nan)
        return [{"q_inv_nm": float(q), "d_nm": 2 * math.pi / q if q > 0 else float("inf"),
                 "cc": float(c), "contrast": float(k), "n_voxels": int(m)}
                for q, c, k, m in zip(self.q_inv_nm, self.cc, contrast, self.n_voxels)]


def shell_correlation(a: np.ndarray, b: np.ndarray, q_per_voxel_inv_nm: float, shell_width: float = 1.0, *,
                      method: str = "pearson", band: int = 2, min_voxels: int = 10) -> ShellCorrelation:
    """Per resolution shell, how well two intensities on the same grid agree.

    Shell ``k``: voxels with ``(k - ½) w ≤ r < (k + ½) w`` (``r = |q|/Δq`` in voxels, ``w =
    shell_width``), at ``q = k w Δq`` (nm⁻¹).  Only voxels valid in both (:func:`valid_voxels`).
    ``method``: "pearson" — the Pearson correlation of the shell's voxels (NaN below
    ``min_voxels``), and beside it the *contrast*: the regression slope of ``a`` on ``b`` in
    units of the shell means, ``cov(a, b) / var(b) · mean(b) / mean(a)`` = CC × (relative
    spread of ``a``) / (relative spread of ``b``): the share of ``b``'s anisotropy that ``a``
    reproduces (1: all of it).  Noise in ``a`` leaves it unbiased (it raises CC's denominator,
    not this slope); a contamination that adds the same to every orientation, blurring and
    misalignment lower it, which the Pearson correlation, blind to offsets, does not see;
    "radial-band" — for spherically symmetric intensities: the Pearson
    correlation of the two log radial profiles (shell means on quarter-shell bins) over the
    bins within ``± band`` shells of shell ``k`` that are ≥ 90 % measured (NaN where fewer
    than 4 bins are).
    """
    a = _check_cube(a, "the first volume")
    b = _check_cube(b, "the second volume")
    if a.shape != b.shape:
        raise InputError(f"the volumes differ in shape ({a.shape} and {b.shape}); put them on one grid first")
    if not shell_width > 0:
        raise ConfigError(f"shell_width must be > 0 voxels, got {shell_width}")
    if method not in ("pearson", "radial-band"):
        raise ConfigError(f"unknown method {method!r}; use 'pearson' or 'radial-band'")
    r = _radius_voxels(a.shape[0]) / shell_width
    both = valid_voxels(a) & valid_voxels(b)
    shells = np.rint(r).astype(np.int64)
    n_shells = int(shells.max()) + 1
    q = np.arange(n_shells) * shell_width * float(q_per_voxel_inv_nm)
    counts = np.bincount(shells[both], minlength=n_shells)
    if method == "pearson":
        cc, contrast = _shell_pearson(a[both], b[both], shells[both], counts, min_voxels)
        return ShellCorrelation(q, cc, counts, float(shell_width), method, contrast=contrast)
    cc = _radial_band(a, b, r, both, counts, band)
    return ShellCorrelation(q, cc, counts, float(shell_width), method, int(band))


def _shell_pearson(a: np.ndarray, b: np.ndarray, shells: np.ndarray, counts: np.ndarray,
                   min_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shell, the Pearson correlation of the valid voxels ``a``, ``b`` (shell index of each in
    ``shells``) and the contrast of ``a`` against ``b``; NaN for shells under ``min_voxels``."""
    n_shells = len(counts)
    order = np.argsort(shells, kind="stable")
    sa, sb = a[order], b[order]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    cc = np.full(n_shells, np.nan)
    contrast = np.full(n_shells, np.nan)
    for k in range(n_shells):
        if counts[k] >= min_voxels:
            x, y = sa[bounds[k]:bounds[k + 1]], sb[bounds[k]:bounds[k + 1]]
            cc[k] = _pearson(x, y)
            var = float(np.var(y))
            if var > 0:
                contrast[k] = float(np.mean((x - x.mean()) * (y - y.mean()))) / var * y.mean() / x.mean()
    return cc, contrast


def _radial_band(a: np.ndarray, b: np.ndarray, r: np.ndarray, both: np.ndarray, counts: np.ndarray,
                 band: int) -> np.ndarray:
    """Per shell, the Pearson correlation of the two log radial profiles (quarter-shell bins)
    over the mostly measured bins within ``± band`` shells; ``r`` is each voxel's radius in shells."""
    n_shells = len(counts)
    cc = np.full(n_shells, np.nan)
    fine_all = np.floor(r * 4.0 + 2.0).astype(np.int64)      # quarter-shell bins, bin 4k+2 centred on shell k
    fine = fine_all[both]
    n_fine = 4 * n_shells + 4
    m = np.bincount(fine, minlength=n_fine)
    total = np.bincount(fine_all.ravel(), minlength=n_fine)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = np.log(np.bincount(fine, weights=a[both], minlength=n_fine) / m)
        pb = np.log(np.bincount(fine, weights=b[both], minlength=n_fine) / m)
    # bins mostly measured only: at the beam stop's edge a few voxels hold what a few pixels gave
    ok = (m >= 0.9 * total) & (m > 0) & np.isfinite(pa) & np.isfinite(pb)
    for k in range(n_shells):
        lo, hi = max(0, 4 * (k - band)), min(n_fine, 4 * (k + band) + 5)
        sel = np.flatnonzero(ok[lo:hi]) + lo
        if sel.size >= 4 and counts[k] > 0:
            cc[k] = _pearson(pa[sel], pb[sel])
    return cc


@dataclass
class Resolution:
    """Where a per-shell figure first drops below ``threshold`` (see the module notes)."""

    q_inv_nm: float             # nm⁻¹ (NaN: no shell reaches the threshold)
    threshold: float
    reached_edge: bool          # never dropped: q is the last shell with data (a bound)
    start_q_inv_nm: float = float("nan")   # the shell the scan started from

    @property
    def d_nm(self) -> float:
        """Full-period resolution 2π/q (nm)."""
        return 2 * math.pi / self.q_inv_nm if self.q_inv_nm > 0 else float("nan")

    def text(self) -> str:
        if not math.isfinite(self.q_inv_nm):
            return f"none (no shell reaches CC {self.threshold:g})"
        bound = "beyond " if self.reached_edge else ""
        return (f"{bound}q = {self.q_inv_nm:.3f} nm⁻¹ (d = 2π/q = {self.d_nm:.1f} nm) "
                f"at CC {self.threshold:g}")


def resolution(q_inv_nm: np.ndarray, cc: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
               q_min_inv_nm: float = 0.0) -> Resolution:
    """The q where ``cc`` first falls below ``threshold``, scanning outwards from the first
    shell at or above ``q_min_inv_nm`` whose figure reaches the threshold (the shells next to
    the beam stop are often poorly measured: low ones below the threshold before the curve
    first reaches it are passed over); linear between the last shell at or above and the
    first below.  Shells without data (NaN) are skipped.  No shell reaching the threshold:
    q is NaN."""
    q = np.asarray(q_inv_nm, dtype=np.float64)
    c = np.asarray(cc, dtype=np.float64)
    use = np.flatnonzero(np.isfinite(c) & (q >= q_min_inv_nm))
    above = use[c[use] >= threshold]
    if above.size == 0:
        return Resolution(float("nan"), float(threshold), False)
    use = use[use >= above[0]]
    prev = None
    for k in use:
        if c[k] < threshold:
            t = (c[prev] - threshold) / (c[prev] - c[k])
            return Resolution(float(q[prev] + t * (q[k] - q[prev])), float(threshold), False, float(q[above[0]]))
        prev = k
    return Resolution(float(q[use[-1]]), float(threshold), True, float(q[above[0]]))


# -- rotations and alignment -----------------------------------------------------------------------

def uniform_rotations(count: int) -> np.ndarray:
    """``count`` rotation matrices (count x 3 x 3) spread evenly over SO(3): the
    super-Fibonacci spiral of unit quaternions (Alexa, CVPR 2022), deterministic."""
    s = np.arange(count) + 0.5
    phi, psi = math.sqrt(2.0), 1.533751168755204288118041
    r, big = np.sqrt(s / count), np.sqrt(1.0 - s / count)
    alpha, beta = 2 * math.pi * s / phi, 2 * math.pi * s / psi
    quats = np.stack([r * np.sin(alpha), r * np.cos(alpha), big * np.sin(beta), big * np.cos(beta)], axis=1)
    return quaternions_to_matrices(quats)


def quaternions_to_matrices(quats: np.ndarray) -> np.ndarray:
    q = np.asarray(quats, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_from_vector(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``v`` (axis × angle in radians), Rodrigues."""
    v = np.asarray(v, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (degrees) of the rotation taking ``b`` to ``a`` (``a bᵀ``)."""
    c = (np.trace(np.asarray(a) @ np.asarray(b).T) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def icosahedral_group() -> np.ndarray:
    """The 60 rotations (60 x 3 x 3) that map the simulator's icosahedron onto itself."""
    vertices = np.unique(np.round(icosahedron_faces(1.0).reshape(-1, 3), 12), axis=0)
    axis = vertices[0] / np.linalg.norm(vertices[0])
    generators = [np.diag([-1.0, -1.0, 1.0]),                      # two-fold about z
                  np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),      # three-fold about (1,1,1)
                  rotation_from_vector(axis * 2 * math.pi / 5)]      # five-fold about a vertex
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        fresh = []
        for g in frontier:
            for h in generators:
                m = h @ g
                if not any(np.allclose(m, k, atol=1e-9) for k in group):
                    group.append(m)
                    fresh.append(m)
        frontier = fresh
    if len(group) != 60:
        raise RuntimeError(f"the icosahedral group came out with {len(group)} elements, not 60")
    return np.array(group)


def _sphere_points(count: int) -> np.ndarray:
    """``count`` unit vectors evenly on the sphere (Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    rho = np.sqrt(1.0 - z * z)
    t = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.stack([rho * np.cos(t), rho * np.sin(t), z], axis=1)


def _with_nan(volume: np.ndarray) -> np.ndarray:
    v = np.array(volume, dtype=np.float64)
    v[~valid_voxels(v)] = np.nan
    return v


class _ShellSampler:
    """Points on a few shells (voxel units), the reference's values there, and a batched
    mean-over-shells Pearson correlation of a volume sampled at rotated points."""

    def __init__(self, reference, radii: Sequence[float], density: float, centre: int):
        from scipy.ndimage import map_coordinates

        self._map = map_coordinates
        self.centre = centre
        self.radii = list(radii)
        pts, ids = [], []
        for s, r in enumerate(self.radii):
            count = max(64, int(density * 4 * math.pi * r * r))
            pts.append(_sphere_points(count) * r)
            ids.append(np.full(count, s))
        self.points = np.vstack(pts)
        self.shell = np.concatenate(ids)
        if callable(reference):
            self.ref = np.asarray(reference(self.points), dtype=np.float64)
        else:
            self.ref = self.sample(reference, np.eye(3)[None])[0]

    def sample(self, volume: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """(n_rot, n_points) trilinear values of ``volume`` at ``R p`` (NaN where a corner is
        not valid)."""
        coords = np.einsum("rij,pj->rpi", rotations, self.points) + self.centre
        flat = coords.reshape(-1, 3).T
        values = self._map(volume, flat, order=1, mode="constant", cval=np.nan, prefilter=False)
        return values.reshape(len(rotations), len(self.points))

    def score(self, values: np.ndarray) -> np.ndarray:
        """Mean over shells of the Pearson correlation with the reference (n_rot,)."""
        out = np.zeros(len(values))
        used = np.zeros(len(values))
        for s in range(len(self.radii)):
            cols = self.shell == s
            v = values[:, cols]
            t = np.broadcast_to(self.ref[cols], v.shape)
            ok = np.isfinite(v) & np.isfinite(t)
            n = ok.sum(axis=1)
            v0 = np.where(ok, v, 0.0)
            t0 = np.where(ok, t, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mv = v0.sum(1) / n
                mt = t0.sum(1) / n
                dv = np.where(ok, v0 - mv[:, None], 0.0)
                dt = np.where(ok, t0 - mt[:, None], 0.0)
                cc = (dv * dt).sum(1) / np.sqrt((dv * dv).sum(1) * (dt * dt).sum(1))
            good = (n >= 16) & np.isfinite(cc)
            out[good] += cc[good]
            used[good] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(used > 0, out / used, -np.inf)


@dataclass
class Alignment:
    """What :func:`align` found: ``rotated(q) = recon(R q)`` ≈ the reference."""

    rotated: np.ndarray         # the reconstruction rotated onto the reference (NaN: unmeasured)
    rotation: np.ndarray        # R (3 x 3)
    score: float                # mean per-shell correlation on the alignment shells
    coarse_score: float
    seconds: float
    n_rotations: int

    def line(self) -> str:
        return (f"aligned: mean shell correlation {self.score:.3f} (coarse {self.coarse_score:.3f}, "
                f"{self.n_rotations} rotations) in {self.seconds:.1f} s")


def _alignment_radii(n: int, q_per_voxel: float, q_range, count: int) -> np.ndarray:
    lo, hi = (float(v) / q_per_voxel for v in q_range)
    hi = min(hi, n // 2 - 1.5)
    lo = max(lo, 1.5)
    if not hi > lo:
        raise ConfigError(f"the alignment q range {tuple(q_range)} nm⁻¹ holds no shell of this "
                          f"{n}³ volume (q per voxel {q_per_voxel:.4g} nm⁻¹)")
    return np.linspace(lo, hi, count)


def align(recon: np.ndarray, truth, q_per_voxel_inv_nm: float, q_range: Sequence[float], *,
          n_rotations: int = 3000, coarse_shells: int = 3, fine_shells: int = 6, candidates: int = 4,
          rotate_volume: bool = True) -> Alignment:
    """Rotate ``recon`` onto ``truth`` (same grid): ``R`` maximising the mean per-shell Pearson
    correlation between ``recon(R q)`` and ``truth(q)`` on shells in ``q_range`` (nm⁻¹; pick
    the range of good signal: past the beam stop, before the noise).

    Coarse: ``n_rotations`` rotations spread evenly over SO(3) (3000: ≈ 9° apart; a body with
    icosahedral symmetry has 60 equivalent answers, so the nearest lies ≈ 2° away), scored
    on ``coarse_shells`` shells in the lower half of the range, ~0.5 points per voxel².
    Refinement: from the ``candidates`` best, Nelder-Mead on a rotation vector over
    ``fine_shells`` shells across the whole range, 1 point per voxel².  Friedel symmetry
    makes proper rotations enough (a mirror of an intensity is a rotation of it).
    ``truth``: a volume on the same grid, or a function of (m, 3) points in voxels (offsets
    from q = 0) giving the reference there (an analytic truth: no interpolation on its side).
    Trilinear interpolation of ``recon``; the rotated volume has NaN where a corner voxel is
    unmeasured.
    """
    from scipy.optimize import minimize

    t0 = time.perf_counter()
    recon = _check_cube(recon, "the reconstruction")
    n = recon.shape[0]
    if callable(truth):
        ref = truth
    else:
        truth = _check_cube(truth, "the reference volume")
        if recon.shape != truth.shape:
            raise InputError(f"the reconstruction ({recon.shape}) and the reference ({truth.shape}) must share one grid")
        ref = _with_nan(truth)
    rec = _with_nan(recon)
    radii = _alignment_radii(n, q_per_voxel_inv_nm, q_range, fine_shells)
    coarse_radii = np.linspace(radii[0], radii[0] + 0.5 * (radii[-1] - radii[0]), coarse_shells)
    coarse = _ShellSampler(ref, coarse_radii, density=0.5, centre=n // 2)
    rotations = uniform_rotations(int(n_rotations))
    scores = np.concatenate([coarse.score(coarse.sample(rec, rotations[i:i + 256]))
                             for i in range(0, len(rotations), 256)])
    best = np.argsort(scores)[::-1][:max(1, candidates)]
    fine = _ShellSampler(ref, radii, density=1.0, centre=n // 2)

    def cost(v, base):
        return -float(fine.score(fine.sample(rec, (base @ rotation_from_vector(v))[None]))[0])

    found = []
    for k in best:
        base = rotations[k]
        res = minimize(cost, np.zeros(3), args=(base,), method="Nelder-Mead",
                       options={"initial_simplex": np.vstack([np.zeros(3), 0.08 * np.eye(3)]),
                                "xatol": 2e-3, "fatol": 1e-5, "maxiter": 300})
        found.append((-res.fun, base @ rotation_from_vector(res.x)))
    score, rotation = max(found, key=lambda item: item[0])
    rotated = rotate(recon, rotation) if rotate_volume else recon
    seconds = time.perf_counter() - t0
    log.info("alignment: coarse %.3f, refined %.3f, %.1f s", scores[best[0]], score, seconds)
    return Alignment(rotated, rotation, float(score), float(scores[best[0]]), seconds, int(n_rotations))


def rotate(volume: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``out(q) = volume(R q)`` on the same grid (trilinear; NaN where a corner is unmeasured)."""
    from scipy.ndimage import map_coordinates

    v = _with_nan(_check_cube(volume, "the volume"))
    n = v.shape[0]
    axis = np.arange(n, dtype=np.float64) - n // 2
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    coords = grid @ np.asarray(rotation, dtype=np.float64).T + n // 2
    out = map_coordinates(v, coords.T, order=1, mode="constant", cval=np.nan, prefilter=False)
    return out.reshape(v.shape)


# -- reading reconstructions and truth -------------------------------------------------------------

def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(intensity, q_per_voxel_inv_nm) of a reconstruction folder or its ``intensity.h5``.

    Through :func:`spidarknet.reconstruct.run.read_intensity` where that module is installed;
    otherwise from the folder contract: ``intensity.h5`` with dataset ``/intensity`` (n³) and
    attribute ``q_per_voxel_inv_nm``.
    """
    try:
        from spidarknet.reconstruct.run import read_intensity
    except ImportError:
        read_intensity = None
    if read_intensity is not None:
        volume, dq = read_intensity(path)
        return np.asarray(volume, dtype=np.float64), float(dq)
    from spidarknet.frames.source import open_h5, reading

    p = Path(path)
    h5 = p / "intensity.h5" if p.is_dir() else p
    if not h5.is_file():
        raise InputError(f"{path}: no intensity.h5 there; give a folder written by 'spidarknet reconstruct'")
    with open_h5(str(h5)) as f:
        if "intensity" not in f:
            raise InputError(f"{h5} has no /intensity dataset; is it a 'spidarknet reconstruct' output?")
        with reading(h5, "/intensity", "is it a 'spidarknet reconstruct' output?"):
            volume = f["intensity"][()]
            dq = f["intensity"].attrs.get("q_per_voxel_inv_nm", f.attrs.get("q_per_voxel_inv_nm"))
    if dq is None:
        raise InputError(f"{h5}: /intensity has no q_per_voxel_inv_nm attribute; rewrite it with 'spidarknet reconstruct'")
    return _check_cube(volume, str(h5)), float(dq)


@dataclass
class TruthModel:
    """The particle a simulated selection should give: ``shape``, nominal ``diameter_nm``
    and, when known, the true diameters of the selection's particles (``sizes_nm``)."""

    shape: str
    diameter_nm: float
    sizes_nm: np.ndarray | None = None
    source: str = ""

    def intensity(self, n: int, q_per_voxel_inv_nm: float, rotation: np.ndarray | None = None,
                  r_max_voxels: float | None = None) -> np.ndarray:
        return truth_intensity(self.shape, self.diameter_nm, n, q_per_voxel_inv_nm,
                               sizes_nm=self.sizes_nm, rotation=rotation, r_max_voxels=r_max_voxels)

    def values(self, q_inv_nm: np.ndarray) -> np.ndarray:
        """The intensity at (..., 3) vectors (nm⁻¹), standard orientation."""
        return truth_values(self.shape, self.diameter_nm, q_inv_nm, sizes_nm=self.sizes_nm)

    def text(self) -> str:
        if self.sizes_nm is not None and len(self.sizes_nm):
            s = np.asarray(self.sizes_nm)
            return (f"{self.shape} {s.min():.1f}-{s.max():.1f} nm ({len(s)} sizes"
                    f"{', ' + self.source if self.source else ''})")
        return f"{self.shape} {self.diameter_nm:.1f} nm"


def truth_from_simulation(path: str | os.PathLike, indices: Sequence[int] | None = None) -> TruthModel:
    """The model particle of a file written by ``spidarknet simulate --particle-shape
    sphere|icosahedron``: its shape from ``/truth``'s settings and the true diameters of the
    single hits among ``indices`` (frames of that file; None: the size range's spread,
    sampled evenly)."""
    from spidarknet.frames.source import open_h5, reading

    with open_h5(str(path)) as f:
        if "truth" not in f or "settings_json" not in f["truth"].attrs:
            raise InputError(f"{path} holds no simulator truth (/truth with settings_json); give the "
                             "CXI file 'spidarknet simulate' wrote")
        with reading(path, "the simulator truth", "give the CXI file 'spidarknet simulate' wrote"):
            settings = json.loads(f["truth"].attrs["settings_json"])
            t = f["truth"]
            kind = np.array([k.decode() if isinstance(k, bytes) else str(k) for k in t["kind"][()]])
            diameters = t["diameter_nm"][()].astype(np.float64)
    shape = settings.get("particle_shape", "mixed")
    if shape not in SHAPES:
        raise InputError(f"{path} is a {shape!r} sample (spheres and icosahedra): it has no single "
                         "truth structure; simulate with --particle-shape sphere or icosahedron")
    lo, hi = settings.get("size_range_nm", (55.0, 80.0))
    if indices is None:
        sizes = np.linspace(lo, hi, 16)
        return TruthModel(shape, float(0.5 * (lo + hi)), sizes, "the size range")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(kind)):
        raise InputError(f"frame indices outside {path}'s {len(kind)} frames")
    singles = idx[kind[idx] == "single"]
    if singles.size == 0:
        sizes = np.linspace(lo, hi, 16)
        return TruthModel(shape, float(0.5 * (lo + hi)), sizes, "no single hit selected: the size range")
    sizes = diameters[singles]
    return TruthModel(shape, float(np.mean(sizes)), sizes, "the selection's single hits")


# -- judging ---------------------------------------------------------------------------------------

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
    "radial-band" figure (module notes), no alignment.  The resolution scans from the first
    well-measured shell (:func:`measured_range`).
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
    set's agreement with the truth (see the module notes).
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
