"""The sphere fit of ring sums with a known centre (:func:`fit_sphere`), the result of any
sphere fit (:class:`SphereFit`), and the judgements both fits share: ring quality, misfit,
the diameter's error with its shape term, and when a fit carries no size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spidarknet.core.scattering import sphere_intensity
from spidarknet.sizing.background import _scale_background
from spidarknet.sizing.formfactor import _sphere_amplitude
from spidarknet.sizing.settings import SHAPE_ERROR_PER_ROOT_MISFIT, SizingSettings


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
    second_particle_cut: float = float("nan")  # the z above which a size window drops the fit
    second_particle_cpu_s: float = 0.0  # CPU seconds of that test (its cost, for benchmarks)
    icosahedron_gain: float = float("nan")  # the icosahedron's log-likelihood over the sphere's, where fitted
    icosahedron_cpu_s: float = 0.0  # CPU seconds of the icosahedron's fit (its cost, for benchmarks)
    row_band_ratio: float = float("nan")  # the map's rows against the rest (a file's sample only)
    centre_xy: tuple[float, float] | None = None
    nll: float = float("nan")  # Σ μ − Σ C log μ at the optimum
    reason: str = ""           # why the fit failed ("" when it did not)
    model: np.ndarray | None = None  # μ_k / n_k, photons per pixel of the best fit per ring
    #: evidence (σ, the ring sums' likelihood ratio) for the sphere over the file's background
    #: shape and a flat background alone; NaN without a background shape
    signal_z: float = float("nan")

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
    if fit.signal_z < s.min_signal_z:   # NaN (no background shape): no verdict
        return fit.fail(f"too few photons: the sphere stands {fit.signal_z:.1f} σ over the file's stray "
                        f"light (need >= {s.min_signal_z:g})")
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


def _inverse_scaled(matrix: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.maximum(np.diag(matrix), 1e-300))
    try:
        return np.linalg.inv(matrix / np.outer(scale, scale)) / np.outer(scale, scale)
    except np.linalg.LinAlgError:
        return np.full(matrix.shape, np.nan)
