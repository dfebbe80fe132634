"""Tests of the SPI simulator: physics against independent formulas, and real CXI files."""

import os

import h5py
import numpy as np
import pytest

from spidarknet.commands import simulate as simulate_cmd
from spidarknet.errors import ConfigError
from spidarknet.simulate import PNCCD, render_expected, simulate_file
from spidarknet.simulate.physics import Particle, pixel_q_inv_m, random_rotation, sphere_intensity

H_J_S = 6.62607015e-34
C_M_S = 299792458.0
EV_J = 1.602176634e-19
DET = "/entry_1/instrument_1/detector_1"


# -- independent geometry, written out here from first principles ------------------------
def q_per_pixel(shape, centre_xy, pixel_m, distance_m, wavelength_m):
    """|q| = 4π sin(θ)/λ with 2θ = atan(r p / D), r the distance (px) from the beam."""
    yy, xx = np.indices(shape, dtype=np.float64)
    r_m = np.hypot(xx - centre_xy[0], yy - centre_xy[1]) * pixel_m
    two_theta = np.arctan(r_m / distance_m)
    return 4 * np.pi * np.sin(two_theta / 2) / wavelength_m


def geometry_from_file(path):
    """(pixel size m, distance m, wavelength m, nominal centre (cx, cy) in pixel indices)."""
    with h5py.File(path, "r") as f:
        px = f[f"{DET}/x_pixel_size"][()]
        py = f[f"{DET}/y_pixel_size"][()]
        d = f[f"{DET}/distance"][()]
        corner = f[f"{DET}/corner_position"][()]
        energy = f["/entry_1/instrument_1/source_1/energy"][()]
    assert px == py
    return px, d, H_J_S * C_M_S / energy, (-corner[0] / px - 0.5, -corner[1] / py - 0.5)


# -- physics ---------------------------------------------------------------------------------
def test_geometry_constants():
    assert PNCCD.shape == (1024, 1024)
    assert PNCCD.pixel_size_m == 75e-6 and PNCCD.distance_m == 0.125
    assert PNCCD.photon_energy_J == pytest.approx(1700 * EV_J)
    assert PNCCD.wavelength_m == pytest.approx(H_J_S * C_M_S / (1700 * EV_J), rel=1e-12)
    assert PNCCD.wavelength_m == pytest.approx(7.29e-10, rel=2e-3)
    assert PNCCD.centre_xy == (511.5, 511.5)
    assert 511 in PNCCD.gap_rows and 512 in PNCCD.gap_rows


def test_pixel_q_matches_ewald_formula():
    centre = (500.3, 520.8)
    q = pixel_q_inv_m(PNCCD.shape, centre, PNCCD.pixel_size_m, PNCCD.distance_m, PNCCD.wavelength_m)
    ref = q_per_pixel(PNCCD.shape, centre, PNCCD.pixel_size_m, PNCCD.distance_m, PNCCD.wavelength_m)
    np.testing.assert_allclose(q, ref, rtol=1e-9, atol=1.0)
    assert sphere_intensity(np.array([0.0]), 70e-9)[0] == pytest.approx(1.0)


def test_sphere_minima_at_the_right_q(tmp_path):
    """The simulator's own rendering of a 70 nm sphere has its minima at qR = 4.493, 7.725,
    with q from the file's geometry and the independent Ewald formula."""
    path = tmp_path / "geom.cxi"
    simulate_file(path, 1, seed=3, fractions={"empty": 1})
    p, d, lam, (cx, cy) = geometry_from_file(path)
    assert (cx, cy) == pytest.approx(PNCCD.centre_xy)
    centre = (cx + 0.37, cy - 0.81)  # off the nominal centre, like a jittered shot
    radius_m = 35e-9
    expected = render_expected([Particle("sphere", 2 * radius_m)], centre)
    assert expected.shape == (1024, 1024) and expected.dtype == np.float32
    x = q_per_pixel(expected.shape, centre, p, d, lam) * radius_m
    width = 0.02
    sel = (x > 2.0) & (x < 9.5)
    bins = ((x[sel] - 2.0) / width).astype(int)
    profile = np.bincount(bins, weights=expected[sel]) / np.maximum(np.bincount(bins), 1)
    centres = 2.0 + (np.arange(profile.size) + 0.5) * width
    inner = profile[1:-1]
    is_min = (inner < profile[:-2]) & (inner < profile[2:]) & (inner < 0.02 * profile.max())
    minima = centres[1:-1][is_min]
    assert len(minima) >= 2, minima
    assert minima[0] == pytest.approx(4.493, rel=0.02)
    assert minima[1] == pytest.approx(7.725, rel=0.02)


def test_two_spheres_add_coherently_with_ewald_phase():
    centre = (511.9, 511.2)
    a = Particle("sphere", 60e-9, position_m=(0.0, 0.0, 0.0))
    b = Particle("sphere", 60e-9, position_m=(150e-9, -40e-9, 100e-9))
    one = render_expected([a], centre).astype(np.float64)
    two = render_expected([a, b], centre).astype(np.float64)
    # I_pair / I_single = |1 + exp(-i q·s)|² = 2 (1 + cos q·s), q = k (x/L, y/L, D/L - 1)
    k = 2 * np.pi / PNCCD.wavelength_m
    yy, xx = np.indices(one.shape, dtype=np.float64)
    x = (xx - centre[0]) * PNCCD.pixel_size_m
    y = (yy - centre[1]) * PNCCD.pixel_size_m
    length = np.sqrt(PNCCD.distance_m ** 2 + x ** 2 + y ** 2)
    s = np.subtract(b.position_m, a.position_m)
    qs = k * (x * s[0] / length + y * s[1] / length + (PNCCD.distance_m / length - 1) * s[2])
    ok = one > 1e-3 * one.max()
    np.testing.assert_allclose(two[ok] / one[ok], 2 * (1 + np.cos(qs[ok])), atol=5e-3)


def test_icosahedron_scatters_like_its_volume_equivalent_sphere():
    rng = np.random.default_rng(0)
    centre = PNCCD.centre_xy
    sphere = render_expected([Particle("sphere", 70e-9)], centre)
    for _ in range(2):
        particle = Particle("icosahedron", 70e-9, rotation=random_rotation(rng))
        ico = render_expected([particle], centre)
        # near q = 0 only the volume matters
        assert ico[511, 511] == pytest.approx(sphere[511, 511], rel=0.02)
        assert ico.sum() == pytest.approx(sphere.sum(), rel=0.1)
        assert np.all(ico >= 0)


@pytest.mark.parametrize("scale", [1.0, 40.0])  # sparse placement; bright pixels drawn apart
def test_photon_sampling_is_poisson(scale):
    from spidarknet.simulate.detector import sample_photons

    rng = np.random.default_rng(1)
    lam = np.full((64, 64), 0.02 * scale, dtype=np.float32)
    lam[8:16, 8:24] = 0.6 * scale
    lam[40, 40] = 3.0 * scale
    lam[50:, :] = 0.0
    n = 3000 if scale == 1.0 else 800
    total = np.zeros(lam.shape)
    total2 = np.zeros(lam.shape)
    for _ in range(n):
        c = sample_photons(lam, rng).astype(np.float64)
        total += c
        total2 += c * c
    mean = total / n
    var = total2 / n - mean ** 2
    assert not np.any(mean[50:])
    for region in (np.s_[20:40, :], np.s_[8:16, 8:24], np.s_[40, 40]):
        expected = float(np.mean(lam[region]))
        assert np.mean(mean[region]) == pytest.approx(expected, rel=0.05)
        assert np.mean(var[region]) == pytest.approx(expected, rel=0.15)


# -- files ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "sim.cxi"
    rc = simulate_cmd.main([str(path), "--count", "60", "--seed", "7", "--quiet"])
    assert rc == 0
    return path


def test_cli_prints_one_summary_line(tmp_path, capsys):
    path = tmp_path / "s.cxi"
    assert simulate_cmd.main([str(path), "--count", "4", "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"wrote {path}: 4 frames (")
    assert "labelled single" in out[0]


def test_layout(sim_file):
    with h5py.File(sim_file, "r") as f:
        assert f["/cxi_version"][()] == 150
        data = f[f"{DET}/data"]
        assert data.shape == (60, 1024, 1024) and data.dtype == np.uint16
        assert data.chunks == (1, 1024, 1024)
        assert data.attrs["axes"] == "experiment_identifier:y:x"
        link = f.get("/entry_1/data_1/data", getlink=True)
        assert isinstance(link, h5py.SoftLink) and link.path == f"{DET}/data"
        assert f["/entry_1/data_1/data"].shape == data.shape
        assert f[f"{DET}/distance"][()] == pytest.approx(0.125)
        assert f[f"{DET}/x_pixel_size"][()] == pytest.approx(75e-6)
        assert f[f"{DET}/y_pixel_size"][()] == pytest.approx(75e-6)
        corner = f[f"{DET}/corner_position"][()]
        assert corner.dtype == np.float64 and corner.shape == (3,)
        assert corner[2] == pytest.approx(0.125)
        assert -corner[0] / 75e-6 - 0.5 == pytest.approx(511.5)
        assert f[f"{DET}/description"][()].decode() == "simulated pnCCD"
        energy = f["/entry_1/instrument_1/source_1/energy"][()]
        assert energy == pytest.approx(1700 * EV_J)
        wavelength = f["/entry_1/instrument_1/source_1/wavelength"][()]
        assert wavelength == pytest.approx(H_J_S * C_M_S / energy)
        mask = f[f"{DET}/mask_shared"][()]
        assert mask.dtype == np.uint32 and mask.shape == (1024, 1024)
        assert np.all(mask[506:518] & 0x200) and not np.any(mask[:500] & 0x200)
        assert mask[490, 511] & 0x1 and mask[511 - 20, 515] & 0x1 and not mask[470, 511]
        assert 0 < np.count_nonzero(mask & 0x1) < 3000  # beam stop + a few bad pixels
        truth = f["/truth"]
        assert truth.attrs["label_rule"] == "single=1: one particle, 60-75 nm"
        dtypes = {"label": np.int8, "kind": "S12", "diameter_nm": np.float32,
                  "n_particles": np.int16, "shape": "S12", "centre_x_px": np.float32,
                  "centre_y_px": np.float32, "photons": np.int32, "extent_px": np.float32}
        for name, dtype in dtypes.items():
            assert truth[name].shape == (60,), name
            assert truth[name].dtype == np.dtype(dtype), name
        for i in range(60):
            frame = data[i]
            assert not np.any(frame[mask != 0]), "masked pixels must read 0"
            assert int(frame.sum(dtype=np.int64)) == truth["photons"][i]


def test_truth_is_consistent(sim_file):
    with h5py.File(sim_file, "r") as f:
        t = {name: f["/truth"][name][()] for name in f["/truth"]}
    kind = np.char.decode(t["kind"])
    d = t["diameter_nm"]
    counts = {k: int(np.sum(kind == k)) for k in set(kind)}
    assert counts == {"single": 21, "multiple": 9, "empty": 15, "aggregate": 6, "droplet": 4,
                      "tiny": 5}
    labelled = t["label"] == 1
    assert np.all(kind[labelled] == "single")
    assert np.all((d[labelled] >= 60) & (d[labelled] <= 75))
    single = kind == "single"
    assert np.array_equal(labelled, single & (d >= 60) & (d <= 75))
    assert np.all((d[single] >= 55) & (d[single] <= 80))
    assert np.all(np.isnan(d[kind == "empty"]))
    assert np.all(t["n_particles"][single] == 1)
    assert np.all(t["n_particles"][kind == "empty"] == 0)
    assert np.all(np.isin(t["n_particles"][kind == "multiple"], [2, 3]))
    assert np.all(t["n_particles"][kind == "aggregate"] >= 2)
    assert set(np.char.decode(t["shape"][single])) <= {"sphere", "icosahedron"}
    assert np.all(t["shape"][kind == "empty"] == b"")
    for c in ("centre_x_px", "centre_y_px"):
        assert np.all(np.abs(t[c] - 511.5) < 10) and np.std(t[c]) > 0.3
    assert np.all(t["extent_px"][kind == "empty"] == 0)
    assert np.all(t["extent_px"][single] > 30) and np.all(t["extent_px"] <= 512)
    # photons: empty frames are background (0.002/pixel), single hits add a few thousand
    with h5py.File(sim_file, "r") as f:
        n_valid = np.count_nonzero(f[f"{DET}/mask_shared"][()] == 0)
    empty = t["photons"][kind == "empty"]
    assert np.mean(empty) == pytest.approx(0.002 * n_valid, rel=0.05)
    signal = t["photons"][single] - np.mean(empty)
    assert 1000 < np.mean(signal) < 10000
    assert np.mean(t["photons"][kind == "droplet"]) > np.mean(t["photons"][single])


def test_deterministic_and_chunking_independent(tmp_path):
    a, b, c = tmp_path / "a.cxi", tmp_path / "b.cxi", tmp_path / "c.cxi"
    assert simulate_cmd.main([str(a), "--count", "10", "--seed", "5", "-q"]) == 0
    simulate_file(b, 10, seed=5, chunk_frames=3)
    simulate_file(c, 10, seed=6)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb, h5py.File(c, "r") as fc:
        assert np.array_equal(fa[f"{DET}/data"][()], fb[f"{DET}/data"][()])
        assert np.array_equal(fa["/truth/kind"][()], fb["/truth/kind"][()])
        assert np.array_equal(fa[f"{DET}/mask_shared"][()], fb[f"{DET}/mask_shared"][()])
        assert not np.array_equal(fa[f"{DET}/data"][()], fc[f"{DET}/data"][()])


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "x.cxi"
    path.write_bytes(b"keep me")
    rc = simulate_cmd.main([str(path), "--count", "2", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and err[0].startswith("error:") and "--force" in err[0]
    assert path.read_bytes() == b"keep me"
    assert simulate_cmd.main([str(path), "--count", "2", "-q", "--force"]) == 0
    assert h5py.is_hdf5(path)


def test_half_detector_zeroes_one_half(tmp_path):
    path = tmp_path / "half.cxi"
    summary = simulate_file(path, 6, seed=1, half_detector=True, compression="gzip",
                            fractions={"single": 1})
    assert summary.counts["single"] == 6 and summary.count == 6
    with h5py.File(path, "r") as f:
        data = f[f"{DET}/data"]
        assert data.compression == "gzip"
        mask = f[f"{DET}/mask_shared"][()]
        assert np.all(mask[512:] & 0x1)
        frames = data[()]
    assert not np.any(frames[:, 512:, :])
    assert np.all(frames[:, :506, :].sum(axis=(1, 2)) > 500)


def test_bad_fractions_and_interrupt_leave_nothing(tmp_path, capsys):
    with pytest.raises(ConfigError, match="did you mean 'single'"):
        simulate_file(tmp_path / "f.cxi", 2, fractions={"singel": 1})
    rc = simulate_cmd.main([str(tmp_path / "g.cxi"), "--count", "2", "--fractions", "nope=1"])
    assert rc == 1
    assert capsys.readouterr().err.startswith("error:")

    def interrupt(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate_file(tmp_path / "i.cxi", 4, chunk_frames=2, progress=interrupt)
    assert os.listdir(tmp_path) == []
