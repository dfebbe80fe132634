"""One frame's sphere: the centre search, the per-pixel fit, its quality and uncertainty and
the second-particle test (:func:`fit_frame_sphere`), and a frame's size result
(:func:`size_frame`) with the region of the frames that a fit reads (:func:`fit_roi`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spidarknet.core.radial import RadialProfile, radial_profile
from spidarknet.core.scattering import radius_for_q_m
from spidarknet.frames.source import FileInfo, FrameKey, Geometry
from spidarknet.sizing.background import RadialBackground, _nonnegative_scales
from spidarknet.sizing.centre_search import _centre_candidates, _ring_search, centre_search_in_pixels
from spidarknet.sizing.formfactor import Q_RANGE_HINT, _Optics
from spidarknet.sizing.pixel_fit import _FixedBackground, _fisher_scoring
from spidarknet.sizing.profile_fit import (SphereFit, _diameter_error, _diameter_grid, _edge_reason, _judge,
                                          _ring_quality)
from spidarknet.sizing.region import _FitPixels, _kernels
from spidarknet.sizing.second_particle import row_band_ratio, second_particle_cut, second_particle_z
from spidarknet.sizing.settings import PARTS_MISFIT_FACTOR, WINDOW_MARGIN_NM, SizingSettings


def fit_frame_sphere(pixels: _FitPixels, optics: _Optics, centre_xy: Sequence[float],
                     settings: SizingSettings | None = None,
                     background_shape: RadialBackground | None = None,
                     row_stripes: bool | None = False) -> SphereFit:
    """Beam centre, diameter, scale and background of one frame's photons (module notes, 4-5).

    1. For each centre on a grid of ``centre_step_px`` within ``centre_search_px`` of
       ``centre_xy`` (just ``centre_xy`` without centre refinement) and each diameter of
       the grid (every other one), the Poisson likelihood of the sums in rings
       ``2 bin_px`` wide with the best scale and background; then the same on the 3 × 3
       pixels around the best centre, rings ``bin_px`` wide and the full diameter grid
       near the best diameter.
    2. From there, Fisher scoring (in scipy's trust region) of the per-pixel likelihood
       over (a, b, d, cx, cy); with the file's ``background_shape`` (its stray light in
       parts), again with those parts scaled to the frame as a fixed background of every
       pixel (:func:`_with_stray_light`).
    3. The uncertainty of the diameter from the inverse Fisher information of all five
       (so it includes the freedom of the centre), widened by the shape term (with the
       file's stray light in parts, of :data:`PARTS_MISFIT_FACTOR` times the misfit).
    4. With the file's ``background_shape`` (its stray light), the ring sums' quality and
       misfit judge the sphere with a flat background and that shape's parts scaled to the
       frame (:func:`_with_background_shape`), and it needs ``min_signal_z`` σ over them.
       The second-particle test reads the fit with a flat background (step 2's first), as
       its threshold was set on, and leaves out the fringes along the rows where the file's
       rows carry stripes (``row_stripes``; None: not known yet, only the map's
       ``row_band_ratio`` measured, no z: a file's sample,
       :func:`~spidarknet.sizing.file_background`).
    5. Near a size window's edges, an icosahedron's diameter where it fits better (:func:`_as_icosahedron`).

    With a size window in ``settings`` (``window_nm``) the fit goes only as far as the
    window needs: without a ``background_shape`` (a file with stray light needs the full
    fit's judgement of the sphere over it, step 4), a ring search more than
    :data:`WINDOW_MARGIN_NM` outside it ends the fit there (:func:`_ring_search_only`); and
    the second-particle test is made only for diameters inside it.
    """
    s = (settings or SizingSettings()).check()
    refine = s.refine_centre and s.centre_search_px > 0
    reach, step = centre_search_in_pixels(optics.pixel_m, s) if refine else (0.0, 0.0)
    q_range, r_most, no_pixels = _reach(pixels, optics, centre_xy)
    if no_pixels is not None:
        return no_pixels
    # 1. centre grid x diameter grid on ring sums, coarse then fine
    centre, d0, a0, b0 = _start(pixels, optics, s, centre_xy, refine, reach, step, r_most)
    if background_shape is None and _far_outside(d0, s):
        return _ring_search_only(pixels, s, centre, d0, a0, b0, q_range)
    # 2. per-pixel likelihood over (a, b, d, centre) by Fisher scoring
    a, b, d, cx, cy, cov, nll, mu = _fisher_scoring(
        pixels, optics, (a0, b0, d0, centre[0], centre[1]), s, centre_xy if refine else None, reach)
    flat = (mu, b, (cx, cy), d)   # the second-particle test's (step 4)
    if _in_parts(background_shape, s, a):
        a, b, d, cx, cy, cov, nll, mu = _with_stray_light(pixels, optics, s, background_shape,
                                                          (a, b, d, cx, cy), mu, centre_xy if refine else None,
                                                          reach)
    # 3. fit quality and uncertainty; 4. fringes of a second particle
    fit = _judge(_assess(pixels, s, refine, (a, b, d, cx, cy), cov, nll, mu, None, q_range,
                         background_shape), s)
    _as_icosahedron(fit, pixels, optics, s, background_shape)
    if fit.ok and (s.window_nm is None or s.window_nm[0] <= fit.diameter_nm <= s.window_nm[1]):
        _test_second_particle(fit, pixels, optics, *flat, row_stripes=row_stripes)
    return fit


def _as_icosahedron(fit: SphereFit, pixels: _FitPixels, optics: _Optics, s: SizingSettings,
                    shape: RadialBackground | None) -> None:
    """With ``s.icosahedron`` on, a fit on fine pixels (the pattern is sampled at the pixels'
    centres) near a size window's edge (:func:`~spidarknet.sizing.icosahedron.near_window_edge`:
    where the sphere's diameter, pulled 1-3 nm low by a beam at a dead half's edge, could
    cross it) takes the diameter and centre of the best icosahedron
    (:func:`~spidarknet.sizing.icosahedron.fit_icosahedron`, the file's stray light laid as
    the sphere's fit lays it) where its likelihood beats the sphere's by
    :data:`~spidarknet.sizing.icosahedron.ICOSAHEDRON_MIN_GAIN`; its CPU seconds in
    ``fit.icosahedron_cpu_s``."""
    if not (s.icosahedron and optics.subpixels == 1 and fit.ok):
        return
    # imported only here: its scipy.optimize and the simulator's physics cost every process ~0.3 s
    from spidarknet.sizing.icosahedron import ICOSAHEDRON_MIN_GAIN, fit_icosahedron, near_window_edge
    if not near_window_edge(fit.diameter_nm, s.window_nm):
        return
    started = time.thread_time()
    cx, cy = fit.centre_xy
    fixed = None
    if _in_parts(shape, s, fit.scale):
        x, y = pixels.offsets((cx, cy))
        mu = fit.scale * optics.shape(np.hypot(x.astype(np.float64), y.astype(np.float64)), fit.diameter_m)
        fixed = _stray_light(pixels, s, shape, (fit.scale, fit.background, fit.diameter_m, cx, cy),
                             mu + fit.background)[0].pixels
    found = fit_icosahedron(pixels, optics, fit.diameter_m, (cx, cy), fixed)
    if found.gain >= ICOSAHEDRON_MIN_GAIN:
        fit.diameter_m, fit.centre_xy = found.diameter_nm * 1e-9, found.centre_xy
    fit.icosahedron_gain = found.gain
    fit.icosahedron_cpu_s = time.thread_time() - started


def _in_parts(shape: RadialBackground | None, s: SizingSettings, a: float) -> bool:
    """Whether a fit of scale ``a`` has the file's stray light in parts as its fixed
    background (step 2) and so the shape term of :data:`PARTS_MISFIT_FACTOR` (step 3)."""
    return shape is not None and shape.components is not None and s.background and a > 0


def _reach(pixels: _FitPixels, optics: _Optics, centre_xy: Sequence[float]) -> tuple:
    """(the q range of the fit's pixels about ``centre_xy``, their largest radius, and the
    failed fit where fewer than 100 pixels are usable, else None)."""
    n_total = pixels.n_pixels
    r_least, r_most = pixels.radius_range(centre_xy) if n_total else (float("nan"),) * 2
    q_range = ((float(optics.q_inv_m(r_least)), float(optics.q_inv_m(r_most))) if n_total
               else (float("nan"),) * 2)
    if n_total >= 100:
        return q_range, r_most, None
    return q_range, r_most, SphereFit(float("nan"), 0.0, 0.0, float("nan"), 0.0, 0, q_range,
                                      centre_xy=tuple(centre_xy)).fail(
        f"no usable pixels: {n_total} in the q range around the beam centre (need >= 100); "
        "check the mask, --centre and --q-range")


def _far_outside(d_m: float, s: SizingSettings) -> bool:
    """Whether a ring search's diameter ``d_m`` lies more than :data:`WINDOW_MARGIN_NM`
    outside the size window of ``s`` (none: never)."""
    if s.window_nm is None:
        return False
    d_nm = d_m * 1e9
    return d_nm < s.window_nm[0] - WINDOW_MARGIN_NM or d_nm > s.window_nm[1] + WINDOW_MARGIN_NM


def _ring_search_only(pixels: _FitPixels, s: SizingSettings, centre, d_m: float, a: float, b: float,
                      q_range) -> SphereFit:
    """The fit of a frame that the size window drops whatever the per-pixel fit would find
    (:func:`_far_outside`): the ring search's diameter, scale, background and centre, its
    signal photons those above the background (the photons of the fit's pixels less ``b``
    each); no uncertainty, misfit or second-particle z.  It fails as a full fit does on too
    few signal photons or a diameter at the edge of those searched."""
    signal = float(pixels.counts.sum() - b * pixels.n_pixels)
    fit = SphereFit(d_m, a, b, float("nan"), signal, 0, q_range, centre_xy=(float(centre[0]), float(centre[1])))
    if not signal >= s.min_signal_photons:
        return fit.fail(f"too few photons: {signal:.0f} signal photons in the fitted q range "
                        f"(need >= {s.min_signal_photons:.0f})")
    edge = _edge_reason(d_m, s)
    return fit.fail(edge) if edge else fit


def _start(pixels: _FitPixels, optics: _Optics, s: SizingSettings, centre_xy: Sequence[float], refine: bool,
           reach: float, step: float, r_most: float) -> tuple[tuple[float, float], float, float, float]:
    """(centre, diameter, a, b) of the ring search that starts the per-pixel fit (step 1 of
    :func:`fit_frame_sphere`): centres ``step`` apart within ``reach`` of ``centre_xy`` (only
    it without ``refine``), rings out to ``r_most`` (+ ``reach``)."""
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
    return centre, d0, a0, b0


def _with_stray_light(pixels: _FitPixels, optics: _Optics, s: SizingSettings, shape: RadialBackground, params,
                      mu: np.ndarray, search_centre, reach: float):
    """The per-pixel fit again (:func:`_fisher_scoring` from ``params``, the fit with a flat
    background, whose μ per pixel is ``mu``) with the file's stray light (``shape``'s parts,
    scaled to the frame: :func:`_stray_light`) a fixed background of every pixel, so that
    its excess near the beam is not left to the sphere's centre and diameter (with one half
    of a pnCCD dead, it pulled a dim sphere's centre 1-3 pixels into the live half and its
    diameter 1-2 nm low).  The parts lie about the flat fit's centre: the beam's in the
    frame (a beam that drifts from shot to shot takes its stray light along; the file's
    centre is the shots' mean).  Returns what :func:`_fisher_scoring` does, μ per pixel
    without the stray light (the sphere and the flat background: :func:`_assess` scales the
    parts again on the ring sums)."""
    fixed, a, b = _stray_light(pixels, s, shape, params, mu)
    *found, mu = _fisher_scoring(pixels, optics, (a, b) + tuple(params[2:]), s, search_centre, reach, fixed=fixed)
    return (*found, mu - fixed.pixels)


def _stray_light(pixels: _FitPixels, s: SizingSettings, shape: RadialBackground, params,
                 mu: np.ndarray) -> tuple[_FixedBackground, float, float]:
    """(the file's stray light on each pixel, a, b): the parts of ``shape`` about the centre
    of ``params`` (a, b, d, cx, cy; μ per pixel ``mu``), each scaled as the ring sums about
    it take them with the sphere's rings and a flat background (all ≥ 0), and the sphere's
    scale and flat background of that."""
    a, b, d, cx, cy = params
    shift = (cx - pixels.centre_xy[0], (cy - pixels.centre_xy[1]) * pixels.aspect)
    mu_k, n_k, c_k = _kernels().ring_totals(pixels.x, pixels.y, shift, s.bin_px, mu, pixels.lit, pixels.counts)
    theta = _sphere_and_parts(c_k, mu_k, n_k, a, b, shape, s.bin_px)[0]
    ax, ay = np.float32(shift[0]), np.float32(shift[1])

    def on(x, y):
        r = np.hypot(x - ax, y - ay)
        return np.ascontiguousarray(theta[2:] @ shape.parts_at(r), dtype=np.float64)

    lattice = pixels.lattice()
    fixed = _FixedBackground(on(pixels.x, pixels.y), None if lattice is None else on(*lattice),
                             on(pixels.photon_x, pixels.photon_y))
    return fixed, float(max(theta[0], 1e-12)), float(max(theta[1], 1e-12))


def _test_second_particle(fit: SphereFit, pixels: _FitPixels, optics: _Optics, mu: np.ndarray, background: float,
                          centre_xy: Sequence[float], diameter_m: float, *, row_stripes: bool | None) -> None:
    """``fit``'s second-particle z, the separation it found, the window's cut on it (from
    the particle's photons beyond its first minimum) and the test's CPU seconds; with
    ``row_stripes`` None (a file's sample, whose fits say whether its rows carry stripes),
    its map's :func:`row_band_ratio` instead (z, separation and cut stay NaN)."""
    started = time.thread_time()
    if row_stripes is None:
        fit.row_band_ratio = row_band_ratio(pixels, optics, mu, background, centre_xy, diameter_m)
    else:
        fit.second_particle_z, fit.second_particle_separation_m, photons = second_particle_z(
            pixels, optics, mu, background, centre_xy, diameter_m, row_stripes)
        fit.second_particle_cut = float(second_particle_cut(photons))
    fit.second_particle_cpu_s = time.thread_time() - started


def _assess(pixels: _FitPixels, s: SizingSettings, refine: bool, params, cov, nll: float, mu: np.ndarray,
            r_pix: np.ndarray, q_range, background_shape: RadialBackground | None = None) -> SphereFit:
    """The fit of ``params`` (a, b, d, cx, cy) with its ring-sum quality, misfit and the
    diameter's 1σ from the covariance ``cov``; the rings about (cx, cy) are those of the
    pixels' radii ``r_pix`` where given (else worked out here); with ``background_shape``,
    the ring sums' model adds it, scaled to the frame (:func:`_with_background_shape`)."""
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
    signal_z = float("nan")
    n_params = 2 + s.background + 2 * refine
    if background_shape is not None and a > 0:
        a, b, mu_k, signal, signal_z = _with_background_shape(c_k, mu_k, n_k, a, b, background_shape, s.bin_px)
        n_params += 1 if background_shape.components is None else len(background_shape.components)
    chi2, misfit = _ring_quality(c_k[used], mu_k[used], n_params, signal)
    var = cov[1 + s.background, 1 + s.background]
    sigma = math.sqrt(var) * 1e-9 if np.isfinite(var) and var > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        model = np.where(n_k > 0, mu_k / np.maximum(n_k, 1), np.nan)
    shape_misfit = PARTS_MISFIT_FACTOR * misfit if _in_parts(background_shape, s, a) else misfit
    return SphereFit(d, a, b, chi2, signal, int(used.sum()), q_range,
                     diameter_err_m=_diameter_error(sigma, d, shape_misfit), diameter_stat_err_m=sigma,
                     misfit=misfit, centre_xy=(float(cx), float(cy)), nll=nll, model=model, signal_z=signal_z)


def _with_background_shape(c_k: np.ndarray, mu_k: np.ndarray, n_k: np.ndarray, a: float, b: float,
                           shape: RadialBackground, bin_px: float) -> tuple[float, float, np.ndarray, float]:
    """(a, b, μ per ring, signal photons) of the ring sums ``c_k`` (rings ``bin_px`` wide
    about the fitted centre, ``n_k`` pixels) as the fitted sphere's rings (``μ_k − b n_k``:
    its diameter and centre as the per-pixel fit found them), a flat background and the
    parts of the file's background ``shape`` at the rings' radii, their scales by the Poisson
    likelihood (all ≥ 0); and the sphere's evidence over the background alone (σ: √(2 Δ)
    of the two likelihoods' logarithms, the background's scales fitted again without it)."""
    theta, shapes, start = _sphere_and_parts(c_k, mu_k, n_k, a, b, shape, bin_px)
    alone = _nonnegative_scales(c_k, shapes[1:], start[1:])
    gain = _poisson_nll(c_k, alone @ shapes[1:]) - _poisson_nll(c_k, theta @ shapes)
    z = math.sqrt(2.0 * max(gain, 0.0))
    return float(theta[0]), float(theta[1]), theta @ shapes, float(theta[0] * shapes[0].sum()), z


def _sphere_and_parts(c_k: np.ndarray, mu_k: np.ndarray, n_k: np.ndarray, a: float, b: float,
                      shape: RadialBackground, bin_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scales, shapes, start) of the ring sums ``c_k`` as the sphere's rings (``μ_k − b n_k``
    over ``a``), a flat background (``n_k`` pixels) and ``shape``'s parts at the rings'
    radii: the scales by the Poisson likelihood (all ≥ 0) from ``start``."""
    parts = shape.parts_at((np.arange(len(n_k)) + 0.5) * bin_px)
    shapes = np.vstack([(mu_k - b * n_k) / a, n_k, n_k * parts])
    start = np.array([a, 0.5 * b] + [0.5] * len(parts))
    return _nonnegative_scales(c_k, shapes, start), shapes, start


def _poisson_nll(counts: np.ndarray, mu: np.ndarray) -> float:
    """``Σ μ − Σ C log μ`` of counts ``C`` under the model ``μ``."""
    return float(np.sum(mu) - np.sum(counts * np.log(np.maximum(mu, 1e-300))))


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
    second_particle_cut: float = float("nan")   # the z above which a size window drops the fit
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
                fmt(self.centre_xy[0], 2), fmt(self.centre_xy[1], 2), fmt(self.second_particle_cut, 2)]


def r_max_px(geometry: Geometry, settings: SizingSettings) -> float:
    """Largest ring radius (x pixels) the fit needs: where q reaches ``q_max_inv_nm``."""
    geometry.require_scattering()
    rho = radius_for_q_m(settings.q_max_inv_nm * 1e9, geometry.distance_m, geometry.wavelength_m,
                         hint=Q_RANGE_HINT)
    return rho / geometry.pixel_size_m[0] + settings.bin_px


def size_frame(frame: np.ndarray, valid: np.ndarray | None, geometry: Geometry, key: FrameKey,
               settings: SizingSettings | None = None, *, origin: tuple[int, int] = (0, 0),
               with_profile: bool = True, regions: dict | None = None,
               background_shape: RadialBackground | None = None,
               row_stripes: bool | None = False) -> SizeResult:
    """Centre, diameter and (``with_profile``) radial profile about the fitted centre of one
    frame (``frame`` may be a region whose top-left pixel is ``origin`` = (row, column) of
    the full frame).  ``regions``, a dict kept from frame to frame of a file, keeps the
    fit region (its pixels and their offsets) for the next frame of the same mask;
    ``background_shape`` is the file's (:func:`file_background`), None for a flat one, and
    ``row_stripes`` whether its rows carry stripes (:func:`fit_frame_sphere`)."""
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
    fit = fit_frame_sphere(pixels, optics, geometry.centre_px, s, background_shape, row_stripes)
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
                      second_particle_z=fit.second_particle_z, second_particle_cut=fit.second_particle_cut,
                      profile=profile,
                      q_inv_m=q, fit=fit, fit_cpu_s=fit_cpu_s, second_particle_cpu_s=fit.second_particle_cpu_s,
                      frame_photons=bright)


def reach_photons(frame: np.ndarray, usable: np.ndarray, origin: tuple[int, int], centre_xy: Sequence[float],
                  r_out_px: float, aspect: float, adu_per_photon: float | None = None) -> float:
    """Photons on the usable pixels of ``frame`` (a region whose corner is ``origin``) within
    ``r_out_px`` (x pixels; rows scaled by ``aspect``) of the file's beam centre ``centre_xy``,
    background included: how bright the frame is where the fit looks, whatever the fit made
    of it (NaN pixels and negative noise count as none)."""
    frame = np.asarray(frame)
    inside = _disc(frame.shape, origin, centre_xy, r_out_px, aspect) & usable
    if frame.dtype.kind in "ub" and adu_per_photon is None:   # photon counts: none NaN, none below 0
        return float(np.sum(frame, where=inside, dtype=np.int64))
    values = frame[inside].astype(np.float64)
    if adu_per_photon is not None:
        values /= adu_per_photon
    return float(np.sum(values, where=np.isfinite(values) & (values > 0)))


#: the discs of :func:`_disc`, by their arguments (read-only)
_disc_cache: dict = {}


def _disc(shape, origin, centre_xy, r_out_px: float, aspect: float) -> np.ndarray:
    """Whether each pixel of a region ``shape`` whose corner is ``origin`` lies within
    ``r_out_px`` of ``centre_xy`` (rows scaled by ``aspect``); kept (a file's frames share it)."""
    key = (tuple(shape), tuple(origin), float(centre_xy[0]), float(centre_xy[1]), float(r_out_px), float(aspect))
    disc = _disc_cache.get(key)
    if disc is None:
        rows = (np.arange(shape[0]) + origin[0] - centre_xy[1]) * aspect
        cols = np.arange(shape[1]) + origin[1] - centre_xy[0]
        disc = rows[:, None] ** 2 + cols[None, :] ** 2 <= r_out_px * r_out_px
        disc.setflags(write=False)
        if len(_disc_cache) >= 64:
            _disc_cache.clear()
        _disc_cache[key] = disc
    return disc


def fit_roi(info: FileInfo, settings: SizingSettings) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 of a file's frames that the fit needs (around the beam,
    the centre search included; may leave the frame)."""
    reach = centre_search_in_pixels(info.geometry.pixel_size_m[0], settings)[0]
    half = int(math.ceil(max(r_max_px(info.geometry, settings), 128) + reach + 2))
    cx, cy = info.geometry.centre_px
    return (int(round(cy)) - half, int(round(cy)) + half + 1, int(round(cx)) - half, int(round(cx)) + half + 1)
