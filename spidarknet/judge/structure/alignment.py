"""Aligning a reconstruction (whose orientation EMC leaves arbitrary) onto a reference:
:func:`align` (coarse search, then refinement) and :func:`rotate`."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.judge.structure.grid import _check_cube, valid_voxels
from spidarknet.judge.structure.rotations import rotation_from_vector, uniform_rotations

log = logging.getLogger(__name__)


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
