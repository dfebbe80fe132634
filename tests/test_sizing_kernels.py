"""The compiled loops of the sphere fit against the numpy they replace: the per-pixel model
and its sums, the second-particle test's residual grid, peak and quartile, the ring totals."""

import math

import numpy as np
import pytest

from spidarknet import sizing_kernels as kernels
from spidarknet.sizing.formfactor import _Optics
from spidarknet.simulate import PNCCD

OPTICS = _Optics(PNCCD.pixel_size_m, PNCCD.distance_m, PNCCD.wavelength_m)
VECTOR = np.array([OPTICS.pixel_m, OPTICS.distance_m, 4.0 * math.pi / OPTICS.wavelength_m])


def _pixels(n=5000, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.integers(-190, 190, n).astype(np.float32) + np.float32(0.5)
    y = rng.integers(-190, 10, n).astype(np.float32) - np.float32(0.25)
    values = np.where(rng.random(n) < 0.1, rng.integers(1, 4, n), 0).astype(np.float64)
    return x, y, values


@pytest.mark.parametrize("subpixels", [1, 2, 4])
def test_pixel_pass_gives_the_numpy_model_and_its_sums(subpixels):
    x, y, values = _pixels()
    optics = _Optics(OPTICS.pixel_m, OPTICS.distance_m, OPTICS.wavelength_m, subpixels)
    a, b, d_m, shift = 3.0, 0.01, 71.3e-9, (1.7, -2.2)
    mu, sums, info, none = kernels.pixel_pass(x, y, shift, 1.0, d_m, VECTOR, optics._subpixel_steps(), a, b)
    assert none is None
    s, dd, dx, dy = optics.pixel_shape_and_derivatives(x.astype(np.float64) - shift[0],
                                                       y.astype(np.float64) - shift[1], 1.0, d_m)
    dd = dd * 1e-9
    grads = np.array([s, np.ones_like(s), a * dd, a * dx, a * dy])
    expected_mu = a * s + b
    np.testing.assert_allclose(mu, expected_mu, rtol=1e-12)
    np.testing.assert_allclose(sums, [expected_mu.sum(), s.sum(), len(x), *grads[2:].sum(axis=1)], rtol=1e-10)
    np.testing.assert_allclose(info, (grads / expected_mu) @ grads.T, rtol=1e-10)
    held = np.flatnonzero(values)
    photons = kernels.photon_pass(x[held], y[held], values[held], shift, 1.0, d_m, VECTOR, optics._subpixel_steps(),
                                  a, b)
    ratio = values / expected_mu
    np.testing.assert_allclose(photons[:5], [ratio @ s, ratio @ dd, ratio @ dx, ratio @ dy, ratio.sum()], rtol=1e-10)
    assert photons[5] == pytest.approx(float(values[held] @ np.log(expected_mu[held])), rel=1e-12)


@pytest.mark.parametrize("subpixels", [1, 2, 4])
def test_model_sums_and_photon_pass_are_the_full_pass_parts(subpixels):
    """The cheaper passes of the lattice's steps: the model's sums over all pixels as the full
    pass gives them, and the photons' terms over the pixels holding photons with its μ."""
    x, y, values = _pixels()
    optics = _Optics(OPTICS.pixel_m, OPTICS.distance_m, OPTICS.wavelength_m, subpixels)
    steps = optics._subpixel_steps()
    a, b, d_m, shift = 3.0, 0.01, 71.3e-9, (1.7, -2.2)
    mu, sums, info, _ = kernels.pixel_pass(x, y, shift, 1.0, d_m, VECTOR, steps, a, b)
    np.testing.assert_allclose(kernels.model_sums(x, y, shift, 1.0, d_m, VECTOR, steps) * [1, a, a, a],
                               sums[[1, 3, 4, 5]], rtol=1e-10)
    held = np.flatnonzero(values)
    photons = kernels.photon_pass(x[held], y[held], values[held], shift, 1.0, d_m, VECTOR, steps, a, b)
    ratio = values[held] / mu[held]
    np.testing.assert_allclose(photons[[0, 4]], [ratio @ ((mu[held] - b) / a), ratio.sum()],
                               rtol=1e-10)
    assert photons[5] == pytest.approx(float(values[held] @ np.log(mu[held])), rel=1e-12)
    in_pass = kernels.pixel_pass(x, y, shift, 1.0, d_m, VECTOR, steps, a, b, values=values)   # where most hold photons
    np.testing.assert_allclose(in_pass[0], mu, rtol=1e-14)
    np.testing.assert_allclose(in_pass[2], info, rtol=1e-12)
    np.testing.assert_allclose(in_pass[3], photons[:5], rtol=1e-10)


def test_boundary_lambda_puts_the_step_on_the_trust_radius():
    values, along = np.array([0.5, 1.0, 2.0, 4.0, 9.0]), np.array([3.0, -1.0, 0.5, 2.0, -4.0])
    for radius in (2.0, 0.3, 1e-4):
        lam = kernels.boundary_lambda(values, along, radius, 0.0, float(np.linalg.norm(along)) / radius)
        assert np.linalg.norm(along / (values + lam)) == pytest.approx(radius, rel=1e-6)


def test_bfgs_update_is_the_numpy_formula_and_keeps_a_hessian_without_curvature():
    rng = np.random.default_rng(4)
    root = rng.normal(size=(5, 5))
    hessian, step = root @ root.T + np.eye(5), rng.normal(size=5)
    change = hessian @ step + 0.1 * rng.normal(size=5)
    along = hessian @ step
    expected = hessian + np.outer(change, change) / (change @ step) - np.outer(along, along) / (step @ along)
    np.testing.assert_allclose(kernels.bfgs_update(hessian, step, change), expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(kernels.bfgs_update(hessian, step, -step), hessian)   # c·s < 0: no update


def test_ring_cells_without_the_likelihood_give_the_same_scales():
    rng = np.random.default_rng(8)
    table = rng.random((6, 40)) + 0.01
    pixels_per_ring = rng.integers(50, 200, (3, 40)).astype(np.float64)
    counts = rng.poisson(pixels_per_ring * (2.0 * table[2] + 0.05)).astype(np.float64)
    shape_sums = pixels_per_ring @ table.T
    cells = np.array([[i, k] for i in range(3) for k in range(6)])
    full = kernels.ring_cells(counts, table, shape_sums, cells, pixels_per_ring.sum() / 3, True, 3)
    quick = kernels.ring_cells(counts, table, shape_sums, cells, pixels_per_ring.sum() / 3, True, 3, with_nll=False)
    assert np.array_equal(quick[:, :2], full[:, :2]) and np.isnan(quick[:, 2]).all() and np.isfinite(full).all()


def test_residual_grid_is_the_bincount_of_the_weighted_residual():
    x, y, values = _pixels()
    mu = 0.02 + np.random.default_rng(4).random(len(x))
    lit = np.flatnonzero(values)
    shift = (np.float32(0.3), np.float32(-1.6))
    bounds = (float(x.min()), float(x.max()), float(y.min()), float(y.max()))
    grid, variance, beyond = kernels.residual_grid(x, y, shift, lit, values[lit], mu, 0.01, bounds, 7.5)
    col, row = np.rint(x - shift[0]).astype(np.intp), np.rint(y - shift[1]).astype(np.intp)
    n = 1 << int(math.ceil(math.log2(2 * (max(np.abs(col).max(), np.abs(row).max()) + 1))))
    signal = mu - 0.01
    weighted = values * signal / mu - signal
    expected = np.bincount((row % n) * n + col % n, weights=weighted, minlength=n * n).reshape(n, n)
    assert grid.shape == (n, n) and grid.dtype == np.float32
    np.testing.assert_allclose(grid, expected, rtol=1e-6, atol=1e-6)
    assert variance == pytest.approx(float(np.sum(signal * signal / mu)), rel=1e-12)
    far = np.hypot(x - shift[0], y - shift[1]) > 7.5
    assert 0 < far.sum() < len(x) and beyond == pytest.approx(float(np.sum(signal[far])), rel=1e-12)


@pytest.mark.parametrize("scale", [1.0, 40.0])   # 40: most of the power beyond the histogram's bins
def test_spectrum_peak_and_quantile_are_numpys(scale):
    rng = np.random.default_rng(5)
    spectrum = (rng.normal(size=(64, 33)) + 1j * rng.normal(size=(64, 33))).astype(np.complex64) * np.sqrt(scale)
    separation = rng.random((64, 33))
    low, high, variance = 0.2, 0.9, 2.0
    searched, below, best, peak, power_map = kernels.spectrum_peak(spectrum, separation, low, high, variance, 0.3)
    power = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2) / variance
    inside = (separation > low) & (separation < high)
    assert searched == inside.sum() and below == (inside & (power <= 0.3)).sum()
    assert best == int(np.argmax(np.where(inside, power, -1.0))) and peak == pytest.approx(power.flat[best])
    for fraction in (0.0, 0.25, 0.5, 0.999, 1.0):
        quantile = kernels.spectrum_quantile(power_map, fraction)
        assert quantile == pytest.approx(float(np.percentile(power[inside], 100 * fraction)), rel=1e-12)


def test_ring_totals_are_numpys_bincounts():
    x, y, values = _pixels()
    mu = np.random.default_rng(6).random(len(x))
    lit = np.flatnonzero(values)
    shift = (0.37, -4.1)
    mu_k, n_k, c_k = kernels.ring_totals(x, y, shift, 1.0, mu, lit, values[lit])
    ring = (np.sqrt((x.astype(np.float64) - shift[0]) ** 2 + (y.astype(np.float64) - shift[1]) ** 2)).astype(np.intp)
    np.testing.assert_allclose(mu_k, np.bincount(ring, weights=mu), rtol=1e-12)
    np.testing.assert_array_equal(n_k, np.bincount(ring))
    np.testing.assert_allclose(c_k, np.bincount(ring, weights=values, minlength=len(mu_k)), rtol=1e-12)
