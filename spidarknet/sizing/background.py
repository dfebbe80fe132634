"""The maximum-likelihood scale and flat background of ``μ = a s + b`` for given model shapes."""

from __future__ import annotations

import numpy as np


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
