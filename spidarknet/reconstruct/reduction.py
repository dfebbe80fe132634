"""The choices that suit the data: the reduced detector (binning and q range, from the
powder's sphere fringes) and Dragonfly's orientation sampling."""

from __future__ import annotations

import logging
import math

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.core.radial import pixel_radius_px, radial_profile
from spidarknet.core.scattering import q_from_radius_inv_m, radius_for_q_m
from spidarknet.export.emc import EmcReader, ExportFolder, PixelReduction, make_reduction, pixel_q_inv_nm
from spidarknet.reconstruct.defaults import DEFAULTS

log = logging.getLogger(__name__)


def inscribed_radius_px(shape: tuple[int, int], centre_xy) -> float:
    """Radius (pixels) of the largest circle about the beam that stays on the frame."""
    rows, cols = shape
    cx, cy = centre_xy
    return float(max(0.0, min(cx + 0.5, cols - 0.5 - cx, cy + 0.5, rows - 0.5 - cy)))


def q_at_radius_inv_nm(radius_px: float, geometry) -> float:
    """|q| (nm⁻¹) at ``radius_px`` (x pixels) from the beam."""
    return float(q_from_radius_inv_m(radius_px * geometry.pixel_size_m[0], geometry.distance_m,
                                     geometry.wavelength_m)) * 1e-9


def typical_diameter_nm(export: ExportFolder, rows: np.ndarray | None = None) -> float | None:
    """The diameter (nm) of the sphere whose fringes fit the powder (sum) of the frames
    best, by :func:`spidarknet.sizing.fit_sphere` on its rings; ``None`` when that fails."""
    from spidarknet.sizing import fit_sphere, pixel_weight
    if export.usable is None:
        return None
    reader = EmcReader(export.photons)
    powder = reader.powder(rows).reshape(export.frame_shape)
    g = export.geometry
    aspect = g.pixel_size_m[1] / g.pixel_size_m[0]
    radius = pixel_radius_px(export.frame_shape, g.centre_px, pixel_aspect=aspect)
    r_max = inscribed_radius_px(export.frame_shape, g.centre_px)
    use = export.usable & (radius <= r_max) & (radius >= 2)
    if use.sum() < 100:
        return None
    profile = radial_profile(powder, use, g.centre_px, pixel_aspect=aspect, centred=True)
    good = profile.n_pixels > 0
    rad_ring = profile.radius_px[good]
    q_map = pixel_q_inv_nm(export.frame_shape, g) * 1e9       # each ring's q: the mean of its pixels'
    q_ring = radial_profile(q_map, use, g.centre_px, pixel_aspect=aspect, centred=True).mean[good]
    weight = pixel_weight(rad_ring * g.pixel_size_m[0], g.distance_m)
    weight = weight / weight.max()
    try:
        fit = fit_sphere(q_ring, profile.photons[good], profile.n_pixels[good].astype(np.float64), weight=weight)
    except Exception as exc:      # a default only: any failure means 'no estimate'
        log.debug("powder sphere fit failed: %s", exc)
        return None
    return float(fit.diameter_nm) if fit.ok and math.isfinite(fit.diameter_nm) else None


def choose_reduction(export: ExportFolder, binning: int | None, q_max_inv_nm: float | None,
                     rows: np.ndarray | None = None) -> tuple[PixelReduction, dict]:
    """The reduced detector, and how its numbers were chosen.

    Rule: the used region is at most the largest full ring of the detector (the inscribed
    circle about the beam).  When the powder of the frames shows sphere fringes (a fit
    gives a typical diameter ``d``), the binning ``B`` keeps ``pixels_per_fringe`` binned
    pixels per fringe ``2π/d`` and ``q_max`` is where the reduced detector reaches
    ``max_width_px / 2`` binned pixels; without that estimate ``B`` is the smallest that
    fits the inscribed circle into ``max_width_px`` pixels.  Values given win.
    """
    g = export.geometry
    if g.wavelength_m is None:
        raise InputError(f"{export.path}/detector.h5 does not say the wavelength, which q needs; export "
                         "the frames from files that record it (CXI source_1/energy or wavelength)")
    why: dict = {}
    r_in = inscribed_radius_px(export.frame_shape, g.centre_px)
    if r_in < 4:
        raise InputError(f"the beam centre {g.centre_px} lies at the edge of the {export.frame_shape} frames: "
                         "no full ring to reconstruct from; check the geometry")
    q_in = q_at_radius_inv_nm(r_in, g)
    half_width = DEFAULTS["max_width_px"] / 2
    q_px = q_at_radius_inv_nm(1.0, g)                     # ≈ q of one pixel step near the beam
    diameter = None
    if binning is None:
        diameter = typical_diameter_nm(export, rows)
        if diameter is not None:
            fringe_px = 2 * math.pi / diameter / q_px
            binning = max(1, int(fringe_px / DEFAULTS["pixels_per_fringe"]))
            why["binning"] = (f"{DEFAULTS['pixels_per_fringe']:g}+ pixels per fringe of the powder's "
                              f"{diameter:.1f} nm sphere fit ({fringe_px:.1f} pixels per fringe unbinned)")
        else:
            r_cap = r_in if q_max_inv_nm is None else min(r_in, _radius_for_q(q_max_inv_nm, g))
            binning = max(1, math.ceil(2 * r_cap / DEFAULTS["max_width_px"]))
            why["binning"] = (f"no sphere fringes in the powder: the smallest binning that puts the "
                              f"{2 * r_cap:.0f}-pixel ring into {DEFAULTS['max_width_px']} pixels")
    else:
        why["binning"] = "given"
    if q_max_inv_nm is None:
        q_cap = q_at_radius_inv_nm(half_width * binning, g)
        q_max_inv_nm = min(q_in, q_cap)
        why["q_max_inv_nm"] = ("the largest full ring of the detector" if q_in <= q_cap else
                               f"{DEFAULTS['max_width_px']} binned pixels across")
    else:
        why["q_max_inv_nm"] = "given"
    reduction = make_reduction(export.frame_shape, g, export.usable, binning=binning,
                               q_max_inv_nm=q_max_inv_nm)
    why["typical_diameter_nm"] = diameter
    why["inscribed_q_inv_nm"] = q_in
    return reduction, why


def _radius_for_q(q_inv_nm: float, geometry) -> float:
    return radius_for_q_m(q_inv_nm * 1e9, geometry.distance_m, geometry.wavelength_m) / geometry.pixel_size_m[0]


def default_num_div(model_radius_vox: float) -> int:
    """Dragonfly's orientation sampling: neighbouring orientations lie about ``0.944 / n``
    radians apart (Loh & Elser 2009), so at the model's edge (radius ``R`` voxels) they are
    ``0.944 R / n`` voxels apart; ``n`` makes that ``edge_arc_voxels``, within
    ``num_div_range``."""
    lo, hi = DEFAULTS["num_div_range"]
    n = math.ceil(0.944 * model_radius_vox / DEFAULTS["edge_arc_voxels"])
    return int(min(hi, max(lo, n)))
