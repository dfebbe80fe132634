"""Particle size per frame: a Poisson fit of a sphere, its beam centre and its uncertainty.

For each frame (photon counts, with its usable-pixel mask and the file's geometry):

1. **Pixels.**  The fit region is fixed first: the usable pixels whose q, seen from the
   beam centre the file states, lies in ``q_min_inv_nm``-``q_max_inv_nm`` (the mask
   removes the beam stop, the gap and, on a pnCCD with one half dead as in the 2018 PR772
   run, that half).  Every likelihood below is one of these same pixels' photons.
2. **q.**  ``q = 4π sin(θ)/λ`` with ``2θ = atan(ρ/D)``, ρ the distance in metres of a
   pixel from the beam centre and D the detector distance (SI units throughout; printed
   in nm⁻¹).
3. **Model.**  Expected photons of pixel j: ``μ_j = a w_j |F(q_j; d)|² + b`` with the
   sphere form factor ``F = 3 (sin x − x cos x) / x³``, ``x = q d / 2``, the pixel weight
   ``w_j = (D/L)³ (1 − ½ sin² 2θ)`` (solid angle relative to the beam centre times the
   azimuthal mean of the polarisation factor), a free scale ``a ≥ 0`` and a flat
   background ``b ≥ 0`` photons/pixel.  The counts are Poisson: the log-likelihood is
   ``Σ_j C_j log μ_j − Σ_j μ_j``.  ``|F|²`` is taken at the pixel centre when a pixel spans
   at most ``SUBPIXEL_FRINGE_SHARE`` of the fringe period ``2π/d`` at ``d_max_nm`` (a
   pnCCD's 75 µm at 125 mm); binned frames (150, 300 µm) average it over s × s points of
   each pixel (:func:`subpixels_for`: s = 2, 4), and the grid search below uses rings
   narrower than such pixels and a ring model averaged over the pixel area.
4. **Search.**  For every beam centre on a grid (``centre_step_px``) within
   ``centre_search_px`` of the file's (both in pnCCD pixels of 75 µm, a distance on the
   detector: :func:`centre_search_in_pixels`) and every diameter of a grid (``d_min_nm`` …
   ``d_max_nm``, every ``coarse_step_nm``), ``a`` and ``b`` maximise the likelihood of the
   ring sums (the sufficient statistic of a round pattern about that centre); the best
   centre and diameter start Fisher scoring of the per-pixel likelihood over all five
   parameters (a, b, d and the centre x, y): ``scipy.optimize.minimize``'s trust-exact
   method with the Fisher information as the Hessian.  No fringe detection gates the fit: a round
   pattern fixes its own centre on whatever part of the detector works, one half included.
5. **Uncertainty.**  ``diameter_err_nm`` is the 1σ error of the diameter: from the inverse
   Fisher information ``Σ_j ∇μ_j ∇μ_jᵀ / μ_j`` of all five parameters (the curvature of the
   log-likelihood, its correlation with the centre included), and in quadrature a shape
   term ``SHAPE_ERROR_PER_ROOT_MISFIT · d · √misfit`` for patterns that a sphere does not
   quite explain (icosahedra: their fringe positions depend on the orientation by ~0.7 %).  Where
   the file's stray light comes in parts scaled per frame, the term reads
   ``PARTS_MISFIT_FACTOR`` (3) times the misfit: the parts' free scales take up part of a
   non-sphere's departure.

``fit_quality`` is the reduced Pearson χ² of the ring sums about the fitted centre,
``Σ_k (C_k − μ_k)² / μ_k / (N − 5)`` over the N rings fitted: about 1 when a sphere
explains the pattern to within the Poisson noise, larger for worse fits; smaller is better.
It grows with the photons for any misfit; ``misfit``, the same Pearson χ² in excess of its
degrees of freedom per signal photon, does not: about the signal-weighted mean square
relative deviation of the ring profile from the sphere, ≈ 0 (± √(2N)/signal) for a sphere,
0.05-0.4 for a single icosahedron, larger for several particles or clusters.  A size window
(:func:`select_size_window`) drops fits above ``SIZE_WINDOW_MAX_MISFIT``.

What is measured is the diameter of the sphere whose fringes match (the fringe-equivalent
sphere).  For a sphere that is its diameter; for a regular icosahedron it is
``ICOSAHEDRON_SPHERE_DIAMETER_RATIO`` (0.998) times the diameter of the sphere of equal
volume, to ±0.7 % with the orientation.  That ratio (the median) and the shape term (so
that ±1σ covers the error of 68 % of the icosahedra; then 72 % of the spheres) were
calibrated once by ``tools/sizing_bench.py --calibrate``: 175 simulated icosahedra with
≥ 500 photons on the half detector, beam jitter σ = 5 px, seeds 5001-5004.

**A second particle.**  Two particles ``d`` apart across the beam scatter one particle's
pattern times fringes ``1 + γ cos(q·d)``, which ring sums average away.  After the fit,
:func:`second_particle_z` scores such fringes in the pixels' residual for every ``d`` at
once (an FFT): ``second_particle_z``, in σ, ≈ 3 for one particle whatever its photons, and
a size window drops fits above their ``second_particle_cut`` (:func:`second_particle_cut`: 5
on dim frames, more on bright ones, whose not-quite-spherical particles leave a residual
growing with their photons beyond the first minimum).  Where a file's rows carry a
detector's common-mode stripes (:func:`file_background` fits its sampled frames and reads
:func:`row_band_ratio`), the search leaves out the fringes along the rows.

**Stray light.**  Beamline and injector scatter (measured frames; ``simulate
--measured-like``) is round about the beam and the same from shot to shot up to its
strength, and a flat ``b`` does not model it: it inflated the misfit of dim singles past the
size window's cut.  Each file's own background shape is measured once
(:func:`file_background`: the ring profile of its quietest sampled frames,
:func:`radial_background`); where it departs from a flat background, the ring sums' quality,
misfit and signal photons are those of the fitted sphere with a flat background and the
shape's two parts (:func:`~spidarknet.sizing.background.background_parts`: the beamline's
scatter grows with the shot's fluence, the injector's ring with its gas, apart from each
other), each scaled to the frame.  Such a fit also needs the sphere to stand
``min_signal_z`` σ over that background alone (the ring sums' likelihood ratio): an empty
shot whose stray light the parts explain has no sphere.  Files without a shape (the
simulator's clean frames) are fitted as before.

A fit fails, with a reason and an empty diameter, only when the frame carries no size:
when the fit region holds no usable pixels; when the fitted sphere holds fewer than
``min_signal_photons`` photons or (with a background shape) stands less than
``min_signal_z`` σ over the stray light (empty shots); or when the best diameter is the edge of
the range searched (a particle outside it).  Failures are results too: nothing is dropped.

The package, one job per module (lower ones first; each imports only those above it):

=====================  ====================================================================
``settings``           :class:`SizingSettings` and the constants calibrated once
``formfactor``         q of a ring, the pixel weight, the sphere amplitude's slope, the model
                       of a pixel's photons (at its centre or over its area)
``background``         the maximum-likelihood scale and flat background of given shapes, a
                       file's background shape (:class:`RadialBackground`)
``region``             the fit region's pixels (once per file and mask) and a frame's photons
``profile_fit``        :func:`fit_sphere` of ring sums, :class:`SphereFit`, the judgements of a fit
``second_particle``    :func:`second_particle_z` and the window's :func:`second_particle_cut`
``pixel_fit``          the per-pixel likelihood and its Fisher scoring (steps 4-5 above)
``centre_search``      the ring-sum grid search of centre and diameter (step 4's start)
``frame_fit``          :func:`fit_frame_sphere`, :func:`size_frame`, :func:`fit_roi`
``pool``               :func:`estimate_sizes` in worker processes, :func:`size_frames` here
``table``              :func:`write_sizes_csv`, :func:`read_sizes`
``window``             :func:`select_size_window`, :func:`window_verdicts`, :func:`sizes_for`
=====================  ====================================================================

Their public names are importable from ``spidarknet.sizing`` itself; the compiled loops are
:mod:`spidarknet.sizing_kernels`.  q from the radius, the sphere form factor and the radial
profile are the package's shared ones, :mod:`spidarknet.core.scattering` and
:mod:`spidarknet.core.radial`.
"""

from __future__ import annotations

from spidarknet.sizing.centre_search import CENTRE_PIXEL_M, RING_SEARCH_CELLS, centre_search_in_pixels
from spidarknet.sizing.formfactor import (SPHERE_FIRST_ZERO_X, SUBPIXEL_FRINGE_SHARE, SUBPIXELS_PER_FRINGE,
                                          pixel_weight, ring_q_inv_m, subpixels_for)
from spidarknet.sizing.frame_fit import SizeResult, fit_frame_sphere, fit_roi, r_max_px, reach_photons, size_frame
from spidarknet.sizing.pixel_fit import LATTICE_MIN_PIXELS, LATTICE_TOLERANCE
from spidarknet.sizing.background import BACKGROUND_SAMPLE_FRAMES, FileBackground, RadialBackground, radial_background
from spidarknet.sizing.pool import default_jobs, estimate_sizes, file_background, size_frames, summary_line
from spidarknet.sizing.profile_fit import SphereFit, fit_sphere
from spidarknet.sizing.second_particle import (ROW_STRIPE_CYCLES_PER_PIXEL, ROW_STRIPE_MIN_FITS, ROW_STRIPE_MIN_RATIO,
                                               SECOND_PARTICLE_MIN_SEPARATION,
                                               SECOND_PARTICLE_Z_PER_ROOT_PHOTON, SQUARE_SEARCH_DIAMETERS,
                                               SIZE_WINDOW_MAX_SECOND_PARTICLE_Z, TWO_PEAK_ALLOWANCES, TWO_PEAK_Z2_SUM,
                                               second_particle_cut,
                                               row_band_ratio, second_particle_z, window_cuts)
from spidarknet.sizing.settings import (ICOSAHEDRON_SPHERE_DIAMETER_RATIO, SHAPE_ERROR_PER_ROOT_MISFIT,
                                        SIZE_WINDOW_MAX_MISFIT, SizingSettings)
from spidarknet.sizing.table import SIZE_COLUMNS, SizeRow, read_sizes, write_sizes_csv
from spidarknet.sizing.window import select_size_window, sizes_for, window_verdicts

__all__ = [
    "BACKGROUND_SAMPLE_FRAMES", "CENTRE_PIXEL_M", "ICOSAHEDRON_SPHERE_DIAMETER_RATIO", "LATTICE_MIN_PIXELS", "LATTICE_TOLERANCE",
    "RING_SEARCH_CELLS", "ROW_STRIPE_CYCLES_PER_PIXEL", "ROW_STRIPE_MIN_FITS", "ROW_STRIPE_MIN_RATIO",
    "SECOND_PARTICLE_MIN_SEPARATION",
    "SECOND_PARTICLE_Z_PER_ROOT_PHOTON", "SHAPE_ERROR_PER_ROOT_MISFIT", "SIZE_COLUMNS",
    "SIZE_WINDOW_MAX_MISFIT", "SIZE_WINDOW_MAX_SECOND_PARTICLE_Z", "SPHERE_FIRST_ZERO_X", "SQUARE_SEARCH_DIAMETERS",
    "SUBPIXELS_PER_FRINGE", "SUBPIXEL_FRINGE_SHARE", "TWO_PEAK_ALLOWANCES", "TWO_PEAK_Z2_SUM", "SizeResult", "SizeRow", "SizingSettings", "SphereFit",
    "FileBackground", "RadialBackground", "centre_search_in_pixels", "default_jobs", "estimate_sizes", "file_background",
    "fit_frame_sphere", "fit_roi", "fit_sphere", "radial_background",
    "pixel_weight", "r_max_px", "reach_photons", "read_sizes", "ring_q_inv_m", "row_band_ratio",
    "second_particle_cut", "second_particle_z", "select_size_window", "size_frame",
    "size_frames", "sizes_for", "subpixels_for", "summary_line", "window_cuts", "window_verdicts",
    "write_sizes_csv"
]
