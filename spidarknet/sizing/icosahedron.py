"""An icosahedron's pattern in place of the sphere's, for fits near a size window's edges.

Where the beam sits in or near a dead detector half, the sphere model fits an icosahedron
better with its centre pulled into the dead half and a diameter 1-2 nm off (measured-like
development files): near a window's edge that decides the frame.  There the fit is made
again with the pattern of a regular icosahedron (volume-equivalent diameter, as the
simulator's), in four steps of growing cost, each taken only where the one before leaves
the question open:

1. **Views.**  The projected amplitude of :data:`ICOSAHEDRON_VIEWS` orientations (uniform
   over SO(3), worked out once per process at one diameter on a grid of q: another diameter
   is the same pattern with q scaled, a turn about the beam the same pattern turned).
2. **Ranking on polar cells.**  The frame's pixels, photons and stray light summed in cells
   of :data:`POLAR_RING_PX` pixels by 360/:data:`POLAR_ANGLES` degrees about the sphere's
   centre; every view at every turn (a cyclic shift of the cells' angles, by FFT) scored
   at the sphere's diameter by the likelihood's second-order expansion about the sphere's
   model, the best :data:`POLAR_CANDIDATES` by the Poisson likelihood of the cells (scale
   and flat background fitted).  Where the best icosahedron is no better than the sphere
   there (the development files' spheres: worse by 7 to several hundred), the sphere stays.
3. **Fit on pixels.**  The best :data:`ICOSAHEDRON_REFINED` orientations fitted over
   diameter, centre and turn by Fisher scoring of the per-pixel Poisson likelihood (scale
   and background profiled), the photons' log term on the pixels that hold them, the sum of
   the model over the region on blocks of :data:`BLOCK_PX` × :data:`BLOCK_PX` pixels (their
   centroids and counts; the model's fringes are ≥ 15 pixels).
4. The icosahedron's diameter and centre replace the sphere's where its likelihood is
   better than the sphere's at the sphere's answer by :data:`ICOSAHEDRON_MIN_GAIN`.

The pattern is sampled at the pixels' centres: fits of coarse pixels (``subpixels`` > 1)
keep the sphere.  The first version (eleventh session) scored 200 orientations and fitted
three with Nelder-Mead on every pixel, ~1.2 s of CPU a frame; this one gives the same
window decisions on the development files at a few ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spidarknet.simulate.physics import icosahedron_circumradius_m, icosahedron_thickness_m, random_rotation
from spidarknet.sizing.formfactor import _Optics
from spidarknet.sizing.region import _FitPixels
from spidarknet.sizing_kernels import _jit

#: the orientations' views (uniform over SO(3); every turn about the beam is tried as well)
ICOSAHEDRON_VIEWS = 20
#: the best-ranked orientations fitted over diameter, centre and turn (a second one changed
#: no window decision on the development files)
ICOSAHEDRON_REFINED = 1
#: fits whose sphere diameter lies up to this far below a size window's edge are refined
#: (nm): the sphere sizes icosahedra low, so only there can the icosahedron's answer move a
#: frame across (above an edge, the measured-like and clean development files' refinements
#: that moved a frame inside were wrong more often than right)
ICOSAHEDRON_EDGE_NM = 3.0
#: log-likelihood gain over the sphere needed to take the icosahedron's answer
ICOSAHEDRON_MIN_GAIN = 10.0
#: polar cells of the ranking: ring width (pixels) and angles in a turn
POLAR_RING_PX = 2.0
POLAR_ANGLES = 72
#: orientations of the ranking's second-order score whose cells' likelihood is worked out
POLAR_CANDIDATES = 8
#: the pixel fit's blocks for the sum of the model over the region (pixels a side)
BLOCK_PX = 4
#: Fisher-scoring steps at most
FISHER_STEPS = 5
#: the diameter and real-space step of the orientations' projections (m), the q step of
#: their amplitudes (1/m at that diameter) and the radial step of their polar tables (cells)
_TEMPLATE_DIAMETER_M = 70e-9
_GRID_STEP_M = 0.8e-9
_Q_STEP = 2.0 * math.pi / (320 * _GRID_STEP_M)
_POLAR_STEP = 0.25
#: the polar cells take the region's pixels in blocks this wide (pixels)
_POLAR_BLOCK_PX = 2
#: the orientations' seed (the same set in every process)
_ORIENTATION_SEED = 9401


@dataclass
class IcosahedronFit:
    """The best icosahedron: volume-equivalent diameter (nm), beam centre, Poisson
    negative log-likelihood, and the sphere's on the same pixels and background (where
    the ranking settled it, both are the polar cells' and the diameter and centre the
    sphere's)."""

    diameter_nm: float
    centre_xy: tuple[float, float]
    nll: float
    sphere_nll: float

    @property
    def gain(self) -> float:
        return self.sphere_nll - self.nll


def near_window_edge(diameter_nm: float, window_nm) -> bool:
    """Whether a fitted diameter lies up to :data:`ICOSAHEDRON_EDGE_NM` below one of a
    window's edges (where an icosahedron's answer, larger than the sphere's, could move it
    across)."""
    if window_nm is None or not math.isfinite(diameter_nm):
        return False
    return any(-ICOSAHEDRON_EDGE_NM <= diameter_nm - edge <= 0.0 for edge in window_nm)


@lru_cache(maxsize=4)
def _views(half_cells: int) -> np.ndarray:
    """(views, 2 k + 1, 2 k + 1) float64: each view's projected amplitude (unit at q = 0) at
    :data:`_TEMPLATE_DIAMETER_M` on q cells of :data:`_Q_STEP`, ``k = half_cells``; rows qy,
    columns qx.  A direct transform of the projection (real: the body is centrosymmetric)."""
    radius = icosahedron_circumradius_m(_TEMPLATE_DIAMETER_M)
    m = int(math.ceil(radius / _GRID_STEP_M)) + 1
    coords = np.arange(-m, m + 1) * _GRID_STEP_M
    q = np.arange(-half_cells, half_cells + 1) * _Q_STEP
    cos, sin = np.cos(np.outer(q, coords)), np.sin(np.outer(q, coords))
    rng = np.random.default_rng(_ORIENTATION_SEED)
    out = np.empty((ICOSAHEDRON_VIEWS, 2 * half_cells + 1, 2 * half_cells + 1))
    for i in range(ICOSAHEDRON_VIEWS):
        thick = icosahedron_thickness_m(coords[None, :], coords[:, None], _TEMPLATE_DIAMETER_M, random_rotation(rng))
        thick /= thick.sum()
        out[i] = cos @ thick @ cos.T - sin @ thick @ sin.T
    return out


@lru_cache(maxsize=4)
def _polar_views(half_cells: int) -> np.ndarray:
    """(views, radii, :data:`POLAR_ANGLES`): each view's |A|² on radii 0, :data:`_POLAR_STEP`,
    ... cells and angles j 2π/POLAR_ANGLES; and the complex conjugates of the angles' FFTs
    of it and of its square."""
    radii = np.arange(0.0, half_cells - 2, _POLAR_STEP)
    angles = np.arange(POLAR_ANGLES) * (2.0 * math.pi / POLAR_ANGLES)
    u = (radii[:, None] * np.cos(angles)[None, :]).ravel()
    v = (radii[:, None] * np.sin(angles)[None, :]).ravel()
    views = _views(half_cells)
    out = np.empty((ICOSAHEDRON_VIEWS, len(radii), POLAR_ANGLES))
    values = np.empty((len(u), 5))
    far = 1e9   # a detector this far: cells = offsets, weight 1
    for i in range(ICOSAHEDRON_VIEWS):
        _model_jit(views, i, u, v, 0.0, 0.0, 0.0, 2.0 * far, far, half_cells, 0.0, False, values)
        out[i] = values[:, 0].reshape(len(radii), POLAR_ANGLES)
    return out, np.conj(np.fft.rfft(out, axis=2)), np.conj(np.fft.rfft(out * out, axis=2))


def _cubic(t):
    """Catmull-Rom weights of the four cells about ``t`` (0-1 past the second) and their derivatives."""
    t2 = t * t
    t3 = t2 * t
    return ((-t3 + 2.0 * t2 - t) * 0.5, (3.0 * t3 - 5.0 * t2 + 2.0) * 0.5, (-3.0 * t3 + 4.0 * t2 + t) * 0.5,
            (t3 - t2) * 0.5, (-3.0 * t2 + 4.0 * t - 1.0) * 0.5, (9.0 * t2 - 10.0 * t) * 0.5,
            (-9.0 * t2 + 8.0 * t + 1.0) * 0.5, (3.0 * t2 - 2.0 * t) * 0.5)


def _interpolate(views, view, fu, fv):
    """(A, ∂A/∂u, ∂A/∂v) of ``views[view]`` at cell coordinates (fu, fv) (bicubic; 0 outside)."""
    n = views.shape[1]
    iu = int(math.floor(fu))
    iv = int(math.floor(fv))
    if iu < 1 or iv < 1 or iu > n - 3 or iv > n - 3:
        return 0.0, 0.0, 0.0
    a0, a1, a2, a3, b0, b1, b2, b3 = _cubic(fu - iu)
    c0, c1, c2, c3, e0, e1, e2, e3 = _cubic(fv - iv)
    amp = 0.0
    amp_u = 0.0
    amp_v = 0.0
    for jv in range(4):
        cv = c0 if jv == 0 else (c1 if jv == 1 else (c2 if jv == 2 else c3))
        ev = e0 if jv == 0 else (e1 if jv == 1 else (e2 if jv == 2 else e3))
        row = iv - 1 + jv
        s0 = views[view, row, iu - 1]
        s1 = views[view, row, iu]
        s2 = views[view, row, iu + 1]
        s3 = views[view, row, iu + 2]
        h = a0 * s0 + a1 * s1 + a2 * s2 + a3 * s3
        amp += cv * h
        amp_u += cv * (b0 * s0 + b1 * s1 + b2 * s2 + b3 * s3)
        amp_v += ev * h
    return amp, amp_u, amp_v


def _sphere(x, scale):
    """(A, dA/dρ) of a sphere at ``x = ρ · scale`` (ρ: cells from the centre)."""
    if x < 1e-4:
        return 1.0 - x * x / 10.0, -x / 5.0 * scale
    s = math.sin(x)
    c = math.cos(x)
    amp = 3.0 * (s - x * c) / (x * x * x)
    return amp, (3.0 * s / (x * x) - 3.0 * amp / x) * scale


def _model(views, view, px, py, shift_x, shift_y, turn, cells_per_q, distance_px, half_cells, sphere_scale,
           gradient, out):
    """Per point (px, py; x pixels, y aspect-scaled, from the region's centre) seen from the
    centre at (shift_x, shift_y): out[p, 0] = w |A|² of ``views[view]`` (``view`` < 0: the
    sphere) turned by ``turn`` at the diameter whose q scale is ``cells_per_q`` (template cells
    per unit sin θ · 4π/λ ... folded: cells per unit of r/√(2L(L+D)) in pixels); with
    ``gradient``, out[p, 1:5] = its derivatives by log diameter, shift x, shift y and turn."""
    cos_t = math.cos(turn)
    sin_t = math.sin(turn)
    for p in range(px.shape[0]):
        x = px[p] - shift_x
        y = py[p] - shift_y
        length = math.sqrt(distance_px * distance_px + x * x + y * y)
        cos2 = distance_px / length
        w = cos2 * cos2 * cos2 * (1.0 - 0.5 * (1.0 - cos2 * cos2))
        g = cells_per_q / math.sqrt(2.0 * length * (length + distance_px))
        u = (x * cos_t + y * sin_t) * g
        v = (y * cos_t - x * sin_t) * g
        if view < 0:
            rho = math.sqrt(u * u + v * v)
            amp, slope = _sphere(rho * sphere_scale, sphere_scale)
            amp_u = slope * u / rho if rho > 0 else 0.0
            amp_v = slope * v / rho if rho > 0 else 0.0
        else:
            amp, amp_u, amp_v = _interpolate(views, view, u + half_cells, v + half_cells)
        out[p, 0] = w * amp * amp
        if gradient:
            f = 2.0 * w * amp
            out[p, 1] = f * (amp_u * u + amp_v * v)
            out[p, 2] = -f * g * (amp_u * cos_t - amp_v * sin_t)
            out[p, 3] = -f * g * (amp_u * sin_t + amp_v * cos_t)
            out[p, 4] = f * (amp_u * v - amp_v * u)


def _scaled_nll(t_sum, n_sum, t_lit, n_lit, counts, f_lit, a, b):
    """(a, b, nll): min over a > 0, b ≥ 0 of a t_sum + b n_sum − Σ C log(a t + b n + f) over
    the photon-holding points (Newton steps, b held at 0 where it would go below)."""
    for _ in range(40):
        g0 = t_sum
        g1 = n_sum
        h00 = 0.0
        h01 = 0.0
        h11 = 0.0
        for i in range(t_lit.shape[0]):
            r = counts[i] / (a * t_lit[i] + b * n_lit[i] + f_lit[i])
            r2 = r / (a * t_lit[i] + b * n_lit[i] + f_lit[i])
            g0 -= r * t_lit[i]
            g1 -= r * n_lit[i]
            h00 += r2 * t_lit[i] * t_lit[i]
            h01 += r2 * t_lit[i] * n_lit[i]
            h11 += r2 * n_lit[i] * n_lit[i]
        det = h00 * h11 - h01 * h01
        if not det > 0:
            break
        step_a = (h11 * g0 - h01 * g1) / det
        step_b = (h00 * g1 - h01 * g0) / det
        if b - step_b < 0:
            if b > 0:
                step_a *= b / step_b
                step_b = b
            else:
                step_a = g0 / h00
                step_b = 0.0
        shrink = 1.0
        while a - shrink * step_a <= 0 and shrink > 1e-6:
            shrink *= 0.5
        new_a = max(a - shrink * step_a, 1e-300)
        new_b = max(b - shrink * step_b, 0.0)
        done = abs(new_a - a) < 1e-8 * a and abs(new_b - b) < 1e-10 + 1e-8 * b
        a = new_a
        b = new_b
        if done:
            break
    nll = a * t_sum + b * n_sum
    for i in range(t_lit.shape[0]):
        nll -= counts[i] * math.log(a * t_lit[i] + b * n_lit[i] + f_lit[i])
    return a, b, nll


def _polar_cells(px, py, values, shift_x, shift_y, rows, out):
    """Add ``values`` of the points into ``out`` (rows × angles cells of
    :data:`POLAR_RING_PX` about (shift_x, shift_y))."""
    angles = out.shape[1]
    per_angle = angles / (2.0 * math.pi)
    for p in range(px.shape[0]):
        x = px[p] - shift_x
        y = py[p] - shift_y
        i = int(math.sqrt(x * x + y * y) / POLAR_RING_PX)
        if i >= rows:
            continue
        angle = math.atan2(y, x)
        if angle < 0:
            angle += 2.0 * math.pi
        out[i, min(int(angle * per_angle), angles - 1)] += values[p]


_cubic = _jit(_cubic, inline=True)
_interpolate = _jit(_interpolate, inline=True)
_sphere = _jit(_sphere, inline=True)
_model_jit = _jit(_model)
_scaled_nll_jit = _jit(_scaled_nll, flags={"reassoc", "contract", "arcp", "nsz"})
_polar_cells_jit = _jit(_polar_cells)
#: the ranking goes on to the pixel fit where the best icosahedron's cells are this much
#: worse than the sphere's at most (log-likelihood)
_RANKING_MARGIN = 0.0


class _Problem:
    """One frame's points: the region's blocks (centroids, pixel counts, stray light: the
    sum of the model), the photon-holding pixels (the log term), and the views' grid."""

    def __init__(self, pixels: _FitPixels, optics: _Optics, fixed: np.ndarray | None, half_cells: int):
        inverse, self.block_n, self.block_x, self.block_y, self.r_max = _blocks(pixels)
        self.fixed = None if fixed is None else np.asarray(fixed, dtype=np.float64)
        self.block_f = (np.zeros(len(self.block_n)) if fixed is None
                        else np.bincount(inverse, self.fixed, len(self.block_n)) / self.block_n)
        self.f_sum = 0.0 if fixed is None else float(self.fixed.sum())
        self.pixels, self.n = pixels, float(pixels.n_pixels)
        self.lit_x = pixels.photon_x.astype(np.float64)
        self.lit_y = pixels.photon_y.astype(np.float64)
        self.counts = np.asarray(pixels.counts, dtype=np.float64)
        self.lit_f = np.zeros(len(self.counts)) if fixed is None else self.fixed[pixels.lit]
        self.ones = np.ones(len(self.counts))
        self.distance_px = optics.distance_m / optics.pixel_m
        self.q_scale = 4.0 * math.pi / optics.wavelength_m / _Q_STEP / _TEMPLATE_DIAMETER_M   # cells per m of d
        self.half_cells, self.views = half_cells, _views(half_cells)
        self.sphere_scale = _Q_STEP * _TEMPLATE_DIAMETER_M / 2.0
        self.block_out = np.empty((len(self.block_n), 5))
        self.lit_out = np.empty((len(self.counts), 5))

    def evaluate(self, view: int, params, gradient: bool, start=None) -> tuple[float, float, float]:
        """(a, b, nll) of ``view`` (-1: the sphere) at params (log diameter m, shift x, shift y,
        turn); with ``gradient`` the derivatives stay in ``block_out`` and ``lit_out``."""
        log_d, sx, sy, turn = params
        cells = self.q_scale * math.exp(log_d)
        for px, py, out in ((self.block_x, self.block_y, self.block_out), (self.lit_x, self.lit_y, self.lit_out)):
            _model_jit(self.views, view, px, py, sx, sy, turn, cells, self.distance_px, self.half_cells,
                       self.sphere_scale, gradient, out)
        t_sum = float(self.block_n @ self.block_out[:, 0])
        if start is None:
            start = (max(float(self.counts.sum()) - self.f_sum, 1.0) / max(t_sum, 1e-300), 1e-3)
        a, b = start
        a, b, nll = _scaled_nll_jit(t_sum, self.n, np.ascontiguousarray(self.lit_out[:, 0]), self.ones, self.counts,
                                    self.lit_f, a, b)
        return a, b, nll + self.f_sum


def _blocks(pixels: _FitPixels, side: int = BLOCK_PX) -> tuple:
    """(pixel → block index, pixels per block, the blocks' centroids x and y, the region's
    largest radius from its centre) of ``side`` × ``side`` blocks; kept on the region for
    the frames without NaN pixels."""
    region = pixels.region if pixels.all_finite else None
    kept = getattr(region, "_icosahedron_blocks", {})
    if side in kept:
        return kept[side]
    x, y = pixels.x.astype(np.float64), pixels.y.astype(np.float64)
    col = np.floor(x / side).astype(np.int64)
    row = np.floor(y / side).astype(np.int64)
    rows = int(row.max() - row.min()) + 1 if len(x) else 1
    cell = (col - col.min()) * rows + (row - row.min()) if len(x) else col
    count = np.bincount(cell)
    held = np.flatnonzero(count)
    index = np.zeros(len(count), np.int64)
    index[held] = np.arange(len(held))
    inverse, count = index[cell], count[held].astype(np.float64)
    blocks = (inverse, count, np.bincount(inverse, x) / count, np.bincount(inverse, y) / count,
              math.sqrt(float((x * x + y * y).max())) if len(x) else 0.0)
    if region is not None:
        region._icosahedron_blocks = {**kept, side: blocks}
    return blocks


def _polar(problem: _Problem, params) -> tuple:
    """(N, C, F, (rows, w), sphere): pixels, photons and stray light in polar cells about the
    centre of ``params``; each ring's row of the views' polar tables (:func:`_polar_views`) at
    the diameter of ``params`` and its pixel weight; the sphere's w |A|² (rings)."""
    log_d, sx, sy = params[0], params[1], params[2]
    rows = int((problem.r_max + math.hypot(sx, sy)) / POLAR_RING_PX) + 1
    cells = np.zeros((3, rows, POLAR_ANGLES))
    inverse, count, x, y, _ = _blocks(problem.pixels, _POLAR_BLOCK_PX)
    _polar_cells_jit(x, y, count, sx, sy, rows, cells[0])
    lit = inverse[problem.pixels.lit]   # the photons at their blocks' centroids, as the pixels
    _polar_cells_jit(x[lit], y[lit], problem.counts, sx, sy, rows, cells[1])
    if problem.fixed is not None:
        _polar_cells_jit(x, y, np.bincount(inverse, problem.fixed, len(count)), sx, sy, rows, cells[2])
    r = (np.arange(rows) + 0.5) * POLAR_RING_PX
    length = np.sqrt(problem.distance_px ** 2 + r * r)
    cos2 = problem.distance_px / length
    w = cos2 ** 3 * (1.0 - 0.5 * (1.0 - cos2 ** 2))
    radius = problem.q_scale * math.exp(log_d) * r / np.sqrt(2.0 * length * (length + problem.distance_px))
    last = _polar_views(problem.half_cells)[0].shape[1] - 1
    nearest = np.minimum(np.rint(radius / _POLAR_STEP).astype(np.int64), last)
    xs = np.maximum(radius * problem.sphere_scale, 1e-4)
    sphere = w * (3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs ** 3) ** 2
    return cells[0], cells[1], cells[2], (nearest, w), sphere


def _cells_nll(n, c, f, t) -> float:
    """The Poisson likelihood of polar cells for μ = a N t + b N + F (a, b fitted)."""
    lit = c > 0
    nt = n * t
    n = np.broadcast_to(n, nt.shape)
    return _scaled_nll_jit(float(nt.sum()), float(n.sum()), nt[lit], n[lit], c[lit], f[lit],
                           max(float(c.sum() - f.sum()), 1.0) / max(float(nt.sum()), 1e-300), 1e-3)[2]


def _ranked(problem: _Problem, params, a_s: float, b_s: float) -> tuple[float, list]:
    """The sphere's likelihood on the polar cells about ``params`` and the
    :data:`POLAR_CANDIDATES` (view, turn) ranked by theirs, best first: [(nll, view, turn)].
    The ranking's score is the likelihood's second-order expansion about the sphere's model
    μ_s (scale ``a_s``, background ``b_s``), whose sums over the cells for every turn are
    cyclic correlations along the angles (FFT)."""
    n, c, f, (nearest, w), sphere = _polar(problem, params)
    mu = a_s * n * sphere[:, None] + b_s * n + f
    held = mu > 0
    mu = np.where(held, mu, 1.0)
    beta = np.where(held, c / (mu * mu), 0.0)
    g1 = np.where(held, 1.0 - c / mu, 0.0) * n + beta * n * (f - mu)
    h = beta * n * n
    k1, k2 = float(g1.sum()), float(h.sum())
    table, spectra, squares = _polar_views(problem.half_cells)
    s1, s3, s2 = (np.fft.irfft(_by_table_rows(data, weight, nearest, table_fft), POLAR_ANGLES, axis=1)
                  for data, weight, table_fft in ((g1, w, spectra), (h, w, spectra), (h, w * w, squares)))
    det = s2 * k2 - s3 * s3
    safe = np.where(det > 0, det, 1.0)
    a = np.where(det > 0, (s3 * k1 - s1 * k2) / safe, -s1 / s2)
    b = np.where(det > 0, (s3 * s1 - k1 * s2) / safe, 0.0)
    a, b = np.where(b < 0, -s1 / s2, a), np.maximum(b, 0.0)
    score = np.where(a > 0, a * s1 + b * k1 + 0.5 * (a * a * s2 + b * b * k2) + a * b * s3, np.inf)
    ranked = []
    half = POLAR_ANGLES // 2   # |A|² is symmetric through q = 0: a half turn gives the same
    for flat in np.argsort(score[:, :half], axis=None)[:POLAR_CANDIDATES]:
        view, shift = divmod(int(flat), half)
        ranked.append((_cells_nll(n, c, f, np.roll(table[view, nearest, :] * w[:, None], shift, axis=1)), view,
                       shift * 2.0 * math.pi / POLAR_ANGLES))
    return _cells_nll(n, c, f, sphere[:, None]), sorted(ranked)


def _by_table_rows(data: np.ndarray, weight: np.ndarray, rows: np.ndarray, table_fft: np.ndarray) -> np.ndarray:
    """(views, frequencies): Σ over rings of FFT(data)(ring) · weight(ring) · table_fft[view,
    rows(ring)], the rings gathered onto the table's rows first (no copy of the table)."""
    low, high = int(rows.min()), int(rows.max()) + 1
    gathered = np.zeros((high - low, table_fft.shape[2]), dtype=np.complex128)
    np.add.at(gathered, rows - low, np.fft.rfft(data, axis=1) * weight[:, None])
    return np.einsum("rk,vrk->vk", gathered, table_fft[:, low:high])


def _fisher(problem: _Problem, view: int, params) -> tuple[np.ndarray, float]:
    """(params, nll) of ``view`` (-1: the sphere, no turn) fitted from ``params`` by Fisher
    scoring over (a, b, log d, shift, turn): the scale and background profiled at every point,
    the step that of the expected information on the blocks, halved until the likelihood falls."""
    params = np.array(params, dtype=np.float64)
    free = [2, 3, 4] if view < 0 else [2, 3, 4, 5]
    a, b, nll = problem.evaluate(view, params, True)
    for _ in range(FISHER_STEPS):
        block, lit = problem.block_out, problem.lit_out
        mu_block = a * block[:, 0] + b + problem.block_f
        mu_lit = a * lit[:, 0] + b + problem.lit_f
        grad_block = np.column_stack([block[:, 0], np.ones(len(mu_block)), a * block[:, 1:5]])
        grad_lit = np.column_stack([lit[:, 0], np.ones(len(mu_lit)), a * lit[:, 1:5]])
        score = (problem.counts / mu_lit) @ grad_lit - problem.block_n @ grad_block
        info = (grad_block * (problem.block_n / mu_block)[:, None]).T @ grad_block
        keep = [0] + ([1] if b > 0 else []) + free
        try:
            step = np.linalg.solve(info[np.ix_(keep, keep)], score[keep])[-len(free):]
        except np.linalg.LinAlgError:
            break
        move = np.zeros(4)
        move[np.array(free) - 2] = step
        move = np.clip(move, [-0.03, -2.0, -2.0, -0.1], [0.03, 2.0, 2.0, 0.1])
        for _ in range(5):
            trial = problem.evaluate(view, params + move, True, (a, b))
            if trial[2] <= nll:
                break
            move *= 0.5
        else:
            break
        params, (a, b, nll) = params + move, trial
        if abs(move[0]) < 5e-5 and max(abs(move[1]), abs(move[2])) < 0.01 and abs(move[3]) < 1e-3:
            break
    return params, nll


def _half_cells(pixels: _FitPixels, optics: _Optics, diameter_m: float) -> int:
    """Half-width (cells, a multiple of 8) of the views' grid that covers the region's
    pixels at up to 1.2 times ``diameter_m``."""
    r_max = _blocks(pixels)[4] + 20.0
    q_max = float(optics.q_inv_m(r_max))
    return 8 * int(math.ceil((q_max * 1.2 * diameter_m / _TEMPLATE_DIAMETER_M / _Q_STEP + 4) / 8))


def fit_icosahedron(pixels: _FitPixels, optics: _Optics, diameter_m: float, centre_xy,
                    fixed: np.ndarray | None = None) -> IcosahedronFit:
    """The best icosahedron of one frame's pixels, from the sphere's ``diameter_m`` and
    ``centre_xy`` (module notes); ``fixed``: the stray light on each pixel (photons), None
    for none.  The sphere's likelihood is taken at its answer on the same terms (fitted
    again there, it rose by < 2 on the singles of the measured-like development files)."""
    problem = _Problem(pixels, optics, fixed, _half_cells(pixels, optics, diameter_m))
    c0x, c0y = pixels.centre_xy
    start = np.array([math.log(diameter_m), centre_xy[0] - c0x, (centre_xy[1] - c0y) * pixels.aspect, 0.0])
    a_s, b_s, sphere_nll = problem.evaluate(-1, start, False)
    sphere_cells, ranked = _ranked(problem, start, a_s, b_s)
    if ranked[0][0] > sphere_cells + _RANKING_MARGIN:   # a sphere: the icosahedron fits worse
        return IcosahedronFit(diameter_m * 1e9, (float(centre_xy[0]), float(centre_xy[1])), ranked[0][0],
                              sphere_cells)
    best = None
    for _, view, turn in ranked[:ICOSAHEDRON_REFINED]:
        found = _fisher(problem, view, (start[0], start[1], start[2], turn))
        if best is None or found[1] < best[1]:
            best = found
    params, nll = best
    return IcosahedronFit(math.exp(params[0]) * 1e9, (float(params[1] + c0x), float(params[2] / pixels.aspect + c0y)),
                          nll, sphere_nll)
