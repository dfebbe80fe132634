"""Per-shell figures of two volumes on one grid (:func:`shell_correlation`) and the resolution
they give (:func:`resolution`); definitions in :mod:`spidarknet.judge.structure`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.judge.structure.grid import _check_cube, _radius_voxels, valid_voxels


#: the per-shell threshold of the resolution
DEFAULT_THRESHOLD = 0.5


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else float("nan")


@dataclass
class ShellCorrelation:
    """Per-shell figures of two volumes (definitions in :mod:`spidarknet.judge.structure`)."""

    q_inv_nm: np.ndarray        # shell centres
    cc: np.ndarray              # per-shell figure (NaN: too few voxels)
    n_voxels: np.ndarray        # voxels valid in both volumes
    shell_width: float          # voxels
    method: str                 # "pearson" or "radial-band"
    band: int = 0               # radial-band: shells each side
    contrast: np.ndarray | None = None   # pearson: the share of b's anisotropy a reproduces

    def at(self, q_inv_nm: float) -> float:
        """The figure of the shell holding ``q_inv_nm`` (NaN outside)."""
        if len(self.q_inv_nm) < 2:
            return float("nan")
        step = self.q_inv_nm[1] - self.q_inv_nm[0]
        k = int(round((q_inv_nm - self.q_inv_nm[0]) / step))
        return float(self.cc[k]) if 0 <= k < len(self.cc) else float("nan")

    def contrast_at(self, q_inv_nm: float) -> float:
        if self.contrast is None or len(self.q_inv_nm) < 2:
            return float("nan")
        k = int(round((q_inv_nm - self.q_inv_nm[0]) / (self.q_inv_nm[1] - self.q_inv_nm[0])))
        return float(self.contrast[k]) if 0 <= k < len(self.contrast) else float("nan")

    def rows(self) -> list[dict]:
        contrast = self.contrast if self.contrast is not None else np.full(len(self.cc), np.nan)
        return [{"q_inv_nm": float(q), "d_nm": 2 * math.pi / q if q > 0 else float("inf"),
                 "cc": float(c), "contrast": float(k), "n_voxels": int(m)}
                for q, c, k, m in zip(self.q_inv_nm, self.cc, contrast, self.n_voxels)]


def shell_correlation(a: np.ndarray, b: np.ndarray, q_per_voxel_inv_nm: float, shell_width: float = 1.0, *,
                      method: str = "pearson", band: int = 2, min_voxels: int = 10) -> ShellCorrelation:
    """Per resolution shell, how well two intensities on the same grid agree.

    Shell ``k``: voxels with ``(k - ½) w ≤ r < (k + ½) w`` (``r = |q|/Δq`` in voxels, ``w =
    shell_width``), at ``q = k w Δq`` (nm⁻¹).  Only voxels valid in both (:func:`valid_voxels`).
    ``method``: "pearson" — the Pearson correlation of the shell's voxels (NaN below
    ``min_voxels``), and beside it the *contrast*: the regression slope of ``a`` on ``b`` in
    units of the shell means, ``cov(a, b) / var(b) · mean(b) / mean(a)`` = CC × (relative
    spread of ``a``) / (relative spread of ``b``): the share of ``b``'s anisotropy that ``a``
    reproduces (1: all of it).  Noise in ``a`` leaves it unbiased (it raises CC's denominator,
    not this slope); a contamination that adds the same to every orientation, blurring and
    misalignment lower it, which the Pearson correlation, blind to offsets, does not see;
    "radial-band" — for spherically symmetric intensities: the Pearson
    correlation of the two log radial profiles (shell means on quarter-shell bins) over the
    bins within ``± band`` shells of shell ``k`` that are ≥ 90 % measured (NaN where fewer
    than 4 bins are).
    """
    a = _check_cube(a, "the first volume")
    b = _check_cube(b, "the second volume")
    if a.shape != b.shape:
        raise InputError(f"the volumes differ in shape ({a.shape} and {b.shape}); put them on one grid first")
    if not shell_width > 0:
        raise ConfigError(f"shell_width must be > 0 voxels, got {shell_width}")
    if method not in ("pearson", "radial-band"):
        raise ConfigError(f"unknown method {method!r}; use 'pearson' or 'radial-band'")
    r = _radius_voxels(a.shape[0]) / shell_width
    both = valid_voxels(a) & valid_voxels(b)
    shells = np.rint(r).astype(np.int64)
    n_shells = int(shells.max()) + 1
    q = np.arange(n_shells) * shell_width * float(q_per_voxel_inv_nm)
    counts = np.bincount(shells[both], minlength=n_shells)
    if method == "pearson":
        cc, contrast = _shell_pearson(a[both], b[both], shells[both], counts, min_voxels)
        return ShellCorrelation(q, cc, counts, float(shell_width), method, contrast=contrast)
    cc = _radial_band(a, b, r, both, counts, band)
    return ShellCorrelation(q, cc, counts, float(shell_width), method, int(band))


def _shell_pearson(a: np.ndarray, b: np.ndarray, shells: np.ndarray, counts: np.ndarray,
                   min_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shell, the Pearson correlation of the valid voxels ``a``, ``b`` (shell index of each in
    ``shells``) and the contrast of ``a`` against ``b``; NaN for shells under ``min_voxels``."""
    n_shells = len(counts)
    order = np.argsort(shells, kind="stable")
    sa, sb = a[order], b[order]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    cc = np.full(n_shells, np.nan)
    contrast = np.full(n_shells, np.nan)
    for k in range(n_shells):
        if counts[k] >= min_voxels:
            x, y = sa[bounds[k]:bounds[k + 1]], sb[bounds[k]:bounds[k + 1]]
            cc[k] = _pearson(x, y)
            var = float(np.var(y))
            if var > 0:
                contrast[k] = float(np.mean((x - x.mean()) * (y - y.mean()))) / var * y.mean() / x.mean()
    return cc, contrast


def _radial_band(a: np.ndarray, b: np.ndarray, r: np.ndarray, both: np.ndarray, counts: np.ndarray,
                 band: int) -> np.ndarray:
    """Per shell, the Pearson correlation of the two log radial profiles (quarter-shell bins)
    over the mostly measured bins within ``± band`` shells; ``r`` is each voxel's radius in shells."""
    n_shells = len(counts)
    cc = np.full(n_shells, np.nan)
    fine_all = np.floor(r * 4.0 + 2.0).astype(np.int64)      # quarter-shell bins, bin 4k+2 centred on shell k
    fine = fine_all[both]
    n_fine = 4 * n_shells + 4
    m = np.bincount(fine, minlength=n_fine)
    total = np.bincount(fine_all.ravel(), minlength=n_fine)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = np.log(np.bincount(fine, weights=a[both], minlength=n_fine) / m)
        pb = np.log(np.bincount(fine, weights=b[both], minlength=n_fine) / m)
    # bins mostly measured only: at the beam stop's edge a few voxels hold what a few pixels gave
    ok = (m >= 0.9 * total) & (m > 0) & np.isfinite(pa) & np.isfinite(pb)
    for k in range(n_shells):
        lo, hi = max(0, 4 * (k - band)), min(n_fine, 4 * (k + band) + 5)
        sel = np.flatnonzero(ok[lo:hi]) + lo
        if sel.size >= 4 and counts[k] > 0:
            cc[k] = _pearson(pa[sel], pb[sel])
    return cc


@dataclass
class Resolution:
    """Where a per-shell figure first drops below ``threshold`` (see :mod:`spidarknet.judge.structure`)."""

    q_inv_nm: float             # nm⁻¹ (NaN: no shell reaches the threshold)
    threshold: float
    reached_edge: bool          # never dropped: q is the last shell with data (a bound)
    start_q_inv_nm: float = float("nan")   # the shell the scan started from

    @property
    def d_nm(self) -> float:
        """Full-period resolution 2π/q (nm)."""
        return 2 * math.pi / self.q_inv_nm if self.q_inv_nm > 0 else float("nan")

    def text(self) -> str:
        if not math.isfinite(self.q_inv_nm):
            return f"none (no shell reaches CC {self.threshold:g})"
        bound = "beyond " if self.reached_edge else ""
        return (f"{bound}q = {self.q_inv_nm:.3f} nm⁻¹ (d = 2π/q = {self.d_nm:.1f} nm) "
                f"at CC {self.threshold:g}")


def resolution(q_inv_nm: np.ndarray, cc: np.ndarray, threshold: float = DEFAULT_THRESHOLD, *,
               q_min_inv_nm: float = 0.0) -> Resolution:
    """The q where ``cc`` first falls below ``threshold``, scanning outwards from the first
    shell at or above ``q_min_inv_nm`` whose figure reaches the threshold (the shells next to
    the beam stop are often poorly measured: low ones below the threshold before the curve
    first reaches it are passed over); linear between the last shell at or above and the
    first below.  Shells without data (NaN) are skipped.  No shell reaching the threshold:
    q is NaN."""
    q = np.asarray(q_inv_nm, dtype=np.float64)
    c = np.asarray(cc, dtype=np.float64)
    use = np.flatnonzero(np.isfinite(c) & (q >= q_min_inv_nm))
    above = use[c[use] >= threshold]
    if above.size == 0:
        return Resolution(float("nan"), float(threshold), False)
    use = use[use >= above[0]]
    prev = None
    for k in use:
        if c[k] < threshold:
            t = (c[prev] - threshold) / (c[prev] - c[k])
            return Resolution(float(q[prev] + t * (q[k] - q[prev])), float(threshold), False, float(q[above[0]]))
        prev = k
    return Resolution(float(q[use[-1]]), float(threshold), True, float(q[above[0]]))
