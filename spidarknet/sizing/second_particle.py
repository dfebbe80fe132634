"""The evidence for a second particle's fringes in the residual of a fitted single (one FFT
of the pixels' weighted residual), and the size window's cut on it (from the particle's
photons beyond its first minimum)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError
from spidarknet.sizing.formfactor import SPHERE_FIRST_ZERO_X, _Optics
from spidarknet.sizing.region import _FitPixels, _kernels


#: the search for a second particle (:func:`second_particle_z`) starts this many fitted
#: diameters from the origin of the residual's Patterson map: just beyond one particle's own
#: autocorrelation, whose largest width is a regular icosahedron's circumscribed diameter,
#: 1.18 times its volume-equivalent one.  Chosen on the science benchmark's development files
#: (docs/recipe.md, "Seventh session"): 1.5 until then; 1.25 kept every development F1 or
#: raised it (dim 0.949 -> 0.955, 4 x 4-binned dim 0.864 -> 0.891, whose 300 µm pixels resolve
#: separations up to 137 nm only); 1.1 reaches into the single's own autocorrelation and
#: cost bright icosahedra (bright 0.976 -> 0.964)
SECOND_PARTICLE_MIN_SEPARATION = 1.25


#: where a file's rows carry stripes (:data:`ROW_STRIPE_MIN_RATIO`), the search leaves out
#: the fringes that run (almost) along the frame's rows, those whose frequency along a row is
#: below this (cycles per pixel: a period along the row of more than 43 pixels).  A pnCCD
#: reads each row of each block of 128 channels with its own common-mode offset, and the
#: facility's median correction is biased where the pattern fills a row, so measured frames
#: keep row stripes; on 8 x 8-binned measured-like development frames they raised the
#: singles' z at those frequencies (docs/recipe.md, "Ninth session": 4/256 and 10/256 left
#: more singles above the cut than 6/256).  Two particles lying along the columns lose that
#: much of their map: on clean files every row is searched (tenth session)
ROW_STRIPE_CYCLES_PER_PIXEL = 6.0 / 256.0


#: where the disc of separations that the pixels resolve (``0.9 π/κ``) reaches fewer fitted
#: diameters than this, the search covers the square ``|d_x|, |d_y| < 0.9 π/κ`` instead: each
#: axis of the pixel grid resolves separations up to ``π/κ`` by itself, and pairs lying
#: diagonally up to √2 times farther apart keep their fringes there.  Two particles a few
#: diameters apart need it only where the pixels are coarse for the particle: 4 x 4-binned
#: pnCCD pixels (the disc 1.8-2.3 diameters of 60-75 nm; 8 x 8-binned at 0.581 m 4.5-5.6,
#: the pnCCD 7.3-9.1, farther detectors more).  The corners add frequencies, hence a larger
#: largest noise: where the disc reaches far enough they bring nothing (on 8 x 8-binned
#: measured-like files they cost singles, docs/recipe.md, "Ninth session")
SQUARE_SEARCH_DIAMETERS = 3.0


#: where the search covers the square (coarse pixels, :data:`SQUARE_SEARCH_DIAMETERS`), the
#: map's two strongest separate peaks (powers ``p₁ ≥ p₂``) are evidence too: where ``p₁ + p₂``
#: exceeds the first (a sum of powers, σ²) plus the second times the bright allowance of
#: :func:`second_particle_cut` (``cut² − Z²``, ``Z`` = :data:`SIZE_WINDOW_MAX_SECOND_PARTICLE_Z`),
#: a fit's ``z`` is raised to ``√(Z² + (p₁ + p₂ − first)/second)``, then above its cut
#: (elsewhere ``z`` stays ``√p₁``).  Three particles leave three pair separations, each with a
#: third of the fringes, and a pair near the separations the pixels resolve splits its peak
#: between a frequency and its alias.  On 4 x 4-binned development frames that passed the
#: window (docs/recipe.md, "Eleventh session") dim singles had ``p₁ + p₂`` 12.4 (median),
#: 19.5 (99th percentile), such multiples 20-50; the allowance a bright single's shape takes
#: is 2-2.5 times one peak's.  Chosen there (first 20-22.5, second 2-3 scanned): dim F1
#: 0.906 -> 0.927, bright 0.968 -> 0.971 (six files each, pooled)
TWO_PEAK_Z2_SUM, TWO_PEAK_ALLOWANCES = 20.0, 2.5


#: a size window drops fits whose evidence for a second particle is above this (σ) on a dim
#: frame.  For a single particle ``z²`` is the largest of some 10⁴ independent exponential
#: variables of mean 1 (median z ≈ 3.2, and z > 5 about once in 10⁶ frames)
SIZE_WINDOW_MAX_SECOND_PARTICLE_Z = 5.0


#: a file's rows carry stripes when the median over its sampled fits of
#: :func:`row_band_ratio` reaches this (development files, docs/recipe.md, "Tenth session":
#: clean files 0.83-1.51 at every geometry, pnCCD measured-like ones 0.97-1.05, 8 x 8-binned
#: measured-like ones 2.19-3.00), from at least ``ROW_STRIPE_MIN_FITS`` fits
ROW_STRIPE_MIN_RATIO, ROW_STRIPE_MIN_FITS = 1.8, 8


#: ... widened on bright frames by this times √N, in quadrature, N the fitted particle's
#: photons beyond its pattern's first minimum (:func:`second_particle_z`): a particle that is not
#: quite a sphere leaves a residual that grows with its photons (single icosahedra on the
#: development files: z up to 5.1 at 25,000 photons, 6.7 at 100,000, where the cut is 6.4
#: and 9.3; multiples there gave 11-60 and 37-240)
SECOND_PARTICLE_Z_PER_ROOT_PHOTON = 0.025


def second_particle_cut(photons) -> np.ndarray:
    """The ``second_particle_z`` above which a size window drops a fit whose particle has
    ``photons`` beyond its first minimum (the third value of :func:`second_particle_z`; a
    size table without them gives its signal photons):
    ``hypot(SIZE_WINDOW_MAX_SECOND_PARTICLE_Z, SECOND_PARTICLE_Z_PER_ROOT_PHOTON √N)``."""
    n = np.maximum(np.nan_to_num(np.asarray(photons, dtype=np.float64)), 0.0)
    return np.hypot(SIZE_WINDOW_MAX_SECOND_PARTICLE_Z, SECOND_PARTICLE_Z_PER_ROOT_PHOTON * np.sqrt(n))


def window_cuts(cuts, signal_photons) -> np.ndarray:
    """Each fit's ``second_particle_cut`` where known, else (an older size table, which
    lacks it) :func:`second_particle_cut` of its signal photons."""
    cuts = np.asarray(cuts, dtype=np.float64)
    return np.where(np.isfinite(cuts), cuts, second_particle_cut(signal_photons))


def second_particle_z(pixels: _FitPixels, optics: _Optics, mu: np.ndarray, background: float,
                      centre_xy: Sequence[float], diameter_m: float,
                      row_stripes: bool = False) -> tuple[float, float, float]:
    """Evidence for a second particle beside the fitted one: ``(z, separation in m, the
    fitted particle's photons beyond its first minimum)``.

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
    pixels resolve (``π/κ``, ``κ`` the q across one pixel; along each axis where that is
    fewer than :data:`SQUARE_SEARCH_DIAMETERS` diameters), leaving out the fringes that run
    along the rows (:data:`ROW_STRIPE_CYCLES_PER_PIXEL`) where the file's rows carry
    stripes (``row_stripes``: :func:`row_band_ratio`); NaN when that range is empty.  In the
    square, also two peaks' evidence (:func:`_with_two_peaks`: three particles, aliases).
    The statistic is a test of a model (one particle), not of our simulator: its null
    distribution follows from Poisson statistics alone.

    The photons (``μ − b``) beyond the first minimum (``q d/2 >``
    :data:`~spidarknet.sizing.formfactor.SPHERE_FIRST_ZERO_X` about the fitted centre) are
    what the bright allowance of :func:`second_particle_cut` counts.  Within that minimum
    every compact particle scatters as the sphere of its volume (Guinier), so a shape's
    residual lies beyond it; counting only those photons, the allowance stays the shape's
    where a small beam stop (in q) lets the central peak onto the detector: singles on 8 x
    8-binned pixels at 0.581 m have some 480,000 signal photons but 29,000 beyond the
    minimum (the pnCCD at 0.125 m, whose beam stop hides the peak: 22,500 of either), and
    their z stays below 3.9 (docs/recipe.md, "Ninth session").
    """
    found = _residual_map(pixels, optics, mu, background, centre_xy, diameter_m)
    if found is None:
        return float("nan"), float("nan"), float("nan")
    spectrum, kappa, largest, variance, photons = found
    if spectrum is None:
        return float("nan"), float("nan"), photons
    kernels = _kernels()
    square = largest < SQUARE_SEARCH_DIAMETERS * diameter_m
    separation = _separations(len(spectrum), kappa, spectrum.shape[1], row_stripes, square)
    low, quiet = SECOND_PARTICLE_MIN_SEPARATION * diameter_m, math.log(4.0 / 3.0)
    n_searched, n_quiet, best, peak, power = kernels.spectrum_peak(spectrum, separation, low, largest, variance, quiet)
    if not n_searched:
        return float("nan"), float("nan"), photons
    # noisier than Poisson (a measured detector's gain spread, sub-photon noise): the lower
    # quartile of the searched map, ln(4/3) for exponentials of mean 1, says by how much; a
    # second particle raises its peaks and their surroundings, hardly the quietest quarter.
    # (The quartile is looked for only when it can exceed ln(4/3): when fewer values than
    # the quartile's rank lie below that.)
    noisier = (max(1.0, kernels.spectrum_quantile(power, 0.25) / quiet)
               if n_quiet < math.ceil(0.25 * (n_searched - 1)) + 1 else 1.0)
    peak /= noisier
    if square:   # two peaks' evidence; the separation itself (the corners are searched as the disc's edge)
        peak = _with_two_peaks(peak, _second_peak(power, spectrum.shape, best) / noisier, photons)
        separation = _separations(len(spectrum), kappa, spectrum.shape[1], row_stripes, False)
    return math.sqrt(peak), float(separation.flat[best]), photons


def _with_two_peaks(peak: float, second: float, photons: float) -> float:
    """The power of :func:`second_particle_z`'s map (``peak``, its largest; ``second``, the
    largest away from it: :func:`_second_peak`) whose root the fit's ``z`` is, on coarse
    pixels: ``Z² + (peak + second − TWO_PEAK_Z2_SUM) / TWO_PEAK_ALLOWANCES`` where that
    exceeds the window's cut² (``photons`` beyond the first minimum), else ``peak``."""
    allowance = SECOND_PARTICLE_Z_PER_ROOT_PHOTON ** 2 * (photons if photons > 0 else 0.0)   # cut² − Z²
    excess = (peak + second - TWO_PEAK_Z2_SUM) / TWO_PEAK_ALLOWANCES
    pair = SIZE_WINDOW_MAX_SECOND_PARTICLE_Z ** 2 + excess
    return pair if excess > allowance and pair > peak else peak


def _second_peak(power: np.ndarray, shape: tuple[int, int], best: int) -> float:
    """The largest power of a searched map (``spectrum_peak``'s flat ``power`` of a real
    FFT's leading columns, −1 where not searched) away from its peak at flat index ``best``:
    outside the 3 x 3 frequencies around it (rows wrap) and around its mirror where it lies
    in the first two columns (column 0 holds each frequency and its negative); 0 where none.
    ``power`` is overwritten there."""
    grid = power.reshape(shape)
    rows, columns = shape
    row, column = divmod(int(best), columns)
    centres = [(row, column)] + ([(-row, -column)] if column <= 1 else [])
    for r, c in centres:
        for around in (r - 1, r, r + 1):
            grid[around % rows, max(0, c - 1):c + 2] = -1.0
    return max(0.0, float(grid.max()))


def _residual_map(pixels: _FitPixels, optics: _Optics, mu: np.ndarray, background: float,
                  centre_xy: Sequence[float], diameter_m: float):
    """(the second-particle map's spectrum: the leading columns of the weighted residual's
    real FFT, q per pixel (1/m), the largest separation searched (m), the map's variance,
    the particle's photons beyond its first minimum) of :func:`second_particle_z`; the
    spectrum None where the variance is not positive; None where no separation is searched."""
    kappa = 2.0 * math.pi / optics.wavelength_m * optics.pixel_m / optics.distance_m  # q per pixel
    largest = 0.9 * math.pi / kappa
    if not largest > SECOND_PARTICLE_MIN_SEPARATION * diameter_m or len(mu) == 0:
        return None
    shift = (np.float32(centre_xy[0] - pixels.centre_xy[0]),
             np.float32((centre_xy[1] - pixels.centre_xy[1]) * pixels.aspect))
    # (C/μ − 1) s on the grid of the pixels' rounded offsets (float32: the map's noise is
    # Poisson's, ~10⁷ times float32's), with C = 0 off the lit pixels
    grid, variance, photons = _kernels().residual_grid(pixels.x, pixels.y, shift, pixels.lit, pixels.counts, mu,
                                                       background, pixels.bounds,
                                                       _first_minimum_px(optics, diameter_m))
    if not variance > 0:
        return None, kappa, largest, variance, photons
    columns = _searched_columns(len(grid), kappa, largest)
    spectrum = _real_fft2(grid, _grid_rows(len(grid), pixels.bounds, shift[1]), columns)
    return spectrum, kappa, largest, variance, photons


def row_band_ratio(pixels: _FitPixels, optics: _Optics, mu: np.ndarray, background: float,
                   centre_xy: Sequence[float], diameter_m: float) -> float:
    """How much stronger the fitted single's second-particle map (:func:`second_particle_z`'s,
    every row searched) is along the rows than elsewhere: the median power of its fringes
    below :data:`ROW_STRIPE_CYCLES_PER_PIXEL` over the median of the others', at the
    separations the search covers.  About 1 for a single on a clean detector, whatever its
    geometry; a detector's common-mode row stripes raise it (3.7-4.8 for the singles of 8 x
    8-binned measured-like frames; docs/recipe.md, "Tenth session").  A second particle may
    raise it too: a file's stripes are judged by the median over its fits.  NaN where the
    map is empty or either part holds fewer than 8 frequencies."""
    found = _residual_map(pixels, optics, mu, background, centre_xy, diameter_m)
    if found is None or found[0] is None:
        return float("nan")
    spectrum, kappa, largest, _, _ = found
    n = len(spectrum)
    band = math.ceil(ROW_STRIPE_CYCLES_PER_PIXEL * n)
    # the band, and every k-th column beyond it (some 8 bands' worth: a far detector's map
    # holds 10⁶ frequencies)
    chosen = np.r_[0:band, band:spectrum.shape[1]:max(1, (spectrum.shape[1] - band) // (8 * band))]
    separation = _separations(n, kappa, spectrum.shape[1], False)[:, chosen]
    radius = _radii(n, spectrum.shape[1])[:, chosen]
    searched = (separation > SECOND_PARTICLE_MIN_SEPARATION * diameter_m) & (separation < largest)
    along, across = searched.copy(), searched
    along[:, band:] = False
    across[:, :band] = False
    # each frequency against the mean of the others at its distance from the origin (the
    # map of a bright single is not flat in separation: a shape's residual)
    power = np.square(np.abs(spectrum[:, chosen]))
    at = radius[across]
    counts = np.bincount(at, minlength=2 * n)
    ring = np.bincount(at, weights=power[across], minlength=len(counts)) / np.maximum(counts, 1)
    along &= ring[radius] > 0
    if along.sum() < 8 or len(at) < 8:
        return float("nan")
    along, across = power[along] / ring[radius[along]], power[across] / ring[at]
    return float(np.median(along) / np.median(across))


#: the rounded distance from the origin (frequencies) of each frequency of
#: :func:`_separations`' maps, by (n, columns)
_radius_cache: dict = {}


def _radii(n: int, columns: int) -> np.ndarray:
    """(n, columns): each frequency's distance from the origin, rounded (kept)."""
    key = (int(n), int(columns))
    if key not in _radius_cache:
        if len(_radius_cache) >= 8:
            _radius_cache.clear()
        fy = np.fft.fftfreq(n) * n
        _radius_cache[key] = np.rint(np.hypot(fy[:, None], np.arange(columns)[None, :])).astype(np.intp)
    return _radius_cache[key]


def _first_minimum_px(optics: _Optics, diameter_m: float) -> float:
    """The radius (x pixels) of a sphere's first minimum (inf where it lies beyond 90°)."""
    try:
        return optics.radius_px(SPHERE_FIRST_ZERO_X / (0.5 * diameter_m))
    except ConfigError:
        return math.inf


def _grid_rows(side: int, bounds, shift_y: float) -> np.ndarray | None:
    """The rows of :func:`spidarknet.sizing_kernels.residual_grid`'s grid that pixels of
    ``bounds`` fall in (None: all of them)."""
    lo = int(np.rint(np.float32(bounds[2]) - np.float32(shift_y)))
    hi = int(np.rint(np.float32(bounds[3]) - np.float32(shift_y)))
    return None if hi - lo + 1 >= side else np.arange(lo, hi + 1) & (side - 1)


def _searched_columns(side: int, kappa: float, largest: float) -> int:
    """How many leading columns of the real FFT of a ``side`` x ``side`` grid hold
    separations below ``largest`` (m): those whose column alone stands for less."""
    return min(side // 2 + 1, int(math.floor(largest * side * kappa / (2.0 * math.pi))) + 1)


def _real_fft2(grid: np.ndarray, rows: np.ndarray | None, columns: int) -> np.ndarray:
    """The first ``columns`` columns of ``scipy.fft.rfft2(grid)`` (the same numbers), its
    rows' transforms taken only for ``rows`` (the others hold zeros: half of them on a half
    detector; None: all)."""
    fft = _fft()
    spectrum = np.zeros((grid.shape[0], columns), dtype=np.complex64)
    chosen = slice(None) if rows is None else rows
    spectrum[chosen] = fft.rfft(grid[chosen], axis=1, workers=1)[:, :columns]
    return fft.fft(spectrum, axis=0, workers=1, overwrite_x=True)


def _fft():
    """scipy.fft (imported on first use; its real FFTs are several times numpy's)."""
    from scipy import fft
    return fft


#: separations (m) of the frequencies of :func:`second_particle_z`'s maps, by (n, q per pixel)
_separation_cache: dict = {}


def _separations(n: int, kappa: float, columns: int, row_stripes: bool, square: bool = False) -> np.ndarray:
    """(n, columns): the separation across the beam (m) that each frequency of the first
    ``columns`` columns of the real FFT of an n x n grid of pixels ``kappa`` (1/m) apart
    stands for; with ``row_stripes``, inf for the fringes along the rows
    (:data:`ROW_STRIPE_CYCLES_PER_PIXEL`: not searched); with ``square``, those beyond the
    disc of :func:`second_particle_z`'s search but within its square (each axis's part below
    ``0.9 π/κ``) just inside the disc's edge (searched); kept."""
    key = (int(n), float(kappa), int(columns), bool(row_stripes), bool(square))
    if key not in _separation_cache:
        if len(_separation_cache) >= 8:
            _separation_cache.clear()
        fy = np.fft.fftfreq(n) * n
        fx = np.arange(columns, dtype=np.float64)
        unit = 2.0 * math.pi / (n * kappa)
        separation = unit * np.hypot(fy[:, None], fx[None, :])
        if square:
            largest = 0.9 * math.pi / kappa
            corner = (separation >= largest) & (unit * np.maximum(np.abs(fy)[:, None], fx[None, :]) < largest)
            separation[corner] = largest * (1.0 - 1e-9)
        if row_stripes:
            separation[:, :math.ceil(ROW_STRIPE_CYCLES_PER_PIXEL * n)] = math.inf
        _separation_cache[key] = separation
    return _separation_cache[key]
