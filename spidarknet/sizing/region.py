"""The fit region: which pixels a frame's fit uses (worked out once per file and mask), and
one frame's photons on them."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np


class _FitRegion:
    """Where the fit pixels of frames with one mask, region and centre lie (worked out once
    per file, not per frame): the row and column of every usable pixel whose radius from
    ``centre_xy`` lies in ``r_in_px``-``r_out_px`` (x pixels) in row-major order, and its
    offsets ``x``, ``y`` from that centre (x pixels, float32: exact to ~1e-5 px this close
    to the centre, and fast)."""

    def __init__(self, usable: np.ndarray, shape: tuple[int, int], origin: tuple[int, int],
                 centre_xy: Sequence[float], r_in_px: float, r_out_px: float, aspect: float):
        rows, cols = shape
        cx, cy = float(centre_xy[0]), float(centre_xy[1])
        self.key = (tuple(shape), tuple(origin), (cx, cy), float(r_in_px), float(r_out_px), float(aspect))
        self.usable = np.array(usable, dtype=bool)
        self.centre_xy = (cx, cy)
        r0 = max(int(math.floor(cy - origin[0] - r_out_px / aspect)), 0)
        r1 = min(int(math.ceil(cy - origin[0] + r_out_px / aspect)) + 1, rows)
        c0 = max(int(math.floor(cx - origin[1] - r_out_px)), 0)
        c1 = min(int(math.ceil(cx - origin[1] + r_out_px)) + 1, cols)
        good = self.usable[r0:r1, c0:c1] if r1 > r0 and c1 > c0 else np.zeros((0, 0), bool)
        yy, xx = np.nonzero(good)
        x = (xx + (c0 + origin[1] - cx)).astype(np.float32)
        y = ((yy + (r0 + origin[0] - cy)) * aspect).astype(np.float32)
        r = np.sqrt(x * x + y * y)
        near = (r >= r_in_px) & (r <= r_out_px)
        self.rows, self.cols = yy[near] + r0, xx[near] + c0
        self.x, self.y = x[near], y[near]
        self.flat = None   # row-major indices of the pixels in a frame of this shape (on first use)
        self.bounds = None   # the least and largest x and y (on first use)
        self.radius_ranges: dict = {}   # least and largest radius by centre (on first use)
        self._ring_pixels: dict = {}
        self._ring_model_sums: dict = {}
        self._lattice = None
        self._matched = None   # the last mask array found equal to ``usable`` (see :meth:`fits`)

    def lattice(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of the pixels in even rows and even columns (a quarter of the region,
        on a regular grid: its sums of a smooth function are a quarter of the region's to
        a small fraction), kept."""
        if self._lattice is None:
            chosen = (self.rows % 2 == 0) & (self.cols % 2 == 0)
            self._lattice = (np.ascontiguousarray(self.x[chosen]), np.ascontiguousarray(self.y[chosen]))
        return self._lattice

    def ring_pixels(self, shifts: np.ndarray, width: float, n_rings: int) -> np.ndarray:
        """(centres, n_rings): the region's pixels in rings ``width`` wide about centres
        ``shifts`` (float32 (x, y times aspect) from ``centre_xy``), kept per set of centres
        (read-only): they depend on the geometry alone, and a file's frames search the same
        centres."""
        shifts = np.ascontiguousarray(shifts, dtype=np.float32)
        key = (shifts.tobytes(), float(width), int(n_rings))   # the whole search's centres at once
        out = self._ring_pixels.get(key)
        if out is None:
            if len(self._ring_pixels) >= 1024:
                self._ring_pixels.clear()
            out = _kernels().ring_sums(self.x, self.y, np.ones(len(self.x)), shifts, width, n_rings)
            out.setflags(write=False)
            self._ring_pixels[key] = out
        return out

    def ring_model_sums(self, shifts: np.ndarray, width: float, table: np.ndarray, key) -> np.ndarray:
        """(centres, diameters): the sums over the region's pixels of each diameter's ring model
        ``table`` (diameters x rings ``width`` wide) about centres ``shifts`` (as
        :meth:`ring_pixels`), kept per set of centres and ``key`` (the table's: the geometry
        alone decides both; read-only)."""
        shifts = np.ascontiguousarray(shifts, dtype=np.float32)
        full_key = (shifts.tobytes(), float(width), key)
        out = self._ring_model_sums.get(full_key)
        if out is None:
            if len(self._ring_model_sums) >= 1024:
                self._ring_model_sums.clear()
            out = self.ring_pixels(shifts, width, table.shape[1]) @ table.T
            out.setflags(write=False)
            self._ring_model_sums[full_key] = out
        return out

    def fits(self, usable: np.ndarray, shape, origin, centre_xy, r_in_px, r_out_px, aspect) -> bool:
        """Whether this region is the one of these arguments (the same mask included)."""
        key = (tuple(shape), tuple(origin), (float(centre_xy[0]), float(centre_xy[1])), float(r_in_px),
               float(r_out_px), float(aspect))
        if key != self.key or usable.shape != self.usable.shape:
            return False
        if usable is self._matched:   # the mask array of the last frame (a chunk shares one)
            return True
        same = bool(np.array_equal(usable, self.usable))
        self._matched = usable if same else None
        return same


class _FitPixels:
    """The usable pixels of one frame's fit region and the photons on them.

    The region is fixed before the fit (the pixels whose radius from the file's beam
    centre ``centre_xy`` lies in ``r_in_px``-``r_out_px``, x pixels), so the likelihoods of
    all centres and diameters are those of the same data.  ``x`` and ``y`` are the pixels'
    offsets from ``centre_xy`` (x = column, y = row times ``aspect``, in x pixels; float32);
    ``lit`` indexes those holding photons, ``counts`` their photons.
    """

    def __init__(self, photons: np.ndarray, usable: np.ndarray, origin: tuple[int, int],
                 centre_xy: Sequence[float], r_in_px: float, r_out_px: float, aspect: float, *,
                 region: "_FitRegion | None" = None, adu_per_photon: float | None = None):
        if region is None or not region.fits(usable, photons.shape, origin, centre_xy, r_in_px, r_out_px, aspect):
            region = _FitRegion(usable, photons.shape, origin, centre_xy, r_in_px, r_out_px, aspect)
        self.region = region
        self.aspect = aspect
        self.centre_xy = region.centre_xy
        if region.flat is None:
            region.flat = np.ravel_multi_index((region.rows, region.cols), photons.shape)
        values = np.ravel(photons).take(region.flat).astype(np.float64)
        counted = photons.dtype.kind in "ub" and adu_per_photon is None   # photon counts: no NaN, none < 0
        if adu_per_photon is not None:
            values /= adu_per_photon
        if not counted:
            values[values < 0] = 0.0   # negative pixel noise counts as no photon
        finite = None if counted else np.isfinite(values)
        self.all_finite = counted or bool(finite.all())
        if self.all_finite:
            self.x, self.y = region.x, region.y
        else:   # NaN pixels of this frame leave its fit, in the same order
            self.x, self.y, values = region.x[finite], region.y[finite], values[finite]
        self.values = values                    # photons on every pixel (0 on most)
        self.lit = np.flatnonzero(values > 0)   # the pixels holding photons
        self.photon_x, self.photon_y = self.x[self.lit], self.y[self.lit]
        self.counts = values[self.lit]

    @property
    def n_pixels(self) -> int:
        return len(self.x)

    def lattice(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The region's :meth:`_FitRegion.lattice` (None for a frame with NaN pixels)."""
        return self.region.lattice() if self.all_finite else None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The least and largest x and y of the usable pixels (x min, x max, y min, y max)."""
        if self.all_finite and self.region.bounds is not None:
            return self.region.bounds
        bounds = ((float(self.x.min()), float(self.x.max()), float(self.y.min()), float(self.y.max()))
                  if len(self.x) else (0.0, 0.0, 0.0, 0.0))
        if self.all_finite:
            self.region.bounds = bounds
        return bounds

    def offsets(self, centre_xy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """x and (aspect-scaled) y of the usable pixels seen from ``centre_xy``."""
        dx = np.float32(centre_xy[0] - self.centre_xy[0])
        dy = np.float32((centre_xy[1] - self.centre_xy[1]) * self.aspect)
        return self.x - dx, self.y - dy

    def shifts(self, centres) -> np.ndarray:
        """(centres, 2) float32: each centre's (x, aspect-scaled y) offset from ``centre_xy``."""
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([(centres[:, 0] - self.centre_xy[0]).astype(np.float32),
                                ((centres[:, 1] - self.centre_xy[1]) * self.aspect).astype(np.float32)])

    def ring_pixels(self, centres, width: float, n_rings: int) -> np.ndarray:
        """(centres, n_rings): the usable pixels in rings ``width`` wide about each centre."""
        shifts = self.shifts(centres)
        if self.all_finite:
            return self.region.ring_pixels(shifts, width, n_rings)
        return _kernels().ring_sums(self.x, self.y, np.ones(len(self.x)), shifts, width, n_rings)

    def ring_model_sums(self, centres, width: float, table: np.ndarray, key) -> np.ndarray:
        """(centres, diameters): the sums over the usable pixels of each diameter's ring model
        ``table`` about each centre (:meth:`_FitRegion.ring_model_sums`; ``key`` names the table)."""
        if self.all_finite:
            return self.region.ring_model_sums(self.shifts(centres), width, table, key)
        return self.ring_pixels(centres, width, table.shape[1]) @ table.T

    def ring_photons(self, centres, width: float, n_rings: int) -> np.ndarray:
        """(centres, n_rings): the photons in rings ``width`` wide about each centre."""
        return _kernels().ring_sums(self.photon_x, self.photon_y, self.counts, self.shifts(centres), width, n_rings)

    def radius_range(self, centre_xy: Sequence[float]) -> tuple[float, float]:
        """The least and largest radius (x pixels) of the usable pixels from ``centre_xy``
        (kept by the region for its frames without NaN pixels)."""
        key = (float(centre_xy[0]), float(centre_xy[1]))
        if self.all_finite and key in self.region.radius_ranges:
            return self.region.radius_ranges[key]
        r = self.radii(centre_xy)[0]
        found = (float(r.min()), float(r.max()))
        if self.all_finite:
            self.region.radius_ranges[key] = found
        return found

    def radii(self, centre_xy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Radii (x pixels) of the usable pixels and of the photon pixels from ``centre_xy``."""
        dx = np.float32(centre_xy[0] - self.centre_xy[0])
        dy = np.float32((centre_xy[1] - self.centre_xy[1]) * self.aspect)
        x, y = self.x - dx, self.y - dy
        px, py = self.photon_x - dx, self.photon_y - dy
        return np.sqrt(x * x + y * y), np.sqrt(px * px + py * py)


@functools.cache
def _kernels():
    """:mod:`spidarknet.sizing_kernels` (numba imported on first use: commands that size
    nothing do not load it; kept: an import statement costs microseconds on each of the
    fit's many calls)."""
    from spidarknet import sizing_kernels
    return sizing_kernels
