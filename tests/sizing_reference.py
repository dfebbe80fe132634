"""The sphere fit as it was before issue #19 (commit 6804dee): the reference the fast fit
(:func:`spidarknet.sizing.fit_frame_sphere`) is compared with in ``tests/test_sizing.py``.

Slow (130-220 ms a frame): the ring-sum search over every centre and diameter in numpy,
then scipy's trust-exact on the likelihood of every pixel of the region.  Test code only.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from spidarknet.sizing import (ROW_STRIPE_CYCLES_PER_PIXEL, SECOND_PARTICLE_MIN_SEPARATION, SizingSettings, SphereFit,
                               centre_search_in_pixels)
from spidarknet.sizing.background import _scale_background
from spidarknet.sizing.centre_search import _centre_candidates
from spidarknet.sizing.formfactor import _Optics
from spidarknet.sizing.frame_fit import _assess
from spidarknet.sizing.profile_fit import _diameter_grid, _inverse_scaled, _judge
from spidarknet.sizing.region import _FitPixels


def second_particle_z_reference(pixels: _FitPixels, optics: _Optics, mu: np.ndarray, background: float,
                      centre_xy: Sequence[float], diameter_m: float,
                      row_stripes: bool = False) -> tuple[float, float]:
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
    pixels resolve (``π/κ``, ``κ`` the q across one pixel), but for the fringes along the rows
    where ``row_stripes`` (:data:`~spidarknet.sizing.ROW_STRIPE_CYCLES_PER_PIXEL`: on every file
    in the ninth session, on files whose rows carry stripes since the tenth); NaN when that
    range is empty.  The statistic is a test of a model (one particle), not of our
    simulator: its null distribution follows from Poisson statistics alone.
    """
    kappa = 2.0 * math.pi / optics.wavelength_m * optics.pixel_m / optics.distance_m  # q per pixel
    largest = 0.9 * math.pi / kappa
    if not largest > SECOND_PARTICLE_MIN_SEPARATION * diameter_m or len(mu) == 0:
        return float("nan"), float("nan")
    x, y = pixels.offsets(centre_xy)
    col, row = np.rint(x).astype(np.intp), np.rint(y).astype(np.intp)
    signal = mu - background
    weighted = -signal                              # (C/μ − 1) s, with C = 0 off the lit pixels
    weighted[pixels.lit] += pixels.counts * signal[pixels.lit] / mu[pixels.lit]
    variance = float(np.sum(signal * signal / mu))
    if not variance > 0:
        return float("nan"), float("nan")
    n = 1 << int(math.ceil(math.log2(2 * (max(np.abs(col).max(), np.abs(row).max()) + 1))))
    grid = np.zeros((n, n))
    np.add.at(grid, (row % n, col % n), weighted)
    power = np.abs(np.fft.rfft2(grid)) ** 2 / variance
    fy = np.fft.fftfreq(n) * n
    fx = np.arange(power.shape[1], dtype=np.float64)
    separation = 2.0 * math.pi / (n * kappa) * np.hypot(fy[:, None], fx[None, :])
    searched = (separation > SECOND_PARTICLE_MIN_SEPARATION * diameter_m) & (separation < largest)
    if row_stripes:
        searched &= fx[None, :] >= math.ceil(ROW_STRIPE_CYCLES_PER_PIXEL * n)
    if not searched.any():
        return float("nan"), float("nan")
    # noisier than Poisson (a measured detector's gain spread, sub-photon noise): the lower
    # quartile of the searched map, ln(4/3) for exponentials of mean 1, says by how much; a
    # second particle raises its peaks and their surroundings, hardly the quietest quarter
    power /= max(1.0, float(np.percentile(power[searched], 25)) / math.log(4.0 / 3.0))
    best = int(np.argmax(np.where(searched, power, -1.0)))
    return math.sqrt(power.flat[best]), float(separation.flat[best])


class _PixelModelReference:
    """The Poisson likelihood of every pixel of ``pixels`` as a function of the free
    parameters θ = (a, [b,] d in nm[, cx, cy]) (b fixed at 0 without a background, the
    centre fixed at ``centre_xy`` when ``fit_centre`` is false): :meth:`at` gives the
    negative log-likelihood, μ per pixel, the pixels' radii, ∂μ/∂θ and the expected
    (Fisher) information ``Σ_j ∇μ_j ∇μ_jᵀ / μ_j``; the last few points are kept, as the
    optimiser asks for value, gradient and information one at a time."""

    def __init__(self, pixels: _FitPixels, optics: _Optics, fit_background: bool, fit_centre: bool,
                 centre_xy: Sequence[float]):
        self.pixels, self.optics = pixels, optics
        self.fit_b, self.fit_c = fit_background, fit_centre
        self.centre_xy = (float(centre_xy[0]), float(centre_xy[1]))
        self._kept: dict[bytes, tuple] = {}

    def unpack(self, theta: np.ndarray) -> tuple[float, float, float, float, float]:
        """(a, b, d in nm, cx, cy) of the free parameters ``theta``."""
        values = [float(v) for v in theta]
        a = values.pop(0)
        b = values.pop(0) if self.fit_b else 0.0
        d_nm = values.pop(0)
        return (a, b, d_nm) + ((values[0], values[1]) if self.fit_c else self.centre_xy)

    def at(self, theta: np.ndarray) -> tuple:
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if key not in self._kept:
            if len(self._kept) >= 4:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = self._evaluate(*self.unpack(theta))
        return self._kept[key]

    def _evaluate(self, a, b, d_nm, cx, cy) -> tuple:
        pixels, optics = self.pixels, self.optics
        off_x, off_y = (v.astype(np.float64) for v in pixels.offsets((cx, cy)))
        r = np.sqrt(off_x * off_x + off_y * off_y)
        if optics.subpixels == 1:   # point samples at the pixel centres
            shape, d_shape_d, d_shape_r = optics.shape_and_derivatives(r, d_nm * 1e-9)
        else:                       # averages over the pixels' area
            shape, d_shape_d, d_shape_cx, d_shape_cy = optics.pixel_shape_and_derivatives(
                off_x, off_y, pixels.aspect, d_nm * 1e-9)
        mu = a * shape + b
        nll = float(mu.sum() - np.sum(pixels.counts * np.log(np.maximum(mu[pixels.lit], 1e-300))))
        grads = [shape] + ([np.ones_like(shape)] if self.fit_b else []) + [a * d_shape_d * 1e-9]
        if self.fit_c and optics.subpixels == 1:
            inv_r = 1.0 / np.maximum(r, 1e-9)
            grads += [-a * d_shape_r * off_x * inv_r, -a * d_shape_r * off_y * pixels.aspect * inv_r]
        elif self.fit_c:
            grads += [a * d_shape_cx, a * d_shape_cy]
        grads = np.array(grads)
        info = (grads / np.maximum(mu, 1e-300)) @ grads.T
        return nll, mu, r, grads, info

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """∇ of the negative log-likelihood: ``Σ_j ∇μ_j (1 − C_j / μ_j)``."""
        _, mu, _, grads, _ = self.at(theta)
        residual = np.ones_like(mu)
        residual[self.pixels.lit] -= self.pixels.counts / np.maximum(mu[self.pixels.lit], 1e-300)
        # not BLAS: a threaded gemv of 5 x N costs 100 times more on a busy machine
        return np.einsum("ij,j->i", grads, residual)


def _fisher_scoring_reference(pixels: _FitPixels, optics: _Optics, start: Sequence[float], s: SizingSettings,
                    search_centre: Sequence[float] | None, reach_px: float, *, max_steps: int = 30):
    """Maximum-likelihood (a, b, d, cx, cy) of the photons of every pixel of ``pixels``.

    Fisher scoring in a trust region: ``scipy.optimize.minimize(method="trust-exact")`` of
    the negative log-likelihood with the expected information ``I = Σ_j ∇μ_j ∇μ_jᵀ / μ_j``
    as its Hessian, in units of the starting point's standard errors (so that one trust
    radius suits the scale, the background, the diameter and the centre).  Points outside
    a, b ≥ 0, the diameter range searched and ``reach_px`` (+1) of ``search_centre`` are
    refused (the centre is fixed when that is None, b when there is no background).
    ``start`` is (a, b, d in m, cx, cy).  Returns a, b, d (m), cx, cy, the covariance of
    the free parameters (a, [b,] d in nm[, cx, cy]), the negative log-likelihood, μ per
    pixel and the pixels' radii.
    """
    from scipy import optimize  # on first use: commands that size nothing do not load it
    a, b, d_m, cx, cy = (float(v) for v in start)
    fit_c = search_centre is not None
    model = _PixelModelReference(pixels, optics, s.background, fit_c, (cx, cy))
    theta = np.array([a] + ([b] if s.background else []) + [d_m * 1e9] + ([cx, cy] if fit_c else []))
    unit = 1.0 / np.sqrt(np.maximum(np.diag(model.at(theta)[4]), 1e-300))   # 1σ of each, at the start

    def allowed(a, b, d_nm, cx, cy) -> bool:
        inside = not fit_c or math.hypot(cx - search_centre[0], cy - search_centre[1]) <= reach_px + 1.0
        return a >= 0 and b >= 0 and s.d_min_nm <= d_nm <= s.d_max_nm and inside

    def nll(z):   # refused outside (the optimiser then shrinks its trust region)
        return model.at(z * unit)[0] if allowed(*model.unpack(z * unit)) else math.inf

    def jac(z):
        return model.gradient(z * unit) * unit if allowed(*model.unpack(z * unit)) else np.zeros_like(z)

    def hess(z):
        inside = allowed(*model.unpack(z * unit))
        return model.at(z * unit)[4] * np.outer(unit, unit) if inside else np.eye(len(z))

    # converged when the gradient, in standard errors, is 1 % of one (float32 pixel offsets
    # leave a floor near 1e-3); the grid's start may lie many standard errors away
    found = optimize.minimize(nll, theta / unit, method="trust-exact", jac=jac, hess=hess,
                              options={"gtol": 1e-2, "maxiter": max_steps, "initial_trust_radius": 100.0})
    best = found.x * unit
    value, mu, r, _, info = model.at(best)
    a, b, d_nm, cx, cy = model.unpack(best)
    return a, b, d_nm * 1e-9, cx, cy, _inverse_scaled(info), value, mu, r


def _ring_search_reference(pixels: _FitPixels, optics: _Optics, s: SizingSettings, centres, diameters: np.ndarray,
                 width: float, newton_steps: int, ring_limit_px: float):
    """The best (centre, diameter, a, b) of ``centres`` x ``diameters`` by the Poisson
    likelihood of the photons summed in rings ``width`` wide (out to ``ring_limit_px``)
    about each centre, with the best scale and background of each."""
    n_rings = int(math.ceil(ring_limit_px / width)) + 1
    table = optics.ring_shape((np.arange(n_rings) + 0.5) * width, diameters)
    best = (math.inf, 0, 0.0, 0.0, None)
    for centre in centres:
        r_pix, r_lit = pixels.radii(centre)
        n = np.bincount((r_pix / width).astype(np.intp), minlength=n_rings)[:n_rings]
        c = np.bincount((r_lit / width).astype(np.intp), weights=pixels.counts, minlength=n_rings)[:n_rings]
        lit = c > 0
        a, b, nll = _scale_background(c[lit], table[:, lit], table @ n, pixels.n_pixels,
                                      background=s.background, newton_steps=newton_steps)
        k = int(np.argmin(nll))
        if nll[k] < best[0]:
            best = (float(nll[k]), k, float(a[k]), float(b[k]), tuple(centre))
    _, k, a, b, centre = best
    return centre, float(diameters[k]), a, b


def fit_frame_sphere_reference(pixels: _FitPixels, optics: _Optics, centre_xy: Sequence[float],
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
    radii = pixels.radii(centre_xy)[0]
    q_range = ((float(optics.q_inv_m(radii.min())), float(optics.q_inv_m(radii.max()))) if n_total
               else (float("nan"),) * 2)
    if n_total < 100:
        return SphereFit(float("nan"), 0.0, 0.0, float("nan"), 0.0, 0, q_range,
                         centre_xy=tuple(centre_xy)).fail(
            f"no usable pixels: {n_total} in the q range around the beam centre (need >= 100); "
            "check the mask, --centre and --q-range")
    # 1. centre grid x diameter grid on ring sums, coarse then fine
    grid = _diameter_grid(s)
    ring_limit = float(radii.max()) + reach + 2.0
    # rings narrower than the pixels where these span much of a fringe (binned frames)
    width = s.bin_px * min(1.0, 2.0 / optics.subpixels)
    if refine:
        coarse = _centre_candidates(centre_xy, reach, step)
        centre, d0, _, _ = _ring_search_reference(pixels, optics, s, coarse, grid[::2], 2.0 * width, 3, ring_limit)
        near = _centre_candidates(centre, 1.5, 1.0)
        near = near[np.hypot(near[:, 0] - centre_xy[0], near[:, 1] - centre_xy[1]) <= reach]
        local = grid[np.abs(grid - d0) <= 3 * s.coarse_step_nm * 1e-9]
        centre, d0, a0, b0 = _ring_search_reference(pixels, optics, s, np.vstack([near, [centre]]), local, width, 6,
                                          ring_limit)
    else:
        centre, d0, a0, b0 = _ring_search_reference(pixels, optics, s, [tuple(centre_xy)], grid, width, 6, ring_limit)
    # 2. per-pixel likelihood over (a, b, d, centre) by Fisher scoring
    a, b, d, cx, cy, cov, nll, mu, r_pix = _fisher_scoring_reference(
        pixels, optics, (a0, b0, d0, centre[0], centre[1]), s, centre_xy if refine else None, reach)
    # 3. fit quality and uncertainty; 4. fringes of a second particle
    fit = _judge(_assess(pixels, s, refine, (a, b, d, cx, cy), cov, nll, mu, r_pix, q_range), s)
    if fit.ok:
        fit.second_particle_z, fit.second_particle_separation_m = second_particle_z_reference(
            pixels, optics, mu, b, (cx, cy), d)
    return fit
