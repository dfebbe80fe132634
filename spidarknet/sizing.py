"""Particle size per frame: a Poisson fit of a sphere, its beam centre and its uncertainty.

For each frame (photon counts, with its usable-pixel mask and the file's geometry):

1. **Pixels.**  The fit region is fixed first: the usable pixels whose q, seen from the
   beam centre the file states, lies in ``q_min_inv_nm``-``q_max_inv_nm`` (the mask
   removes the beam stop, the gap and, on a pnCCD with one half dead as in the 2018 PR772
   run, that half).  Every likelihood below is one of these same pixels' photons.
2. **q.**  ``q = 4π sin(θ)/λ`` with ``2θ = atan(ρ/D)``, ρ the distance in metres of a
   pixel from the beam centre and D the detector distance (SI units throughout; printed
   in nm⁻¹).
3. **Model.**  Expected photons of pixel j: ``μ_j = a w_j |F(q_j; d)|² + b`` with the
   sphere form factor ``F = 3 (sin x − x cos x) / x³``, ``x = q d / 2``, the pixel weight
   ``w_j = (D/L)³ (1 − ½ sin² 2θ)`` (solid angle relative to the beam centre times the
   azimuthal mean of the polarisation factor), a free scale ``a ≥ 0`` and a flat
   background ``b ≥ 0`` photons/pixel.  The counts are Poisson: the log-likelihood is
   ``Σ_j C_j log μ_j − Σ_j μ_j``.  ``|F|²`` is taken at the pixel centre when a pixel spans
   at most ``SUBPIXEL_FRINGE_SHARE`` of the fringe period ``2π/d`` at ``d_max_nm`` (a
   pnCCD's 75 µm at 125 mm); binned frames (150, 300 µm) average it over s × s points of
   each pixel (:func:`subpixels_for`: s = 2, 4), and the grid search below uses rings
   narrower than such pixels and a ring model averaged over the pixel area.
4. **Search.**  For every beam centre on a grid (``centre_step_px``) within
   ``centre_search_px`` of the file's (both in pnCCD pixels of 75 µm, a distance on the
   detector: :func:`centre_search_in_pixels`) and every diameter of a grid (``d_min_nm`` …
   ``d_max_nm``, every ``coarse_step_nm``), ``a`` and ``b`` maximise the likelihood of the
   ring sums (the sufficient statistic of a round pattern about that centre); the best
   centre and diameter start Fisher scoring of the per-pixel likelihood over all five
   parameters (a, b, d and the centre x, y): ``scipy.optimize.minimize``'s trust-exact
   method with the Fisher information as the Hessian.  No fringe detection gates the fit: a round
   pattern fixes its own centre on whatever part of the detector works, one half included.
5. **Uncertainty.**  ``diameter_err_nm`` is the 1σ error of the diameter: from the inverse
   Fisher information ``Σ_j ∇μ_j ∇μ_jᵀ / μ_j`` of all five parameters (the curvature of the
   log-likelihood, its correlation with the centre included), and in quadrature a shape
   term ``SHAPE_ERROR_PER_ROOT_MISFIT · d · √misfit`` for patterns that a sphere does not
   quite explain (icosahedra: their fringe positions depend on the orientation by ~0.7 %).

``fit_quality`` is the reduced Pearson χ² of the ring sums about the fitted centre,
``Σ_k (C_k − μ_k)² / μ_k / (N − 5)`` over the N rings fitted: about 1 when a sphere
explains the pattern to within the Poisson noise, larger for worse fits; smaller is better.
It grows with the photons for any misfit; ``misfit``, the same Pearson χ² in excess of its
degrees of freedom per signal photon, does not: about the signal-weighted mean square
relative deviation of the ring profile from the sphere, ≈ 0 (± √(2N)/signal) for a sphere,
0.05-0.4 for a single icosahedron, larger for several particles or clusters.  A size window
(:func:`select_size_window`) drops fits above ``SIZE_WINDOW_MAX_MISFIT``.

What is measured is the diameter of the sphere whose fringes match (the fringe-equivalent
sphere).  For a sphere that is its diameter; for a regular icosahedron it is
``ICOSAHEDRON_SPHERE_DIAMETER_RATIO`` (0.998) times the diameter of the sphere of equal
volume, to ±0.7 % with the orientation.  That ratio (the median) and the shape term (so
that ±1σ covers the error of 68 % of the icosahedra; then 72 % of the spheres) were
calibrated once by ``tools/sizing_bench.py --calibrate``: 175 simulated icosahedra with
≥ 500 photons on the half detector, beam jitter σ = 5 px, seeds 5001-5004.

**A second particle.**  Two particles ``d`` apart across the beam scatter one particle's
pattern times fringes ``1 + γ cos(q·d)``, which ring sums average away.  After the fit,
:func:`second_particle_z` scores such fringes in the pixels' residual for every ``d`` at
once (an FFT): ``second_particle_z``, in σ, ≈ 3 for one particle whatever its photons, and
a size window drops fits above :func:`second_particle_cut` (5 on dim frames, more on bright
ones, whose not-quite-spherical particles leave a residual growing with their photons).

A fit fails, with a reason and an empty diameter, only when the frame carries no size:
when the fit region holds no usable pixels; when the fitted sphere holds fewer than
``min_signal_photons`` photons (empty shots); or when the best diameter is the edge of
the range searched (a particle outside it).  Failures are results too: nothing is dropped.

Public API: :class:`SizingSettings`, :func:`radial_profile`, :func:`ring_q_inv_m`,
:func:`fit_sphere`, :func:`size_frame`, :func:`estimate_sizes`, :func:`write_sizes_csv`,
:func:`read_sizes`, :func:`sizes_for`, :func:`select_size_window`.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from spidarknet.core.defaults import SIZE_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import atomic_path
from spidarknet.core.pool import Pool, Result, Stop, core_count
from spidarknet.frames.source import FileInfo, FrameKey, FrameSource, Geometry

#: first zero of the sphere amplitude, x = q R (tan x = x)
SPHERE_FIRST_ZERO_X = 4.493409457909064

#: fringe-equivalent sphere diameter of a regular icosahedron over its volume-equivalent
#: diameter (the sphere fit's measure of an icosahedron; see the module notes)
ICOSAHEDRON_SPHERE_DIAMETER_RATIO = 0.998
#: the shape term of the diameter error, per diameter and per √misfit (module notes)
SHAPE_ERROR_PER_ROOT_MISFIT = 0.025
#: a size window (``select --size-range``) drops fits whose misfit is above this
SIZE_WINDOW_MAX_MISFIT = 0.5
#: the search for a second particle (:func:`second_particle_z`) starts this many fitted
#: diameters from the origin of the residual's Patterson map: one particle's own
#: autocorrelation reaches its largest width (a regular icosahedron's circumscribed
#: diameter, 1.18 times its volume-equivalent one), and the mask's edges spread it further
#: (chosen on the science benchmark's development files: at 25,000 photons single
#: icosahedra reached z 7.1 from 1.25 diameters, 4.8 from 1.5)
SECOND_PARTICLE_MIN_SEPARATION = 1.5
#: a size window drops fits whose evidence for a second particle is above this (σ) on a dim
#: frame.  For a single particle ``z²`` is the largest of some 10⁴ independent exponential
#: variables of mean 1 (median z ≈ 3.2, and z > 5 about once in 10⁶ frames)
SIZE_WINDOW_MAX_SECOND_PARTICLE_Z = 5.0
#: ... widened on bright frames by this times √(signal photons), in quadrature: a particle
#: that is not quite a sphere leaves a residual that grows with its photons (single
#: icosahedra on the development files: z up to 5.1 at 25,000 photons, 6.7 at 100,000,
#: where the cut is 6.4 and 9.3; multiples there gave 11-60 and 37-240)
SECOND_PARTICLE_Z_PER_ROOT_PHOTON = 0.025


def second_particle_cut(signal_photons) -> np.ndarray:
    """The ``second_particle_z`` above which a size window drops a fit of that many signal
    photons: ``hypot(SIZE_WINDOW_MAX_SECOND_PARTICLE_Z, SECOND_PARTICLE_Z_PER_ROOT_PHOTON √N)``."""
    n = np.maximum(np.nan_to_num(np.asarray(signal_photons, dtype=np.float64)), 0.0)
    return np.hypot(SIZE_WINDOW_MAX_SECOND_PARTICLE_Z, SECOND_PARTICLE_Z_PER_ROOT_PHOTON * np.sqrt(n))

SIZE_COLUMNS = ["file", "dataset", "index", "diameter_nm", "diameter_err_nm", "fit_quality", "misfit",
                "second_particle_z", "ok", "reason", "signal_photons", "background_photons_per_pixel", "centre_x_px",
                "centre_y_px"]


@dataclass
class SizingSettings:
    """How sizes are estimated (defaults suit a pnCCD at 1.7 keV and 125 mm)."""

    d_min_nm: float = 30.0            # smallest diameter searched
    d_max_nm: float = 150.0           # largest diameter searched
    coarse_step_nm: float = 0.5       # grid step of the global search
    q_min_inv_nm: float = 0.0         # fit pixels from this q (the mask usually decides)
    q_max_inv_nm: float = 1.0         # ... up to this q (≈ 195 px on the simulated pnCCD)
    bin_px: float = 1.0               # ring width of the grid search and of the profiles
    min_ring_fraction: float = 0.2    # profiles shown (report): rings at least this usable
    min_signal_photons: float = 100.0  # fitted sphere photons needed in the fit region
    background: bool = True           # fit a flat background b (else b = 0)
    refine_centre: bool = True        # fit the beam centre per frame
    centre_search_px: float = 15.0    # ... at most this far from the file's centre (pixels of
    centre_step_px: float = 5.0       # ... 75 µm: CENTRE_PIXEL_M), starting from a grid this coarse
    adu_per_photon: float | None = None  # detector units per photon (None: data are photons)

    def check(self) -> "SizingSettings":
        """Raise :class:`ConfigError` on values that cannot work."""
        if not 0 < self.d_min_nm < self.d_max_nm:
            raise ConfigError(f"the diameter range {self.d_min_nm}-{self.d_max_nm} nm must be "
                              "positive and increasing (e.g. --d-range 30 150)")
        if not 0 < self.coarse_step_nm <= (self.d_max_nm - self.d_min_nm) / 4:
            raise ConfigError(f"the diameter step {self.coarse_step_nm} nm must be positive and "
                              "small against the range")
        if not 0 <= self.q_min_inv_nm < self.q_max_inv_nm:
            raise ConfigError(f"the q range {self.q_min_inv_nm}-{self.q_max_inv_nm} nm⁻¹ must be "
                              "increasing (e.g. --q-range 0 1.0)")
        if not self.bin_px > 0:
            raise ConfigError("the ring width must be positive (pixels)")
        if not 0 < self.min_ring_fraction <= 1:
            raise ConfigError("the usable share of a ring must lie in (0, 1]")
        if self.centre_search_px < 0:
            raise ConfigError("the centre search radius must be ≥ 0 pixels")
        if not 0 < self.centre_step_px <= max(self.centre_search_px, 0.1) * 2:
            raise ConfigError("the centre grid step must be positive and at most twice the "
                              "search radius (pixels)")
        if self.adu_per_photon is not None and not self.adu_per_photon > 0:
            raise ConfigError("--adu-per-photon must be positive")
        return self


# -- geometry ---------------------------------------------------------------------------------

def scattering_q_inv_m(radius_m, distance_m: float, wavelength_m: float) -> np.ndarray:
    """|q| (1/m) at ``radius_m`` from the beam on a flat detector at ``distance_m``.

    ``q = 4π sin(θ)/λ`` with ``2θ = atan(ρ/D)``, written without cancellation as
    ``sin θ = ρ / sqrt(2 L (L + D))``, ``L = sqrt(D² + ρ²)``.
    """
    rho = np.asarray(radius_m, dtype=np.float64)
    length = np.sqrt(distance_m * distance_m + rho * rho)
    return 4.0 * math.pi / wavelength_m * rho / np.sqrt(2.0 * length * (length + distance_m))


def radius_for_q_m(q_inv_m: float, distance_m: float, wavelength_m: float) -> float:
    """The radius (m) on the detector where |q| reaches ``q_inv_m`` (inverse of the above)."""
    s = q_inv_m * wavelength_m / (4.0 * math.pi)
    if not 0 <= s < math.sqrt(0.5):
        raise ConfigError(f"q = {q_inv_m * 1e-9:.3g} nm⁻¹ lies beyond 90° scattering at "
                          f"λ = {wavelength_m * 1e9:.4g} nm; lower the q range (--q-range MIN MAX)")
    return distance_m * math.tan(2.0 * math.asin(s))


def ring_q_inv_m(radius_px, geometry: Geometry) -> np.ndarray:
    """|q| (1/m) of rings at ``radius_px`` (in x-pixel units) for a file's geometry."""
    geometry.require_scattering()
    return scattering_q_inv_m(np.asarray(radius_px, dtype=np.float64) * geometry.pixel_size_m[0],
                              geometry.distance_m, geometry.wavelength_m)


def pixel_weight(radius_m, distance_m: float) -> np.ndarray:
    """Solid angle of a pixel relative to one at the beam, ``(D/L)³``, times the azimuthal
    mean of the polarisation factor, ``1 − ½ sin² 2θ`` (true for any linear polarisation
    and for unpolarised light)."""
    rho = np.asarray(radius_m, dtype=np.float64)
    cos_2theta = distance_m / np.sqrt(distance_m * distance_m + rho * rho)
    return cos_2theta ** 3 * (1.0 - 0.5 * (1.0 - cos_2theta ** 2))


def sphere_intensity(q_inv_m, diameter_m) -> np.ndarray:
    """Normalised sphere form factor ``(3 (sin x − x cos x) / x³)²``, ``x = q d / 2``
    (1 at q = 0); broadcasts ``q_inv_m`` against ``diameter_m``."""
    x = np.asarray(q_inv_m, dtype=np.float64) * (0.5 * np.asarray(diameter_m, dtype=np.float64))
    small = np.abs(x) < 1e-2
    xs = np.where(small, 1.0, x)
    amplitude = np.where(small, 1.0 - x * x / 10.0, 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs ** 3)
    return amplitude * amplitude


# -- radial profile -------------------------------------------------------------------------

@dataclass
class RadialProfile:
    """Photons in rings around ``centre_xy`` (column, row; full-frame pixel coordinates).

    Ring k holds the usable pixels at ``k·bin_px ≤ r < (k+1)·bin_px``; ``radius_px`` is the
    mean radius of those pixels (NaN for an empty ring), ``photons`` their sum and
    ``n_pixels`` their number; ``ring_pixels`` is the number of pixels of the ring
    inside the region read, usable or not.
    """

    radius_px: np.ndarray
    photons: np.ndarray
    n_pixels: np.ndarray
    ring_pixels: np.ndarray
    centre_xy: tuple[float, float]
    bin_px: float = 1.0

    @property
    def mean(self) -> np.ndarray:
        """Mean photons per usable pixel in each ring (NaN where no pixel is usable)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_pixels > 0, self.photons / np.maximum(self.n_pixels, 1), np.nan)


def radial_profile(frame: np.ndarray, valid: np.ndarray | None, centre_xy: Sequence[float], *,
                   bin_px: float = 1.0, r_max_px: float | None = None,
                   origin: tuple[int, int] = (0, 0), pixel_aspect: float = 1.0) -> RadialProfile:
    """Azimuthal sums of ``frame`` (2-D photons) over its ``valid`` pixels around ``centre_xy``.

    ``centre_xy`` (column, row) is in full-frame pixel coordinates and ``origin`` the
    (row, column) of ``frame[0, 0]`` in the full frame, so a cropped region can be passed.
    Radii are in x-pixel units: a row step counts ``pixel_aspect`` (= y/x pixel size).
    NaN pixels are ignored.  Fully vectorised: one ``np.bincount`` per quantity.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError("radial_profile takes one 2-D frame")
    if not bin_px > 0:
        raise ValueError("bin_px must be positive")
    rows, cols = frame.shape
    cx, cy = float(centre_xy[0]) - origin[1], float(centre_xy[1]) - origin[0]
    dx = np.arange(cols, dtype=np.float64) - cx
    dy = (np.arange(rows, dtype=np.float64) - cy) * pixel_aspect
    r = np.sqrt(np.add.outer(dy * dy, dx * dx))
    values = frame.astype(np.float64, copy=False)
    usable = np.isfinite(values)
    if valid is not None:
        usable &= np.asarray(valid, dtype=bool)
    inside = r < r_max_px if r_max_px is not None else np.ones_like(usable)
    n_rings = int(math.ceil((r_max_px if r_max_px is not None else r.max() + bin_px) / bin_px))
    ring = (r / bin_px).astype(np.intp)
    all_index = ring[inside]
    use = usable & inside
    index = ring[use]
    ring_pixels = np.bincount(all_index, minlength=n_rings)[:n_rings]
    n_pixels = np.bincount(index, minlength=n_rings)[:n_rings]
    photons = np.bincount(index, weights=values[use], minlength=n_rings)[:n_rings]
    radius_sum = np.bincount(index, weights=r[use], minlength=n_rings)[:n_rings]
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.where(n_pixels > 0, radius_sum / np.maximum(n_pixels, 1), np.nan)
    return RadialProfile(radius_px=radius, photons=photons, n_pixels=n_pixels,
                         ring_pixels=ring_pixels, centre_xy=(float(centre_xy[0]), float(centre_xy[1])),
                         bin_px=float(bin_px))


# -- the Poisson fit ------------------------------------------------------------------------------

def _scale_background(counts: np.ndarray, shapes: np.ndarray, shape_sums: np.ndarray,
                      n_pixels: float, *, background: bool = True,
                      newton_steps: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood ``a, b ≥ 0`` of ``μ = a s + b`` photons per pixel, for every row
    of ``shapes``.

    The Poisson log-likelihood of the counts ``C_j`` of the pixels of a fit region is
    ``Σ_j C_j log μ_j − Σ_j μ_j`` (plus a term free of the model).  Only cells holding
    photons enter the first sum, so ``counts`` (K,) and ``shapes`` (D, K) cover just those
    cells (pixels, or rings with ``s`` per pixel and ``C`` the ring's sum), while
    ``shape_sums`` (D,) is ``Σ_j s_j`` and ``n_pixels`` the number of pixels over the whole
    region.  Three EM steps, then Newton steps kept inside ``a, b ≥ 0``; all D rows at
    once (without background ``a`` is exact: ``ΣC / Σs``).  Returns ``a``, ``b`` and
    ``nll = Σ μ − Σ C log μ``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    shapes = np.atleast_2d(np.asarray(shapes, dtype=np.float64))
    rows = len(shapes)
    shape_sums = np.asarray(shape_sums, dtype=np.float64).reshape(rows)
    total = float(counts.sum())
    if total <= 0 or n_pixels <= 0:
        return np.zeros(rows), np.zeros(rows), np.zeros(rows)
    sums = np.maximum(shape_sums, 1e-300)
    if not background:
        a, b = total / sums, np.zeros(rows)
    else:
        a, b = 0.9 * total / sums, np.full(rows, 0.1 * total / n_pixels)
        for _ in range(3):  # EM: multiplicative, stays positive
            ratio = counts / (a[:, None] * shapes + b[:, None])
            a, b = a * (ratio * shapes).sum(axis=1) / sums, b * ratio.sum(axis=1) / n_pixels
    for _ in range(newton_steps if background else 0):
        mu = a[:, None] * shapes + b[:, None]
        ratio = counts / mu
        ratio2 = ratio / mu
        grad_a = (ratio * shapes).sum(axis=1) - shape_sums
        grad_b = ratio.sum(axis=1) - n_pixels
        rs = ratio2 * shapes
        h_aa, h_ab, h_bb = (rs * shapes).sum(axis=1), rs.sum(axis=1), ratio2.sum(axis=1)
        det = h_aa * h_bb - h_ab * h_ab
        regular = det > 1e-9 * h_aa * h_bb
        safe = np.where(regular, det, 1.0)
        step_a = np.where(regular, (h_bb * grad_a - h_ab * grad_b) / safe, grad_a / np.maximum(h_aa, 1e-300))
        step_b = np.where(regular, (h_aa * grad_b - h_ab * grad_a) / safe, grad_b / np.maximum(h_bb, 1e-300))
        t = np.ones(rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(step_a < 0, np.minimum(t, 0.9 * a / -step_a), t)
            t = np.where(step_b < 0, np.minimum(t, 0.9 * b / -step_b), t)
        a, b = a + t * step_a, b + t * step_b
    mu = a[:, None] * shapes + b[:, None]
    nll = a * shape_sums + b * n_pixels - (counts * np.log(np.maximum(mu, 1e-300))).sum(axis=1)
    return a, b, nll


#: the table of :func:`_sincos`: sin and cos of every multiple of ``_SINCOS_STEP``
_SINCOS_STEP = 1.0 / 64.0
_sincos_table: list[np.ndarray] = [np.zeros(0), np.zeros(0)]


def _sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sin x`` and ``cos x`` of float64 ``x ≥ 0`` to within ~2e-16 (absolute), a few times
    faster than ``np.sin`` and ``np.cos`` of float64 (which have no vector code here).

    ``x = k h + r`` with ``h = 1/64``, ``|r| ≤ h/2`` (exact: powers of two); ``sin`` and
    ``cos`` of ``k h`` from a table (``np.sin``, ``np.cos``: correctly rounded to 1 ulp),
    of ``r`` from their Taylor series (error < 1e-18), joined by the addition theorems.
    Negative, huge or non-finite ``x`` go to ``np.sin`` and ``np.cos``.
    """
    x = np.asarray(x, dtype=np.float64)
    m = x * (1.0 / _SINCOS_STEP)
    k = np.rint(m)
    top = float(k.max()) if k.size else 0.0
    if not (k.size and 0.0 <= float(k.min()) and top < 2.0 ** 22):
        return np.sin(x), np.cos(x)
    if top >= len(_sincos_table[0]):
        n = int(max(top + 1, 2 * len(_sincos_table[0]), 8192))
        angles = np.arange(n, dtype=np.float64) * _SINCOS_STEP
        _sincos_table[:] = [np.sin(angles), np.cos(angles)]
    index = k.astype(np.intp)
    sin_k, cos_k = _sincos_table[0].take(index), _sincos_table[1].take(index)
    r = m - k
    r *= _SINCOS_STEP
    r2 = r * r
    sin_r = r2 * (1.0 / 120.0)       # sin r = r + r³ (−1/6 + r²/120)
    sin_r -= 1.0 / 6.0
    sin_r *= r2
    sin_r *= r
    sin_r += r
    cos_r1 = r2 * (-1.0 / 720.0)     # cos r − 1 = r² (−1/2 + r² (1/24 − r²/720))
    cos_r1 += 1.0 / 24.0
    cos_r1 *= r2
    cos_r1 -= 0.5
    cos_r1 *= r2
    sin_x = sin_k * cos_r1            # sin(kh + r) = sin kh + (sin kh (cos r − 1) + cos kh sin r)
    sin_x += cos_k * sin_r
    sin_x += sin_k
    cos_x = cos_k * cos_r1            # cos(kh + r) = cos kh + (cos kh (cos r − 1) − sin kh sin r)
    sin_k *= sin_r
    cos_x -= sin_k
    cos_x += cos_k
    return sin_x, cos_x


def _sphere_amplitude(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sphere amplitude ``A = 3 (sin x − x cos x) / x³`` and its slope
    ``A' = 3 (sin x / x − A) / x`` (series below x = 0.01)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-2
    any_small = bool(small.any())
    xs = np.where(small, 1.0, x) if any_small else x
    sin_x, cos_x = _sincos(xs)
    inv_x = 1.0 / xs
    amp = cos_x
    amp *= -xs
    amp += sin_x
    amp *= 3.0
    amp *= inv_x * inv_x * inv_x
    slope = sin_x
    slope *= inv_x
    slope -= amp
    slope *= 3.0
    slope *= inv_x
    if any_small:
        amp = np.where(small, 1.0 - x * x / 10.0, amp)
        slope = np.where(small, -x / 5.0, slope)
    return amp, slope


@dataclass(frozen=True)
class _Optics:
    """Radius on the detector (x pixels) → q, pixel weight and the sphere model."""

    pixel_m: float
    distance_m: float
    wavelength_m: float
    subpixels: int = 1    # the model is averaged over subpixels x subpixels points per pixel

    @classmethod
    def of(cls, geometry: Geometry, d_max_nm: float | None = None) -> "_Optics":
        """The optics of ``geometry``; with ``d_max_nm``, pixels coarse against the fringes
        of that diameter are integrated over (see :func:`subpixels_for`)."""
        geometry.require_scattering()
        subpixels = 1 if d_max_nm is None else subpixels_for(geometry, d_max_nm)
        return cls(float(geometry.pixel_size_m[0]), float(geometry.distance_m),
                   float(geometry.wavelength_m), subpixels)

    def q_inv_m(self, radius_px) -> np.ndarray:
        return scattering_q_inv_m(np.asarray(radius_px) * self.pixel_m, self.distance_m,
                                  self.wavelength_m)

    def radius_px(self, q_inv_m: float) -> float:
        return radius_for_q_m(q_inv_m, self.distance_m, self.wavelength_m) / self.pixel_m

    def shape_and_derivatives(self, radius_px: np.ndarray, diameter_m: float):
        """``s = w |F|²`` at ``radius_px`` and its derivatives by the diameter (per m) and by
        the radius (per x pixel), analytically: ``A' = 3 (j0 − A) / x`` for the sphere
        amplitude ``A``, ``j0 = sin x / x``."""
        rho = np.asarray(radius_px, dtype=np.float64) * self.pixel_m
        dist = self.distance_m
        length = np.sqrt(dist * dist + rho * rho)
        sin_theta = rho / np.sqrt(2.0 * length * (length + dist))
        k4 = 4.0 * math.pi / self.wavelength_m
        q = k4 * sin_theta
        c = dist / length                                   # cos 2θ
        c2 = c * c
        w = 0.5 * c2 * c * (1.0 + c2)
        dw_drho = -0.5 * c2 * (3.0 + 5.0 * c2) * c * rho / (length * length)
        dq_drho = 0.5 * k4 * np.sqrt(1.0 - sin_theta * sin_theta) * dist / (length * length)
        amp, amp_dx = _sphere_amplitude(0.5 * q * diameter_m)
        w_amp = w * amp
        shape = w_amp * amp
        w_amp *= amp_dx                                     # w A A' (the 2 · ½ is exact)
        d_diameter = w_amp * q
        w_amp *= diameter_m
        w_amp *= dq_drho
        d_radius = dw_drho * amp
        d_radius *= amp
        d_radius += w_amp
        d_radius *= self.pixel_m
        return shape, d_diameter, d_radius

    def shape(self, radius_px, diameter_m) -> np.ndarray:
        """``w(ρ) |F(q(ρ); d)|²``: the sphere's photons per pixel at ``radius_px`` per unit
        scale (broadcasts the radii against the diameters)."""
        rho = np.asarray(radius_px, dtype=np.float64) * self.pixel_m
        return (pixel_weight(rho, self.distance_m)
                * sphere_intensity(scattering_q_inv_m(rho, self.distance_m, self.wavelength_m),
                                   diameter_m))

    def _subpixel_steps(self) -> np.ndarray:
        """Offsets (pixels) of the sub-pixel points from a pixel's centre along one axis."""
        n = self.subpixels
        return (np.arange(n, dtype=np.float64) + 0.5) / n - 0.5

    def pixel_shape_and_derivatives(self, off_x: np.ndarray, off_y: np.ndarray, aspect: float,
                                    diameter_m: float):
        """The model averaged over the area of pixels whose centres lie at ``off_x``,
        ``off_y`` (x pixels; y already times ``aspect``) from the beam centre: ``s`` and its
        derivatives by the diameter (per m) and by the centre's column and row (per
        pixel), from ``subpixels`` x ``subpixels`` points on each pixel."""
        steps = self._subpixel_steps()
        shape = np.zeros(np.shape(off_x))
        d_diameter, d_cx, d_cy = np.zeros_like(shape), np.zeros_like(shape), np.zeros_like(shape)
        for u in steps:
            sx = off_x + u
            for v in steps:
                sy = off_y + v * aspect
                r = np.sqrt(sx * sx + sy * sy)
                sh, dd, dr = self.shape_and_derivatives(r, diameter_m)
                dr /= np.maximum(r, 1e-9)
                shape += sh
                d_diameter += dd
                d_cx -= dr * sx
                d_cy -= dr * sy * aspect
        norm = 1.0 / (len(steps) * len(steps))
        return shape * norm, d_diameter * norm, d_cx * norm, d_cy * norm

    def ring_shape(self, radius_px: np.ndarray, diameters_m: np.ndarray) -> np.ndarray:
        """The model (diameters x rings) of a pixel at ``radius_px`` (1-D) from the beam,
        averaged over its area and over its orientation about the beam; just
        :meth:`shape` for point-like pixels (``subpixels`` 1)."""
        radius = np.asarray(radius_px, dtype=np.float64)
        diameters = np.asarray(diameters_m, dtype=np.float64).reshape(-1)
        if self.subpixels == 1:
            return self.shape(radius[None, :], diameters[:, None])
        key = (self, radius.tobytes(), diameters.tobytes())
        table = _ring_shape_cache.get(key)
        if table is not None:
            return table
        steps = self._subpixel_steps()
        u, v = (a.ravel() for a in np.meshgrid(steps, steps))
        radii = []
        for phi in (np.arange(3) + 0.5) * (math.pi / 12.0):   # a square's orientations, 0-45°
            along = radius[:, None] + u * math.cos(phi) - v * math.sin(phi)
            across = u * math.sin(phi) + v * math.cos(phi)
            radii.append(np.sqrt(along * along + across * across))
        radii = np.concatenate(radii, axis=1)                  # rings x points
        table = self.shape(radii[None, :, :], diameters[:, None, None]).mean(axis=2)
        if len(_ring_shape_cache) >= 16:
            _ring_shape_cache.clear()
        _ring_shape_cache[key] = table
        return table


#: ring tables of :meth:`_Optics.ring_shape` for integrated pixels (the same for every frame)
_ring_shape_cache: dict = {}

#: a pixel is integrated over when it spans more than this share of a fringe period
SUBPIXEL_FRINGE_SHARE = 0.15
#: ... on this many points per fringe period and axis
SUBPIXELS_PER_FRINGE = 8.0


def subpixels_for(geometry: Geometry, d_max_nm: float) -> int:
    """Points per axis at which the sizing model samples each pixel: 1 (the pixel centre)
    for pixels small against the fringe period ``2π / d`` in q at the largest diameter
    searched, as a pnCCD's 75 µm at 125 mm (0.12 of a period at 150 nm); more for binned
    frames, ``ceil(8 × share)``: 2 for 2 x 2-binned, 4 for 4 x 4-binned pnCCD pixels."""
    geometry.require_scattering()
    pixel_m = max(float(geometry.pixel_size_m[0]), float(geometry.pixel_size_m[1]))
    pixel_q = 2.0 * math.pi / geometry.wavelength_m * pixel_m / geometry.distance_m  # at the beam
    share = pixel_q * d_max_nm * 1e-9 / (2.0 * math.pi)
    if share <= SUBPIXEL_FRINGE_SHARE:
        return 1
    return int(min(math.ceil(SUBPIXELS_PER_FRINGE * share - 1e-9), 8))


class _FitRegion:
    """Where the fit pixels of frames with one mask, region and centre lie (worked out once
    per file, not per frame): the row and column of every usable pixel whose radius from
    ``centre_xy`` lies in ``r_in_px``-``r_out_px`` (x pixels) in row-major order, and its
    offsets ``x``, ``y`` from that centre (x pixels, float32: exact to ~1e-5 px this close
    to the centre, and fast)."""

    def __init__(self, usable: np.ndarray, shape: tuple[int, int], origin: tuple[int, int],
                 centre_xy: Sequence[float], r_in_px: float, r_out_px: float, aspect: float):
        rows, cols = shape
        cx, cy = float(centre_xy[0]), float(centre_xy[1])
        self.key = (tuple(shape), tuple(origin), (cx, cy), float(r_in_px), float(r_out_px), float(aspect))
        self.usable = np.array(usable, dtype=bool)
        self.centre_xy = (cx, cy)
        r0 = max(int(math.floor(cy - origin[0] - r_out_px / aspect)), 0)
        r1 = min(int(math.ceil(cy - origin[0] + r_out_px / aspect)) + 1, rows)
        c0 = max(int(math.floor(cx - origin[1] - r_out_px)), 0)
        c1 = min(int(math.ceil(cx - origin[1] + r_out_px)) + 1, cols)
        good = self.usable[r0:r1, c0:c1] if r1 > r0 and c1 > c0 else np.zeros((0, 0), bool)
        yy, xx = np.nonzero(good)
        x = (xx + (c0 + origin[1] - cx)).astype(np.float32)
        y = ((yy + (r0 + origin[0] - cy)) * aspect).astype(np.float32)
        r = np.sqrt(x * x + y * y)
        near = (r >= r_in_px) & (r <= r_out_px)
        self.rows, self.cols = yy[near] + r0, xx[near] + c0
        self.x, self.y = x[near], y[near]
        self.flat = None   # row-major indices of the pixels in a frame of this shape (on first use)
        self.bounds = None   # the least and largest x and y (on first use)
        self.radius_ranges: dict = {}   # least and largest radius by centre (on first use)
        self._ring_pixels: dict = {}

    def ring_pixels(self, shifts: np.ndarray, width: float, n_rings: int) -> np.ndarray:
        """(centres, n_rings): the region's pixels in rings ``width`` wide about centres
        ``shifts`` (float32 (x, y times aspect) from ``centre_xy``), kept per set of centres
        (read-only): they depend on the geometry alone, and a file's frames search the same
        centres."""
        shifts = np.ascontiguousarray(shifts, dtype=np.float32)
        key = (shifts.tobytes(), float(width), int(n_rings))   # the whole search's centres at once
        out = self._ring_pixels.get(key)
        if out is None:
            if len(self._ring_pixels) >= 1024:
                self._ring_pixels.clear()
            out = _kernels().ring_sums(self.x, self.y, np.ones(len(self.x)), shifts, width, n_rings)
            out.setflags(write=False)
            self._ring_pixels[key] = out
        return out

    def fits(self, usable: np.ndarray, shape, origin, centre_xy, r_in_px, r_out_px, aspect) -> bool:
        """Whether this region is the one of these arguments (the same mask included)."""
        key = (tuple(shape), tuple(origin), (float(centre_xy[0]), float(centre_xy[1])), float(r_in_px),
               float(r_out_px), float(aspect))
        return (key == self.key and usable.shape == self.usable.shape
                and (usable is self.usable or np.array_equal(usable, self.usable)))


class _FitPixels:
    """The usable pixels of one frame's fit region and the photons on them.

    The region is fixed before the fit (the pixels whose radius from the file's beam
    centre ``centre_xy`` lies in ``r_in_px``-``r_out_px``, x pixels), so the likelihoods of
    all centres and diameters are those of the same data.  ``x`` and ``y`` are the pixels'
    offsets from ``centre_xy`` (x = column, y = row times ``aspect``, in x pixels; float32);
    ``lit`` indexes those holding photons, ``counts`` their photons.
    """

    def __init__(self, photons: np.ndarray, usable: np.ndarray, origin: tuple[int, int],
                 centre_xy: Sequence[float], r_in_px: float, r_out_px: float, aspect: float, *,
                 region: "_FitRegion | None" = None, adu_per_photon: float | None = None):
        if region is None or not region.fits(usable, photons.shape, origin, centre_xy, r_in_px, r_out_px, aspect):
            region = _FitRegion(usable, photons.shape, origin, centre_xy, r_in_px, r_out_px, aspect)
        self.region = region
        self.aspect = aspect
        self.centre_xy = region.centre_xy
        if region.flat is None:
            region.flat = np.ravel_multi_index((region.rows, region.cols), photons.shape)
        values = np.ravel(photons).take(region.flat).astype(np.float64)
        counted = photons.dtype.kind in "ub" and adu_per_photon is None   # photon counts: no NaN, none < 0
        if adu_per_photon is not None:
            values /= adu_per_photon
        if not counted:
            values[values < 0] = 0.0   # negative pixel noise counts as no photon
        finite = None if counted else np.isfinite(values)
        self.all_finite = counted or bool(finite.all())
        if self.all_finite:
            self.x, self.y = region.x, region.y
        else:   # NaN pixels of this frame leave its fit, in the same order
            self.x, self.y, values = region.x[finite], region.y[finite], values[finite]
        self.values = values                    # photons on every pixel (0 on most)
        self.lit = np.flatnonzero(values > 0)   # the pixels holding photons
        self.photon_x, self.photon_y = self.x[self.lit], self.y[self.lit]
        self.counts = values[self.lit]

    @property
    def n_pixels(self) -> int:
        return len(self.x)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The least and largest x and y of the usable pixels (x min, x max, y min, y max)."""
        if self.all_finite and self.region.bounds is not None:
            return self.region.bounds
        bounds = ((float(self.x.min()), float(self.x.max()), float(self.y.min()), float(self.y.max()))
                  if len(self.x) else (0.0, 0.0, 0.0, 0.0))
        if self.all_finite:
            self.region.bounds = bounds
        return bounds

    def offsets(self, centre_xy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """x and (aspect-scaled) y of the usable pixels seen from ``centre_xy``."""
        dx = np.float32(centre_xy[0] - self.centre_xy[0])
        dy = np.float32((centre_xy[1] - self.centre_xy[1]) * self.aspect)
        return self.x - dx, self.y - dy

    def shifts(self, centres) -> np.ndarray:
        """(centres, 2) float32: each centre's (x, aspect-scaled y) offset from ``centre_xy``."""
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([(centres[:, 0] - self.centre_xy[0]).astype(np.float32),
                                ((centres[:, 1] - self.centre_xy[1]) * self.aspect).astype(np.float32)])

    def ring_pixels(self, centres, width: float, n_rings: int) -> np.ndarray:
        """(centres, n_rings): the usable pixels in rings ``width`` wide about each centre."""
        shifts = self.shifts(centres)
        if self.all_finite:
            return self.region.ring_pixels(shifts, width, n_rings)
        return _kernels().ring_sums(self.x, self.y, np.ones(len(self.x)), shifts, width, n_rings)

    def ring_photons(self, centres, width: float, n_rings: int) -> np.ndarray:
        """(centres, n_rings): the photons in rings ``width`` wide about each centre."""
        return _kernels().ring_sums(self.photon_x, self.photon_y, self.counts, self.shifts(centres), width, n_rings)

    def radius_range(self, centre_xy: Sequence[float]) -> tuple[float, float]:
        """The least and largest radius (x pixels) of the usable pixels from ``centre_xy``
        (kept by the region for its frames without NaN pixels)."""
        key = (float(centre_xy[0]), float(centre_xy[1]))
        if self.all_finite and key in self.region.radius_ranges:
            return self.region.radius_ranges[key]
        r = self.radii(centre_xy)[0]
        found = (float(r.min()), float(r.max()))
        if self.all_finite:
            self.region.radius_ranges[key] = found
        return found

    def radii(self, centre_xy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Radii (x pixels) of the usable pixels and of the photon pixels from ``centre_xy``."""
        dx = np.float32(centre_xy[0] - self.centre_xy[0])
        dy = np.float32((centre_xy[1] - self.centre_xy[1]) * self.aspect)
        x, y = self.x - dx, self.y - dy
        px, py = self.photon_x - dx, self.photon_y - dy
        return np.sqrt(x * x + y * y), np.sqrt(px * px + py * py)


@dataclass
class SphereFit:
    """The best sphere for one frame or one radial profile (see the module notes)."""

    diameter_m: float          # NaN when the fit failed
    scale: float               # a: photons per pixel at q = 0 (times the pixel weight)
    background: float          # b: photons per pixel
    fit_quality: float         # reduced Pearson χ² of the ring sums (≈ 1 good, larger worse)
    signal_photons: float      # a Σ w |F|² over the pixels fitted
    n_rings: int
    q_range_inv_m: tuple[float, float]
    diameter_err_m: float = float("nan")   # 1σ: the likelihood's, widened by the shape term
    diameter_stat_err_m: float = float("nan")  # 1σ from the likelihood's curvature alone
    misfit: float = float("nan")   # excess Pearson χ² of the ring sums per signal photon
    second_particle_z: float = float("nan")  # evidence (σ) for fringes of a second particle
    second_particle_separation_m: float = float("nan")  # the separation across the beam it found
    second_particle_cpu_s: float = 0.0  # CPU seconds of that test (its cost, for benchmarks)
    centre_xy: tuple[float, float] | None = None
    nll: float = float("nan")  # Σ μ − Σ C log μ at the optimum
    reason: str = ""           # why the fit failed ("" when it did not)
    model: np.ndarray | None = None  # μ_k / n_k, photons per pixel of the best fit per ring

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def diameter_nm(self) -> float:
        return self.diameter_m * 1e9

    @property
    def diameter_err_nm(self) -> float:
        return self.diameter_err_m * 1e9

    def fail(self, reason: str) -> "SphereFit":
        self.reason = reason
        self.diameter_m = self.diameter_err_m = self.diameter_stat_err_m = float("nan")
        return self


def second_particle_z(pixels: _FitPixels, optics: _Optics, mu: np.ndarray, background: float,
                      centre_xy: Sequence[float], diameter_m: float) -> tuple[float, float]:
    """Evidence for a second particle beside the fitted one: ``(z, separation in m)``.

    Two particles whose centres lie ``d`` apart across the beam scatter ``|F₁ + F₂ e^{iq·d}|²``,
    one particle's pattern times fringes ``1 + γ cos(q·d + φ)``; a ring profile averages
    such fringes away, the pixels keep them.  The Poisson likelihood's score for fringes of
    separation ``d`` about the fitted single is ``U(d) = Σ_j (C_j/μ_j − 1) s_j e^{i q_j·d}``
    (``s_j = μ_j − b``, the fitted particle's photons on pixel j): the Fourier transform of
    the weighted residual, so one FFT over the pixel grid gives every ``d`` at once, and at
    every ``d`` ``|U|²/Σ_j s_j²/μ_j`` is exponentially distributed with mean 1 when the single
    explains the frame (a map whose lower quartile says it is noisier than that is scaled
    back to it, so that extra detector noise does not pass for a second particle).  ``z`` is ``√``
    of its largest value at separations from
    :data:`SECOND_PARTICLE_MIN_SEPARATION` fitted diameters to 0.9 of the largest the
    pixels resolve (``π/κ``, ``κ`` the q across one pixel); NaN when that range is empty.
    The statistic is a test of a model (one particle), not of our simulator: its null
    distribution follows from Poisson statistics alone.
    """
    kappa = 2.0 * math.pi / optics.wavelength_m * optics.pixel_m / optics.distance_m  # q per pixel
    largest = 0.9 * math.pi / kappa
    if not largest > SECOND_PARTICLE_MIN_SEPARATION * diameter_m or len(mu) == 0:
        return float("nan"), float("nan")
    kernels = _kernels()
    shift = (np.float32(centre_xy[0] - pixels.centre_xy[0]),
             np.float32((centre_xy[1] - pixels.centre_xy[1]) * pixels.aspect))
    # (C/μ − 1) s on the grid of the pixels' rounded offsets (float32: the map's noise is
    # Poisson's, ~10⁷ times float32's), with C = 0 off the lit pixels
    grid, variance = kernels.residual_grid(pixels.x, pixels.y, shift, pixels.lit, pixels.counts, mu, background,
                                           pixels.bounds)
    if not variance > 0:
        return float("nan"), float("nan")
    spectrum = _fft().rfft2(grid, workers=1, overwrite_x=True)
    separation = _separations(len(grid), kappa)
    low, quiet = SECOND_PARTICLE_MIN_SEPARATION * diameter_m, math.log(4.0 / 3.0)
    n_searched, n_quiet, best, peak, histogram = kernels.spectrum_peak(spectrum, separation, low, largest, variance,
                                                                  quiet)
    if not n_searched:
        return float("nan"), float("nan")
    # noisier than Poisson (a measured detector's gain spread, sub-photon noise): the lower
    # quartile of the searched map, ln(4/3) for exponentials of mean 1, says by how much; a
    # second particle raises its peaks and their surroundings, hardly the quietest quarter.
    # (The quartile is looked for only when it can exceed ln(4/3): when fewer values than
    # the quartile's rank lie below that.)
    if n_quiet < math.ceil(0.25 * (n_searched - 1)) + 1:
        quartile = kernels.spectrum_quantile(spectrum, separation, low, largest, variance, 0.25, histogram)
        peak /= max(1.0, quartile / quiet)
    return math.sqrt(peak), float(separation.flat[best])


def _kernels():
    """:mod:`spidarknet.sizing_kernels` (numba imported on first use: commands that size
    nothing do not load it)."""
    from spidarknet import sizing_kernels
    return sizing_kernels


def _fft():
    """scipy.fft (imported on first use; its real FFTs are several times numpy's)."""
    from scipy import fft
    return fft


#: separations (m) of the frequencies of :func:`second_particle_z`'s maps, by (n, q per pixel)
_separation_cache: dict = {}


def _separations(n: int, kappa: float) -> np.ndarray:
    """(n, n // 2 + 1): the separation across the beam (m) that each frequency of the real
    FFT of an n x n grid of pixels ``kappa`` (1/m) apart stands for; kept."""
    key = (int(n), float(kappa))
    if key not in _separation_cache:
        if len(_separation_cache) >= 8:
            _separation_cache.clear()
        fy = np.fft.fftfreq(n) * n
        fx = np.arange(n // 2 + 1, dtype=np.float64)
        _separation_cache[key] = 2.0 * math.pi / (n * kappa) * np.hypot(fy[:, None], fx[None, :])
    return _separation_cache[key]


def _ring_quality(counts: np.ndarray, mu: np.ndarray, n_params: int, signal: float) -> tuple[float, float]:
    """Reduced Pearson χ² of ring sums and the misfit: the χ² in excess of its degrees of
    freedom per signal photon, about the signal-weighted mean square relative deviation of
    the pattern from the model (≈ 0 ± √(2N)/signal for a sphere, whatever its brightness)."""
    dof = max(len(counts) - n_params, 1)
    pearson = float(np.sum((counts - mu) ** 2 / np.maximum(mu, 1e-12)))
    return pearson / dof, (pearson - dof) / signal if signal > 0 else float("nan")


def _diameter_error(stat_err_m: float, diameter_m: float, misfit: float) -> float:
    """The 1σ diameter error: the likelihood's, and in quadrature the shape term
    ``SHAPE_ERROR_PER_ROOT_MISFIT · d · √misfit`` for patterns a sphere does not quite
    explain (zero for a misfit ≤ 0)."""
    if not math.isfinite(misfit):
        return stat_err_m
    return math.hypot(stat_err_m, SHAPE_ERROR_PER_ROOT_MISFIT * diameter_m * math.sqrt(max(misfit, 0.0)))


def _judge(fit: SphereFit, s: SizingSettings) -> SphereFit:
    """The fit, failed with a reason where the frame carries no size."""
    if not fit.signal_photons >= s.min_signal_photons:
        return fit.fail(f"too few photons: {fit.signal_photons:.0f} signal photons in the fitted q "
                        f"range (need >= {s.min_signal_photons:.0f})")
    edge = _edge_reason(fit.diameter_m, s)
    return fit.fail(edge) if edge else fit


def _diameter_grid(s: SizingSettings) -> np.ndarray:
    return np.arange(s.d_min_nm, s.d_max_nm + 0.5 * s.coarse_step_nm, s.coarse_step_nm) * 1e-9


def _edge_reason(diameter_m: float, s: SizingSettings) -> str:
    if diameter_m - s.d_min_nm * 1e-9 <= 0.5 * s.coarse_step_nm * 1e-9:
        side = "smallest"
    elif s.d_max_nm * 1e-9 - diameter_m <= 0.5 * s.coarse_step_nm * 1e-9:
        side = "largest"
    else:
        return ""
    return (f"outside the diameters searched: the best fit is the {side} one ({s.d_min_nm:g}-"
            f"{s.d_max_nm:g} nm); widen --d-range if such particles are expected")


def fit_sphere(q_inv_m: np.ndarray, photons: np.ndarray, n_pixels: np.ndarray, *,
               weight: np.ndarray | None = None,
               settings: SizingSettings | None = None) -> SphereFit:
    """Fit the sphere model to ring sums ``photons`` of ``n_pixels`` usable pixels at ``q_inv_m``
    (the centre known; :func:`size_frame` fits the centre too).

    ``weight`` is the per-ring pixel weight (:func:`pixel_weight`; default 1).  Rings must
    already be restricted to the q range wanted.  The Poisson likelihood of the ring sums,
    with a free scale and background, is maximised over the diameter grid
    (``coarse_step_nm`` from ``d_min_nm`` to ``d_max_nm``), then over a continuous diameter
    around the best grid value; the uncertainty comes from the Fisher information of
    (a, b, d).  A failed fit comes back with ``reason`` set and a NaN diameter.
    """
    s = (settings or SizingSettings()).check()
    q = np.asarray(q_inv_m, dtype=np.float64)
    counts = np.asarray(photons, dtype=np.float64)
    n = np.asarray(n_pixels, dtype=np.float64)
    w = np.ones_like(q) if weight is None else np.asarray(weight, dtype=np.float64)
    if not (q.shape == counts.shape == n.shape == w.shape) or q.ndim != 1:
        raise ValueError("q, photons, n_pixels and weight must be 1-D arrays of one length")
    q_range = (float(q.min()), float(q.max())) if len(q) else (float("nan"),) * 2
    if len(q) < 10:
        return SphereFit(float("nan"), 0.0, 0.0, float("nan"), 0.0, len(q), q_range,
                         reason=f"no usable pixels: {len(q)} rings in the q range (need >= 10); "
                                "check the mask and --q-range")
    lit = counts > 0

    def profile(diameters_m):
        shapes = w * sphere_intensity(q[None, :], np.atleast_1d(diameters_m)[:, None])
        return _scale_background(counts[lit], shapes[:, lit], shapes @ n, n.sum(),
                                 background=s.background)

    from scipy import optimize  # on first use: commands that size nothing do not load it
    grid = _diameter_grid(s)
    _, _, nll = profile(grid)
    best = int(np.argmin(nll))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = optimize.minimize_scalar(lambda d: float(profile(d)[2][0]), bounds=(lo, hi),
                                     method="bounded", options={"xatol": 1e-13})
    diameter = float(found.x)
    a, b, nll_best = (float(v[0]) for v in profile(diameter))
    amp, amp_dx = _sphere_amplitude(0.5 * q * diameter)
    shape, d_shape = w * amp * amp, w * amp * amp_dx * q
    mu = n * (a * shape + b)
    gradients = [n * shape] + ([n] if s.background else []) + [n * a * d_shape * 1e-9]
    cov = _inverse_scaled((np.array(gradients) / np.maximum(mu, 1e-300)) @ np.array(gradients).T)
    var = cov[-1, -1]
    sigma = math.sqrt(var) * 1e-9 if np.isfinite(var) and var > 0 else float("nan")
    signal = float(np.sum(n * a * shape))
    chi2, misfit = _ring_quality(counts, mu, 2 + s.background, signal)
    fit = SphereFit(diameter, a, b, chi2, signal, len(q), q_range,
                    diameter_err_m=_diameter_error(sigma, diameter, misfit), diameter_stat_err_m=sigma,
                    misfit=misfit, nll=nll_best, model=a * shape + b)
    return _judge(fit, s)


class _PixelModel:
    """The Poisson likelihood of every pixel of ``pixels`` as a function of the free
    parameters θ = (a, [b,] d in nm[, cx, cy]) (b fixed at 0 without a background, the
    centre fixed at ``centre_xy`` when ``fit_centre`` is false): :meth:`at` gives the
    negative log-likelihood, its gradient, the expected (Fisher) information
    ``Σ_j ∇μ_j ∇μ_jᵀ / μ_j`` and μ per pixel, all but ``Σ C log μ`` (a sum over the pixels
    holding photons) from one compiled pass over the pixels
    (:func:`spidarknet.sizing_kernels.pixel_pass`)."""

    def __init__(self, pixels: _FitPixels, optics: _Optics, fit_background: bool, fit_centre: bool,
                 centre_xy: Sequence[float]):
        self.pixels, self.optics = pixels, optics
        self.fit_b, self.fit_c = fit_background, fit_centre
        self.centre_xy = (float(centre_xy[0]), float(centre_xy[1]))
        self.free = [0] + ([1] if fit_background else []) + [2] + ([3, 4] if fit_centre else [])
        self.vector = np.array([optics.pixel_m, optics.distance_m, 4.0 * math.pi / optics.wavelength_m])
        self.steps = optics._subpixel_steps()

    def unpack(self, theta: np.ndarray) -> tuple[float, float, float, float, float]:
        """(a, b, d in nm, cx, cy) of the free parameters ``theta``."""
        values = [float(v) for v in theta]
        a = values.pop(0)
        b = values.pop(0) if self.fit_b else 0.0
        d_nm = values.pop(0)
        return (a, b, d_nm) + ((values[0], values[1]) if self.fit_c else self.centre_xy)

    def at(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(negative log-likelihood, its gradient and the information of the free
        parameters, μ per pixel) at ``theta``."""
        a, b, d_nm, cx, cy = self.unpack(theta)
        pixels = self.pixels
        shift = (cx - pixels.centre_xy[0], (cy - pixels.centre_xy[1]) * pixels.aspect)
        kernels = _kernels()
        mu, sums, info, lit = kernels.pixel_pass(pixels.x, pixels.y, pixels.values, shift, pixels.aspect,
                                                 d_nm * 1e-9, self.vector, self.steps, a, b)
        score = np.array([lit[0], lit[4], a * lit[1], a * lit[2], a * lit[3]])   # Σ C ∇μ / μ
        nll = float(sums[0] - kernels.log_sum(mu, pixels.lit, pixels.counts))
        free = self.free
        return nll, (sums[1:] - score)[free], info[np.ix_(free, free)], mu


def _scoring_step(info_z: np.ndarray, grad_z: np.ndarray, radius: float) -> tuple[np.ndarray, bool]:
    """The step minimising the quadratic model ``g·p + ½ pᵀ I p`` within ``|p| ≤ radius``
    (in standard errors): the Fisher-scoring step ``-I⁻¹ g`` when that is inside, else
    ``-(I + λ)⁻¹ g`` on the boundary (λ by bisection; it turns towards steepest descent as
    the radius shrinks, as scipy's trust-exact does).  Returns the step and whether it lies
    on the boundary."""
    values, vectors = np.linalg.eigh(info_z)
    along = vectors.T @ grad_z
    lowest = float(values.min())
    if lowest > 0:
        step = -vectors @ (along / values)
        if np.linalg.norm(step) <= radius:
            return step, False
    # ‖p(λ)‖ = radius by Newton's method on 1/‖p‖ (nearly linear in λ), kept in a bracket
    lo = max(0.0, -lowest)
    hi = lo + float(np.linalg.norm(grad_z)) / radius + 1e-300
    lam = hi
    for _ in range(50):
        step = along / (values + lam)
        length = math.sqrt(float((step * step).sum()))
        if abs(length - radius) <= 1e-6 * radius:
            break
        lo, hi = (lam, hi) if length > radius else (lo, lam)
        slope = float((step * step / (values + lam)).sum()) / length   # -d‖p‖/dλ
        lam += (length - radius) / radius * length / slope if slope > 0 else 0.0
        if not lo < lam < hi:
            lam = 0.5 * (lo + hi)
    return -vectors @ (along / (values + lam)), True


def _fisher_scoring(pixels: _FitPixels, optics: _Optics, start: Sequence[float], s: SizingSettings,
                    search_centre: Sequence[float] | None, reach_px: float, *, max_steps: int = 30):
    """Maximum-likelihood (a, b, d, cx, cy) of the photons of every pixel of ``pixels``.

    Fisher scoring in a trust region (the steps and rules of scipy's trust-exact, which this
    replaces; :func:`_scoring_step`) of the negative log-likelihood with the expected
    information ``I = Σ_j ∇μ_j ∇μ_jᵀ / μ_j`` as its Hessian, in units of the starting
    point's standard errors (one trust radius suits the scale, the background, the
    diameter and the centre).  Points outside a, b ≥ 0, the diameter range searched and
    ``reach_px`` (+1) of ``search_centre`` are refused (the centre is fixed when that is
    None, b when there is no background); a start outside stays.  Converged when the
    gradient, in standard errors, is below 1 % of one (the grid's start may lie many
    standard errors away), or after ``max_steps`` steps.  ``start``
    is (a, b, d in m, cx, cy).  Returns a, b, d (m), cx, cy, the covariance of the free
    parameters (a, [b,] d in nm[, cx, cy]), the negative log-likelihood and μ per pixel.
    """
    a, b, d_m, cx, cy = (float(v) for v in start)
    fit_c = search_centre is not None
    model = _PixelModel(pixels, optics, s.background, fit_c, (cx, cy))
    theta = np.array([a] + ([b] if s.background else []) + [d_m * 1e9] + ([cx, cy] if fit_c else []))
    nll, grad, info, mu = model.at(theta)
    unit = 1.0 / np.sqrt(np.maximum(np.diag(info), 1e-300))   # 1σ of each, at the start

    def allowed(a, b, d_nm, cx, cy) -> bool:
        inside = not fit_c or math.hypot(cx - search_centre[0], cy - search_centre[1]) <= reach_px + 1.0
        return a >= 0 and b >= 0 and s.d_min_nm <= d_nm <= s.d_max_nm and inside

    # a start outside (the grid's largest diameter, rounded above d_max) stays: an edge
    radius = 100.0 if allowed(*model.unpack(theta)) else 0.0
    for _ in range(max_steps if radius > 0 else 0):   # scipy's trust-region rules
        grad_z, info_z = grad * unit, info * np.outer(unit, unit)
        if not np.linalg.norm(grad_z) >= 1e-2:
            break
        step, on_boundary = _scoring_step(info_z, grad_z, radius)
        trial = theta + step * unit
        found = model.at(trial) if allowed(*model.unpack(trial)) else (math.inf,)
        expected = -float(grad_z @ step + 0.5 * step @ info_z @ step)
        ratio = (nll - found[0]) / expected if expected > 0 else -math.inf
        if ratio < 0.25:
            radius *= 0.25
        elif ratio > 0.75 and on_boundary:
            radius = min(2.0 * radius, 1000.0)
        if ratio > 0.15:
            theta, (nll, grad, info, mu) = trial, found
    a, b, d_nm, cx, cy = model.unpack(theta)
    return a, b, d_nm * 1e-9, cx, cy, _inverse_scaled(info), nll, mu


def _inverse_scaled(matrix: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.maximum(np.diag(matrix), 1e-300))
    try:
        return np.linalg.inv(matrix / np.outer(scale, scale)) / np.outer(scale, scale)
    except np.linalg.LinAlgError:
        return np.full(matrix.shape, np.nan)


#: the centre search (``centre_search_px``, ``centre_step_px``) counts pixels of this size,
#: the pnCCD's own: a distance on the detector, so that frames of binned (coarser) pixels
#: search the same millimetres, on a grid as fine against their fringes (a 5-pixel step on
#: 2 x 2-binned frames is 0.75 mm, and lost a seventh of the dim singles to a wrong start)
CENTRE_PIXEL_M = 75e-6


def centre_search_in_pixels(pixel_m: float, s: SizingSettings) -> tuple[float, float]:
    """(search radius, coarse grid step) of the beam-centre search in pixels of ``pixel_m``."""
    scale = CENTRE_PIXEL_M / float(pixel_m)
    return s.centre_search_px * scale, s.centre_step_px * scale


#: the grids of :func:`_centre_candidates`, by their arguments (read-only arrays)
_centre_grid_cache: dict = {}


def _centre_candidates(centre_xy: Sequence[float], search_px: float, step_px: float) -> np.ndarray:
    """Grid points (x, y) every ``step_px`` within ``search_px`` of ``centre_xy`` (kept: a
    file's frames search the same grids; read-only)."""
    key = (float(centre_xy[0]), float(centre_xy[1]), float(search_px), float(step_px))
    grid = _centre_grid_cache.get(key)
    if grid is None:
        m = int(math.floor(search_px / step_px + 1e-9))
        offsets = np.arange(-m, m + 1) * step_px
        dx, dy = np.meshgrid(offsets, offsets)
        inside = np.hypot(dx, dy) <= search_px + 1e-9
        grid = np.column_stack([dx[inside] + centre_xy[0], dy[inside] + centre_xy[1]])
        grid.setflags(write=False)
        if len(_centre_grid_cache) >= 4096:
            _centre_grid_cache.clear()
        _centre_grid_cache[key] = grid
    return grid


#: ring tables (diameters x rings) of :func:`_ring_table`: the same for every frame of a file
_ring_table_cache: dict = {}


def _ring_table(optics: _Optics, width: float, n_rings: int, diameters: np.ndarray) -> np.ndarray:
    """:meth:`_Optics.ring_shape` of rings ``width`` wide (at their middles), kept."""
    key = (optics, float(width), int(n_rings), np.asarray(diameters, dtype=np.float64).tobytes())
    table = _ring_table_cache.get(key)
    if table is None:
        if len(_ring_table_cache) >= 16:
            _ring_table_cache.clear()
        table = np.ascontiguousarray(optics.ring_shape((np.arange(n_rings) + 0.5) * width, diameters))
        _ring_table_cache[key] = table
    return table


#: the ring search solves (a, b) exactly only in this many of its (centre, diameter) cells
#: (those :func:`_promising_cells` ranks first)
RING_SEARCH_CELLS = 48


def _promising_cells(counts: np.ndarray, table: np.ndarray, shape_sums: np.ndarray, n_pixels: float,
                     background: bool, anchor: int, top: int) -> np.ndarray:
    """The ``top`` (centre, diameter) cells of the ring search with the least negative
    log-likelihood by a quick estimate: the scale ``a`` profiled out exactly (``a = ΣC /
    (S + t N)`` for ``t = b/a``), ``t`` tried at ¼, 1 and 4 times the best one of each
    diameter at the centre ``anchor`` (a parabola in log t between), so that the ring sums
    of all centres meet each table of logarithms in one matrix product.  (m, 2) indices."""
    n_centres, n_diameters = shape_sums.shape
    if n_centres * n_diameters <= top:
        return np.argwhere(np.ones((n_centres, n_diameters), dtype=bool))
    total = counts.sum(axis=1)[:, None]
    if background:
        cells = np.column_stack([np.full(n_diameters, anchor), np.arange(n_diameters)])
        fit = _kernels().ring_cells(counts, table, shape_sums, cells, n_pixels, True, 3)
        t = np.clip(fit[:, 1] / np.maximum(fit[:, 0], 1e-300), 1e-300, 1e300)
        f0, f1, f2 = (total * np.log(np.maximum(shape_sums + (m * n_pixels) * t, 1e-300))
                      - counts @ np.log(np.maximum(table + m * t[:, None], 1e-300)).T for m in (0.25, 1.0, 4.0))
        curvature = f0 - 2.0 * f1 + f2
        inner = (f1 <= f0) & (f1 <= f2) & (curvature > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = np.where(inner, f1 - (f2 - f0) ** 2 / (8.0 * curvature), np.minimum(f0, f2))
    else:
        estimate = total * np.log(np.maximum(shape_sums, 1e-300)) - counts @ np.log(np.maximum(table, 1e-300)).T
    best = np.argpartition(np.nan_to_num(estimate, nan=np.inf).ravel(), top)[:top]
    return np.column_stack(np.unravel_index(best, estimate.shape))


def _ring_search(pixels: _FitPixels, optics: _Optics, s: SizingSettings, centres, diameters: np.ndarray,
                 width: float, newton_steps: int, ring_limit_px: float, *, anchor_xy: Sequence[float],
                 top: int = RING_SEARCH_CELLS):
    """The best (centre, diameter, a, b) of ``centres`` x ``diameters`` by the Poisson
    likelihood of the photons summed in rings ``width`` wide (out to ``ring_limit_px``)
    about each centre, with the best scale and background of each: solved exactly
    (:func:`spidarknet.sizing_kernels.ring_cells`) in the ``top`` cells that a quick
    estimate ranks first (:func:`_promising_cells`, anchored at the centre nearest
    ``anchor_xy``); ties go to the first centre, then the first diameter."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    n_rings = int(math.ceil(ring_limit_px / width)) + 1
    table = _ring_table(optics, width, n_rings, diameters)
    counts = pixels.ring_photons(centres, width, n_rings)
    shape_sums = pixels.ring_pixels(centres, width, n_rings) @ table.T
    anchor = int(np.argmin(np.hypot(centres[:, 0] - anchor_xy[0], centres[:, 1] - anchor_xy[1])))
    cells = _promising_cells(counts, table, shape_sums, pixels.n_pixels, s.background, anchor, top)
    fit = _kernels().ring_cells(counts, table, shape_sums, cells, pixels.n_pixels, s.background, newton_steps)
    best = np.lexsort((cells[:, 1], cells[:, 0], fit[:, 2]))[0]
    i, k = cells[best]
    return tuple(float(v) for v in centres[i]), float(diameters[k]), float(fit[best, 0]), float(fit[best, 1])


def fit_frame_sphere(pixels: _FitPixels, optics: _Optics, centre_xy: Sequence[float],
                     settings: SizingSettings | None = None) -> SphereFit:
    """Beam centre, diameter, scale and background of one frame's photons (module notes, 4-5).

    1. For each centre on a grid of ``centre_step_px`` within ``centre_search_px`` of
       ``centre_xy`` (just ``centre_xy`` without centre refinement) and each diameter of
       the grid (every other one), the Poisson likelihood of the sums in rings
       ``2 bin_px`` wide with the best scale and background; then the same on the 3 × 3
       pixels around the best centre, rings ``bin_px`` wide and the full diameter grid
       near the best diameter.
    2. From there, Fisher scoring (in scipy's trust region) of the per-pixel likelihood
       over (a, b, d, cx, cy).
    3. The uncertainty of the diameter from the inverse Fisher information of all five
       (so it includes the freedom of the centre), widened by the shape term.
    """
    s = (settings or SizingSettings()).check()
    refine = s.refine_centre and s.centre_search_px > 0
    reach, step = centre_search_in_pixels(optics.pixel_m, s) if refine else (0.0, 0.0)
    n_total = pixels.n_pixels
    r_least, r_most = pixels.radius_range(centre_xy) if n_total else (float("nan"),) * 2
    q_range = ((float(optics.q_inv_m(r_least)), float(optics.q_inv_m(r_most))) if n_total
               else (float("nan"),) * 2)
    if n_total < 100:
        return SphereFit(float("nan"), 0.0, 0.0, float("nan"), 0.0, 0, q_range,
                         centre_xy=tuple(centre_xy)).fail(
            f"no usable pixels: {n_total} in the q range around the beam centre (need >= 100); "
            "check the mask, --centre and --q-range")
    # 1. centre grid x diameter grid on ring sums, coarse then fine
    grid = _diameter_grid(s)
    ring_limit = r_most + reach + 2.0
    # rings narrower than the pixels where these span much of a fringe (binned frames)
    width = s.bin_px * min(1.0, 2.0 / optics.subpixels)
    if refine:
        coarse = _centre_candidates(centre_xy, reach, step)
        centre, d0, _, _ = _ring_search(pixels, optics, s, coarse, grid[::2], 2.0 * width, 3, ring_limit,
                                        anchor_xy=centre_xy)
        near = _centre_candidates(centre, 1.5, 1.0)
        near = near[np.hypot(near[:, 0] - centre_xy[0], near[:, 1] - centre_xy[1]) <= reach]
        local = grid[np.abs(grid - d0) <= 3 * s.coarse_step_nm * 1e-9]
        centre, d0, a0, b0 = _ring_search(pixels, optics, s, np.vstack([near, [centre]]), local, width, 6,
                                          ring_limit, anchor_xy=centre)
    else:
        centre, d0, a0, b0 = _ring_search(pixels, optics, s, [tuple(centre_xy)], grid, width, 6, ring_limit,
                                          anchor_xy=centre_xy)
    # 2. per-pixel likelihood over (a, b, d, centre) by Fisher scoring
    a, b, d, cx, cy, cov, nll, mu = _fisher_scoring(
        pixels, optics, (a0, b0, d0, centre[0], centre[1]), s, centre_xy if refine else None, reach)
    # 3. fit quality and uncertainty; 4. fringes of a second particle
    fit = _judge(_assess(pixels, s, refine, (a, b, d, cx, cy), cov, nll, mu, None, q_range), s)
    if fit.ok:
        started = time.thread_time()
        fit.second_particle_z, fit.second_particle_separation_m = second_particle_z(
            pixels, optics, mu, b, (cx, cy), d)
        fit.second_particle_cpu_s = time.thread_time() - started
    return fit


def _assess(pixels: _FitPixels, s: SizingSettings, refine: bool, params, cov, nll: float, mu: np.ndarray,
            r_pix: np.ndarray, q_range) -> SphereFit:
    """The fit of ``params`` (a, b, d, cx, cy) with its ring-sum quality, misfit and the
    diameter's 1σ from the covariance ``cov``; the rings about (cx, cy) are those of the
    pixels' radii ``r_pix`` where given (else worked out here)."""
    a, b, d, cx, cy = params
    if r_pix is None:
        shift = (cx - pixels.centre_xy[0], (cy - pixels.centre_xy[1]) * pixels.aspect)
        mu_k, n_k, c_k = _kernels().ring_totals(pixels.x, pixels.y, shift, s.bin_px, mu, pixels.lit, pixels.counts)
    else:
        ring = (r_pix / s.bin_px).astype(np.intp)
        mu_k, n_k = np.bincount(ring, weights=mu), np.bincount(ring)
        c_k = np.bincount(ring[pixels.lit], weights=pixels.counts, minlength=len(mu_k))[:len(mu_k)]
    used = n_k > 0
    signal = float(mu.sum() - b * pixels.n_pixels)
    chi2, misfit = _ring_quality(c_k[used], mu_k[used], 2 + s.background + 2 * refine, signal)
    var = cov[1 + s.background, 1 + s.background]
    sigma = math.sqrt(var) * 1e-9 if np.isfinite(var) and var > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        model = np.where(n_k > 0, mu_k / np.maximum(n_k, 1), np.nan)
    return SphereFit(d, a, b, chi2, signal, int(used.sum()), q_range,
                     diameter_err_m=_diameter_error(sigma, d, misfit), diameter_stat_err_m=sigma,
                     misfit=misfit, centre_xy=(float(cx), float(cy)), nll=nll, model=model)


# -- frames -----------------------------------------------------------------------------------

@dataclass
class SizeResult:
    """The size estimate of one frame; ``diameter_nm`` (and its 1σ ``diameter_err_nm``) is
    NaN and ``reason`` says why when the fit failed."""

    key: FrameKey
    diameter_nm: float
    fit_quality: float
    reason: str
    signal_photons: float
    background_photons_per_pixel: float
    centre_xy: tuple[float, float]
    diameter_err_nm: float = float("nan")
    misfit: float = float("nan")
    second_particle_z: float = float("nan")
    profile: RadialProfile | None = None
    q_inv_m: np.ndarray | None = None      # q of every ring of ``profile``
    fit: SphereFit | None = None
    fit_cpu_s: float = 0.0                 # CPU seconds of the fit (its cost, for benchmarks)
    second_particle_cpu_s: float = 0.0     # ... of which the second-particle test
    frame_photons: float = float("nan")    # photons within the fit's outer q (:func:`reach_photons`)

    @property
    def ok(self) -> bool:
        return not self.reason

    def row(self) -> list:
        def fmt(value: float, digits: int) -> str:
            return f"{value:.{digits}f}" if math.isfinite(value) else ""
        return [self.key.file, self.key.dataset, self.key.index, fmt(self.diameter_nm, 2),
                fmt(self.diameter_err_nm, 2), fmt(self.fit_quality, 3), fmt(self.misfit, 3),
                fmt(self.second_particle_z, 2), int(self.ok), self.reason,
                fmt(self.signal_photons, 0), fmt(self.background_photons_per_pixel, 5),
                fmt(self.centre_xy[0], 2), fmt(self.centre_xy[1], 2)]


def r_max_px(geometry: Geometry, settings: SizingSettings) -> float:
    """Largest ring radius (x pixels) the fit needs: where q reaches ``q_max_inv_nm``."""
    geometry.require_scattering()
    rho = radius_for_q_m(settings.q_max_inv_nm * 1e9, geometry.distance_m, geometry.wavelength_m)
    return rho / geometry.pixel_size_m[0] + settings.bin_px


def size_frame(frame: np.ndarray, valid: np.ndarray | None, geometry: Geometry, key: FrameKey,
               settings: SizingSettings | None = None, *, origin: tuple[int, int] = (0, 0),
               with_profile: bool = True, regions: dict | None = None) -> SizeResult:
    """Centre, diameter and (``with_profile``) radial profile about the fitted centre of one
    frame (``frame`` may be a region whose top-left pixel is ``origin`` = (row, column) of
    the full frame).  ``regions``, a dict kept from frame to frame of a file, keeps the
    fit region (its pixels and their offsets) for the next frame of the same mask."""
    s = (settings or SizingSettings()).check()
    optics = _Optics.of(geometry, s.d_max_nm)
    frame = np.asarray(frame)
    usable = np.ones(frame.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    px, py = geometry.pixel_size_m
    r_in = optics.radius_px(s.q_min_inv_nm * 1e9)
    r_out = optics.radius_px(s.q_max_inv_nm * 1e9)
    pixels = _FitPixels(frame, usable, origin, geometry.centre_px, r_in, r_out, py / px,
                        region=None if regions is None else regions.get("last"), adu_per_photon=s.adu_per_photon)
    if regions is not None:
        regions["last"] = pixels.region
    started = time.thread_time()
    fit = fit_frame_sphere(pixels, optics, geometry.centre_px, s)
    fit_cpu_s = time.thread_time() - started
    bright = reach_photons(frame, usable, origin, geometry.centre_px, r_out, py / px, s.adu_per_photon)
    centre = fit.centre_xy or geometry.centre_px
    profile = q = None
    if with_profile:
        photons = np.asarray(frame, dtype=np.float64)
        if s.adu_per_photon is not None:
            photons = photons / s.adu_per_photon
        photons = np.where(photons < 0, 0.0, photons)  # negative pixel noise counts as no photon
        profile = radial_profile(photons, usable, centre, bin_px=s.bin_px, r_max_px=r_max_px(geometry, s),
                                 origin=origin, pixel_aspect=py / px)
        q = optics.q_inv_m(np.nan_to_num(profile.radius_px))
    return SizeResult(key=key, diameter_nm=fit.diameter_nm, fit_quality=fit.fit_quality,
                      reason=fit.reason, signal_photons=fit.signal_photons,
                      background_photons_per_pixel=fit.background, centre_xy=centre,
                      diameter_err_nm=fit.diameter_err_nm, misfit=fit.misfit,
                      second_particle_z=fit.second_particle_z, profile=profile,
                      q_inv_m=q, fit=fit, fit_cpu_s=fit_cpu_s, second_particle_cpu_s=fit.second_particle_cpu_s,
                      frame_photons=bright)


def reach_photons(frame: np.ndarray, usable: np.ndarray, origin: tuple[int, int], centre_xy: Sequence[float],
                  r_out_px: float, aspect: float, adu_per_photon: float | None = None) -> float:
    """Photons on the usable pixels of ``frame`` (a region whose corner is ``origin``) within
    ``r_out_px`` (x pixels; rows scaled by ``aspect``) of the file's beam centre ``centre_xy``,
    background included: how bright the frame is where the fit looks, whatever the fit made
    of it (NaN pixels and negative noise count as none)."""
    rows = (np.arange(frame.shape[0]) + origin[0] - centre_xy[1]) * aspect
    cols = np.arange(frame.shape[1]) + origin[1] - centre_xy[0]
    inside = (rows[:, None] ** 2 + cols[None, :] ** 2 <= r_out_px * r_out_px) & usable
    values = np.asarray(frame)[inside].astype(np.float64)
    if adu_per_photon is not None:
        values /= adu_per_photon
    return float(np.sum(values, where=np.isfinite(values) & (values > 0)))


def default_jobs() -> int:
    """Processes a size fit uses by default: one per core this process may run on."""
    return core_count()


#: frames per task handed to a sizing worker (small: even shares of a few hundred hits)
_FRAMES_PER_TASK = 4
#: fit regions kept by a worker process from task to task (see :func:`size_frame`)
_worker_regions: dict = {}


def _size_frames(data: np.ndarray, valid: np.ndarray, origin: tuple[int, int], geometry: Geometry,
                 keys: Sequence[FrameKey], settings: SizingSettings, keep_profiles: bool,
                 regions: dict | None = None) -> list[SizeResult]:
    """:func:`size_frame` of consecutive frames of one file (``valid`` (h, w) or (n, h, w))."""
    regions = _worker_regions if regions is None else regions
    results = []
    for i, key in enumerate(keys):
        result = size_frame(data[i], valid if valid.ndim == 2 else valid[i], geometry, key, settings,
                            origin=origin, with_profile=keep_profiles, regions=regions)
        if not keep_profiles:
            result.profile = result.q_inv_m = None
            result.fit = None
        results.append(result)
    return results


def fit_roi(info: FileInfo, settings: SizingSettings) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 of a file's frames that the fit needs (around the beam,
    the centre search included; may leave the frame)."""
    reach = centre_search_in_pixels(info.geometry.pixel_size_m[0], settings)[0]
    half = int(math.ceil(max(r_max_px(info.geometry, settings), 128) + reach + 2))
    cx, cy = info.geometry.centre_px
    return (int(round(cy)) - half, int(round(cy)) + half + 1, int(round(cx)) - half, int(round(cx)) + half + 1)


def size_frames(data: np.ndarray, valid: np.ndarray, origin: tuple[int, int], geometry: Geometry,
                keys: Sequence[FrameKey], settings: SizingSettings, regions: dict) -> list[SizeResult]:
    """The fits of frames already read (a region of ``data`` whose corner is ``origin``), in
    this process; ``regions``, kept from call to call, keeps each mask's fit region."""
    return _size_frames(data, valid, origin, geometry, keys, settings.check(), False, regions=regions)


def _serve(conn) -> None:
    """A sizing worker (run by :class:`~spidarknet.core.pool.Pool`): one :class:`Result` of
    :func:`_size_frames` per task, until :class:`Stop`.  One BLAS thread each (the pool's
    default): the workers already fill the cores."""
    conn.recv()  # its job: nothing beyond the tasks
    while not isinstance(task := conn.recv(), Stop):
        conn.send(Result(_size_frames(*task)))


def _sources_to_size(source: FrameSource | Sequence[FrameSource],
                     keys: Sequence[FrameKey] | None) -> list[FrameSource]:
    """The sources of :func:`estimate_sizes`, their geometry checked, cut down to ``keys``."""
    sources = [source] if isinstance(source, FrameSource) else list(source)
    for src in sources:
        for info in src.files:
            try:
                info.geometry.require_scattering()
            except InputError as exc:
                raise InputError(f"{info.path}: {exc}") from None
    if keys is not None:
        keys = list(keys)
        if len(sources) == 1:
            known = {(info.path, info.dataset) for info in sources[0].files}
            unknown = [k for k in dict.fromkeys((key.file, key.dataset) for key in keys) if k not in known]
            if unknown:
                raise InputError(f"{len(unknown)} files of the frames to size are not among the "
                                 f"inputs, e.g. {unknown[0][0]}")
        sources = [src.select_keys(keys) for src in sources]
    return sources


def estimate_sizes(source: FrameSource | Sequence[FrameSource], keys: Sequence[FrameKey] | None = None,
                   settings: SizingSettings | None = None, *, chunk_frames: int = SIZE_CHUNK_FRAMES,
                   keep_profiles: bool = False,
                   on_frames: Callable[[int], object] | None = None,
                   jobs: int | None = None) -> list[SizeResult]:
    """Size every frame of ``source`` (or only ``keys``, which must be frames of it).

    Returns one :class:`SizeResult` per frame in the source's order; failed fits are
    results with a ``reason``.  Reads only the square around each file's beam centre that
    the fit needs.  ``keep_profiles`` keeps each frame's radial profile and q (for plots).
    ``jobs`` processes fit the frames (default :func:`default_jobs`; 1: in this process):
    this process reads the frames, a few at a time, and the workers fit them, each frame
    exactly as in one process, so the results do not depend on ``jobs``.
    """
    s = (settings or SizingSettings()).check()
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1 process for the size fits")
    sources = _sources_to_size(source, keys)

    def region(info: FileInfo):
        return fit_roi(info, s)

    def tasks():
        for src in sources:
            for chunk in src.chunks(chunk_frames, roi=region):
                for i in range(0, len(chunk), _FRAMES_PER_TASK if jobs > 1 else len(chunk)):
                    part = slice(i, i + _FRAMES_PER_TASK) if jobs > 1 else slice(None)
                    valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[part]
                    yield (chunk.data[part], valid, chunk.origin, chunk.info.geometry, chunk.keys[part],
                           s, keep_profiles)

    n_frames = sum(len(src) for src in sources)
    workers = min(jobs, -(-n_frames // _FRAMES_PER_TASK))
    results: list[SizeResult] = []
    if workers <= 1:
        regions: dict = {}
        for task in tasks():
            results.extend(_size_frames(*task, regions=regions))
            if on_frames is not None:
                on_frames(len(task[4]))
        return results
    with Pool("spidarknet.sizing:_serve", [None] * workers, label="size-fit worker {number} of {count}",
              died_hint="; run again with --jobs 1 to see why") as pool:
        for part in pool.map(tasks()):  # in the order of the tasks, two in flight per worker
            results.extend(part)
            if on_frames is not None:
                on_frames(len(part))
    return results


def summary_line(results: Sequence[SizeResult]) -> str:
    """``N frames sized: M fitted (median D nm), K failed (reasons)``."""
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    text = f"{len(results)} frames sized: {len(ok)} fitted"
    if ok:
        d = np.array([r.diameter_nm for r in ok])
        err = np.array([r.diameter_err_nm for r in ok])
        text += (f" (diameter median {np.median(d):.1f} nm, "
                 f"{np.percentile(d, 10):.1f}-{np.percentile(d, 90):.1f} nm for 80 %, "
                 f"median 1σ {np.nanmedian(err) if np.isfinite(err).any() else float('nan'):.2f} nm)")
    if failed:
        kinds = defaultdict(int)
        for r in failed:
            kinds[r.reason.split(":")[0]] += 1
        text += f", {len(failed)} failed (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"
    return text


# -- CSV --------------------------------------------------------------------------------------

def write_sizes_csv(results: Sequence[SizeResult], path: str | os.PathLike, force: bool = False) -> None:
    """``file,dataset,index,diameter_nm,diameter_err_nm,fit_quality,ok,reason,...``: one row
    per frame, failed fits included (empty diameter, ``ok`` 0 and the reason)."""
    with atomic_path(path, force, "size table") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(SIZE_COLUMNS)
            for result in results:
                writer.writerow(result.row())


@dataclass
class SizeRow:
    """One row of a size table as read back."""

    file: str
    dataset: str
    index: int
    diameter_nm: float       # NaN for a failed fit
    fit_quality: float
    reason: str
    diameter_err_nm: float = float("nan")  # 1σ; NaN for a failed fit or an older table
    misfit: float = float("nan")           # NaN for a failed fit or an older table
    second_particle_z: float = float("nan")  # NaN for a failed fit or an older table
    signal_photons: float = float("nan")

    @property
    def ok(self) -> bool:
        return math.isfinite(self.diameter_nm)


def _optional_float(row: dict, column: str) -> float:
    """A number of a size-table row; NaN where empty or absent (an older table)."""
    text = row.get(column) or ""
    return float(text) if text.strip() else float("nan")


def read_sizes(path: str | os.PathLike) -> list[SizeRow]:
    """Rows of a size table written by :func:`write_sizes_csv` (or any CSV with
    ``file,index,diameter_nm`` columns)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"size table {path} does not exist; make one with 'spidarknet size'")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            needed = ("file", "index", "diameter_nm")
            if reader.fieldnames is None or any(c not in reader.fieldnames for c in needed):
                raise InputError(f"{path} is not a size table: it needs columns {','.join(needed)} "
                                 "(written by 'spidarknet size')")
            for number, row in enumerate(reader, start=2):
                try:
                    diameter = float(row["diameter_nm"]) if row["diameter_nm"].strip() else float("nan")
                    rows.append(SizeRow(row["file"], row.get("dataset") or "", int(row["index"]),
                                        diameter, _optional_float(row, "fit_quality"), row.get("reason") or "",
                                        _optional_float(row, "diameter_err_nm"), _optional_float(row, "misfit"),
                                        _optional_float(row, "second_particle_z"),
                                        _optional_float(row, "signal_photons")))
                except (TypeError, ValueError, AttributeError):
                    raise InputError(f"{path}:{number}: malformed row") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read size table {path}: {exc}") from None
    return rows


def sizes_for(keys: Sequence[FrameKey], sizes_path: str | None = None, *, on_frames=None,
              jobs: int | None = None, source: FrameSource | None = None) -> tuple[np.ndarray, ...]:
    """Diameters (nm, NaN for failed fits), misfits, second-particle z and signal photons
    (NaN where unknown) of ``keys``: from a size table that must hold them, or fitted now
    from the frame files the keys name (in ``jobs`` processes, see :func:`estimate_sizes`):
    those of ``source`` when given (files opened once, with its geometry and mask options),
    else opened again from the keys."""
    if sizes_path:
        from spidarknet.core.keys import describe_keys, match_keys
        table = {(r.file, r.index): (r.diameter_nm, r.misfit, r.second_particle_z, r.signal_photons)
                 for r in read_sizes(sizes_path)}
        found, missing = match_keys([(k.file, k.index) for k in keys], table)
        if missing:
            raise InputError(f"the size table {sizes_path} lacks {len(missing)} of the {len(keys)} frames "
                             f"above the threshold ({describe_keys(missing)}); size them with 'spidarknet "
                             "size ... --hits' or leave out --sizes to fit them now")
        return tuple(np.array(found, dtype=np.float64).reshape(len(keys), 4).T)
    if not keys:
        return (np.zeros(0, dtype=np.float64),) * 4
    frames = source.select_keys(keys) if source is not None else FrameSource.from_keys(keys)
    results = estimate_sizes(frames, settings=SizingSettings(), on_frames=on_frames,
                             jobs=jobs)
    by_key = {(r.key.file, r.key.index): (r.diameter_nm, r.misfit, r.second_particle_z, r.signal_photons)
              for r in results}
    return tuple(np.array([by_key[(os.path.abspath(k.file), k.index)] for k in keys], dtype=np.float64).T)


def window_verdicts(diameters, misfits, second, signal, size_range: Sequence[float],
                    max_misfit: float = SIZE_WINDOW_MAX_MISFIT) -> tuple[np.ndarray, ...]:
    """The size window's verdicts on fitted frames: (inside, poor misfit, second particle,
    fitted as one round particle), each a bool array; a NaN misfit or z (an older size
    table) is no verdict."""
    lo, hi = size_range
    diameters = np.asarray(diameters, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        poor = np.isfinite(diameters) & (np.asarray(misfits) > max_misfit)
        several = np.isfinite(diameters) & ~poor & (np.asarray(second) > second_particle_cut(signal))
        fitted = np.isfinite(diameters) & ~poor & ~several
        inside = fitted & (diameters >= lo) & (diameters <= hi)
    return inside, poor, several, fitted


def select_size_window(hits, flags: np.ndarray, size_range: Sequence[float], sizes_path: str | None = None, *,
                       on_frames=None, max_misfit: float = SIZE_WINDOW_MAX_MISFIT,
                       jobs: int | None = None, source: FrameSource | None = None) -> tuple[np.ndarray, dict]:
    """``flags`` narrowed to the frames whose diameter lies in ``size_range`` (nm).

    Only flagged frames are sized (from ``sizes_path`` or fitted now).  Failed fits leave
    the selection, and so do frames whose sphere fit has a misfit above ``max_misfit``
    (the pattern is not that of one round particle: several particles, clusters; single
    icosahedra stay below 0.4), or whose pixels show the fringes of a second particle
    (``second_particle_z`` above :func:`second_particle_cut`: multiples whose ring profile a
    sphere still explains).  ``jobs`` processes fit them (default: one per core; the
    selection does not depend on it).  Returns the new flags and counts: inside, outside,
    failed (no size, misfit above ``max_misfit`` or a second particle; of these ``misfit``
    and ``second_particle``).
    """
    flags = np.asarray(flags, dtype=bool).copy()
    index = np.flatnonzero(flags)
    diameters, misfits, second, signal = sizes_for([hits.keys[i] for i in index], sizes_path,
                                                   on_frames=on_frames, jobs=jobs, source=source)
    inside, poor, several, fitted = window_verdicts(diameters, misfits, second, signal, size_range, max_misfit)
    flags[index[~inside]] = False
    return flags, {"inside": int(inside.sum()), "outside": int((fitted & ~inside).sum()),
                   "failed": int((~fitted).sum()), "misfit": int(poor.sum()),
                   "second_particle": int(several.sum())}
