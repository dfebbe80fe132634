"""The maximum-likelihood scale and flat background of ``μ = a s + b`` for given model shapes,
and a file's own background shape (:class:`RadialBackground`): the stray light of the
beamline and the injector, the same from shot to shot, measured once per file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spidarknet.sizing.second_particle import ROW_STRIPE_MIN_FITS, ROW_STRIPE_MIN_RATIO


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


def _nonnegative_scales(counts: np.ndarray, shapes: np.ndarray, start: np.ndarray, *,
                        em_steps: int = 5, newton_steps: int = 12) -> np.ndarray:
    """Maximum-likelihood ``θ ≥ 0`` of ``μ_k = Σ_i θ_i S_ik`` for Poisson counts ``C_k`` (a
    few shapes ``S`` (m, K), e.g. a sphere's rings, flat and a file's background shape, and
    their ring sums ``counts`` (K,)), from ``start`` (m,; positive): EM steps (multiplicative,
    they stay positive), then Newton steps kept inside ``θ ≥ 0`` (a scale that reaches 0
    stays there).  Returns θ."""
    counts = np.asarray(counts, dtype=np.float64)
    shapes = np.asarray(shapes, dtype=np.float64)
    theta = np.maximum(np.asarray(start, dtype=np.float64), 1e-300)
    sums = np.maximum(shapes.sum(axis=1), 1e-300)
    lit = counts > 0
    c, s = counts[lit], shapes[:, lit]
    for _ in range(em_steps):
        theta = theta * (s @ (c / np.maximum(theta @ s, 1e-300))) / sums
    for _ in range(newton_steps):
        free = theta > 0
        mu = np.maximum(theta @ s, 1e-100)   # μ² stays a number where a lit ring's model is 0
        grad = s @ (c / mu) - sums
        hess = (s * (c / (mu * mu))) @ s.T
        step = np.zeros_like(theta)
        try:
            step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        except np.linalg.LinAlgError:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            limit = np.where(step < 0, -theta / step, np.inf)
        t = min(1.0, float(limit.min()))
        theta = np.maximum(theta + t * step, 0.0)
        if not np.any(np.abs(step[free]) > 1e-9 * np.maximum(theta[free], 1e-300)):
            break
    return theta


#: frames sampled per file for its background shape (spread evenly over all its frames)
BACKGROUND_SAMPLE_FRAMES = 64
#: ... of which the background shape averages the quietest share (fewest photons near the
#: beam: empty shots, whatever the mix), at least ``BACKGROUND_MIN_FRAMES`` of them
BACKGROUND_QUIET_SHARE, BACKGROUND_MIN_FRAMES = 0.25, 8
#: ... and only where those hold at most this share of the photons near the beam that the
#: loudest tenth hold (empty shots seen: stray-light files 0.009-0.016, files of singles
#: only 0.35, development files 303, 253 and seeds 61-62)
BACKGROUND_MAX_QUIET_RATIO = 0.1
#: rings of the background shape, this wide (x pixels)
BACKGROUND_RING_PX = 2.0
#: a file has a background shape when its quiet frames' rings depart from a flat background
#: by this reduced Pearson χ² or more (a flat one gives 1 ± √(2/rings)); else none, and its
#: fits are those of a flat background
BACKGROUND_MIN_CHI2 = 4.0


@dataclass(frozen=True)
class RadialBackground:
    """A file's background shape: photons per pixel in rings ``BACKGROUND_RING_PX`` wide
    about its beam centre (x pixels), averaged over its quietest frames (the flat
    background included), and its parts that vary apart from shot to shot
    (``components``: e.g. the beamline's scatter and the injector's ring); a fit scales each
    part per frame (see :func:`radial_background`)."""

    radius_px: np.ndarray      # the rings' middles (x pixels)
    per_pixel: np.ndarray      # mean photons per pixel in each ring
    frames: int                # frames averaged
    chi2: float                # their rings' reduced Pearson χ² against a flat background
    #: (k, rings) photons per pixel of each part in a typical quiet frame, the flat
    #: background apart (:func:`background_parts`); None: one part, ``per_pixel``
    components: np.ndarray | None = None

    def at(self, radius_px) -> np.ndarray:
        """Photons per pixel at ``radius_px`` (x pixels; the end rings' values beyond)."""
        return np.interp(radius_px, self.radius_px, self.per_pixel)

    def parts_at(self, radius_px) -> np.ndarray:
        """(k, len(radius_px)) photons per pixel of each part at ``radius_px`` (one row, the
        mean shape, without parts)."""
        parts = self.per_pixel[None] if self.components is None else self.components
        return np.stack([np.interp(radius_px, self.radius_px, p) for p in parts])


@dataclass(frozen=True)
class FileBackground:
    """What a file's frames hold beside their particles, found once per file from a sample
    of its frames (:func:`~spidarknet.sizing.file_background`): its stray light's shape
    (None: a flat background) and how much stronger its sampled fits' second-particle maps
    are along the rows than elsewhere (the median of
    :func:`~spidarknet.sizing.second_particle.row_band_ratio` over ``fits`` fits; NaN with
    too few), which says whether its rows carry a detector's common-mode stripes."""

    shape: RadialBackground | None = None
    row_band_ratio: float = float("nan")
    fits: int = 0

    @property
    def row_stripes(self) -> bool:
        """Whether the second-particle search leaves out the fringes along the rows
        (:data:`ROW_STRIPE_MIN_RATIO`)."""
        return self.fits >= ROW_STRIPE_MIN_FITS and self.row_band_ratio >= ROW_STRIPE_MIN_RATIO


def _ring_sums(frames: np.ndarray, valid: np.ndarray, ring: np.ndarray, inside: np.ndarray, n_rings: int,
               adu_per_photon: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(photons, usable pixels) per frame and ring (n, ``n_rings``): a pixel counts where it is
    ``valid``, ``inside`` and finite, its photons where positive.  One frame at a time (memory
    stays that of a frame), the pixels a shared mask leaves picked once."""
    n = len(frames)
    counts, pixels = np.zeros((n, n_rings)), np.zeros((n, n_rings))
    shared = valid.ndim == 2
    if shared:
        picked = valid & inside
        rings = ring[picked]
        everywhere = np.bincount(rings, minlength=n_rings)[:n_rings]
    for i, frame in enumerate(frames):
        if not shared:
            picked = valid[i] & inside
            rings = ring[picked]
        photons = frame[picked].astype(np.float64)
        if adu_per_photon is not None:
            photons /= adu_per_photon
        finite = np.isfinite(photons)
        if not finite.all():
            at, photons = rings[finite], photons[finite]
        else:
            at = rings
        counts[i] = np.bincount(at, weights=np.maximum(photons, 0.0), minlength=n_rings)[:n_rings]
        pixels[i] = everywhere if shared and len(at) == len(rings) else np.bincount(at, minlength=n_rings)[:n_rings]
    return counts, pixels


def radial_background(frames: np.ndarray, valid: np.ndarray, origin: tuple[int, int],
                      centre_xy: Sequence[float], r_max_px: float, aspect: float,
                      adu_per_photon: float | None = None) -> RadialBackground | None:
    """The background shape of frames (n, h, w; a region whose corner is ``origin``, usable
    pixels ``valid`` (h, w) or (n, h, w)) about ``centre_xy`` out to ``r_max_px`` (x pixels;
    rows scaled by ``aspect``), or None when it is flat (a reduced χ² below
    :data:`BACKGROUND_MIN_CHI2`) or the frames are too few.

    Beamline and injector scatter is the same from shot to shot, up to its strength: the
    ring sums of the quietest :data:`BACKGROUND_QUIET_SHARE` of the frames (fewest photons
    within a quarter of ``r_max_px``, where any particle's are; those of them with more than
    twice their median there, + 3σ, left out: a particle's), over the usable pixels they have, give its shape (and the flat
    background's) with hardly any particle in it.  Photons as the fit reads them: NaN
    pixels unusable, negative noise none."""
    frames, valid = np.asarray(frames), np.asarray(valid, dtype=bool)
    n = len(frames)
    if n < BACKGROUND_MIN_FRAMES:
        return None
    rows = (np.arange(frames.shape[1]) + origin[0] - centre_xy[1]) * aspect
    cols = np.arange(frames.shape[2]) + origin[1] - centre_xy[0]
    radius = np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)
    ring = (radius / BACKGROUND_RING_PX).astype(np.intp)
    n_rings = int(math.ceil(r_max_px / BACKGROUND_RING_PX))
    inside = ring < n_rings
    counts, pixels = _ring_sums(frames, valid, ring, inside, n_rings, adu_per_photon)
    share = max(BACKGROUND_MIN_FRAMES, int(math.ceil(BACKGROUND_QUIET_SHARE * n)))
    inner = counts[:, :n_rings // 4].sum(axis=1)   # a particle's photons are there, wherever its fringes end
    quiet = np.argsort(inner, kind="stable")[:share]
    typical = float(np.median(inner[quiet]))
    if typical > BACKGROUND_MAX_QUIET_RATIO * float(np.percentile(inner, 90)):
        return None   # no empty shots among them: the quietest hold particles (a file of singles)   # ... and a frame far above the quiet ones' median holds one
    quiet = quiet[inner[quiet] <= 2.0 * typical + 3.0 * math.sqrt(typical) + 3.0]
    per_frame, per_pixels = counts[quiet], pixels[quiet]
    counts, pixels = per_frame.sum(axis=0), per_pixels.sum(axis=0)
    used = pixels > 0
    mean = counts.sum() / max(pixels.sum(), 1)
    if used.sum() < 3 or not mean > 0:
        return None
    chi2 = float(np.sum((counts[used] - pixels[used] * mean) ** 2 / (pixels[used] * mean)) / (used.sum() - 1))
    if chi2 < BACKGROUND_MIN_CHI2:
        return None
    middles = (np.flatnonzero(used) + 0.5) * BACKGROUND_RING_PX
    parts = background_parts(per_frame[:, used], per_pixels[:, used], middles)
    return RadialBackground(middles, counts[used] / pixels[used], len(quiet), chi2, parts)


#: parts of a file's background shape, each scaled per frame (:func:`background_parts`):
#: two, the beamline's scatter and the injector's ring of the measured-like frames (a third
#: did not help on the development files, docs/recipe.md)
BACKGROUND_PARTS = 2


def background_parts(counts: np.ndarray, pixels: np.ndarray, radius_px: np.ndarray, *,
                     iterations: int = 300) -> np.ndarray:
    """:data:`BACKGROUND_PARTS` non-negative ring profiles (photons per pixel, (k, rings)) whose
    per-frame non-negative sums explain the quiet frames' ring sums ``counts`` (n, rings; over
    ``pixels`` usable pixels): the stray light's parts that vary apart from shot to shot
    (beamline scatter with the fluence, the injector's ring with its gas), by the Poisson
    likelihood (Lee and Seung's multiplicative updates of a non-negative factorisation, each
    frame with a flat background of its own; deterministic: the start splits the mean shape
    into radial bands), then made as unlike each other as they stay non-negative
    (:func:`_widest`).  Each part is scaled to its mean strength over the frames."""
    counts, pixels = np.asarray(counts, dtype=np.float64), np.asarray(pixels, dtype=np.float64)
    mean = counts.sum(axis=0) / np.maximum(pixels.sum(axis=0), 1)
    k = BACKGROUND_PARTS
    middles = (np.arange(k) + 0.5) / k * radius_px[-1]
    windows = np.exp(-0.5 * ((radius_px[None] - middles[:, None]) / (radius_px[-1] / k)) ** 2)
    floor = 1e-3 * mean.mean()
    # the parts, and a flat background of each frame's own (the last row, not a part)
    h = np.vstack([mean * windows / windows.sum(axis=0) + floor, np.ones(len(mean))])
    w = np.hstack([np.ones((len(counts), k)), np.full((len(counts), 1), max(0.5 * mean.min(), floor))])
    for _ in range(iterations):
        ratio = counts / np.maximum(w @ h * pixels, 1e-300)       # (n, rings)
        w *= ((ratio * pixels) @ h.T) / np.maximum(pixels @ h.T, 1e-300)
        ratio = counts / np.maximum(w @ h * pixels, 1e-300)
        h[:k] *= (w[:, :k].T @ (ratio * pixels)) / np.maximum(w[:, :k].T @ pixels, 1e-300)
    return _widest(h[:k] * w[:, :k].mean(axis=0)[:, None])


def _widest(parts: np.ndarray) -> np.ndarray:
    """Non-negative parts spanning the same profiles as ``parts`` (k, rings), each with as
    little of the others as stays non-negative (the 5th percentile of their ratio over the
    rings): a factorisation leaves any mix of the true parts that its frames' sums allow,
    and a frame whose parts vary further apart than the quiet frames' did needs the pure ones."""
    out = parts.copy()
    for i in range(len(parts)):
        for j in range(len(parts)):
            if i != j:
                held = parts[j] > 1e-3 * parts[j].max()
                share = float(np.percentile(parts[i][held] / parts[j][held], 5)) if held.any() else 0.0
                out[i] -= max(share, 0.0) * parts[j]
    return np.maximum(out, 0.0)
