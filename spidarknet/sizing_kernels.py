"""Compiled loops of the sphere fit (:mod:`spidarknet.sizing`): arrays in, arrays out.

Two loops carry the fit's cost, and numpy cannot run them without building arrays of
(centres x diameters x rings) or (pixels x parameters) on every step:

* :func:`ring_cells` — for chosen (centre, diameter) cells of the ring-sum search, the
  maximum-likelihood scale ``a`` and background ``b`` of ``μ = a s + b`` (three EM steps,
  then Newton steps kept inside ``a, b ≥ 0``: the same steps as
  :func:`spidarknet.sizing._scale_background`) and the negative log-likelihood;
* :func:`pixel_gradients` and :func:`accumulate` — for one point (a, b, d, centre) of the
  per-pixel fit, the model and its derivatives on every pixel of the fit region, then
  ``Σ μ``, ``Σ ∇μ`` and the expected (Fisher) information ``Σ ∇μ ∇μᵀ / μ`` (the
  photon-holding pixels' ``Σ C log μ`` and ``Σ C ∇μ / μ`` are a few numpy calls).

The sphere amplitude ``A(x) = 3 (sin x − x cos x) / x³`` takes ``sin x`` and ``cos x``
from :func:`_sincos` (Cody-Waite reduction by π/2 and Taylor polynomials: 1 ulp, and
branch-free, so that the pixel loops run in SIMD registers).  Every loop takes and
returns plain arrays, one frame at a time or (``ring_cells``) any batch of cells, so a GPU
version can take the same arrays.  numba compiles them on first use (cached on disk).
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is in install_requires
    numba = None

#: π/2 in three parts of 30 bits (Cody-Waite): n · part is exact for n < 2²³
_HALF_PI = (1.5707963276654482, -8.705515692000731e-10, -3.50343439808993e-19)
#: reorder sums and fuse multiply-adds (the sums vectorise); no NaN/inf shortcuts
_SUM_FLAGS = {"reassoc", "contract", "arcp", "nsz"}
#: ... the same without reordering (it would undo the reduction of :func:`_sincos`)
_FLAGS = {"contract", "arcp", "nsz"}


def _jit(function, flags=_FLAGS, inline: bool = False):
    """Compiled, cached; IEEE division (no ZeroDivisionError branch: the loops vectorise);
    ``inline``: a helper compiled into its callers (so that their loops vectorise)."""
    if numba is None:  # pragma: no cover
        raise ImportError("the sphere fit needs numba: pip install numba")
    options = {"inline": "always"} if inline else {"cache": True}
    return numba.njit(fastmath=flags or False, nogil=True, error_model="numpy", **options)(function)


def _sincos(x):
    """``sin x`` and ``cos x`` to 1 ulp for 0 ≤ x < 10⁶, without branches or tables."""
    n = math.floor(x * (2.0 / math.pi) + 0.5)
    r = ((x - n * _HALF_PI[0]) - n * _HALF_PI[1]) - n * _HALF_PI[2]
    r2 = r * r
    s = r + r * r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (
        1.0 / 362880.0 + r2 * (-1.0 / 39916800.0 + r2 * (1.0 / 6227020800.0 + r2 * (
            -1.0 / 1307674368000.0 + r2 / 355687428096000.0)))))))
    c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (
        -1.0 / 3628800.0 + r2 * (1.0 / 479001600.0 + r2 * (-1.0 / 87178291200.0 + r2 / 20922789888000.0)))))))
    quadrant = np.int64(n) & 3
    odd = (quadrant & 1) == 1
    sin_x = c if odd else s
    cos_x = s if odd else c
    sin_x = -sin_x if quadrant >= 2 else sin_x
    cos_x = -cos_x if (quadrant == 1 or quadrant == 2) else cos_x
    return sin_x, cos_x


def _em_steps(c, s, a, b, sums, n_pixels):
    """Three EM steps of (a, b) for ring sums ``c`` of ``μ = a s + b`` (multiplicative:
    they stay positive)."""
    for _ in range(3):
        ra, rb = 0.0, 0.0
        for j in range(c.shape[0]):
            if c[j] > 0.0:
                ratio = c[j] / (a * s[j] + b)
                ra += ratio * s[j]
                rb += ratio
        a, b = a * ra / sums, b * rb / n_pixels
    return a, b


def _newton_steps(c, s, a, b, shape_sum, n_pixels, steps):
    """Newton steps of (a, b) kept inside ``a, b ≥ 0`` (at most 0.9 of the way to 0)."""
    for _ in range(steps):
        ga, gb, haa, hab, hbb = 0.0, 0.0, 0.0, 0.0, 0.0
        for j in range(c.shape[0]):
            if c[j] > 0.0:
                inv = 1.0 / (a * s[j] + b)
                ratio = c[j] * inv
                ratio2 = ratio * inv
                ga += ratio * s[j]
                gb += ratio
                haa += ratio2 * s[j] * s[j]
                hab += ratio2 * s[j]
                hbb += ratio2
        ga -= shape_sum
        gb -= n_pixels
        det = haa * hbb - hab * hab
        if det > 1e-9 * haa * hbb:
            step_a, step_b = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        else:
            step_a, step_b = ga / max(haa, 1e-300), gb / max(hbb, 1e-300)
        t = 1.0
        if step_a < 0.0:
            t = min(t, 0.9 * a / -step_a)
        if step_b < 0.0:
            t = min(t, 0.9 * b / -step_b)
        a, b = a + t * step_a, b + t * step_b
    return a, b


def _ring_cells(counts, table, shape_sums, cells, n_pixels, background, newton_steps, out):
    """For each cell (centre i, diameter k) of ``cells`` (m, 2): a, b and the negative
    log-likelihood of ring sums ``counts[i]`` under ``μ = a table[k] + b`` (rings with
    no photon enter only through ``shape_sums[i, k]``, ``Σ`` of the model over all rings'
    pixels).  ``out`` (m, 3)."""
    for m in range(cells.shape[0]):
        i, k = cells[m, 0], cells[m, 1]
        c, s = counts[i], table[k]
        total = 0.0
        for j in range(c.shape[0]):
            total += c[j]
        if total <= 0.0 or n_pixels <= 0.0:
            out[m, 0], out[m, 1], out[m, 2] = 0.0, 0.0, 0.0
            continue
        sums = max(shape_sums[i, k], 1e-300)
        if background:
            a, b = _em_steps(c, s, 0.9 * total / sums, 0.1 * total / n_pixels, sums, n_pixels)
            a, b = _newton_steps(c, s, a, b, shape_sums[i, k], n_pixels, newton_steps)
        else:
            a, b = total / sums, 0.0
        log_sum = 0.0
        for j in range(c.shape[0]):
            if c[j] > 0.0:
                log_sum += c[j] * math.log(max(a * s[j] + b, 1e-300))
        out[m, 0], out[m, 1], out[m, 2] = a, b, a * shape_sums[i, k] + b * n_pixels - log_sum


def ring_cells(counts: np.ndarray, table: np.ndarray, shape_sums: np.ndarray, cells: np.ndarray,
               n_pixels: float, background: bool, newton_steps: int) -> np.ndarray:
    """(m, 3): a, b and negative log-likelihood of each cell (centre, diameter) of ``cells``
    (see :func:`_ring_cells`; ``counts`` (centres x rings), ``table`` (diameters x rings),
    ``shape_sums`` (centres x diameters))."""
    out = np.empty((len(cells), 3))
    _ring_cells_jit(np.ascontiguousarray(counts, dtype=np.float64), np.ascontiguousarray(table, dtype=np.float64),
                    np.ascontiguousarray(shape_sums, dtype=np.float64),
                    np.ascontiguousarray(cells, dtype=np.int64), float(n_pixels), bool(background),
                    int(newton_steps), out)
    return out


def _amplitude(x):
    """The sphere amplitude ``A = 3 (sin x − x cos x) / x³`` and its slope
    ``A' = 3 (sin x / x − A) / x`` (series below x = 0.01), as
    :func:`spidarknet.sizing._sphere_amplitude`."""
    small = x < 1e-2
    xs = 1.0 if small else x
    sin_x, cos_x = _sincos(xs)
    inv_x = 1.0 / xs
    amp = 3.0 * (sin_x - xs * cos_x) * inv_x * inv_x * inv_x
    slope = 3.0 * (sin_x * inv_x - amp) * inv_x
    return (1.0 - x * x / 10.0 if small else amp), (-x / 5.0 if small else slope)


def _shape_at(r_px, diameter_m, pixel_m, distance_m, k4):
    """``s = w A²`` at ``r_px`` (x pixels) from the beam, ``∂s/∂d`` (per m) and ``∂s/∂r``
    (per x pixel): :meth:`spidarknet.sizing._Optics.shape_and_derivatives`."""
    rho = r_px * pixel_m
    length = math.sqrt(distance_m * distance_m + rho * rho)
    inv_length = 1.0 / length
    sin_theta = rho / math.sqrt(2.0 * length * (length + distance_m))
    q = k4 * sin_theta
    c = distance_m * inv_length
    c2 = c * c
    w = 0.5 * c2 * c * (1.0 + c2)
    dw_drho = -0.5 * c2 * (3.0 + 5.0 * c2) * c * rho * inv_length * inv_length
    dq_drho = 0.5 * k4 * math.sqrt(1.0 - sin_theta * sin_theta) * distance_m * inv_length * inv_length
    amp, amp_dx = _amplitude(0.5 * q * diameter_m)
    w_amp = w * amp
    shape = w_amp * amp
    w_amp_dx = w_amp * amp_dx
    d_diameter = w_amp_dx * q
    d_radius = (dw_drho * amp * amp + w_amp_dx * diameter_m * dq_drho) * pixel_m
    return shape, d_diameter, d_radius


def _point_gradients(x, y, aspect, d_m, pixel_m, distance_m, k4):
    """:func:`_pixel_gradients` of a point sample at the pixel's centre."""
    r = math.sqrt(x * x + y * y)
    sh, dd, dr = _shape_at(r, d_m, pixel_m, distance_m, k4)
    dr = dr / max(r, 1e-9)
    return sh, dd * 1e-9, -dr * x, -dr * y * aspect


def _gradients_points(x, y, shift_x, shift_y, aspect, d_m, optics, out):
    """``out`` (4, n): s, ∂s/∂d (per nm), ∂s/∂cx, ∂s/∂cy (per pixel) of point samples at
    pixels ``x``, ``y`` (offsets from the region's centre, y times ``aspect``) seen from a
    centre ``shift`` away."""
    pixel_m, distance_m, k4 = optics[0], optics[1], optics[2]
    for j in range(x.shape[0]):
        sh, dd, dx, dy = _point_gradients(x[j] - shift_x, y[j] - shift_y, aspect, d_m, pixel_m, distance_m, k4)
        out[0, j] = sh
        out[1, j] = dd
        out[2, j] = dx
        out[3, j] = dy


def _ring_sums(x, y, counts, shifts, width, out):
    """Strict IEEE float32 (no fused or reordered operations): see :func:`ring_sums`.
    Each centre's ring numbers first (a loop that vectorises), then the sums."""
    n_rings = out.shape[1]
    ring = np.empty(x.shape[0], dtype=np.int32)
    for i in range(shifts.shape[0]):
        dx, dy = shifts[i, 0], shifts[i, 1]
        for j in range(x.shape[0]):
            px = x[j] - dx
            py = y[j] - dy
            ring[j] = np.int32(min(np.sqrt(px * px + py * py) / width, np.float32(n_rings)))
        for j in range(x.shape[0]):
            if ring[j] < n_rings:
                out[i, ring[j]] += counts[j]


def _lit_sums(grads, mu, lit, counts, out):
    """``out`` (4,) = Σ C/μ (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy) over the pixels ``lit`` holding
    ``counts`` photons, and ``Σ C/μ`` into ``out[4]``."""
    s_s, s_d, s_x, s_y, s_w = 0.0, 0.0, 0.0, 0.0, 0.0
    for m in range(lit.shape[0]):
        j = lit[m]
        w = counts[m] / max(mu[j], 1e-300)
        s_s += w * grads[0, j]
        s_d += w * grads[1, j]
        s_x += w * grads[2, j]
        s_y += w * grads[3, j]
        s_w += w
    out[0], out[1], out[2], out[3], out[4] = s_s, s_d, s_x, s_y, s_w


def _accumulate(grads, a, b, mu_out, sums, info):
    """With ``μ = a s + b`` and ``∇μ = (s, 1, a ∂s/∂d, a ∂s/∂cx, a ∂s/∂cy)`` from ``grads``
    (4, n): ``mu_out`` μ per pixel, ``sums`` = (Σ μ, Σ ∇μ) and ``info`` = Σ ∇μ ∇μᵀ / μ."""
    s_mu, s_a, s_d, s_cx, s_cy = 0.0, 0.0, 0.0, 0.0, 0.0
    i_aa, i_ab, i_ad, i_ax, i_ay = 0.0, 0.0, 0.0, 0.0, 0.0
    i_bb, i_bd, i_bx, i_by = 0.0, 0.0, 0.0, 0.0
    i_dd, i_dx, i_dy, i_xx, i_xy, i_yy = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    shapes, g_ds, g_xs, g_ys = grads[0], grads[1], grads[2], grads[3]
    for j in range(shapes.shape[0]):
        shape = shapes[j]
        g_d, g_cx, g_cy = a * g_ds[j], a * g_xs[j], a * g_ys[j]
        mu = a * shape + b
        mu_out[j] = mu
        inv = 1.0 / max(mu, 1e-300)
        s_mu += mu
        s_a += shape
        s_d += g_d
        s_cx += g_cx
        s_cy += g_cy
        ws, wd, wx, wy = shape * inv, g_d * inv, g_cx * inv, g_cy * inv
        i_aa += ws * shape
        i_ab += ws
        i_ad += ws * g_d
        i_ax += ws * g_cx
        i_ay += ws * g_cy
        i_bb += inv
        i_bd += wd
        i_bx += wx
        i_by += wy
        i_dd += wd * g_d
        i_dx += wd * g_cx
        i_dy += wd * g_cy
        i_xx += wx * g_cx
        i_xy += wx * g_cy
        i_yy += wy * g_cy
    sums[0], sums[1], sums[2], sums[3], sums[4], sums[5] = s_mu, s_a, float(shapes.shape[0]), s_d, s_cx, s_cy
    values = (i_aa, i_ab, i_ad, i_ax, i_ay, i_bb, i_bd, i_bx, i_by, i_dd, i_dx, i_dy, i_xx, i_xy, i_yy)
    m = 0
    for p in range(5):
        for q in range(p, 5):
            info[p, q] = values[m]
            info[q, p] = values[m]
            m += 1


if numba is not None:
    _em_steps = _jit(_em_steps, _SUM_FLAGS, inline=True)
    _newton_steps = _jit(_newton_steps, _SUM_FLAGS, inline=True)
    _ring_cells_jit = _jit(_ring_cells, _SUM_FLAGS)
    _sincos = _jit(_sincos, inline=True)
    _amplitude = _jit(_amplitude, inline=True)
    _shape_at = _jit(_shape_at, inline=True)
    _point_gradients = _jit(_point_gradients, inline=True)
    _gradients_points_jit = _jit(_gradients_points)
    _ring_sums_jit = _jit(_ring_sums, flags=False)
    _accumulate_jit = _jit(_accumulate, _SUM_FLAGS)
    _lit_sums_jit = _jit(_lit_sums, _SUM_FLAGS)


def pixel_gradients(x: np.ndarray, y: np.ndarray, shift, aspect: float, d_m: float, optics: np.ndarray,
                    steps: np.ndarray) -> np.ndarray:
    """(4, n): s, ∂s/∂d (per nm), ∂s/∂cx and ∂s/∂cy (per pixel) of the pixels at ``x``,
    ``y`` (float64 offsets from the region's centre, y times ``aspect``) seen from a centre
    ``shift`` (x, y times ``aspect``) from it; ``optics`` is (pixel m, distance m, 4π/λ),
    ``steps`` the sub-pixel offsets along one axis: each pixel's model is the mean over
    ``len(steps)²`` points (one: the pixel's centre)."""
    if len(steps) > 1:   # every sub-pixel point as a pixel of its own, then the means
        u = np.repeat(steps, len(steps))
        v = np.tile(steps, len(steps)) * aspect
        x = (x[:, None] + u[None, :]).ravel()
        y = (y[:, None] + v[None, :]).ravel()
    out = np.empty((4, len(x)))
    _gradients_points_jit(x, y, float(shift[0]), float(shift[1]), float(aspect), float(d_m), optics, out)
    if len(steps) > 1:
        out = out.reshape(4, -1, len(steps) ** 2).mean(axis=2)
    return out


def ring_sums(x: np.ndarray, y: np.ndarray, counts: np.ndarray, shifts: np.ndarray, width: float,
              n_rings: int) -> np.ndarray:
    """(centres, n_rings): the photons ``counts`` of pixels at float32 offsets ``x``, ``y``
    summed in rings ``width`` wide about each centre ``shifts`` (float32, (centres, 2))
    from the region's centre, with the float32 arithmetic of numpy's
    ``((x - dx)² + (y - dy)²)^½ / width`` (so that a pixel falls in the same ring)."""
    out = np.zeros((len(shifts), n_rings))
    _ring_sums_jit(x, y, np.asarray(counts, dtype=np.float64), np.ascontiguousarray(shifts, dtype=np.float32),
                   np.float32(width), out)
    return out


def accumulate(grads: np.ndarray, a: float, b: float):
    """(μ per pixel, sums (6,): Σ μ and Σ ∇μ, info (5, 5)) of :func:`_accumulate`."""
    mu, sums, info = np.empty(grads.shape[1]), np.empty(6), np.empty((5, 5))
    _accumulate_jit(grads, float(a), float(b), mu, sums, info)
    return mu, sums, info


def lit_sums(grads: np.ndarray, mu: np.ndarray, lit: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(5,): Σ C/μ s, Σ C/μ ∂s/∂d, Σ C/μ ∂s/∂cx, Σ C/μ ∂s/∂cy and Σ C/μ over the pixels
    ``lit`` (indices into ``grads`` (4, n) and ``mu``) holding ``counts`` photons."""
    out = np.empty(5)
    _lit_sums_jit(grads, mu, lit, counts, out)
    return out
