"""The per-pixel Poisson likelihood of (a, b, d, centre) and its maximum by Fisher scoring in
a trust region."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from spidarknet.sizing.formfactor import _Optics
from spidarknet.sizing.profile_fit import _inverse_scaled
from spidarknet.sizing.region import _FitPixels, _kernels
from spidarknet.sizing.settings import SizingSettings


@dataclass(frozen=True)
class _FixedBackground:
    """A fixed background of every pixel of a fit (photons; a file's stray light scaled to the
    frame), added to the model ``a s + b``: on ``pixels`` (the fit's, in their order), on the
    lattice's (:meth:`_FitPixels.lattice`, None without one) and on the pixels holding photons."""

    pixels: np.ndarray
    lattice: np.ndarray | None
    photons: np.ndarray

    @property
    def total(self) -> float:
        return float(self.pixels.sum())


#: a pass over every pixel takes the photons' terms itself (not from a pass over the pixels
#: holding photons) where more than one pixel in this many holds some (AGIPD's ADU: half of
#: them; see :meth:`_PixelModel._photons_in_pass`)
LIT_IN_PASS = 4


class _PixelModel:
    """The Poisson likelihood of every pixel of ``pixels`` as a function of the free
    parameters θ = (a, [b,] d in nm[, cx, cy]) (b fixed at 0 without a background, the
    centre fixed at ``centre_xy`` when ``fit_centre`` is false): :meth:`at` gives the
    negative log-likelihood, its gradient, the expected (Fisher) information
    ``Σ_j ∇μ_j ∇μ_jᵀ / μ_j`` and μ per pixel, the sums over all pixels from one compiled pass
    (:func:`spidarknet.sizing_kernels.pixel_pass`), the photons' terms from another over the
    pixels holding photons (:func:`spidarknet.sizing_kernels.photon_pass`); ``fixed``: a fixed background of each
    pixel added to the model (:class:`_FixedBackground`)."""

    def __init__(self, pixels: _FitPixels, optics: _Optics, fit_background: bool, fit_centre: bool,
                 centre_xy: Sequence[float], lattice: tuple[np.ndarray, np.ndarray] | None = None,
                 fixed: _FixedBackground | None = None):
        self.pixels, self.optics, self.lattice, self.fixed = pixels, optics, lattice, fixed
        self.fit_b, self.fit_c = fit_background, fit_centre
        self.centre_xy = (float(centre_xy[0]), float(centre_xy[1]))
        self.free = [0] + ([1] if fit_background else []) + [2] + ([3, 4] if fit_centre else [])
        self._all_free = len(self.free) == 5
        self._ix = np.ix_(self.free, self.free)
        self.vector = np.array([optics.pixel_m, optics.distance_m, 4.0 * math.pi / optics.wavelength_m])
        self.steps = optics._subpixel_steps()
        self.correction: np.ndarray | None = None   # added to the gradient: see :meth:`correct`
        self._last: tuple | None = None   # (θ, information asked, the answer) of every pixel's last point

    def correct(self, gradient: np.ndarray) -> None:
        """Add ``gradient`` to this model's gradient from now on (and ``gradient · θ`` to its
        negative log-likelihood): the difference between every pixel's gradient and the
        lattice's at a point, so that the lattice's steps head for every pixel's optimum."""
        self.correction = gradient if self.correction is None else self.correction + gradient

    def _photons_in_pass(self) -> bool:
        """Whether a pass over every pixel takes the photons' terms itself: on coarse pixels (a
        pass's cost is their sub-pixel models: the terms add little, a pass over the photons'
        pixels would work theirs out again) and where more than one pixel in
        :data:`LIT_IN_PASS` holds photons; not on the lattice (its pixels are not theirs)."""
        pixels = self.pixels
        return self.lattice is None and (len(self.steps) > 1 or len(pixels.lit) * LIT_IN_PASS > pixels.n_pixels)

    def unpack(self, theta: np.ndarray) -> tuple[float, float, float, float, float]:
        """(a, b, d in nm, cx, cy) of the free parameters ``theta``."""
        values = theta.tolist()
        if self._all_free:
            return tuple(values)
        a = values.pop(0)
        b = values.pop(0) if self.fit_b else 0.0
        d_nm = values.pop(0)
        return (a, b, d_nm) + ((values[0], values[1]) if self.fit_c else self.centre_xy)

    def at(self, theta: np.ndarray, information: bool = True) -> tuple[float, np.ndarray, np.ndarray | None,
                                                                      np.ndarray]:
        """(negative log-likelihood, its gradient and the information of the free
        parameters, μ per pixel) at ``theta``; without ``information``: no information
        (None) and no μ (None; the sums over all pixels from
        :func:`spidarknet.sizing_kernels.model_sums`, about half the cost of a full pass).
        On the lattice μ is None too: its sums come from the lattice's pixels, the photons'
        terms from their own (:func:`spidarknet.sizing_kernels.photon_pass`)."""
        key = theta.tobytes()
        if (self._last is not None and self.correction is None and self._last[0] == key
                and (self._last[1] or not information)):
            return self._last[2]   # every pixel's model at the same point (a stalled fit asks again)
        a, b, d_nm, cx, cy = self.unpack(theta)
        pixels = self.pixels
        shift = (cx - pixels.centre_xy[0], (cy - pixels.centre_xy[1]) * pixels.aspect)
        kernels = _kernels()
        fixed = self.fixed
        x, y = (pixels.x, pixels.y) if self.lattice is None else self.lattice
        scale = pixels.n_pixels / len(x)
        mu = lit = None
        if information:   # the sums over all pixels (or the lattice's), the photons' terms from their pixels
            extra = None if fixed is None else (fixed.pixels if self.lattice is None else fixed.lattice)
            mu, sums, info, lit = kernels.pixel_pass(x, y, shift, pixels.aspect, d_nm * 1e-9, self.vector,
                                                     self.steps, a, b, extra,
                                                     pixels.values if self._photons_in_pass() else None)
            if self.lattice is not None:
                mu = None
                sums *= scale
                info *= scale
        else:
            shape = kernels.model_sums(x, y, shift, pixels.aspect, d_nm * 1e-9, self.vector, self.steps)
            shape *= scale
            sums = np.array([a * shape[0] + b * pixels.n_pixels, shape[0], pixels.n_pixels, a * shape[1],
                             a * shape[2], a * shape[3]])
            if fixed is not None:
                sums[0] += fixed.total
            info = None
        if lit is None:
            lit = kernels.photon_pass(pixels.photon_x, pixels.photon_y, pixels.counts, shift, pixels.aspect,
                                      d_nm * 1e-9, self.vector, self.steps, a, b,
                                      None if fixed is None else fixed.photons)
        else:   # Σ C log μ of the pass's μ
            lit = np.append(lit, pixels.counts @ np.log(np.maximum(mu[pixels.lit], 1e-300)))
        nll = float(sums[0] - lit[5])
        score = np.array([lit[0], lit[4], a * lit[1], a * lit[2], a * lit[3]])   # Σ C ∇μ / μ
        grad = sums[1:] - score
        if not self._all_free:
            grad = grad[self.free]
            info = None if info is None else info[self._ix]
        if self.correction is not None:
            nll += float(self.correction @ theta)
            grad += self.correction
        elif self.lattice is None:
            self._last = (key, information, (nll, grad, info, mu))
        return nll, grad, info, mu


def _scoring_step(info_z: np.ndarray, grad_z: np.ndarray, radius: float) -> tuple[np.ndarray, bool]:
    """The step minimising the quadratic model ``g·p + ½ pᵀ I p`` within ``|p| ≤ radius``
    (in standard errors): the Fisher-scoring step ``-I⁻¹ g`` when that is inside, else
    ``-(I + λ)⁻¹ g`` on the boundary (λ by Newton's method on 1/‖p‖ in a bracket; it turns
    towards steepest descent as the radius shrinks, as scipy's trust-exact does), compiled
    (:func:`spidarknet.sizing_kernels.trust_step`: numpy's eigh of a 5 x 5 matrix cost more
    than the lattice's pass).  Returns the step and whether it lies on the boundary."""
    return _kernels().trust_step(info_z, grad_z, radius)


#: a trust region this small (in standard errors) ends the steps: its point can no longer move
#: (a fit stalled at the edge of what is allowed, e.g. the smallest diameter searched, whose
#: every step leaves it)
MIN_TRUST_RADIUS = 1e-6


#: the per-pixel fit first converges to this gradient (in standard errors) on the lattice
#: of every other row and column (:meth:`_FitPixels.lattice`), ...
LATTICE_TOLERANCE = 0.5
#: ... then, with every pixel's gradient where it stands added to the lattice's, to this
#: (see :func:`_fisher_scoring`), at most this many times
CORRECTED_TOLERANCE, CORRECTIONS = 0.005, 3
#: ... in regions of at least this many pixels
LATTICE_MIN_PIXELS = 4096
#: on coarse pixels every pixel's secant steps converge to this gradient (in standard errors;
#: see :func:`_fisher_scoring`): their end point lies nearer the optimum than the scoring
#: steps' did (to 0.01), whose answers they keep; at 0.01 a ring-sum misfit, which jumps as a
#: centre moves pixels between rings, moved by 5 % on a 2 x 2-binned sphere
SECANT_TOLERANCE = 1e-3


def _fisher_scoring(pixels: _FitPixels, optics: _Optics, start: Sequence[float], s: SizingSettings,
                    search_centre: Sequence[float] | None, reach_px: float, *, max_steps: int = 30,
                    fixed: _FixedBackground | None = None):
    """Maximum-likelihood (a, b, d, cx, cy) of the photons of every pixel of ``pixels``.

    Fisher scoring in a trust region (:func:`_trust_region`) of the negative
    log-likelihood.  Points outside a, b ≥ 0, the diameter range searched and ``reach_px``
    (+1) of ``search_centre`` are refused (the centre is fixed when that is None, b when
    there is no background); a start outside stays.  Converged where the gradient of
    every pixel's likelihood, in standard errors, is below 1 % of one.  The grid's start
    may lie many standard errors away (the centre is known to a pixel, its standard error
    is a few hundredths of one), and a pass over every pixel is the fit's cost, so the
    steps take the sums over all pixels from every other row and column (a quarter of
    them; the photons' terms stay exact; :func:`_secant` steps) to
    :data:`LATTICE_TOLERANCE`; then, where every pixel's gradient is not yet below 1 %,
    the difference between it and the lattice's is added to the lattice's gradient and
    the lattice's steps go on to :data:`CORRECTED_TOLERANCE` (:data:`CORRECTIONS` times at
    most, then every pixel's steps; each of these stages at most ``max_steps`` steps): two
    passes over every pixel a frame, most often.  On coarse pixels (``optics.subpixels`` > 1:
    AGIPD, binned frames) a pass's cost is the sub-pixel models, whose sums a lattice
    of every other row and column misses by several per cent near the beam; there every
    pixel's steps are taken with :func:`_secant` updates of the start's information (the
    scoring steps of each point's information took 13 passes a frame on AGIPD, the
    secant's 8, to :data:`SECANT_TOLERANCE`: the expected information overstates the
    curvature where the sphere does not fit the photons).
    ``start`` is (a, b, d in m,
    cx, cy).  ``fixed``: a fixed background of each pixel in the model (:class:`_PixelModel`).
    Returns a, b, d (m), cx, cy, the covariance of the free parameters (a, [b,] d in nm[, cx,
    cy]), the negative log-likelihood and μ per pixel (``fixed`` included).
    """
    a, b, d_m, cx, cy = (float(v) for v in start)
    fit_c = search_centre is not None
    theta = np.array([a] + ([b] if s.background else []) + [d_m * 1e9] + ([cx, cy] if fit_c else []))

    def allowed(a, b, d_nm, cx, cy) -> bool:
        inside = not fit_c or math.hypot(cx - search_centre[0], cy - search_centre[1]) <= reach_px + 1.0
        return a >= 0 and b >= 0 and s.d_min_nm <= d_nm <= s.d_max_nm and inside

    model = _PixelModel(pixels, optics, s.background, fit_c, (cx, cy), fixed=fixed)
    lattice = pixels.lattice() if optics.subpixels == 1 and pixels.n_pixels >= LATTICE_MIN_PIXELS else None
    found = None
    if lattice is not None and allowed(*model.unpack(theta)):
        rough = _PixelModel(pixels, optics, s.background, fit_c, (cx, cy), lattice=lattice, fixed=fixed)
        theta, *at_theta = _trust_region(rough, theta, allowed, LATTICE_TOLERANCE, max_steps, secant=True)
        theta, found = _corrected(model, rough, theta, at_theta, allowed, max_steps)
    if found is None and optics.subpixels > 1:   # coarse pixels: secant steps (see above)
        theta, nll, _, info, mu = _trust_region(model, theta, allowed, SECANT_TOLERANCE, max_steps, secant=True,
                                                informed=True)
    elif found is None:
        theta, nll, _, info, mu = _trust_region(model, theta, allowed, 1e-2, max_steps)
    else:
        nll, _, info, mu = found
    a, b, d_nm, cx, cy = model.unpack(theta)
    return a, b, d_nm * 1e-9, cx, cy, _inverse_scaled(info), nll, mu


def _corrected(model: "_PixelModel", rough: "_PixelModel", theta: np.ndarray, at_theta: list,
               allowed: Callable, max_steps: int):
    """(θ, every pixel's (nll, gradient, information, μ) there where its gradient is below
    1 % of a standard error, else None): the lattice's steps (``rough``, whose (nll,
    gradient, information, μ) at ``theta`` are ``at_theta``), corrected by every pixel's
    gradient, at most :data:`CORRECTIONS` times (see :func:`_fisher_scoring`)."""
    for attempt in range(CORRECTIONS):
        # the lattice's steps end 0.1-2 standard errors from every pixel's optimum (its own
        # optimum is biased): the first correction needs every pixel's gradient, not the check
        found = model.at(theta, information=attempt > 0)
        if attempt > 0:
            unit = 1.0 / np.sqrt(np.maximum(np.diag(found[2]), 1e-300))
            if not np.linalg.norm(found[1] * unit) >= 1e-2:
                return theta, found
        change = found[1] - at_theta[1]
        rough.correct(change)
        start = (at_theta[0] + float(change @ theta), found[1], at_theta[2], at_theta[3])
        before = theta
        theta, *at_theta = _trust_region(rough, theta, allowed, CORRECTED_TOLERANCE, max_steps, start=start,
                                         secant=True)
        if theta is before:   # no step taken (a stalled fit): another correction would repeat this one
            break
    return theta, None


def _trust_region(model: "_PixelModel", theta: np.ndarray, allowed: Callable, tolerance: float, max_steps: int,
                  start: tuple | None = None, secant: bool = False, informed: bool = False):
    """Fisher scoring of ``model`` from ``theta`` in a trust region (the steps and rules of
    scipy's trust-exact, which this replaces; :func:`_scoring_step`) with the expected
    information ``I = Σ_j ∇μ_j ∇μ_jᵀ / μ_j`` as the Hessian, in units of the starting
    point's standard errors (one trust radius suits the scale, the background, the
    diameter and the centre); points where ``allowed`` is false are refused, and a start
    there stays.  Converged when the gradient in those units is below ``tolerance``, or
    after ``max_steps`` steps, or once the trust radius is below :data:`MIN_TRUST_RADIUS`
    (``start``: the model's (nll, gradient, information, μ) at
    ``theta``, known already).  ``secant``: the information is the start's, updated after
    each step by the gradient's change (BFGS), which heads for the likelihood's own
    curvature (the lattice's steps, whose end point is not the answer; their trial points
    compute no information unless ``informed``, where a pass costs the same with it;
    every pixel's steps keep the information of each point).
    Returns θ, the negative log-likelihood, its gradient, the information (``secant`` and not
    ``informed``: the start's) and μ there."""
    nll, grad, info, mu = model.at(theta) if start is None else start
    unit = 1.0 / np.sqrt(np.maximum(np.diag(info), 1e-300))   # 1σ of each, at the start
    hessian = info * np.outer(unit, unit)
    # a start outside (the grid's largest diameter, rounded above d_max) stays: an edge
    radius = 100.0 if allowed(*model.unpack(theta)) else 0.0
    for _ in range(max_steps if radius > 0 else 0):   # scipy's trust-region rules
        grad_z = grad * unit
        if not math.sqrt(float(grad_z @ grad_z)) >= tolerance or radius < MIN_TRUST_RADIUS:
            break
        step, on_boundary = _scoring_step(hessian, grad_z, radius)
        trial = theta + step * unit
        found = model.at(trial, information=informed or not secant) if allowed(*model.unpack(trial)) else (math.inf,)
        expected = -float(grad_z @ step + 0.5 * step @ hessian @ step)
        ratio = (nll - found[0]) / expected if expected > 0 else -math.inf
        if ratio < 0.25:
            radius *= 0.25
        elif ratio > 0.75 and on_boundary:
            radius = min(2.0 * radius, 1000.0)
        if ratio > 0.15:
            theta, (nll, grad, new_info, mu) = trial, found
            if secant:   # the start's information stays (a secant's steps compute none)
                hessian = _secant(hessian, step, grad * unit - grad_z)
                info = new_info if informed else info
            else:
                info = new_info
                hessian = info * np.outer(unit, unit)
    return theta, nll, grad, info, mu


def _secant(hessian: np.ndarray, step: np.ndarray, change: np.ndarray) -> np.ndarray:
    """The BFGS update of ``hessian`` by a step and the gradient's change along it (kept
    where the change shows no positive curvature; compiled:
    :func:`spidarknet.sizing_kernels.bfgs_update`)."""
    return _kernels().bfgs_update(hessian, step, change)
