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
``background_photons_per_pixel`` the fitted flat background
``centre_offset_inv_nm``         how far the fitted beam centre lies from the file's, in q (nm⁻¹)
``fit_ok``                       1 where the fit gave a size, 0 where it failed or was not tried
===============================  ====================================================================

``fit_reason`` (text) says why a fit failed.  The same names head the hit list's columns
(:data:`HIT_COLUMNS`) when ``detect --size-range`` or ``--selector`` wrote it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from spidarknet.frames.source import FrameKey, FrameSource
from spidarknet.sizing import SizeResult, SizingSettings, estimate_sizes, second_particle_cut

#: the numbers :func:`measure` gives per frame, in this order
FEATURES = ("score", "diameter_nm", "diameter_err_nm", "misfit", "fit_quality", "second_particle_z",
            "second_particle_excess", "signal_photons", "background_photons_per_pixel", "centre_offset_inv_nm",
            "fit_ok")
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

    def __len__(self) -> int:
        return len(self.keys)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """(n, len(names)) float64 of the named features."""
        return np.column_stack([self.values[name] for name in names]).astype(np.float64)

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


def _fit_values(results: Sequence[SizeResult], source: FrameSource) -> dict[str, np.ndarray]:
    """The sphere fit's features of ``results``, in their order."""
    get = {name: np.array([getattr(r, name) for r in results], dtype=np.float64)
           for name in ("diameter_nm", "diameter_err_nm", "misfit", "fit_quality", "second_particle_z",
                        "signal_photons")}
    get["background_photons_per_pixel"] = np.array([r.background_photons_per_pixel for r in results],
                                                   dtype=np.float64)
    get["second_particle_excess"] = get["second_particle_z"] / second_particle_cut(get["signal_photons"])
    geometries = {os.path.abspath(f.path): f.geometry for f in source.files}
    get["centre_offset_inv_nm"] = np.array([_offset_inv_nm(r, geometries) for r in results], dtype=np.float64)
    get["fit_ok"] = np.array([r.ok for r in results], dtype=np.float64)
    return get


def measure(source: FrameSource, keys: Sequence[FrameKey], scores: np.ndarray, screen: float, *,
            jobs: int | None = None, on_frames: Callable[[int], object] | None = None) -> Measured:
    """The features of ``keys`` (frames of ``source``, scored ``scores`` by the network):
    the sphere is fitted to those scoring at least ``screen`` (in ``jobs`` processes), the
    rest keep NaN for the fit's numbers and ``fit_ok`` 0."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(keys):
        raise ValueError("one score per frame is needed")
    n = len(keys)
    values = {name: np.full(n, np.nan) for name in FEATURES}
    values["score"] = scores.copy()
    values["fit_ok"] = np.zeros(n)
    reasons = [""] * n
    fitted = scores >= screen
    index = np.flatnonzero(fitted)
    if len(index):
        chosen = [keys[i] for i in index]
        results = estimate_sizes(source.select_keys(chosen), settings=SizingSettings(), jobs=jobs,
                                 on_frames=on_frames)
        by_key = {(os.path.abspath(r.key.file), r.key.index): r for r in results}
        ordered = [by_key[(os.path.abspath(k.file), k.index)] for k in chosen]
        for name, column in _fit_values(ordered, source).items():
            values[name][index] = column
        for i, r in zip(index, ordered):
            reasons[i] = r.reason
    return Measured(list(keys), values, reasons, fitted)
