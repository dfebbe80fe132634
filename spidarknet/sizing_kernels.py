"""Compiled loops of the sphere fit (the package :mod:`spidarknet.sizing`): arrays in, arrays out.

Two loops carry the fit's cost, and numpy cannot run them without building arrays of
(centres x diameters x rings) or (pixels x parameters) on every step:

* :func:`ring_cells` — for chosen (centre, diameter) cells of the ring-sum search, the
  maximum-likelihood scale ``a`` and background ``b`` of ``μ = a s + b`` (three EM steps,
  then Newton steps kept inside ``a, b ≥ 0``: the same steps as
  :func:`spidarknet.sizing.background._scale_background`) and the negative log-likelihood;
* :func:`pixel_pass` and :func:`model_sums` — for one point (a, b, d, centre) of the
  per-pixel fit, the model and its derivatives on every pixel of the fit region, then
  ``Σ μ``, ``Σ ∇μ`` and the expected (Fisher) information ``Σ ∇μ ∇μᵀ / μ``; the
  photon-holding pixels' ``Σ C log μ`` and ``Σ C ∇μ / μ`` from :func:`photon_pass` (or,
  where most pixels hold photons, from the full pass itself).

Smaller ones spare numpy's per-call costs on 5 x 5 arrays: the trust region's step
(:func:`trust_step`, with its eigenvectors by Jacobi rotations) and the secant update
(:func:`bfgs_update`).

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
#: ... with reordering, for loops whose values are never NaN (a largest value vectorises)
_MAX_FLAGS = _SUM_FLAGS | {"nnan"}


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


def _ring_cells(counts, table, shape_sums, cells, n_pixels, background, newton_steps, out, with_nll=True):
    """For each cell (centre i, diameter k) of ``cells`` (m, 2): a, b and the negative
    log-likelihood of ring sums ``counts[i]`` under ``μ = a table[k] + b`` (rings with
    no photon enter only through ``shape_sums[i, k]``, ``Σ`` of the model over all rings'
    pixels; not ``with_nll``: NaN, its logarithms skipped).  ``out`` (m, 3)."""
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
        if not with_nll:
            out[m, 0], out[m, 1], out[m, 2] = a, b, math.nan
            continue
        log_sum = 0.0
        for j in range(c.shape[0]):
            if c[j] > 0.0:
                log_sum += c[j] * math.log(max(a * s[j] + b, 1e-300))
        out[m, 0], out[m, 1], out[m, 2] = a, b, a * shape_sums[i, k] + b * n_pixels - log_sum


def ring_cells(counts: np.ndarray, table: np.ndarray, shape_sums: np.ndarray, cells: np.ndarray,
               n_pixels: float, background: bool, newton_steps: int, with_nll: bool = True) -> np.ndarray:
    """(m, 3): a, b and negative log-likelihood of each cell (centre, diameter) of ``cells``
    (see :func:`_ring_cells`; ``counts`` (centres x rings), ``table`` (diameters x rings),
    ``shape_sums`` (centres x diameters)); not ``with_nll``: a and b alone (NaN, and no
    logarithm taken: a third of the cost)."""
    out = np.empty((len(cells), 3))
    _ring_cells_jit(np.ascontiguousarray(counts, dtype=np.float64), np.ascontiguousarray(table, dtype=np.float64),
                    np.ascontiguousarray(shape_sums, dtype=np.float64),
                    np.ascontiguousarray(cells, dtype=np.int64), float(n_pixels), bool(background),
                    int(newton_steps), out, bool(with_nll))
    return out


def _point_model(px, py, aspect, d_m, pixel_m, distance_m, k4):
    """The sphere model ``s = w A²`` of a point ``px``, ``py`` (x pixels, y already times
    ``aspect``) from the beam centre, ``∂s/∂d`` (per nm) and ``∂s/∂cx``, ``∂s/∂cy`` (per
    pixel of the centre), as :meth:`spidarknet.sizing.formfactor._Optics.shape_and_derivatives`
    (which has the formulas) but in two square roots and two divisions:

    * ``L = √(D² + ρ²)``, ``t = 1/(L (L + D))``: ``cos 2θ = D (L + D) t`` and
      ``sin² θ = ρ² t / 2`` (no cancellation near the beam), so ``q = 4π/λ · sin θ``;
    * the sphere amplitude ``A(x)``, ``x = q d / 2``, and ``A'/x = 3 (sin x / x − A) / x²``
      (series below x = 0.01: ``1 − x²/10`` and ``−1/5``);
    * the radius enters the centre's derivatives as ``(∂s/∂r) / r`` =
      ``p² (w'(ρ)/ρ · A² + w A (A'/x) d² (4π/λ)² D / (8 L³))`` (``x q'(ρ)/ρ = d (4π/λ)² D / (8 L³)``,
      ``p`` the pixel size), which has no division by r.
    """
    r2 = px * px + py * py
    rho2 = pixel_m * pixel_m * r2
    length = math.sqrt(distance_m * distance_m + rho2)
    t = 1.0 / (length * (length + distance_m))
    inv_length = (length + distance_m) * t
    c = distance_m * inv_length                      # cos 2θ
    c2 = c * c
    w = 0.5 * c2 * c * (1.0 + c2)
    q = k4 * math.sqrt(0.5 * rho2 * t)
    x = 0.5 * q * d_m
    small = x < 1e-2
    xs = 1.0 if small else x
    sin_x, cos_x = _sincos(xs)
    inv_x = 1.0 / xs
    amp = 3.0 * (sin_x - xs * cos_x) * inv_x * inv_x * inv_x
    slope_x = 3.0 * (sin_x * inv_x - amp) * inv_x * inv_x     # A'/x
    amp = 1.0 - x * x / 10.0 if small else amp
    slope_x = -0.2 if small else slope_x
    w_amp = w * amp
    shape = w_amp * amp
    d_diameter = w_amp * slope_x * x * q * 1e-9      # w A A' q, per nm
    inv_l2 = inv_length * inv_length
    dw_over_rho = -0.5 * c2 * c * (3.0 + 5.0 * c2) * inv_l2
    radial = pixel_m * pixel_m * (dw_over_rho * amp * amp
                                  + w_amp * slope_x * d_m * d_m * k4 * k4 * distance_m * inv_l2 * inv_length * 0.125)
    return shape, d_diameter, -radial * px, -radial * py * aspect


def _subpixel_models(x, y, shift_x, shift_y, aspect, d_m, optics, steps, out):
    """``out`` (4, pixels) = the sums over the sub-pixel points ``steps`` along each axis of
    :func:`_point_model` (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy) of every pixel at ``x``, ``y`` seen from a
    centre ``shift`` away (:func:`_model_of` divides by the points for their mean), with the
    loop over the pixels innermost, so that it vectorises (a loop over the points inside the
    loop over the pixels did not: on 2 x 2 points a pass cost 7 times as much)."""
    pixel_m, distance_m, k4 = optics[0], optics[1], optics[2]
    for k in range(4):
        for j in range(x.shape[0]):
            out[k, j] = 0.0
    for u in range(steps.shape[0]):
        for v in range(steps.shape[0]):
            step_x, step_y = steps[u], steps[v] * aspect
            for j in range(x.shape[0]):
                px = np.float64(x[j]) - shift_x
                py = np.float64(y[j]) - shift_y
                sh, dd, dx, dy = _point_model(px + step_x, py + step_y, aspect, d_m, pixel_m, distance_m, k4)
                out[0, j] += sh
                out[1, j] += dd
                out[2, j] += dx
                out[3, j] += dy


def _model_of(j, x, y, shift_x, shift_y, aspect, d_m, pixel_m, distance_m, k4, steps, models):
    """Pixel ``j``'s model (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy): :func:`_point_model` at its centre
    (``models`` None: a branch numba compiles away, so that the loop over the pixels stays
    vectorised), or the mean over its sub-pixel points ``steps`` from ``models``
    (:func:`_subpixel_models`)."""
    if models is None:
        return _point_model(np.float64(x[j]) - shift_x, np.float64(y[j]) - shift_y, aspect, d_m, pixel_m,
                            distance_m, k4)
    norm = 1.0 / (steps.shape[0] * steps.shape[0])
    return models[0, j] * norm, models[1, j] * norm, models[2, j] * norm, models[3, j] * norm


def _pixel_pass(x, y, shift_x, shift_y, aspect, d_m, optics, steps, a, b, mu_out, sums, info, models=None,
                extra=None, values=None, lit_out=None):
    """One point (a, b, d, centre) of the per-pixel likelihood over every pixel at ``x``, ``y`` (float32
    offsets from the region's centre, y times ``aspect``) seen from a centre ``shift`` away: the model
    ``μ = a s + b`` (+ ``extra``: each pixel's fixed background, or None) and ``∇μ = (s, 1, a ∂s/∂d,
    a ∂s/∂cx, a ∂s/∂cy)`` (``s``: :func:`_model_of`), in one pass: ``mu_out`` μ per pixel, ``sums`` =
    (Σ μ, Σ s, n, Σ ∇μ (d, cx, cy)), ``info`` = Σ ∇μ ∇μᵀ / μ (5 x 5).  The photons' terms are
    :func:`_photon_pass`'s (here 15 % of the loop, where most pixels hold none), or with ``values``
    (every pixel's photons: most hold some) ``lit_out`` = Σ C/μ (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy, 1)."""
    pixel_m, distance_m, k4 = optics[0], optics[1], optics[2]
    s_mu, s_a, s_d, s_cx, s_cy, l_s, l_d, l_x, l_y, l_w = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    i_aa, i_ab, i_ad, i_ax, i_ay = 0.0, 0.0, 0.0, 0.0, 0.0
    i_bb, i_bd, i_bx, i_by, i_dd, i_dx, i_dy, i_xx, i_xy, i_yy = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for j in range(x.shape[0]):
        shape, g_ds, g_xs, g_ys = _model_of(j, x, y, shift_x, shift_y, aspect, d_m, pixel_m, distance_m, k4, steps,
                                            models)
        g_d, g_cx, g_cy = a * g_ds, a * g_xs, a * g_ys
        mu = a * shape + b
        if extra is not None:   # a branch numba compiles away without one
            mu += extra[j]
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
        if values is not None:   # a branch numba compiles away without them
            ratio = values[j] * inv                   # C/μ: 0 on the pixels without photons
            l_s += ratio * shape
            l_d += ratio * g_ds
            l_x += ratio * g_xs
            l_y += ratio * g_ys
            l_w += ratio
    sums[0], sums[1], sums[2], sums[3], sums[4], sums[5] = s_mu, s_a, float(x.shape[0]), s_d, s_cx, s_cy
    entries = (i_aa, i_ab, i_ad, i_ax, i_ay, i_bb, i_bd, i_bx, i_by, i_dd, i_dx, i_dy, i_xx, i_xy, i_yy)
    m = 0
    for p in range(5):
        for q in range(p, 5):
            info[p, q] = entries[m]
            info[q, p] = entries[m]
            m += 1
    if values is not None:
        lit_out[0], lit_out[1], lit_out[2], lit_out[3], lit_out[4] = l_s, l_d, l_x, l_y, l_w


def _model_sums(x, y, shift_x, shift_y, aspect, d_m, optics, steps, out, models=None):
    """``out`` = (Σ s, Σ ∂s/∂d, Σ ∂s/∂cx, Σ ∂s/∂cy) of :func:`_model_of` over every pixel at
    ``x``, ``y`` seen from a centre ``shift`` away (as :func:`_pixel_pass`): the sums that
    the gradient of the negative log-likelihood takes over all pixels, without μ, its
    reciprocal and the information (the photons' terms come from their own pixels);
    ``models`` as :func:`_pixel_pass`."""
    pixel_m, distance_m, k4 = optics[0], optics[1], optics[2]
    s_s, s_d, s_x, s_y = 0.0, 0.0, 0.0, 0.0
    for j in range(x.shape[0]):
        shape, g_ds, g_xs, g_ys = _model_of(j, x, y, shift_x, shift_y, aspect, d_m, pixel_m, distance_m, k4, steps,
                                            models)
        s_s += shape
        s_d += g_ds
        s_x += g_xs
        s_y += g_ys
    out[0], out[1], out[2], out[3] = s_s, s_d, s_x, s_y


def _photon_pass(x, y, counts, shift_x, shift_y, aspect, d_m, optics, steps, a, b, out, mu_all, models=None,
                 extra=None):
    """The photons' terms of the likelihood (pixels at ``x``, ``y`` holding ``counts``, as
    :func:`_pixel_pass`): ``out`` = Σ C/μ (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy, 1), without the
    information :func:`_pixel_pass` sums, and ``mu_all`` = μ (at least 1e-300) of each pixel,
    in a loop that vectorises (numpy's logarithms of them are three times numba's:
    :func:`photon_pass`); ``models`` and ``extra`` (on these pixels) as :func:`_pixel_pass`."""
    pixel_m, distance_m, k4 = optics[0], optics[1], optics[2]
    l_s, l_d, l_x, l_y, l_w = 0.0, 0.0, 0.0, 0.0, 0.0
    for j in range(x.shape[0]):
        shape, g_ds, g_xs, g_ys = _model_of(j, x, y, shift_x, shift_y, aspect, d_m, pixel_m, distance_m, k4, steps,
                                            models)
        mu = a * shape + b
        if extra is not None:   # a branch numba compiles away without one
            mu += extra[j]
        mu = max(mu, 1e-300)
        mu_all[j] = mu
        ratio = counts[j] * (1.0 / mu)
        l_s += ratio * shape
        l_d += ratio * g_ds
        l_x += ratio * g_xs
        l_y += ratio * g_ys
        l_w += ratio
    out[0], out[1], out[2], out[3], out[4] = l_s, l_d, l_x, l_y, l_w


def _boundary_lambda(values, along, radius, lo, hi):
    """λ ≥ ``lo`` with ``‖along / (values + λ)‖ = radius`` (to 1e-6 of it; at most 50 steps)
    by Newton's method on 1/‖p‖ kept in the bracket (``lo``, ``hi``), from ``hi``: the
    boundary step of :func:`spidarknet.sizing.pixel_fit._scoring_step` (the eigenvalues
    ``values`` of the information and the gradient ``along`` its eigenvectors)."""
    lam = hi
    for _ in range(50):
        length2 = 0.0
        for i in range(values.shape[0]):
            step = along[i] / (values[i] + lam)
            length2 += step * step
        length = math.sqrt(length2)
        if abs(length - radius) <= 1e-6 * radius:
            break
        if length > radius:
            lo = lam
        else:
            hi = lam
        slope = 0.0
        for i in range(values.shape[0]):
            step = along[i] / (values[i] + lam)
            slope += step * step / (values[i] + lam)
        slope /= length                                # -d‖p‖/dλ
        lam += (length - radius) / radius * length / slope if slope > 0 else 0.0
        if not lo < lam < hi:
            lam = 0.5 * (lo + hi)
    return lam


def _symmetric_eigen(matrix, values, vectors):
    """``values`` and ``vectors`` (columns) of the symmetric ``matrix`` by cyclic Jacobi
    rotations (to the last bits, as LAPACK's; a 5 x 5 matrix in a few microseconds, where
    numpy's eigh costs some 15 in its checks), unsorted."""
    n = matrix.shape[0]
    a = matrix.copy()
    for i in range(n):
        for k in range(n):
            vectors[i, k] = 1.0 if i == k else 0.0
    for _ in range(60):
        off, scale = 0.0, 0.0
        for p in range(n):
            scale += a[p, p] * a[p, p]
            for q in range(p + 1, n):
                off += a[p, q] * a[p, q]
        if not off > 1e-36 * scale:   # also NaN: nothing more to rotate
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = a[p, q]
                if apq == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * apq)
                t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                t = -t if theta < 0.0 else t
                c = 1.0 / math.sqrt(t * t + 1.0)
                sn = t * c
                for k in range(n):   # columns p, q, then rows p, q
                    akp, akq = a[k, p], a[k, q]
                    a[k, p], a[k, q] = c * akp - sn * akq, sn * akp + c * akq
                for k in range(n):
                    apk, aqk = a[p, k], a[q, k]
                    a[p, k], a[q, k] = c * apk - sn * aqk, sn * apk + c * aqk
                for k in range(n):
                    vkp, vkq = vectors[k, p], vectors[k, q]
                    vectors[k, p], vectors[k, q] = c * vkp - sn * vkq, sn * vkp + c * vkq
    for i in range(n):
        values[i] = a[i, i]


def _trust_step(hessian, grad, radius, step):
    """``step`` = the minimum of ``g·p + ½ pᵀ H p`` within ``|p| ≤ radius``: ``-H⁻¹ g`` where
    that lies inside, else ``-(H + λ)⁻¹ g`` on the boundary (:func:`_boundary_lambda`), in the
    eigenvectors of ``H`` (:func:`_symmetric_eigen`); returns whether on the boundary."""
    n = grad.shape[0]
    values, vectors = np.empty(n), np.empty((n, n))
    _symmetric_eigen(hessian, values, vectors)
    along = np.zeros(n)
    lowest = values[0]
    grad2 = 0.0
    for i in range(n):
        lowest = min(lowest, values[i])
        grad2 += grad[i] * grad[i]
        for k in range(n):
            along[i] += vectors[k, i] * grad[k]
    if lowest > 0.0:
        length2 = 0.0
        for k in range(n):
            total = 0.0
            for i in range(n):
                total -= vectors[k, i] * (along[i] / values[i])
            step[k] = total
            length2 += total * total
        if math.sqrt(length2) <= radius:
            return False
    lo = max(0.0, -lowest)
    lam = _boundary_lambda(values, along, radius, lo, lo + math.sqrt(grad2) / radius + 1e-300)
    for k in range(n):
        total = 0.0
        for i in range(n):
            total -= vectors[k, i] * (along[i] / (values[i] + lam))
        step[k] = total
    return True


def _bfgs_update(hessian, step, change, out):
    """``out`` = the BFGS update of ``hessian`` by a ``step`` and the gradient's ``change``
    along it, ``H + c cᵀ/(c·s) − (H s)(H s)ᵀ/(sᵀ H s)``, or ``hessian`` itself where the change
    shows no positive curvature (:func:`spidarknet.sizing.pixel_fit._secant`: a few
    microseconds, where numpy's calls on 5 x 5 arrays cost some 15)."""
    n = step.shape[0]
    along = np.zeros(n)
    curvature, change2, step2, bend = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        curvature += change[i] * step[i]
        change2 += change[i] * change[i]
        step2 += step[i] * step[i]
        for k in range(n):
            along[i] += hessian[i, k] * step[k]
    for i in range(n):
        bend += step[i] * along[i]
    keep = not (curvature > 1e-12 * math.sqrt(change2) * math.sqrt(step2) and bend > 0)
    for i in range(n):
        for k in range(n):
            out[i, k] = hessian[i, k] if keep else (hessian[i, k] + change[i] * change[k] / curvature
                                                    - along[i] * along[k] / bend)


def _lane_sums(index, values, n_bins, lanes):
    """``lanes`` (4, n_bins) = the sums of ``values`` by ``index`` (every value below
    ``n_bins``), consecutive values into four separate rows: pixels in a row mostly share a
    ring, and one row of sums would make each addition wait for the one before."""
    lanes[:, :n_bins] = 0.0
    n = index.shape[0]
    m = n - n % 4
    for j in range(0, m, 4):
        lanes[0, index[j]] += values[j]
        lanes[1, index[j + 1]] += values[j + 1]
        lanes[2, index[j + 2]] += values[j + 2]
        lanes[3, index[j + 3]] += values[j + 3]
    for j in range(m, n):
        lanes[0, index[j]] += values[j]


def _ring_sums(x, y, counts, shifts, width, out):
    """Strict IEEE float32 (no fused or reordered operations): see :func:`ring_sums`.
    Each centre's ring numbers first (a loop that vectorises), then the sums
    (:func:`_lane_sums`; the last ring holds the pixels beyond ``n_rings``)."""
    n_rings = out.shape[1]
    ring = np.empty(x.shape[0], dtype=np.int32)
    lanes = np.empty((4, n_rings + 1))
    for i in range(shifts.shape[0]):
        dx, dy = shifts[i, 0], shifts[i, 1]
        for j in range(x.shape[0]):
            px = x[j] - dx
            py = y[j] - dy
            ring[j] = np.int32(min(np.sqrt(px * px + py * py) / width, np.float32(n_rings)))
        _lane_sums(ring, counts, n_rings + 1, lanes)
        for k in range(n_rings):
            out[i, k] += (lanes[0, k] + lanes[1, k]) + (lanes[2, k] + lanes[3, k])


def _ring_totals(x, y, shift_x, shift_y, width, mu, lit, counts):
    """(μ, pixels, photons) per ring ``width`` wide about a centre ``shift`` from the
    region's centre (float64 arithmetic: the rings of numpy's
    ``(((x - sx)² + (y - sy)²)^½ / width).astype(intp)``), as many rings as the farthest
    pixel needs; ``lit`` (ascending) indexes the pixels holding ``counts`` photons.  The
    ring numbers first, in a loop that vectorises (int32: AVX2 converts no int64), then
    the sums (:func:`_lane_sums`)."""
    ring = np.empty(x.shape[0], dtype=np.int32)
    last = 0
    for j in range(x.shape[0]):
        dx = np.float64(x[j]) - shift_x
        dy = np.float64(y[j]) - shift_y
        ring[j] = np.int32(math.sqrt(dx * dx + dy * dy) / width)
        last = max(last, ring[j])
    lanes = np.empty((4, last + 1))
    _lane_sums(ring, mu, last + 1, lanes)
    mu_k = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    _lane_sums(ring, np.ones(x.shape[0]), last + 1, lanes)
    n_k = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    c_k = np.zeros(last + 1)
    for m in range(lit.shape[0]):
        c_k[ring[lit[m]]] += counts[m]
    return mu_k, n_k, c_k


def _residual_grid(x, y, shift_x, shift_y, lit, counts, mu, background, side, beyond_sq):
    """The weighted residual ``(C/μ − 1)(μ − b)`` of every pixel on a ``side`` x ``side``
    float32 grid (``side`` a power of two) at its rounded offsets (x, y float32, less
    ``shift``; rows and columns taken modulo ``side``), ``Σ (μ − b)²/μ``, and ``Σ (μ − b)``
    over the pixels farther than ``√beyond_sq`` from ``shift``.  ``lit`` (ascending) indexes
    the pixels holding ``counts`` photons.  Each pixel's cell and residual first (a loop
    that vectorises), the photons' terms, then the scatter."""
    n = x.shape[0]
    width, wrap = np.int32(side), np.int32(side - 1)
    cell = np.empty(n, dtype=np.int32)
    weighted = np.empty(n)
    variance = 0.0
    beyond = 0.0
    for j in range(n):
        dx, dy = x[j] - shift_x, y[j] - shift_y
        col = np.int32(np.rint(dx)) & wrap
        row = np.int32(np.rint(dy)) & wrap
        cell[j] = row * width + col
        signal = mu[j] - background
        weighted[j] = -signal
        variance += signal * signal / mu[j]
        beyond += signal if np.float64(dx) * dx + np.float64(dy) * dy > beyond_sq else 0.0
    for m in range(lit.shape[0]):
        j = lit[m]
        weighted[j] += counts[m] * (mu[j] - background) / mu[j]
    grid = np.zeros(side * side, dtype=np.float32)
    for j in range(n):
        grid[cell[j]] += np.float32(weighted[j])
    return grid.reshape(side, side), variance, beyond


#: the histogram of the power that :func:`_power_quantile` counts: bins this wide from 0
#: (the power is in units of its Poisson expectation, 1), the last one open above
_POWER_BIN, _POWER_BINS = 1.0 / 512.0, 4096


def _spectrum_power(spectrum, separation, low, high, inv_variance, power):
    """``power`` (flat, row-major) = ``|spectrum|² · inv_variance`` at the frequencies whose
    ``separation`` lies in (``low``, ``high``), −1 at the others (a loop that vectorises)."""
    rows, cols = spectrum.shape
    for i in range(rows):
        for k in range(cols):
            sep = separation[i, k]
            value = spectrum[i, k]
            re, im = np.float64(value.real), np.float64(value.imag)
            p = (re * re + im * im) * inv_variance
            power[i * cols + k] = p if (sep > low and sep < high) else -1.0


def _power_peak(power, quiet, out):
    """``out`` = (number searched (power ≥ 0), number with 0 ≤ power ≤ ``quiet``, index of
    the first largest power, that power) of :func:`_spectrum_power`'s ``power``."""
    searched, below, top = 0, 0, -1.0
    for j in range(power.shape[0]):
        p = power[j]
        searched += np.int64(p >= 0.0)
        below += np.int64((p >= 0.0) & (p <= quiet))
        top = p if p > top else top
    best = -1
    if searched > 0:
        for j in range(power.shape[0]):
            if power[j] == top:
                best = j
                break
    out[0], out[1], out[2], out[3] = searched, below, best, top


def _power_bin(p, last):
    """The bin of ``_POWER_BIN`` that holds the power ``p`` (the last one open above)."""
    return np.int64(min(p * (1.0 / _POWER_BIN), float(last)))


def _power_quantile(power, fraction):
    """The ``fraction`` quantile (numpy's linear one, exact) of the powers ≥ 0 of
    :func:`_spectrum_power`: counted in bins of ``_POWER_BIN``, then only the powers of the
    bin holding the order statistic are sorted (no data-dependent branches over all of
    them: a quickselect is several times slower)."""
    histogram = np.zeros(_POWER_BINS, dtype=np.int64)
    last = _POWER_BINS - 1
    count = 0
    for j in range(power.shape[0]):
        if power[j] >= 0.0:
            histogram[_power_bin(power[j], last)] += 1
            count += 1
    position = fraction * (count - 1)
    rank = int(math.floor(position))
    below, chosen_bin = 0, 0
    while below + histogram[chosen_bin] <= rank:   # the bin of the rank-th smallest
        below += histogram[chosen_bin]
        chosen_bin += 1
    chosen = np.empty(histogram[chosen_bin])
    following = math.inf                           # the least power of the bins above
    n = 0
    for j in range(power.shape[0]):
        p = power[j]
        if p >= 0.0:
            b = _power_bin(p, last)
            if b == chosen_bin:
                chosen[n] = p
                n += 1
            elif b > chosen_bin and p < following:
                following = p
    chosen.sort()
    lower = chosen[rank - below]
    if rank + 1 - below < n:
        upper = chosen[rank + 1 - below]
    else:                                          # the next one is in a bin above, or there is none
        upper = following if rank + 1 < count else lower
    t = position - rank
    return upper - (upper - lower) * (1.0 - t) if t >= 0.5 else lower + (upper - lower) * t

if numba is not None:
    _em_steps = _jit(_em_steps, _SUM_FLAGS, inline=True)
    _newton_steps = _jit(_newton_steps, _SUM_FLAGS, inline=True)
    _ring_cells_jit = _jit(_ring_cells, _SUM_FLAGS)
    _sincos = _jit(_sincos, inline=True)
    _point_model = _jit(_point_model, inline=True)
    _pixel_pass_jit = _jit(_pixel_pass, _SUM_FLAGS)
    _subpixel_models_jit = _jit(_subpixel_models, _SUM_FLAGS)
    _model_of = _jit(_model_of, inline=True)
    _boundary_lambda_jit = _jit(_boundary_lambda, flags=False)
    _bfgs_update_jit = _jit(_bfgs_update, flags=False)
    _boundary_lambda = _jit(_boundary_lambda, flags=False, inline=True)
    _symmetric_eigen = _jit(_symmetric_eigen, flags=False, inline=True)
    _trust_step_jit = _jit(_trust_step, flags=False)
    _model_sums_jit = _jit(_model_sums, _SUM_FLAGS)
    _photon_pass_jit = _jit(_photon_pass, _SUM_FLAGS)
    _lane_sums = _jit(_lane_sums, flags=False, inline=True)
    _ring_sums_jit = _jit(_ring_sums, flags=False)
    _ring_totals_jit = _jit(_ring_totals, flags=False)
    _residual_grid_jit = _jit(_residual_grid, _SUM_FLAGS)
    _spectrum_power_jit = _jit(_spectrum_power)
    _power_peak_jit = _jit(_power_peak, _MAX_FLAGS)
    _power_bin = _jit(_power_bin, inline=True)
    _power_quantile_jit = _jit(_power_quantile)


def pixel_pass(x: np.ndarray, y: np.ndarray, shift, aspect: float, d_m: float, optics: np.ndarray,
               steps: np.ndarray, a: float, b: float, extra: np.ndarray | None = None,
               values: np.ndarray | None = None):
    """(μ per pixel, sums (6,): Σ μ, Σ s, n and Σ ∇μ (d, cx, cy), info (5, 5), with ``values``
    (photons of every pixel) Σ C/μ (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy, 1), else None) of
    :func:`_pixel_pass` at (a, b, d, centre ``shift`` (x, y times ``aspect``) from the region's
    centre); ``optics`` is (pixel m, distance m, 4π/λ), ``steps`` the sub-pixel offsets along
    one axis (one: the pixel's centre), ``extra`` None or each pixel's fixed background
    (float64, added to μ)."""
    mu, sums, info = np.empty(len(x)), np.empty(6), np.empty((5, 5))
    lit = None if values is None else np.empty(5)
    where = _where(x, y, shift, aspect, d_m, optics, steps)
    _pixel_pass_jit(x, y, *where[:-1], float(a), float(b), mu, sums, info, where[-1], extra, values, lit)
    return mu, sums, info, lit


def _where(x: np.ndarray, y: np.ndarray, shift, aspect: float, d_m: float, optics: np.ndarray, steps: np.ndarray):
    """The kernels' arguments (shift x, y, aspect, d, optics, steps (None: the pixels'
    centres), the sub-pixel models (:func:`_subpixel_models`, worked out first in a loop that
    vectorises; None on point-like pixels)."""
    steps = None if len(steps) == 1 and steps[0] == 0.0 else np.ascontiguousarray(steps, dtype=np.float64)
    where = (float(shift[0]), float(shift[1]), float(aspect), float(d_m), optics, steps)
    models = None
    if steps is not None:
        models = np.empty((4, len(x)))
        _subpixel_models_jit(x, y, *where, models)
    return where + (models,)


def model_sums(x: np.ndarray, y: np.ndarray, shift, aspect: float, d_m: float, optics: np.ndarray,
               steps: np.ndarray) -> np.ndarray:
    """(Σ s, Σ ∂s/∂d, Σ ∂s/∂cx, Σ ∂s/∂cy) of :func:`_model_sums` (arguments as :func:`pixel_pass`)."""
    out = np.empty(4)
    where = _where(x, y, shift, aspect, d_m, optics, steps)
    _model_sums_jit(x, y, *where[:-1], out, where[-1])
    return out


def photon_pass(x: np.ndarray, y: np.ndarray, counts: np.ndarray, shift, aspect: float, d_m: float,
                optics: np.ndarray, steps: np.ndarray, a: float, b: float,
                extra: np.ndarray | None = None) -> np.ndarray:
    """(6,): Σ C/μ (s, ∂s/∂d, ∂s/∂cx, ∂s/∂cy, 1) and Σ C log μ over the pixels holding
    ``counts`` photons (:func:`_photon_pass`; arguments as :func:`pixel_pass`)."""
    out, mu = np.empty(6), np.empty(len(x))
    where = _where(x, y, shift, aspect, d_m, optics, steps)
    _photon_pass_jit(x, y, counts, *where[:-1], float(a), float(b), out, mu, where[-1], extra)
    out[5] = counts @ np.log(mu)
    return out


def boundary_lambda(values: np.ndarray, along: np.ndarray, radius: float, lo: float, hi: float) -> float:
    """:func:`_boundary_lambda` (float64 arrays of one length)."""
    return float(_boundary_lambda_jit(values, along, float(radius), float(lo), float(hi)))


def trust_step(hessian: np.ndarray, grad: np.ndarray, radius: float) -> tuple[np.ndarray, bool]:
    """(step, whether it lies on the trust region's boundary) of :func:`_trust_step` (float64
    arrays: (n, n), (n,))."""
    step = np.empty(len(grad))
    on_boundary = _trust_step_jit(hessian, grad, float(radius), step)
    return step, bool(on_boundary)


def bfgs_update(hessian: np.ndarray, step: np.ndarray, change: np.ndarray) -> np.ndarray:
    """:func:`_bfgs_update` (float64 arrays: (n, n), (n,), (n,)); a new array."""
    out = np.empty_like(hessian)
    _bfgs_update_jit(hessian, step, change, out)
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


def ring_totals(x: np.ndarray, y: np.ndarray, shift, width: float, mu: np.ndarray, lit: np.ndarray,
                counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Σ μ, pixels, Σ C) per ring of :func:`_ring_totals`."""
    return _ring_totals_jit(x, y, float(shift[0]), float(shift[1]), float(width), mu, lit,
                            np.asarray(counts, dtype=np.float64))


def residual_grid(x: np.ndarray, y: np.ndarray, shift, lit: np.ndarray, counts: np.ndarray, mu: np.ndarray,
                  background: float, bounds, beyond_px: float = math.inf) -> tuple[np.ndarray, float, float]:
    """(grid, Σ (μ − b)²/μ, Σ (μ − b) beyond ``beyond_px`` from ``shift``) of
    :func:`_residual_grid`; ``bounds`` are the least and largest x and y (x min, x max, y
    min, y max): the grid's side is the power of two at least twice the largest rounded
    offset plus one, ``2^⌈log₂ 2(m + 1)⌉``."""
    sx, sy = np.float32(shift[0]), np.float32(shift[1])
    x0, x1, y0, y1 = (np.float32(v) for v in bounds)
    largest = int(max(abs(np.rint(x0 - sx)), abs(np.rint(x1 - sx)), abs(np.rint(y0 - sy)), abs(np.rint(y1 - sy))))
    side = 1 << int(math.ceil(math.log2(2 * (largest + 1))))
    return _residual_grid_jit(x, y, sx, sy, lit, np.asarray(counts, dtype=np.float64), mu, float(background), side,
                              float(beyond_px) ** 2)


def spectrum_peak(spectrum: np.ndarray, separation: np.ndarray, low: float, high: float, variance: float,
                  quiet: float) -> tuple[int, int, int, float, np.ndarray]:
    """(searched, at most ``quiet``, flat index of the peak, its power, the power of every
    frequency (−1 where not searched: :func:`spectrum_quantile` takes it)) over the
    frequencies whose ``separation`` lies in (``low``, ``high``), power ``|spectrum|² /
    variance``."""
    out, power = np.empty(4), np.empty(spectrum.size)
    _spectrum_power_jit(spectrum, separation, float(low), float(high), 1.0 / variance, power)
    _power_peak_jit(power, float(quiet), out)
    return int(out[0]), int(out[1]), int(out[2]), float(out[3]), power


def spectrum_quantile(power: np.ndarray, fraction: float) -> float:
    """:func:`_power_quantile`: ``np.percentile(power[searched], 100 fraction)`` of the
    ``power`` that :func:`spectrum_peak` gave."""
    return float(_power_quantile_jit(power, float(fraction)))
