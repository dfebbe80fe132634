"""Particle size per frame: beam centre, radial profile and a sphere form-factor fit.

For each frame (photon counts, with its usable-pixel mask and the file's geometry):

1. **Centre.**  The beam centre the file states is refined per frame, within
   ``centre_search_px``, to the point about which the pattern is most nearly
   centrosymmetric (Friedel's law, ``I(c + r) = I(c - r)``): the maximum of the masked,
   normalised autocorrelation of the smoothed frame, ``Σ f(x) f(s - x) / Σ f(x)² W(s - x)``
   with ``s = 2c``, computed by FFT (about 0.3 px on the simulated pnCCD frames, whose
   centre jitters by 1.5 px from shot to shot).
2. **Radial profile.**  Photons summed in rings ``bin_px`` wide around that centre over the
   usable pixels (``np.bincount``), with the number of usable pixels and their mean radius
   per ring.
3. **q.**  ``q = 4π sin(θ)/λ`` with ``2θ = atan(ρ/D)``, ρ the ring's mean radius in metres
   and D the detector distance (SI units throughout; printed in nm⁻¹).
4. **Fit.**  Expected photons in ring k: ``μ_k = n_k (a w_k |F(q_k; d)|² + b)``, with the
   sphere form factor ``F = 3 (sin x − x cos x) / x³``, ``x = q d / 2``, the pixel weight
   ``w_k = (D/L)³ (1 − ½ sin² 2θ)`` (solid angle relative to the beam centre times the
   azimuthal mean of the polarisation factor), a scale ``a ≥ 0`` and a flat background
   ``b ≥ 0`` photons/pixel.  For every diameter of a grid (``d_min_nm`` … ``d_max_nm`` every
   ``coarse_step_nm``) ``a`` and ``b`` maximise the Poisson likelihood of the ring sums
   (EM iterations, all diameters at once); the grid is then refined around the best one.

``fit_quality`` is the reduced Pearson χ² of the best fit,
``Σ_k (C_k − μ_k)² / μ_k / (N − 3)`` over the N rings fitted: about 1 when a sphere
explains the profile to within the Poisson noise, larger for worse fits (non-spherical
particles, several particles, a wrong centre); smaller is better.

A fit fails, with a reason and an empty diameter, when the frame holds too few signal
photons in the fitted q range; when the best diameter lies at the edge of the searched
range; when the fitted sphere has no form-factor minimum inside the fitted q range (then
the profile cannot fix the size); or when a featureless power law ``a q^-p + b`` explains
the profile about as well as the sphere (twice the log-likelihood ratio below
``min_fringe_evidence``: no fringes, as for droplets, aggregates or several particles).
Failures are results too: nothing is dropped.

Public API: :class:`SizingSettings`, :func:`radial_profile`, :func:`ring_q_inv_m`,
:func:`fit_sphere`, :func:`size_frame`, :func:`estimate_sizes`, :func:`write_sizes_csv`,
:func:`read_sizes`.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from spidarknet.errors import ConfigError, InputError
from spidarknet.frames import FileInfo, FrameKey, FrameSource, Geometry
from spidarknet.outputs import atomic_path

#: first zero of the sphere amplitude, x = q R (tan x = x)
SPHERE_FIRST_ZERO_X = 4.493409457909064

SIZE_COLUMNS = ["file", "dataset", "index", "diameter_nm", "fit_quality", "ok", "reason",
                "signal_photons", "background_photons_per_pixel", "centre_x_px", "centre_y_px"]


@dataclass
class SizingSettings:
    """How sizes are estimated (defaults suit a pnCCD at 1.7 keV and 125 mm)."""

    d_min_nm: float = 20.0            # smallest diameter searched
    d_max_nm: float = 150.0           # largest diameter searched
    coarse_step_nm: float = 0.5       # grid step of the global search
    fine_step_nm: float = 0.02        # grid step of the refinement (± 2 coarse steps)
    q_min_inv_nm: float = 0.0         # fit rings from this q (the mask usually decides)
    q_max_inv_nm: float = 1.0         # ... up to this q (≈ 195 px on the simulated pnCCD)
    bin_px: float = 1.0               # ring width in pixels
    min_ring_fraction: float = 0.2    # a ring is fitted when this share of it is usable
    min_signal_photons: float = 200.0  # fitted sphere photons needed in the fit range
    background: bool = True           # fit a flat background b (else b = 0)
    refine_centre: bool = True        # refine the beam centre per frame (Friedel symmetry)
    centre_search_px: float = 10.0    # ... at most this far from the file's centre
    adu_per_photon: float | None = None  # detector units per photon (None: data are photons)
    min_fringe_evidence: float = 25.0  # sphere vs smooth power law: 2 Δ log-likelihood needed
    em_iterations: int = 40           # EM iterations of the Poisson fit (refinement: twice)

    def check(self) -> "SizingSettings":
        """Raise :class:`ConfigError` on values that cannot work."""
        if not 0 < self.d_min_nm < self.d_max_nm:
            raise ConfigError(f"the diameter range {self.d_min_nm}-{self.d_max_nm} nm must be "
                              "positive and increasing (e.g. --d-range 20 150)")
        if not 0 < self.coarse_step_nm <= (self.d_max_nm - self.d_min_nm) / 4:
            raise ConfigError(f"the diameter step {self.coarse_step_nm} nm must be positive and "
                              "small against the range")
        if not 0 < self.fine_step_nm <= self.coarse_step_nm:
            raise ConfigError("the fine diameter step must be positive and at most the coarse step")
        if not 0 <= self.q_min_inv_nm < self.q_max_inv_nm:
            raise ConfigError(f"the q range {self.q_min_inv_nm}-{self.q_max_inv_nm} nm⁻¹ must be "
                              "increasing (e.g. --q-range 0 1.0)")
        if not self.bin_px > 0:
            raise ConfigError("the ring width must be positive (pixels)")
        if not 0 < self.min_ring_fraction <= 1:
            raise ConfigError("the usable share of a ring must lie in (0, 1]")
        if self.centre_search_px < 0:
            raise ConfigError("the centre search radius must be ≥ 0 pixels")
        if self.adu_per_photon is not None and not self.adu_per_photon > 0:
            raise ConfigError("--adu-per-photon must be positive")
        if self.em_iterations < 10:
            raise ConfigError("at least 10 EM iterations are needed")
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


# -- beam centre --------------------------------------------------------------------------------

def _smooth(image: np.ndarray, sigma_px: float) -> np.ndarray:
    import cv2
    return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_CONSTANT)


def refine_centre(frame: np.ndarray, valid: np.ndarray, centre_xy: Sequence[float], *,
                  search_px: float = 6.0, window_px: int = 128, origin: tuple[int, int] = (0, 0),
                  smooth_px: float = 2.0) -> tuple[tuple[float, float], float]:
    """The centre of Friedel symmetry near ``centre_xy``, and its normalised correlation.

    Within a square of ``2 window_px`` around ``centre_xy`` the frame is smoothed
    (Gaussian, ``smooth_px``, normalised by the smoothed mask) and correlated with its own
    point reflection: ``ncc(s) = Σ f(x) f(s − x) / Σ f(x)² W(s − x)``, which is 1 for a
    pattern symmetric about ``s / 2``.  The maximum within ``search_px`` is refined to
    sub-pixel precision by a parabola.  Returns the input centre and NaN when the frame
    holds no signal there or the maximum lies on the edge of the search.
    """
    cx, cy = float(centre_xy[0]), float(centre_xy[1])
    rows, cols = frame.shape
    r0 = int(round(cy - origin[0])) - window_px
    c0 = int(round(cx - origin[1])) - window_px
    side = 2 * window_px
    if r0 < 0 or c0 < 0 or r0 + side > rows or c0 + side > cols:
        # pad the window with unusable pixels where it leaves the region read
        f = np.zeros((side, side))
        w = np.zeros((side, side))
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + side, rows), min(c0 + side, cols)
        if rr1 <= rr0 or cc1 <= cc0:
            return (cx, cy), float("nan")
        f[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = frame[rr0:rr1, cc0:cc1]
        w[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = valid[rr0:rr1, cc0:cc1]
    else:
        f = frame[r0:r0 + side, c0:c0 + side].astype(np.float64)
        w = valid[r0:r0 + side, c0:c0 + side].astype(np.float64)
    f = np.where(np.isfinite(f) & (w > 0), f, 0.0)
    if not np.any(f > 0):
        return (cx, cy), float("nan")
    fs = _smooth(f, smooth_px)
    ws = _smooth(w, smooth_px)
    fs = np.where(ws > 0.3, fs / np.maximum(ws, 1e-12), 0.0) * w
    # a circular correlation of size n is free of wrap-around near s = 2 * window_px
    n = int(2 ** math.ceil(math.log2(1.5 * side + 4 * search_px + 8)))
    spectrum = np.fft.rfft2(fs, (n, n))
    num = np.fft.irfft2(spectrum * spectrum, (n, n))
    den = np.fft.irfft2(np.fft.rfft2(fs * fs, (n, n)) * np.fft.rfft2(w, (n, n)), (n, n))
    s0x = 2.0 * (cx - origin[1] - c0)
    s0y = 2.0 * (cy - origin[0] - r0)
    reach = int(math.ceil(2 * search_px))
    ix0, iy0 = int(round(s0x)), int(round(s0y))
    ys = slice(iy0 - reach - 1, iy0 + reach + 2)
    xs = slice(ix0 - reach - 1, ix0 + reach + 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ncc = np.where(den[ys, xs] > 1e-12 * den.max(), num[ys, xs] / den[ys, xs], 0.0)
    inner = ncc[1:-1, 1:-1]
    j, i = np.unravel_index(int(np.argmax(inner)), inner.shape)
    if j in (0, inner.shape[0] - 1) or i in (0, inner.shape[1] - 1):
        return (cx, cy), float("nan")
    j, i = j + 1, i + 1

    def vertex(a: float, b: float, c: float) -> float:
        curvature = a - 2.0 * b + c
        return 0.5 * (a - c) / curvature if curvature < 0 else 0.0

    sy = iy0 - reach - 1 + j + vertex(ncc[j - 1, i], ncc[j, i], ncc[j + 1, i])
    sx = ix0 - reach - 1 + i + vertex(ncc[j, i - 1], ncc[j, i], ncc[j, i + 1])
    new = (origin[1] + c0 + 0.5 * sx, origin[0] + r0 + 0.5 * sy)
    if math.hypot(new[0] - cx, new[1] - cy) > search_px:
        return (cx, cy), float("nan")
    return new, float(ncc[j, i])


# -- the sphere fit -----------------------------------------------------------------------------

@dataclass
class SphereFit:
    """The best sphere for one radial profile (see the module notes for the model)."""

    diameter_m: float          # NaN when the fit failed
    scale: float               # a: photons per pixel at q = 0
    background: float          # b: photons per pixel
    fit_quality: float         # reduced Pearson χ² (≈ 1 good, larger worse)
    signal_photons: float      # Σ n_k a w_k |F|² over the rings fitted
    n_rings: int
    q_range_inv_m: tuple[float, float]
    fringe_evidence: float = float("nan")  # 2 Δ log L of the sphere over a smooth power law
    reason: str = ""           # why the fit failed ("" when it did not)
    model: np.ndarray | None = None  # μ_k / n_k, photons per pixel of the best fit

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def diameter_nm(self) -> float:
        return self.diameter_m * 1e9


def _poisson_fit(counts: np.ndarray, n_pixels: np.ndarray, shapes: np.ndarray, *,
                 background: bool, iterations: int):
    """Maximum-likelihood a, b ≥ 0 of ``μ = n (a·shape + b)`` for every row of ``shapes``.

    EM (multiplicative) updates, which keep a and b non-negative and raise the Poisson
    likelihood at each step; all rows (diameters) at once.  Returns a, b, deviance.
    """
    sum_n = n_pixels.sum()
    n_shape = shapes * n_pixels                       # (d, k)
    sum_n_shape = np.maximum(n_shape.sum(axis=1), 1e-300)
    total = counts.sum()
    # start: background from the outer third of the rings, the rest as signal
    outer = slice(2 * len(counts) // 3, None)
    b = np.full(len(shapes), max(counts[outer].sum() / max(n_pixels[outer].sum(), 1), 1e-6)
                if background else 0.0)
    a = np.maximum(total - b * sum_n, 0.1 * total + 1e-6) / sum_n_shape
    for _ in range(iterations):
        mu = a[:, None] * shapes + b[:, None]          # per pixel
        ratio = counts / np.maximum(mu, 1e-300)        # C_k / (μ_k / n_k)
        a = a * (ratio * shapes).sum(axis=1) / sum_n_shape
        if background:
            b = b * ratio.sum(axis=1) / sum_n
    mu = n_pixels * (a[:, None] * shapes + b[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(counts > 0, counts * np.log(counts / np.maximum(mu, 1e-300)), 0.0)
    deviance = 2.0 * np.sum(term - (counts - mu), axis=1)
    return a, b, deviance


def fit_sphere(q_inv_m: np.ndarray, photons: np.ndarray, n_pixels: np.ndarray, *,
               weight: np.ndarray | None = None,
               settings: SizingSettings | None = None) -> SphereFit:
    """Fit the sphere model to ring sums ``photons`` of ``n_pixels`` usable pixels at ``q_inv_m``.

    ``weight`` is the per-ring pixel weight (:func:`pixel_weight`; default 1).  Rings must
    already be restricted to the q range wanted.  The diameter is searched on a grid of
    ``coarse_step_nm`` from ``d_min_nm`` to ``d_max_nm``, then on a grid of
    ``fine_step_nm`` around the best value.  A failed fit comes back with ``reason`` set
    and a NaN diameter (see the module notes for the reasons).
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
                         reason=f"too few usable rings: {len(q)} in the q range (need >= 10); "
                                "check the mask and --q-range")
    coarse = np.arange(s.d_min_nm, s.d_max_nm + 0.5 * s.coarse_step_nm, s.coarse_step_nm) * 1e-9
    shapes = w * sphere_intensity(q[None, :], coarse[:, None])
    a, b, dev = _poisson_fit(counts, n, shapes, background=s.background, iterations=s.em_iterations)
    best = int(np.argmin(dev))
    at_edge = best in (0, len(coarse) - 1)
    lo = max(coarse[best] - 2 * s.coarse_step_nm * 1e-9, coarse[0])
    hi = min(coarse[best] + 2 * s.coarse_step_nm * 1e-9, coarse[-1])
    fine = np.arange(lo, hi + 0.5 * s.fine_step_nm * 1e-9, s.fine_step_nm * 1e-9)
    fine_shapes = w * sphere_intensity(q[None, :], fine[:, None])
    fa, fb, fdev = _poisson_fit(counts, n, fine_shapes, background=s.background,
                                iterations=2 * s.em_iterations)
    k = int(np.argmin(fdev))
    diameter, scale, bg = float(fine[k]), float(fa[k]), float(fb[k])
    per_pixel = scale * fine_shapes[k] + bg
    mu = n * per_pixel
    dof = max(len(q) - 3, 1)
    chi2 = float(np.sum((counts - mu) ** 2 / np.maximum(mu, 1e-12)) / dof)
    signal = float(np.sum(n * scale * fine_shapes[k]))
    # the same model with a featureless fall-off, a q^-p power law, instead of the sphere
    exponents = np.arange(1.0, 6.01, 0.25)
    q_pos = np.maximum(q, max(q_range[0], 1e-3 * q_range[1]))
    smooth = w * (q_pos[None, :] / q_pos.min()) ** -exponents[:, None]
    _, _, smooth_dev = _poisson_fit(counts, n, smooth, background=s.background,
                                    iterations=s.em_iterations)
    evidence = float(np.min(smooth_dev) - fdev[k])
    fit = SphereFit(diameter, scale, bg, chi2, signal, len(q), q_range, fringe_evidence=evidence,
                    model=per_pixel)
    first_minimum = 2.0 * SPHERE_FIRST_ZERO_X / diameter
    if signal < s.min_signal_photons:
        fit.reason = (f"too few photons: {signal:.0f} signal photons in the fitted q range "
                      f"(need >= {s.min_signal_photons:.0f})")
    elif at_edge:
        side = "smallest" if best == 0 else "largest"
        fit.reason = (f"no size minimum: the best fit is the {side} diameter searched "
                      f"({s.d_min_nm:g}-{s.d_max_nm:g} nm); not a single sphere in that range?")
    elif first_minimum > q_range[1]:
        fit.reason = (f"no form-factor minimum in the q range: the first one of a "
                      f"{diameter * 1e9:.0f} nm sphere lies at {first_minimum * 1e-9:.2f} 1/nm, "
                      f"beyond {q_range[1] * 1e-9:.2f} 1/nm (size not determined)")
    elif evidence < s.min_fringe_evidence:
        fit.reason = (f"no sphere fringes: a smooth q^-p fall-off fits about as well as a "
                      f"{diameter * 1e9:.0f} nm sphere (2 delta log L = {evidence:.0f}, need >= "
                      f"{s.min_fringe_evidence:g}); particle too large, clustered or not spherical?")
    if fit.reason:
        fit.diameter_m = float("nan")
    return fit


# -- frames -----------------------------------------------------------------------------------

@dataclass
class SizeResult:
    """The size estimate of one frame; ``diameter_nm`` is NaN and ``reason`` says why when
    the fit failed."""

    key: FrameKey
    diameter_nm: float
    fit_quality: float
    reason: str
    signal_photons: float
    background_photons_per_pixel: float
    centre_xy: tuple[float, float]
    profile: RadialProfile | None = None
    q_inv_m: np.ndarray | None = None      # q of every ring of ``profile``
    fit: SphereFit | None = None

    @property
    def ok(self) -> bool:
        return not self.reason

    def row(self) -> list:
        def fmt(value: float, digits: int) -> str:
            return f"{value:.{digits}f}" if math.isfinite(value) else ""
        return [self.key.file, self.key.dataset, self.key.index, fmt(self.diameter_nm, 2),
                fmt(self.fit_quality, 3), int(self.ok), self.reason, fmt(self.signal_photons, 0),
                fmt(self.background_photons_per_pixel, 5), fmt(self.centre_xy[0], 2),
                fmt(self.centre_xy[1], 2)]


def r_max_px(geometry: Geometry, settings: SizingSettings) -> float:
    """Largest ring radius (x pixels) the fit needs: where q reaches ``q_max_inv_nm``."""
    geometry.require_scattering()
    rho = radius_for_q_m(settings.q_max_inv_nm * 1e9, geometry.distance_m, geometry.wavelength_m)
    return rho / geometry.pixel_size_m[0] + settings.bin_px


def size_frame(frame: np.ndarray, valid: np.ndarray | None, geometry: Geometry, key: FrameKey,
               settings: SizingSettings | None = None, *, origin: tuple[int, int] = (0, 0)
               ) -> SizeResult:
    """Centre, radial profile and sphere fit of one frame (``frame`` may be a region whose
    top-left pixel is ``origin`` = (row, column) of the full frame)."""
    s = settings or SizingSettings()
    geometry.require_scattering()
    photons = np.asarray(frame, dtype=np.float64)
    if s.adu_per_photon is not None:
        photons = photons / s.adu_per_photon
    photons = np.where(photons < 0, 0.0, photons)  # negative pixel noise counts as no photon
    usable = np.ones(photons.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    centre = geometry.centre_px
    if s.refine_centre and s.centre_search_px > 0:
        centre, _ = refine_centre(photons, usable, centre, search_px=s.centre_search_px,
                                  origin=origin)
    px, py = geometry.pixel_size_m
    r_max = r_max_px(geometry, s)
    profile = radial_profile(photons, usable, centre, bin_px=s.bin_px, r_max_px=r_max,
                             origin=origin, pixel_aspect=py / px)
    radius_m = np.nan_to_num(profile.radius_px) * px
    q = scattering_q_inv_m(radius_m, geometry.distance_m, geometry.wavelength_m)
    full_ring = 2.0 * math.pi * (np.arange(len(q)) + 0.5) * s.bin_px ** 2
    use = ((profile.n_pixels >= np.maximum(s.min_ring_fraction * full_ring, 3))
           & (q >= s.q_min_inv_nm * 1e9) & (q <= s.q_max_inv_nm * 1e9))
    fit = fit_sphere(q[use], profile.photons[use], profile.n_pixels[use],
                     weight=pixel_weight(radius_m[use], geometry.distance_m), settings=s)
    return SizeResult(key=key, diameter_nm=fit.diameter_nm, fit_quality=fit.fit_quality,
                      reason=fit.reason, signal_photons=fit.signal_photons,
                      background_photons_per_pixel=fit.background, centre_xy=centre,
                      profile=profile, q_inv_m=q, fit=fit)


def _group_keys(keys: Iterable[FrameKey]) -> dict[tuple[str, str], list[int]]:
    grouped: dict[tuple[str, str], list[int]] = defaultdict(list)
    for key in keys:
        grouped[(key.file, key.dataset)].append(int(key.index))
    return grouped


def sources_for_keys(keys: Sequence[FrameKey], **source_options) -> list[FrameSource]:
    """Frame sources holding exactly ``keys`` (one per dataset path), checked up front.

    The files are the ones the keys name (as written in a hit list); a file that is gone
    or a frame beyond its file's end is an :class:`InputError` naming it.
    """
    by_dataset: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for (file, dataset), indices in _group_keys(keys).items():
        by_dataset[dataset][os.path.abspath(file)].extend(indices)
    sources = []
    for dataset, files in by_dataset.items():
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise InputError(f"the frame file {missing[0]} named in the hit list does not exist"
                             + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else "")
                             + "; run from the folder the hit list was made in, or move the files back")
        source = FrameSource(list(files), dataset=dataset or None, **source_options)
        wanted = {}
        for info, (file, indices) in zip(source.files, files.items()):
            idx = np.unique(np.asarray(indices, dtype=np.int64))
            beyond = idx[idx >= info.n_frames]
            if len(beyond):
                raise InputError(f"{file} has {info.n_frames} frames, the hit list names frame "
                                 f"{int(beyond[0])}" + (f" and {len(beyond) - 1} more beyond its end"
                                                        if len(beyond) > 1 else ""))
            wanted[info.path] = idx
        source.select(wanted)
        sources.append(source)
    return sources


def estimate_sizes(source: FrameSource | Sequence[FrameSource], keys: Sequence[FrameKey] | None = None,
                   settings: SizingSettings | None = None, *, chunk_frames: int = 16,
                   keep_profiles: bool = False,
                   on_frames: Callable[[int], object] | None = None) -> list[SizeResult]:
    """Size every frame of ``source`` (or only ``keys``, which must be frames of it).

    Returns one :class:`SizeResult` per frame in the source's order; failed fits are
    results with a ``reason``.  Reads only the square around each file's beam centre that
    the fit needs.  ``keep_profiles`` keeps each frame's radial profile and q (for plots).
    """
    s = (settings or SizingSettings()).check()
    sources = [source] if isinstance(source, FrameSource) else list(source)
    for src in sources:
        for info in src.files:
            try:
                info.geometry.require_scattering()
            except InputError as exc:
                raise InputError(f"{info.path}: {exc}") from None
    if keys is not None:
        wanted = _group_keys(keys)
        for src in sources:
            known = {(info.path, info.dataset) for info in src.files}
            unknown = [k for k in wanted if k not in known]
            if len(sources) == 1 and unknown:
                raise InputError(f"{len(unknown)} files of the frames to size are not among the "
                                 f"inputs, e.g. {unknown[0][0]}")
            src.select({path: np.asarray(indices) for (path, dataset), indices in wanted.items()
                        if (path, dataset) in known})

    def region(info: FileInfo):
        half = int(math.ceil(max(r_max_px(info.geometry, s), 128) + s.centre_search_px + 2))
        cx, cy = info.geometry.centre_px
        return (int(round(cy)) - half, int(round(cy)) + half + 1,
                int(round(cx)) - half, int(round(cx)) + half + 1)

    results = []
    for src in sources:
        for chunk in src.chunks(chunk_frames, roi=region):
            for i, key in enumerate(chunk.keys):
                valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[i]
                result = size_frame(chunk.data[i], valid, chunk.info.geometry, key, s,
                                    origin=chunk.origin)
                if not keep_profiles:
                    result.profile = result.q_inv_m = None
                    result.fit = None
                results.append(result)
            if on_frames is not None:
                on_frames(len(chunk))
    return results


def summary_line(results: Sequence[SizeResult]) -> str:
    """``N frames sized: M fitted (median D nm), K failed (reasons)``."""
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    text = f"{len(results)} frames sized: {len(ok)} fitted"
    if ok:
        d = np.array([r.diameter_nm for r in ok])
        text += (f" (diameter median {np.median(d):.1f} nm, "
                 f"{np.percentile(d, 10):.1f}-{np.percentile(d, 90):.1f} nm for 80 %)")
    if failed:
        kinds = defaultdict(int)
        for r in failed:
            kinds[r.reason.split(":")[0]] += 1
        text += f", {len(failed)} failed (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"
    return text


# -- CSV --------------------------------------------------------------------------------------

def write_sizes_csv(results: Sequence[SizeResult], path: str | os.PathLike, force: bool = False) -> None:
    """``file,dataset,index,diameter_nm,fit_quality,ok,reason,...``: one row per frame,
    failed fits included (empty diameter, ``ok`` 0 and the reason)."""
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

    @property
    def ok(self) -> bool:
        return math.isfinite(self.diameter_nm)


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
                    quality = row.get("fit_quality") or ""
                    rows.append(SizeRow(row["file"], row.get("dataset") or "", int(row["index"]),
                                        diameter, float(quality) if quality.strip() else float("nan"),
                                        row.get("reason") or ""))
                except (TypeError, ValueError, AttributeError):
                    raise InputError(f"{path}:{number}: malformed row") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read size table {path}: {exc}") from None
    return rows


def diameters_for(keys: Sequence[FrameKey], sizes_path: str | None = None, *,
                  on_frames=None) -> np.ndarray:
    """Diameters (nm, NaN for failed fits) of ``keys``: from a size table that must hold
    them, or fitted now from the frame files the keys name."""
    if sizes_path:
        from spidarknet.report.keys import describe_keys, match_keys
        table = {(r.file, r.index): r.diameter_nm for r in read_sizes(sizes_path)}
        found, missing = match_keys([(k.file, k.index) for k in keys], table)
        if missing:
            raise InputError(f"the size table {sizes_path} lacks {len(missing)} of the {len(keys)} frames "
                             f"above the threshold ({describe_keys(missing)}); size them with 'spidarknet "
                             "size ... --hits' or leave out --sizes to fit them now")
        return np.array(found, dtype=np.float64)
    if not keys:
        return np.zeros(0, dtype=np.float64)
    results = estimate_sizes(sources_for_keys(keys), settings=SizingSettings(), on_frames=on_frames)
    by_key = {(r.key.file, r.key.index): r.diameter_nm for r in results}
    return np.array([by_key[(os.path.abspath(k.file), k.index)] for k in keys], dtype=np.float64)


def select_size_window(hits, flags: np.ndarray, size_range: Sequence[float], sizes_path: str | None = None, *,
                       on_frames=None) -> tuple[np.ndarray, dict]:
    """``flags`` narrowed to the frames whose diameter lies in ``size_range`` (nm).

    Only flagged frames are sized (from ``sizes_path`` or fitted now); failed fits leave
    the selection.  Returns the new flags and counts: inside, outside, failed.
    """
    lo, hi = size_range
    flags = np.asarray(flags, dtype=bool).copy()
    index = np.flatnonzero(flags)
    diameters = diameters_for([hits.keys[i] for i in index], sizes_path, on_frames=on_frames)
    fitted = np.isfinite(diameters)
    inside = fitted & (diameters >= lo) & (diameters <= hi)
    flags[index[~inside]] = False
    return flags, {"inside": int(inside.sum()), "outside": int((fitted & ~inside).sum()),
                   "failed": int((~fitted).sum())}
