"""An icosahedron's pattern in place of the sphere's, for fits near a size window's edges.

Where the beam sits in or near a dead detector half, the sphere model fits an icosahedron
better with its centre pulled into the dead half and a diameter 1-2 nm off (measured-like
development files): near a window's edge that decides the frame.  There the fit is made
again with the pattern of a regular icosahedron (volume-equivalent diameter, as the
simulator's): its projection's Fourier transform for each of a fixed set of orientations
(:data:`ICOSAHEDRON_ORIENTATIONS`, uniform over SO(3), worked out once per process at one
diameter; another diameter is the same pattern with q scaled), sampled at each pixel's
transverse q, times the pixel weight.  Each orientation is scored at the sphere's diameter
and centre; the best :data:`ICOSAHEDRON_REFINED` are fitted over diameter and centre
(Nelder-Mead on the Poisson likelihood, the scale and flat background fitted inside, the
file's stray light as the sphere fit laid it).  The icosahedron's diameter and centre
replace the sphere's where its likelihood is better by :data:`ICOSAHEDRON_MIN_GAIN`.
The pattern is sampled at the pixels' centres: fits of coarse pixels (``subpixels`` > 1)
keep the sphere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy.optimize import minimize

from spidarknet.simulate.physics import (_dft_size, icosahedron_circumradius_m, icosahedron_thickness_m,
                                         random_rotation)
from spidarknet.sizing.formfactor import _Optics, pixel_weight
from spidarknet.sizing.region import _FitPixels

#: orientations tried (uniform over SO(3); the icosahedron's 60 rotations make each one count 60 times)
ICOSAHEDRON_ORIENTATIONS = 200
#: the best-scoring orientations fitted over diameter and centre
ICOSAHEDRON_REFINED = 3
#: then the best one's orientation is turned by each of these angles (degrees) about random axes
ICOSAHEDRON_TURN_DEG = (8.0, 4.0, 2.0)
#: ... this many times each, the best kept
ICOSAHEDRON_TURNS = 12
#: fits whose sphere diameter lies within this of a size window's edge are refined (nm)
ICOSAHEDRON_EDGE_NM = 3.0
#: log-likelihood gain over the sphere needed to take the icosahedron's answer
ICOSAHEDRON_MIN_GAIN = 10.0
#: the diameter and real-space step of the orientations' projections (m)
_TEMPLATE_DIAMETER_M = 70e-9
_GRID_STEP_M = 0.8e-9
#: the orientations' seed (the same set in every process)
_ORIENTATION_SEED = 9401


@dataclass
class IcosahedronFit:
    """The best icosahedron: volume-equivalent diameter (nm), beam centre, Poisson
    negative log-likelihood, and the sphere's on the same pixels and background."""

    diameter_nm: float
    centre_xy: tuple[float, float]
    nll: float
    sphere_nll: float

    @property
    def gain(self) -> float:
        return self.sphere_nll - self.nll


def near_window_edge(diameter_nm: float, window_nm) -> bool:
    """Whether a fitted diameter lies within :data:`ICOSAHEDRON_EDGE_NM` of a window's edge."""
    if window_nm is None or not math.isfinite(diameter_nm):
        return False
    return min(abs(diameter_nm - window_nm[0]), abs(diameter_nm - window_nm[1])) <= ICOSAHEDRON_EDGE_NM


def _grid() -> tuple[int, int, np.ndarray]:
    """(n, m, coordinates): the projections' DFT size, half-width in cells and cell centres (m)."""
    radius = icosahedron_circumradius_m(_TEMPLATE_DIAMETER_M)
    m = int(math.ceil(radius / _GRID_STEP_M)) + 2
    return _dft_size(6.0 * radius / _GRID_STEP_M), m, np.arange(-m, m + 1) * _GRID_STEP_M


def _spectrum(rotation: np.ndarray) -> np.ndarray:
    """One orientation's projected amplitude (real, centred n x n float32, unit sum) at
    :data:`_TEMPLATE_DIAMETER_M`."""
    n, m, coords = _grid()
    thick = icosahedron_thickness_m(coords[None, :], coords[:, None], _TEMPLATE_DIAMETER_M, rotation)
    grid = np.zeros((n, n), np.float32)
    idx = np.arange(-m, m + 1) % n
    grid[np.ix_(idx, idx)] = thick / thick.sum()
    spectrum = cv2.dft(grid, flags=cv2.DFT_COMPLEX_OUTPUT)[..., 0]   # centrosymmetric: real
    return np.ascontiguousarray(np.fft.fftshift(spectrum), dtype=np.float32)


def _q_step() -> float:
    return 2.0 * math.pi / (_grid()[0] * _GRID_STEP_M)


@lru_cache(maxsize=1)
def _orientations() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(rotation, spectrum) of the orientations tried first; once per process."""
    rng = np.random.default_rng(_ORIENTATION_SEED)
    rotations = [random_rotation(rng) for _ in range(ICOSAHEDRON_ORIENTATIONS)]
    return tuple((r, _spectrum(r)) for r in rotations)


def _turned(rotation: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """``rotation`` followed by a turn of ``angle`` (rad) about a random axis (Rodrigues)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    turn = np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)
    return turn @ rotation


class _Pattern:
    """Pixel geometry for the templates about one centre: transverse q and weight (kept for
    the last centre asked)."""

    def __init__(self, pixels: _FitPixels, optics: _Optics):
        self.pixels, self.optics = pixels, optics
        self._key = None

    def terms(self, centre) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (float(centre[0]), float(centre[1]))
        if key != self._key:
            x, y = self.pixels.offsets(key)
            x, y = x.astype(np.float64), y.astype(np.float64)
            r = np.sqrt(x * x + y * y)
            q_over_r = self.optics.q_inv_m(r) / np.maximum(r, 1e-9)
            self._terms = (x * q_over_r, y * q_over_r, pixel_weight(r * self.optics.pixel_m, self.optics.distance_m))
            self._key = key
        return self._terms

    def icosahedron(self, spectrum: np.ndarray, dq: float, centre, d_m: float) -> np.ndarray:
        """w |A|² of one orientation's template at every pixel (per unit scale)."""
        qx, qy, w = self.terms(centre)
        n, width = spectrum.shape[0], 1024
        count = len(qx)
        rows = -(-count // width)
        scale = d_m / _TEMPLATE_DIAMETER_M / dq
        mx = np.zeros(rows * width, np.float32)
        my = np.zeros(rows * width, np.float32)
        mx[:count] = qx * scale + n // 2
        my[:count] = qy * scale + n // 2
        amp = cv2.remap(spectrum, mx.reshape(rows, width), my.reshape(rows, width), cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_CONSTANT).ravel()[:count].astype(np.float64)
        return w * amp * amp

    def sphere(self, centre, d_m: float) -> np.ndarray:
        x, y = self.pixels.offsets(centre)
        return self.optics.shape(np.hypot(x.astype(np.float64), y.astype(np.float64)), d_m)


def _scaled_nll(template: np.ndarray, fixed: np.ndarray, pixels: _FitPixels, steps: int = 30) -> float:
    """min over a > 0, b ≥ 0 of the Poisson negative log-likelihood of μ = a t + b + fixed
    (Newton steps kept inside the bounds)."""
    lit, counts = pixels.lit, pixels.counts
    t_lit, f_lit = template[lit], fixed[lit]
    t_sum, n, f_sum = float(template.sum()), len(template), float(fixed.sum())
    a, b = max(float(counts.sum()) - f_sum, 1.0) / max(t_sum, 1e-30) * 0.8, 1e-3
    for _ in range(steps):
        ratio = counts / (a * t_lit + b + f_lit)
        r2 = ratio / (a * t_lit + b + f_lit)
        grad = np.array([t_sum - ratio @ t_lit, n - ratio.sum()])
        h12 = float(r2 @ t_lit)
        hess = np.array([[float(r2 @ (t_lit * t_lit)), h12], [h12, float(r2.sum())]]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        shrink = 1.0
        while (a - shrink * step[0] <= 0 or b - shrink * step[1] < 0) and shrink > 1e-6:
            shrink *= 0.5
        new_a, new_b = max(a - shrink * step[0], 1e-30), max(b - shrink * step[1], 0.0)
        done = abs(new_a - a) < 1e-7 * a and abs(new_b - b) < 1e-9 + 1e-7 * b
        a, b = new_a, new_b
        if done:
            break
    mu = a * t_lit + b + f_lit
    return float(a * t_sum + b * n + f_sum - counts @ np.log(mu))


def _fitted(model, fixed: np.ndarray, pixels: _FitPixels, start) -> tuple[np.ndarray, float]:
    """(diameter nm, cx, cy) minimising the likelihood of ``model(centre, d_m)`` from ``start``."""
    def nll(p):
        d_nm, cx, cy = p
        if not 0.5 * start[0] < d_nm < 1.5 * start[0]:
            return 1e30
        return _scaled_nll(model((cx, cy), d_nm * 1e-9), fixed, pixels)

    start = np.asarray(start, dtype=np.float64)
    simplex = start + np.array([[0, 0, 0], [1.0, 0, 0], [0, 0.7, 0], [0, 0, 0.7]])
    found = minimize(nll, start, method="Nelder-Mead",
                     options={"xatol": 0.01, "fatol": 0.01, "initial_simplex": simplex})
    return found.x, float(found.fun)


def fit_icosahedron(pixels: _FitPixels, optics: _Optics, diameter_m: float, centre_xy,
                    fixed: np.ndarray | None = None) -> IcosahedronFit:
    """The best icosahedron of one frame's pixels, from the sphere's ``diameter_m`` and
    ``centre_xy`` (module notes); ``fixed``: the stray light on each pixel (photons), None
    for none.  The sphere's likelihood is fitted again here on the same terms."""
    fixed = np.zeros(pixels.n_pixels) if fixed is None else np.asarray(fixed, dtype=np.float64)
    pattern = _Pattern(pixels, optics)
    start = (diameter_m * 1e9, float(centre_xy[0]), float(centre_xy[1]))
    sphere, sphere_nll = _fitted(pattern.sphere, fixed, pixels, start)
    dq, tried = _q_step(), _orientations()
    centre, d_m = (sphere[1], sphere[2]), sphere[0] * 1e-9
    scores = [_scaled_nll(pattern.icosahedron(sp, dq, centre, d_m), fixed, pixels) for _, sp in tried]
    best = None
    for k in np.argsort(scores)[:ICOSAHEDRON_REFINED]:
        found = _fitted(lambda c, d, sp=tried[k][1]: pattern.icosahedron(sp, dq, c, d), fixed, pixels, sphere)
        if best is None or found[1] < best[1]:
            best = found + (tried[k][0],)
    params, nll, rotation = best
    rotation, better = _turned_best(pattern, fixed, pixels, params, nll, rotation)
    if better:
        params, nll = _fitted(lambda c, d, sp=_spectrum(rotation): pattern.icosahedron(sp, dq, c, d), fixed, pixels,
                              params)
    d_nm, cx, cy = params
    return IcosahedronFit(float(d_nm), (float(cx), float(cy)), nll, sphere_nll)


def _turned_best(pattern: "_Pattern", fixed: np.ndarray, pixels: _FitPixels, params, nll: float,
                 rotation: np.ndarray) -> tuple[np.ndarray, bool]:
    """The orientation near ``rotation`` of the least likelihood at ``params`` (diameter nm,
    centre): :data:`ICOSAHEDRON_TURNS` random turns of each of :data:`ICOSAHEDRON_TURN_DEG`,
    the best taken after each size; and whether it beat ``nll``."""
    rng = np.random.default_rng(_ORIENTATION_SEED)
    dq, start = _q_step(), nll
    for degrees in ICOSAHEDRON_TURN_DEG:
        for _ in range(ICOSAHEDRON_TURNS):
            turned = _turned(rotation, math.radians(degrees), rng)
            value = _scaled_nll(pattern.icosahedron(_spectrum(turned), dq, params[1:], params[0] * 1e-9), fixed, pixels)
            if value < nll:
                rotation, nll = turned, value
    return rotation, nll < start
