"""The scattering geometry and the sphere form factor that the simulator, the size fit, the
reconstruction and the judge of structures share: one definition of each.

Units are SI: radii on the detector and distances in metres, wavelengths in metres, |q| in
inverse metres (``q = 4π sin θ / λ``, ``2θ`` the scattering angle).  The detector is flat and
normal to the beam at ``distance_m`` from the interaction point; a pixel at ``ρ`` metres from
the beam sees ``2θ = atan(ρ / D)``.

The size fit's compiled loops (:mod:`spidarknet.sizing_kernels`) and its model with
derivatives (:class:`spidarknet.sizing.formfactor._Optics`) evaluate the same formulas inline,
for speed; the tests hold them to these.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from spidarknet.core.errors import ConfigError


def q_from_radius_inv_m(radius_m, distance_m: float, wavelength_m: float) -> np.ndarray:
    """|q| (1/m, float64) at transverse distance ``radius_m`` (m) from the beam.

    ``q = 4π sin(θ)/λ`` with ``2θ = atan(ρ/D)``, written without cancellation as
    ``sin θ = ρ / sqrt(2 L (L + D))``, ``L = sqrt(D² + ρ²)``.
    """
    rho = np.asarray(radius_m, dtype=np.float64)
    length = np.sqrt(distance_m * distance_m + rho * rho)
    sin_theta = rho / np.sqrt(2.0 * length * (length + distance_m))
    return 4.0 * math.pi / wavelength_m * sin_theta


def radius_for_q_m(q_inv_m: float, distance_m: float, wavelength_m: float, *,
                   hint: str = "ask for a smaller q") -> float:
    """The distance (m) from the beam where |q| reaches ``q_inv_m`` (the inverse of
    :func:`q_from_radius_inv_m`): ``ρ = D tan(2 asin(q λ / 4π))``.

    A q scattered at 2θ ≥ 90° never reaches a flat detector: :class:`ConfigError`, its
    message ending in ``hint`` (what the caller's user should change).
    """
    s = q_inv_m * wavelength_m / (4.0 * math.pi)
    if not 0 <= s < math.sqrt(0.5):
        raise ConfigError(f"q = {q_inv_m * 1e-9:.3g} nm⁻¹ lies beyond 90° scattering at "
                          f"λ = {wavelength_m * 1e9:.4g} nm; {hint}")
    return distance_m * math.tan(2.0 * math.asin(s))


def pixel_q_inv_m(shape: Sequence[int], centre_xy: Sequence[float], pixel_size_m,
                  distance_m: float, wavelength_m: float) -> np.ndarray:
    """|q| (1/m, float64) at the centre of every pixel of a flat detector of ``shape`` (rows,
    columns).

    ``centre_xy`` is the beam in pixel-index coordinates (column, row); ``pixel_size_m`` one
    size (square pixels) or the pair (x, y).  Pixel ``(i, j)`` lies ``ρ = hypot((j − cx) p_x,
    (i − cy) p_y)`` metres from the beam.
    """
    px, py = (pixel_size_m, pixel_size_m) if np.ndim(pixel_size_m) == 0 else pixel_size_m
    rows, cols = int(shape[0]), int(shape[1])
    cx, cy = float(centre_xy[0]), float(centre_xy[1])
    dx = (np.arange(cols, dtype=np.float64) - cx) * px
    dy = (np.arange(rows, dtype=np.float64) - cy) * py
    rho = np.sqrt(np.add.outer(dy * dy, dx * dx))
    return q_from_radius_inv_m(rho, distance_m, wavelength_m)


def sphere_amplitude(q_inv_m, diameter_m) -> np.ndarray:
    """Normalised form factor amplitude of a uniform sphere, ``3 (sin x − x cos x) / x³``,
    ``x = |q| d / 2`` (a series below x = 0.01); 1 at q = 0, changing sign at each zero
    (x = 4.493, 7.725, ...).  Broadcasts ``q_inv_m`` against ``diameter_m``."""
    x = np.asarray(q_inv_m, dtype=np.float64) * (0.5 * np.asarray(diameter_m, dtype=np.float64))
    small = np.abs(x) < 1e-2
    if not small.any():
        return 3.0 * (np.sin(x) - x * np.cos(x)) / x ** 3
    xs = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x * x / 10.0 + x ** 4 / 280.0,
                    3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs ** 3)


def sphere_intensity(q_inv_m, diameter_m) -> np.ndarray:
    """Normalised form factor ``|A|²`` of a uniform sphere (:func:`sphere_amplitude`
    squared; 1 at q = 0); broadcasts ``q_inv_m`` against ``diameter_m``."""
    amplitude = sphere_amplitude(q_inv_m, diameter_m)
    return amplitude * amplitude
