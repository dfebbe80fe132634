"""The package's one q-from-radius, sphere form factor and radial profile (spidarknet.core),
against the textbook formulas, and the users that share them."""

import math

import numpy as np
import pytest

from spidarknet.core.errors import ConfigError
from spidarknet.core.radial import pixel_radius_px, radial_profile
from spidarknet.core.scattering import (pixel_q_inv_m, q_from_radius_inv_m, radius_for_q_m, sphere_amplitude,
                                        sphere_intensity)

DISTANCE_M, WAVELENGTH_M = 0.125, 7.293e-10


def test_q_from_radius_is_the_ewald_sphere_and_radius_for_q_inverts_it():
    rho = np.concatenate([[0.0], np.linspace(1e-6, 0.2, 400)])
    textbook = 4 * np.pi / WAVELENGTH_M * np.sin(0.5 * np.arctan(rho / DISTANCE_M))
    q = q_from_radius_inv_m(rho, DISTANCE_M, WAVELENGTH_M)
    np.testing.assert_allclose(q, textbook, rtol=1e-13, atol=0)
    back = [radius_for_q_m(v, DISTANCE_M, WAVELENGTH_M) for v in q]
    np.testing.assert_allclose(back, rho, rtol=1e-12, atol=1e-18)
    q_90 = 4 * math.pi / WAVELENGTH_M * math.sin(math.pi / 4)      # 2θ = 90°: no flat detector sees it
    with pytest.raises(ConfigError, match="beyond 90° scattering.*lower it"):
        radius_for_q_m(q_90 * 1.001, DISTANCE_M, WAVELENGTH_M, hint="lower it")


def test_pixel_q_takes_square_and_oblong_pixels():
    square = pixel_q_inv_m((5, 7), (3.0, 2.0), 75e-6, DISTANCE_M, WAVELENGTH_M)
    oblong = pixel_q_inv_m((5, 7), (3.0, 2.0), (75e-6, 150e-6), DISTANCE_M, WAVELENGTH_M)
    assert square[2, 3] == 0.0 and oblong[2, 3] == 0.0
    assert square[2, 4] == oblong[2, 4] == pytest.approx(q_from_radius_inv_m(75e-6, DISTANCE_M, WAVELENGTH_M))
    assert oblong[3, 3] == pytest.approx(q_from_radius_inv_m(150e-6, DISTANCE_M, WAVELENGTH_M))
    assert square[3, 3] == pytest.approx(square[2, 4])


def test_sphere_form_factor_is_the_textbook_one_and_broadcasts():
    q = np.linspace(0.0, 1.5e9, 3001)
    diameters = np.array([50e-9, 70e-9])[:, None]
    x = q * diameters / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        textbook = 3 * (np.sin(x) - x * np.cos(x)) / x ** 3
    textbook[:, 0] = 1.0
    amplitude = sphere_amplitude(q, diameters)
    assert amplitude.shape == (2, 3001)
    np.testing.assert_allclose(amplitude, textbook, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sphere_intensity(q, diameters), textbook ** 2, rtol=1e-9, atol=1e-12)
    first_zero = 4.493409457909064 / (35e-9)          # tan x = x at x = q R
    assert abs(float(sphere_amplitude(first_zero, 70e-9))) < 1e-12
    small = sphere_amplitude(np.array([1e3, 1e5]), 70e-9)   # x < 0.01: the series
    np.testing.assert_allclose(small, 1 - (np.array([1e3, 1e5]) * 35e-9) ** 2 / 10, rtol=1e-12)


def test_radial_profile_rings_start_or_centre_on_their_radius():
    rng = np.random.default_rng(2)
    frame = rng.poisson(4.0, (40, 50)).astype(np.float64)
    centre = (24.5, 19.0)
    r = np.hypot(np.arange(50) - 24.5, (np.arange(40) - 19.0)[:, None])
    for centred, ring in ((False, np.floor(r)), (True, np.rint(r))):
        profile = radial_profile(frame, None, centre, centred=centred)
        ring = ring.astype(int).ravel()
        expected = np.bincount(ring, weights=frame.ravel())
        np.testing.assert_allclose(profile.photons[:len(expected)], expected)
        assert np.all(profile.photons[len(expected):] == 0)
    # a 4 x 4 binned frame's pixels sit at the centres of their blocks in the full frame
    binned = pixel_radius_px((10, 12), centre, binning=4)
    assert binned[0, 0] == pytest.approx(math.hypot(1.5 - 24.5, 1.5 - 19.0))
