"""What the pipeline measures of a frame, as one table: the features a selection is made from.

For every frame the network scored, :func:`measure` fits the sphere (:mod:`spidarknet.sizing`)
to the frames the network lets through (``score >= screen``) and returns per frame:

===============================  ====================================================================
``score``                        the network's score
``diameter_nm``                  the fitted sphere's diameter (NaN: not fitted, or the fit failed)
``diameter_err_nm``              its 1σ
``misfit``                       how far the pattern is from one sphere's (0 for a sphere)
``fit_quality``                  the fit's reduced χ²
``second_particle_z``            the Poisson score (σ) of a second particle's fringes
``second_particle_excess``       that score over the size window's cut (above 1: a second particle)
``signal_photons``               the photons of the fitted pattern above the background
``frame_photons``                the frame's photons within the fit's outer q, background included
                                 (how bright the frame is, whatever the fit made of it)
``background_photons_per_pixel`` the fitted flat background
``centre_offset_inv_nm``         how far the fitted beam centre lies from the file's, in q (nm⁻¹)
``fit_ok``                       1 where the fit gave a size, 0 where it failed or was not tried
``one_round_particle``           1 where the size window's physics holds (a size, misfit at most
                                 0.5, no second particle's fringes), whatever the size
===============================  ====================================================================

``fit_reason`` (text) says why a fit failed.  The same names head the hit list's columns
(:data:`HIT_COLUMNS`) when ``detect --size-range`` or ``--selector`` wrote it.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from spidarknet.frames.source import FrameKey, FrameSource
from spidarknet.sizing import (SIZE_WINDOW_MAX_MISFIT, SizeResult, SizingSettings, centre_search_in_pixels,
                               estimate_sizes, window_cuts)

#: the numbers :func:`measure` gives per frame, in this order
FEATURES = ("score", "diameter_nm", "diameter_err_nm", "misfit", "fit_quality", "second_particle_z",
            "second_particle_excess", "signal_photons", "background_photons_per_pixel", "centre_offset_inv_nm",
            "fit_ok", "one_round_particle", "frame_photons")
#: the measured columns a hit list carries (the score is its own column already)
HIT_COLUMNS = FEATURES[1:]


@dataclass
class Measured:
    """The features of frames: ``values[name]`` is an (n,) float array per name of
    :data:`FEATURES`, ``fit_reason`` the reason a fit failed ("" where it succeeded or was
    not tried), ``fitted`` whether the fit was tried."""

    keys: list[FrameKey]
    values: dict[str, np.ndarray]
    fit_reason: list[str]
    fitted: np.ndarray
    warnings: list[str] = field(default_factory=list)  # :func:`geometry_warnings` of the fits
    #: CPU seconds of the fits and of their second-particle tests, summed over the processes
    cpu_s: dict = field(default_factory=lambda: {"fit": 0.0, "second_particle": 0.0})

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, index) -> "Measured":
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Measured([self.keys[i] for i in index], {k: v[index] for k, v in self.values.items()},
                        [self.fit_reason[i] for i in index], self.fitted[index])


def _offset_inv_nm(result: SizeResult, geometries: dict) -> float:
    """How far the fitted beam centre lies from the file's (nm⁻¹ of q; NaN without geometry)."""
    g = geometries.get(os.path.abspath(result.key.file))
    if g is None or None in (g.distance_m, g.pixel_size_m, g.wavelength_m):
        return float("nan")
    dx = (result.centre_xy[0] - g.centre_px[0]) * g.pixel_size_m[0]
    dy = (result.centre_xy[1] - g.centre_px[1]) * g.pixel_size_m[1]
    return 2.0 * math.pi / g.wavelength_m * math.hypot(dx, dy) / g.distance_m * 1e-9


def _fit_values(results: Sequence[SizeResult], files) -> dict[str, np.ndarray]:
    """The sphere fit's features of ``results``, in their order."""
    get = {name: np.array([getattr(r, name) for r in results], dtype=np.float64)
           for name in ("diameter_nm", "diameter_err_nm", "misfit", "fit_quality", "second_particle_z",
                        "signal_photons", "frame_photons")}
    get["background_photons_per_pixel"] = np.array([r.background_photons_per_pixel for r in results],
                                                   dtype=np.float64)
    get["second_particle_cut"] = window_cuts([r.second_particle_cut for r in results], get["signal_photons"])
    get["second_particle_excess"] = get["second_particle_z"] / get["second_particle_cut"]
    geometries = {os.path.abspath(f.path): f.geometry for f in files}
    get["centre_offset_inv_nm"] = np.array([_offset_inv_nm(r, geometries) for r in results], dtype=np.float64)
    get["fit_ok"] = np.array([r.ok for r in results], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        get["one_round_particle"] = ((get["fit_ok"] > 0) & (get["misfit"] <= SIZE_WINDOW_MAX_MISFIT)
                                     & (get["second_particle_excess"] <= 1.0)).astype(np.float64)
    return get


def measure(source: FrameSource, keys: Sequence[FrameKey], scores: np.ndarray, screen: float, *,
            jobs: int | None = None, on_frames: Callable[[int], object] | None = None,
            size_range=None, fitted: dict | None = None, window=None, icosahedron: bool = True) -> Measured:
    """The features of ``keys`` (frames of ``source``, scored ``scores`` by the network):
    the sphere is fitted to those scoring at least ``screen`` (in ``jobs`` processes) that
    ``fitted`` (fits by (absolute path, index), made already) lacks; the rest keep NaN for
    the fit's numbers and ``fit_ok`` 0.  The fits' doubts about each file's geometry
    (:func:`geometry_warnings`, with the sample's ``size_range`` in nm where known) are kept
    in ``warnings``.  ``window`` (nm): a size window that alone will judge the fits, which then
    go only as far as it needs (:attr:`~spidarknet.sizing.SizingSettings.window_nm`), and unless
    ``icosahedron`` is False those near its edges are refined by an icosahedron
    (:attr:`~spidarknet.sizing.SizingSettings.icosahedron`)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(keys):
        raise ValueError("one score per frame is needed")
    index = np.flatnonzero(scores >= screen)
    results = []
    if len(index):
        chosen = [keys[i] for i in index]
        by_key = dict(fitted or {})
        todo = [k for k in chosen if (os.path.abspath(k.file), k.index) not in by_key]
        if on_frames is not None and len(todo) < len(chosen):
            on_frames(len(chosen) - len(todo))
        if todo:
            sizing = SizingSettings(window_nm=window, icosahedron=icosahedron)
            fits = estimate_sizes(source.select_keys(todo), settings=sizing, jobs=jobs, on_frames=on_frames)
            by_key.update({(os.path.abspath(r.key.file), r.key.index): r for r in fits})
        results = [by_key[(os.path.abspath(k.file), k.index)] for k in chosen]
    return measured_from(keys, scores, index, results, source.files, size_range=size_range)


def measured_from(keys: Sequence[FrameKey], scores: np.ndarray, index: np.ndarray, results: Sequence[SizeResult],
                  files, *, size_range=None) -> Measured:
    """The features of ``keys`` (scored ``scores``) of which the frames ``index`` were fitted
    (``results``, in that order; the rest keep NaN and ``fit_ok`` 0)."""
    n = len(keys)
    values = {name: np.full(n, np.nan) for name in FEATURES + ("second_particle_cut",)}
    values["score"] = np.asarray(scores, dtype=np.float64).copy()
    values["fit_ok"] = np.zeros(n)
    values["one_round_particle"] = np.zeros(n)
    reasons = [""] * n
    fitted = np.zeros(n, dtype=bool)
    fitted[index] = True
    warnings = []
    if len(index):
        for name, column in _fit_values(results, files).items():
            values[name][index] = column
        for i, r in zip(index, results):
            reasons[i] = r.reason
        warnings = geometry_warnings(results, files, size_range=size_range)
    cpu_s = {"fit": float(sum(r.fit_cpu_s for r in results)),
             "second_particle": float(sum(r.second_particle_cpu_s for r in results))}
    return Measured(list(keys), values, reasons, fitted, warnings, cpu_s)


#: share of a file's fits that must agree before its geometry is doubted, and the fewest fits
DOUBT_SHARE, DOUBT_MIN_FITS = 0.5, 5
_EDGE = "outside the diameters searched: the best fit is the "


def _edge_warning(path: str, side: str, count: int, n: int, s: SizingSettings) -> str:
    if side == "smallest":
        edge, cause = f"{s.d_min_nm:g} nm or less", ("farther from the sample than the file says, its pixels "
                                                    "smaller or the wavelength longer")
    else:
        edge, cause = f"{s.d_max_nm:g} nm or more", ("nearer the sample than the file says, its pixels larger "
                                                     "or the wavelength shorter")
    return (f"{path}: {count} of {n} sphere fits want a diameter of {edge}, the edge of those searched. If the "
            f"particles are not that size, the detector is {cause}: check the geometry and give "
            "--distance M, --pixel-size M or --energy-ev EV")


def _centre_warning(path: str, tried: Sequence[SizeResult], info, s: SizingSettings) -> str | None:
    """A line where most fits put the beam centre at the edge of the centre search."""
    if info is None or info.geometry.pixel_size_m is None:
        return None
    reach = centre_search_in_pixels(info.geometry.pixel_size_m[0], s)[0]
    cx, cy = info.geometry.centre_px
    offsets = np.array([np.hypot(r.centre_xy[0] - cx, r.centre_xy[1] - cy) for r in tried])
    if np.median(offsets) < 0.8 * reach:
        return None
    x = float(np.median([r.centre_xy[0] for r in tried]))
    y = float(np.median([r.centre_xy[1] for r in tried]))
    return (f"{path}: the fitted beam centres lie a median {np.median(offsets):.1f} pixels from the file's "
            f"({cx:.1f}, {cy:.1f}), at the edge of the {reach:.0f} pixels searched: the file's beam centre is "
            f"likely wrong; find it (e.g. the centre of the rings of a bright hit) and give --centre X Y "
            f"(the fits lean towards ({x:.1f}, {y:.1f}))")


def _window_warning(path: str, fitted: Sequence[SizeResult], size_range) -> str | None:
    """A line where most fitted diameters miss the sample's window on the same side."""
    d = np.array([r.diameter_nm for r in fitted])
    lo, hi = size_range
    for outside, side in ((d < lo, "below"), (d > hi, "above")):
        if outside.mean() >= DOUBT_SHARE:
            factor = 0.5 * (lo + hi) / float(np.median(d))
            return (f"{path}: {int(outside.sum())} of {len(d)} fitted diameters lie {side} the window {lo:g}-{hi:g} "
                    f"nm (median {np.median(d):.1f} nm). If the sample is that size, the geometry is off by "
                    f"about x{factor:.2f} in distance (or /{factor:.2f} in pixel size or wavelength): check it "
                    "and give --distance M, --pixel-size M or --energy-ev EV")
    return None


def geometry_warnings(results: Sequence[SizeResult], files, settings: SizingSettings | None = None,
                      size_range=None) -> list[str]:
    """At most one line per file whose fits contradict its geometry, with the likely cause:
    fitted beam centres at the edge of the centre search (a wrong beam centre); most fits at
    an edge of the diameters searched, or (``size_range``, the sample's diameters in nm) most
    fitted diameters on one side of it (a wrong distance, pixel size or wavelength scales
    every diameter)."""
    s = settings or SizingSettings()
    infos = {os.path.abspath(f.path): f for f in files}
    by_file = defaultdict(list)
    for r in results:
        by_file[os.path.abspath(r.key.file)].append(r)
    lines = []
    for path, rs in by_file.items():
        tried = [r for r in rs if r.ok or r.reason.startswith(_EDGE)]
        if len(tried) < DOUBT_MIN_FITS:
            continue
        line = _centre_warning(path, tried, infos.get(path), s)
        for side in ("smallest", "largest"):
            count = sum(r.reason.startswith(_EDGE + side) for r in tried)
            if line is None and count >= DOUBT_SHARE * len(tried):
                line = _edge_warning(path, side, count, len(tried), s)
        fitted = [r for r in rs if r.ok]
        if line is None and size_range is not None and len(fitted) >= DOUBT_MIN_FITS:
            line = _window_warning(path, fitted, size_range)
        if line is not None:
            lines.append(line)
    return lines
