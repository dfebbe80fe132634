"""Azimuthal sums of a frame about a centre: the one radial profile of the package (the size
fit and its figures, the simulator's extent of a pattern, the reconstruction's powder fit)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class RadialProfile:
    """Photons in rings around ``centre_xy`` (column, row; full-frame pixel coordinates).

    Ring k holds the usable pixels at ``k·bin_px ≤ r < (k+1)·bin_px`` (centred rings:
    ``(k − ½)·bin_px ≤ r < (k + ½)·bin_px``); ``radius_px`` is the mean radius of those
    pixels (NaN for an empty ring), ``photons`` their sum and ``n_pixels`` their number;
    ``ring_pixels`` is the number of pixels of the ring inside the region read, usable or not.
    """

    radius_px: np.ndarray
    photons: np.ndarray
    n_pixels: np.ndarray
    ring_pixels: np.ndarray
    centre_xy: tuple[float, float]
    bin_px: float = 1.0

    @property
    def mean(self) -> np.ndarray:
        """Mean photons per usable pixel in each ring (NaN where no pixel is usable)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_pixels > 0, self.photons / np.maximum(self.n_pixels, 1), np.nan)


def pixel_radius_px(shape: Sequence[int], centre_xy: Sequence[float], *, origin: tuple[int, int] = (0, 0),
                    pixel_aspect: float = 1.0, binning: int = 1) -> np.ndarray:
    """Distance (full-frame x pixels) of each pixel centre of a frame of ``shape`` from ``centre_xy``.

    ``centre_xy`` (column, row) is in full-frame pixel coordinates; ``origin`` is the (row,
    column) of the frame's first pixel in the full frame; a frame ``binning`` x ``binning``
    binned has its pixel k centred on full-frame pixel ``(k + ½) · binning − ½`` (after
    ``origin``).  A row step counts ``pixel_aspect`` (= y/x pixel size).
    """
    rows, cols = int(shape[0]), int(shape[1])
    cx, cy = float(centre_xy[0]) - origin[1], float(centre_xy[1]) - origin[0]
    x = np.arange(cols, dtype=np.float64)
    y = np.arange(rows, dtype=np.float64)
    if binning != 1:
        x = (x + 0.5) * binning - 0.5
        y = (y + 0.5) * binning - 0.5
    dx = x - cx
    dy = (y - cy) * pixel_aspect
    return np.sqrt(np.add.outer(dy * dy, dx * dx))


def radial_profile(frame: np.ndarray, valid: np.ndarray | None, centre_xy: Sequence[float], *,
                   bin_px: float = 1.0, r_max_px: float | None = None,
                   origin: tuple[int, int] = (0, 0), pixel_aspect: float = 1.0, binning: int = 1,
                   centred: bool = False) -> RadialProfile:
    """Azimuthal sums of ``frame`` (2-D photons) over its ``valid`` pixels around ``centre_xy``.

    ``centre_xy`` (column, row) is in full-frame pixel coordinates and ``origin`` the
    (row, column) of ``frame[0, 0]`` in the full frame, so a cropped region can be passed;
    ``binning``: the frame is binned that much (see :func:`pixel_radius_px`).  Radii are in
    full-frame x-pixel units: a row step counts ``pixel_aspect`` (= y/x pixel size).
    ``centred``: ring k is centred on ``k·bin_px`` (the nearest ring, halves to even) instead
    of starting there.  Pixels at ``r_max_px`` or beyond and NaN pixels are left out.
    Fully vectorised: one ``np.bincount`` per quantity.
    """
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ValueError("radial_profile takes one 2-D frame")
    if not bin_px > 0:
        raise ValueError("bin_px must be positive")
    r = pixel_radius_px(frame.shape, centre_xy, origin=origin, pixel_aspect=pixel_aspect, binning=binning)
    values = frame.astype(np.float64, copy=False)
    usable = np.isfinite(values)
    if valid is not None:
        usable &= np.asarray(valid, dtype=bool)
    inside = r < r_max_px if r_max_px is not None else np.ones_like(usable)
    if centred:
        ring = np.rint(r / bin_px).astype(np.intp)
        n_rings = int(ring[inside].max()) + 1 if inside.any() else 0
    else:
        ring = (r / bin_px).astype(np.intp)
        n_rings = int(math.ceil((r_max_px if r_max_px is not None else r.max() + bin_px) / bin_px))
    all_index = ring[inside]
    use = usable & inside
    index = ring[use]
    ring_pixels = np.bincount(all_index, minlength=n_rings)[:n_rings]
    n_pixels = np.bincount(index, minlength=n_rings)[:n_rings]
    photons = np.bincount(index, weights=values[use], minlength=n_rings)[:n_rings]
    radius_sum = np.bincount(index, weights=r[use], minlength=n_rings)[:n_rings]
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.where(n_pixels > 0, radius_sum / np.maximum(n_pixels, 1), np.nan)
    return RadialProfile(radius_px=radius, photons=photons, n_pixels=n_pixels,
                         ring_pixels=ring_pixels, centre_xy=(float(centre_xy[0]), float(centre_xy[1])),
                         bin_px=float(bin_px))
