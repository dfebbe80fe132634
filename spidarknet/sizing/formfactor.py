"""q of a ring for a file's geometry, the pixel weight, the sphere amplitude with its slope, and
the model of the sphere's photons per pixel (:class:`_Optics`: at points or averaged over coarse
pixels).  q from the radius and the sphere form factor themselves are
:mod:`spidarknet.core.scattering`'s."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spidarknet.core.scattering import q_from_radius_inv_m, radius_for_q_m, sphere_intensity
from spidarknet.frames.source import Geometry


#: what to change when the q range asked for reaches beyond 90° scattering
Q_RANGE_HINT = "lower the q range (--q-range MIN MAX)"

#: first zero of the sphere amplitude, x = q R (tan x = x)
SPHERE_FIRST_ZERO_X = 4.493409457909064


def ring_q_inv_m(radius_px, geometry: Geometry) -> np.ndarray:
    """|q| (1/m) of rings at ``radius_px`` (in x-pixel units) for a file's geometry."""
    geometry.require_scattering()
    return q_from_radius_inv_m(np.asarray(radius_px, dtype=np.float64) * geometry.pixel_size_m[0],
                               geometry.distance_m, geometry.wavelength_m)


def pixel_weight(radius_m, distance_m: float) -> np.ndarray:
    """Solid angle of a pixel relative to one at the beam, ``(D/L)³``, times the azimuthal
    mean of the polarisation factor, ``1 − ½ sin² 2θ`` (true for any linear polarisation
    and for unpolarised light)."""
    rho = np.asarray(radius_m, dtype=np.float64)
    cos_2theta = distance_m / np.sqrt(distance_m * distance_m + rho * rho)
    return cos_2theta ** 3 * (1.0 - 0.5 * (1.0 - cos_2theta ** 2))


#: the table of :func:`_sincos`: sin and cos of every multiple of ``_SINCOS_STEP``
_SINCOS_STEP = 1.0 / 64.0


_sincos_table: list[np.ndarray] = [np.zeros(0), np.zeros(0)]


def _sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sin x`` and ``cos x`` of float64 ``x ≥ 0`` to within ~2e-16 (absolute), a few times
    faster than ``np.sin`` and ``np.cos`` of float64 (which have no vector code here).

    ``x = k h + r`` with ``h = 1/64``, ``|r| ≤ h/2`` (exact: powers of two); ``sin`` and
    ``cos`` of ``k h`` from a table (``np.sin``, ``np.cos``: correctly rounded to 1 ulp),
    of ``r`` from their Taylor series (error < 1e-18), joined by the addition theorems.
    Negative, huge or non-finite ``x`` go to ``np.sin`` and ``np.cos``.
    """
    x = np.asarray(x, dtype=np.float64)
    m = x * (1.0 / _SINCOS_STEP)
    k = np.rint(m)
    top = float(k.max()) if k.size else 0.0
    if not (k.size and 0.0 <= float(k.min()) and top < 2.0 ** 22):
        return np.sin(x), np.cos(x)
    if top >= len(_sincos_table[0]):
        n = int(max(top + 1, 2 * len(_sincos_table[0]), 8192))
        angles = np.arange(n, dtype=np.float64) * _SINCOS_STEP
        _sincos_table[:] = [np.sin(angles), np.cos(angles)]
    index = k.astype(np.intp)
    sin_k, cos_k = _sincos_table[0].take(index), _sincos_table[1].take(index)
    r = m - k
    r *= _SINCOS_STEP
    r2 = r * r
    sin_r = r2 * (1.0 / 120.0)       # sin r = r + r³ (−1/6 + r²/120)
    sin_r -= 1.0 / 6.0
    sin_r *= r2
    sin_r *= r
    sin_r += r
    cos_r1 = r2 * (-1.0 / 720.0)     # cos r − 1 = r² (−1/2 + r² (1/24 − r²/720))
    cos_r1 += 1.0 / 24.0
    cos_r1 *= r2
    cos_r1 -= 0.5
    cos_r1 *= r2
    sin_x = sin_k * cos_r1            # sin(kh + r) = sin kh + (sin kh (cos r − 1) + cos kh sin r)
    sin_x += cos_k * sin_r
    sin_x += sin_k
    cos_x = cos_k * cos_r1            # cos(kh + r) = cos kh + (cos kh (cos r − 1) − sin kh sin r)
    sin_k *= sin_r
    cos_x -= sin_k
    cos_x += cos_k
    return sin_x, cos_x


def _sphere_amplitude(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sphere amplitude ``A = 3 (sin x − x cos x) / x³`` and its slope
    ``A' = 3 (sin x / x − A) / x`` (series below x = 0.01)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-2
    any_small = bool(small.any())
    xs = np.where(small, 1.0, x) if any_small else x
    sin_x, cos_x = _sincos(xs)
    inv_x = 1.0 / xs
    amp = cos_x
    amp *= -xs
    amp += sin_x
    amp *= 3.0
    amp *= inv_x * inv_x * inv_x
    slope = sin_x
    slope *= inv_x
    slope -= amp
    slope *= 3.0
    slope *= inv_x
    if any_small:
        amp = np.where(small, 1.0 - x * x / 10.0, amp)
        slope = np.where(small, -x / 5.0, slope)
    return amp, slope


@dataclass(frozen=True)
class _Optics:
    """Radius on the detector (x pixels) → q, pixel weight and the sphere model."""

    pixel_m: float
    distance_m: float
    wavelength_m: float
    subpixels: int = 1    # the model is averaged over subpixels x subpixels points per pixel

    @classmethod
    def of(cls, geometry: Geometry, d_max_nm: float | None = None) -> "_Optics":
        """The optics of ``geometry``; with ``d_max_nm``, pixels coarse against the fringes
        of that diameter are integrated over (see :func:`subpixels_for`)."""
        geometry.require_scattering()
        subpixels = 1 if d_max_nm is None else subpixels_for(geometry, d_max_nm)
        return cls(float(geometry.pixel_size_m[0]), float(geometry.distance_m),
                   float(geometry.wavelength_m), subpixels)

    def q_inv_m(self, radius_px) -> np.ndarray:
        return q_from_radius_inv_m(np.asarray(radius_px) * self.pixel_m, self.distance_m,
                                   self.wavelength_m)

    def radius_px(self, q_inv_m: float) -> float:
        return radius_for_q_m(q_inv_m, self.distance_m, self.wavelength_m, hint=Q_RANGE_HINT) / self.pixel_m

    def shape_and_derivatives(self, radius_px: np.ndarray, diameter_m: float):
        """``s = w |F|²`` at ``radius_px`` and its derivatives by the diameter (per m) and by
        the radius (per x pixel), analytically: ``A' = 3 (j0 − A) / x`` for the sphere
        amplitude ``A``, ``j0 = sin x / x``."""
        rho = np.asarray(radius_px, dtype=np.float64) * self.pixel_m
        dist = self.distance_m
        length = np.sqrt(dist * dist + rho * rho)
        sin_theta = rho / np.sqrt(2.0 * length * (length + dist))
        k4 = 4.0 * math.pi / self.wavelength_m
        q = k4 * sin_theta
        c = dist / length                                   # cos 2θ
        c2 = c * c
        w = 0.5 * c2 * c * (1.0 + c2)
        dw_drho = -0.5 * c2 * (3.0 + 5.0 * c2) * c * rho / (length * length)
        dq_drho = 0.5 * k4 * np.sqrt(1.0 - sin_theta * sin_theta) * dist / (length * length)
        amp, amp_dx = _sphere_amplitude(0.5 * q * diameter_m)
        w_amp = w * amp
        shape = w_amp * amp
        w_amp *= amp_dx                                     # w A A' (the 2 · ½ is exact)
        d_diameter = w_amp * q
        w_amp *= diameter_m
        w_amp *= dq_drho
        d_radius = dw_drho * amp
        d_radius *= amp
        d_radius += w_amp
        d_radius *= self.pixel_m
        return shape, d_diameter, d_radius

    def shape(self, radius_px, diameter_m) -> np.ndarray:
        """``w(ρ) |F(q(ρ); d)|²``: the sphere's photons per pixel at ``radius_px`` per unit
        scale (broadcasts the radii against the diameters)."""
        rho = np.asarray(radius_px, dtype=np.float64) * self.pixel_m
        return (pixel_weight(rho, self.distance_m)
                * sphere_intensity(q_from_radius_inv_m(rho, self.distance_m, self.wavelength_m),
                                   diameter_m))

    def _subpixel_steps(self) -> np.ndarray:
        """Offsets (pixels) of the sub-pixel points from a pixel's centre along one axis."""
        n = self.subpixels
        return (np.arange(n, dtype=np.float64) + 0.5) / n - 0.5

    def pixel_shape_and_derivatives(self, off_x: np.ndarray, off_y: np.ndarray, aspect: float,
                                    diameter_m: float):
        """The model averaged over the area of pixels whose centres lie at ``off_x``,
        ``off_y`` (x pixels; y already times ``aspect``) from the beam centre: ``s`` and its
        derivatives by the diameter (per m) and by the centre's column and row (per
        pixel), from ``subpixels`` x ``subpixels`` points on each pixel."""
        steps = self._subpixel_steps()
        shape = np.zeros(np.shape(off_x))
        d_diameter, d_cx, d_cy = np.zeros_like(shape), np.zeros_like(shape), np.zeros_like(shape)
        for u in steps:
            sx = off_x + u
            for v in steps:
                sy = off_y + v * aspect
                r = np.sqrt(sx * sx + sy * sy)
                sh, dd, dr = self.shape_and_derivatives(r, diameter_m)
                dr /= np.maximum(r, 1e-9)
                shape += sh
                d_diameter += dd
                d_cx -= dr * sx
                d_cy -= dr * sy * aspect
        norm = 1.0 / (len(steps) * len(steps))
        return shape * norm, d_diameter * norm, d_cx * norm, d_cy * norm

    def ring_shape(self, radius_px: np.ndarray, diameters_m: np.ndarray) -> np.ndarray:
        """The model (diameters x rings) of a pixel at ``radius_px`` (1-D) from the beam,
        averaged over its area and over its orientation about the beam; just
        :meth:`shape` for point-like pixels (``subpixels`` 1)."""
        radius = np.asarray(radius_px, dtype=np.float64)
        diameters = np.asarray(diameters_m, dtype=np.float64).reshape(-1)
        if self.subpixels == 1:
            return self.shape(radius[None, :], diameters[:, None])
        key = (self, radius.tobytes(), diameters.tobytes())
        table = _ring_shape_cache.get(key)
        if table is not None:
            return table
        steps = self._subpixel_steps()
        u, v = (a.ravel() for a in np.meshgrid(steps, steps))
        radii = []
        for phi in (np.arange(3) + 0.5) * (math.pi / 12.0):   # a square's orientations, 0-45°
            along = radius[:, None] + u * math.cos(phi) - v * math.sin(phi)
            across = u * math.sin(phi) + v * math.cos(phi)
            radii.append(np.sqrt(along * along + across * across))
        radii = np.concatenate(radii, axis=1)                  # rings x points
        table = self.shape(radii[None, :, :], diameters[:, None, None]).mean(axis=2)
        if len(_ring_shape_cache) >= 16:
            _ring_shape_cache.clear()
        _ring_shape_cache[key] = table
        return table


#: ring tables of :meth:`_Optics.ring_shape` for integrated pixels (the same for every frame)
_ring_shape_cache: dict = {}


#: a pixel is integrated over when it spans more than this share of a fringe period
SUBPIXEL_FRINGE_SHARE = 0.15


#: ... on this many points per fringe period and axis
SUBPIXELS_PER_FRINGE = 8.0


def subpixels_for(geometry: Geometry, d_max_nm: float) -> int:
    """Points per axis at which the sizing model samples each pixel: 1 (the pixel centre)
    for pixels small against the fringe period ``2π / d`` in q at the largest diameter
    searched, as a pnCCD's 75 µm at 125 mm (0.12 of a period at 150 nm); more for binned
    frames, ``ceil(8 × share)``: 2 for 2 x 2-binned, 4 for 4 x 4-binned pnCCD pixels."""
    geometry.require_scattering()
    pixel_m = max(float(geometry.pixel_size_m[0]), float(geometry.pixel_size_m[1]))
    pixel_q = 2.0 * math.pi / geometry.wavelength_m * pixel_m / geometry.distance_m  # at the beam
    share = pixel_q * d_max_nm * 1e-9 / (2.0 * math.pi)
    if share <= SUBPIXEL_FRINGE_SHARE:
        return 1
    return int(min(math.ceil(SUBPIXELS_PER_FRINGE * share - 1e-9), 8))
