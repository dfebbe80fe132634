"""Tests of the SPI simulator: physics against independent formulas, and real CXI files."""

import os

import h5py
import numpy as np
import pytest

from spidarknet.cli import simulate as simulate_cmd
from spidarknet.core.errors import ConfigError
from spidarknet.core.scattering import pixel_q_inv_m, sphere_intensity
from spidarknet.simulate import PNCCD, render_expected, simulate_file
from spidarknet.simulate.physics import Particle, random_rotation

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


# -- settings ---------------------------------------------------------------------------------
def _digest(path):
    """sha256 of the frames, the truth (sorted by name) and the mask of a simulated file."""
    import hashlib

    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        h.update(f[f"{DET}/data"][()].tobytes())
        for name in sorted(f["/truth"]):
            h.update(f["/truth"][name][()].tobytes())
        h.update(f[f"{DET}/mask_shared"][()].tobytes())
    return h.hexdigest()


def test_default_settings_give_the_files_of_before(tmp_path):
    """Frames, truth and mask of the simulator before it had settings (same seed), and
    every setting recorded in /truth's attributes."""
    import json

    from spidarknet.simulate import DEFAULT_SETTINGS, SimulationSettings

    path = tmp_path / "c.cxi"
    simulate_file(path, 12, seed=3, chunk_frames=5, settings=SimulationSettings())
    assert _digest(path) == "da049b3d2f96b8c789ed64adbe449bf04f7e5bf7ba245729e8e8e271373ead64"
    with h5py.File(path, "r") as f:
        attrs = dict(f["/truth"].attrs)
    assert attrs["label_rule"] == "single=1: one particle, 60-75 nm"
    recorded = json.loads(attrs["settings_json"])
    assert recorded["fluence_sigma"] == 0.4 and recorded["binning"] == 1
    assert recorded["centre_xy"] == [511.5, 511.5] and recorded["photons"] is None
    assert np.isnan(attrs["photons"]) and attrs["mean_fluence_photons_per_m2"] == 1e22
    assert list(attrs["size_range_nm"]) == [55, 80] and attrs["distance_m"] == 0.125
    for name in ("background_photons_per_pixel", "centre_jitter_px", "label_range_nm",
                 "off_size_fraction", "separation_diameters", "pixel_size_m", "photon_energy_J",
                 "shape", "half_detector", "like"):
        assert name in attrs, name
    with pytest.raises(ConfigError, match="did you mean 'binning'"):
        DEFAULT_SETTINGS.with_options(binnig=2)


def _signal_median(path):
    """Median photons above the expected background over the labelled singles."""
    with h5py.File(path, "r") as f:
        t = f["/truth"]
        labelled = t["label"][()] == 1
        n_valid = np.count_nonzero(f[f"{DET}/mask_shared"][()] == 0)
        b = int(t.attrs["binning"])
        background = t.attrs["background_photons_per_pixel"] * b * b * n_valid
        return float(np.median(t["photons"][()][labelled] - background)), int(labelled.sum())


@pytest.mark.slow
@pytest.mark.parametrize("photons, half", [(1500, True), (20000, False)])
def test_photons_sets_the_median_labelled_single(tmp_path, photons, half):
    path = tmp_path / "p.cxi"
    args = [str(path), "-n", "400", "--seed", "2", "--fractions", "single=1", "-q",
            "--photons", str(photons)] + (["--half-detector"] if half else [])
    assert simulate_cmd.main(args) == 0
    median, n = _signal_median(path)
    assert n > 200
    assert median == pytest.approx(photons, rel=0.10)
    with h5py.File(path, "r") as f:
        assert f["/truth"].attrs["photons"] == photons
        assert bool(f["/truth"].attrs["half_detector"]) == half


@pytest.mark.slow
def test_fluence_keeps_the_beam_when_the_detector_moves(tmp_path, capsys):
    """``--photons`` counts photons on the valid pixels; at 1.5 x the distance the beam stop
    is smaller in q and the bright centre falls on them, so the same sample and beam give
    more photons there: ``--fluence`` says so, ``--photons`` would have dimmed the beam."""
    near, far = tmp_path / "near.cxi", tmp_path / "far.cxi"
    common = ["-n", "120", "--seed", "3", "--fractions", "single=1", "-q", "--half-detector"]
    assert simulate_cmd.main([str(near), *common, "--photons", "1500"]) == 0
    with h5py.File(near, "r") as f:
        fluence = float(f["/truth"].attrs["mean_fluence_photons_per_m2"])
    assert simulate_cmd.main([str(far), *common, "--distance", "0.1875", "--fluence", repr(fluence)]) == 0
    with h5py.File(far, "r") as f:
        assert f["/truth"].attrs["mean_fluence_photons_per_m2"] == pytest.approx(fluence, rel=1e-12)
    assert _signal_median(near)[0] == pytest.approx(1500, rel=0.1)
    assert _signal_median(far)[0] > 2 * 1500
    capsys.readouterr()
    assert simulate_cmd.main([str(tmp_path / "both.cxi"), *common, "--photons", "1500", "--fluence", "1e22"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not both" in err and not (tmp_path / "both.cxi").exists()


def _read_back(path):
    from spidarknet.frames.source import FrameSource

    source = FrameSource([str(path)])
    info = source.files[0]
    return info, next(iter(source.chunks(64)))


def test_geometry_options_are_read_back_by_frame_source(tmp_path):
    path = tmp_path / "g.cxi"
    args = [str(path), "-n", "3", "--seed", "4", "--fractions", "empty=1", "-q",
            "--distance", "0.3", "--pixel-size", "1e-4", "--energy-ev", "1200",
            "--shape", "256", "384"]
    assert simulate_cmd.main(args) == 0
    info, chunk = _read_back(path)
    g = info.geometry
    assert info.frame_shape == (256, 384) and chunk.data.shape == (3, 256, 384)
    assert g.distance_m == pytest.approx(0.3) and g.pixel_size_m == pytest.approx((1e-4, 1e-4))
    assert g.wavelength_m == pytest.approx(H_J_S * C_M_S / (1200 * EV_J), rel=1e-12)
    assert g.centre_px == pytest.approx((191.5, 127.5))
    with h5py.File(path, "r") as f:
        mask = f[f"{DET}/mask_shared"][()]
        assert f["/truth"].attrs["photon_energy_eV"] == pytest.approx(1200)
        assert list(f["/truth"].attrs["shape"]) == [256, 384]
    assert np.array_equal(info.mask_shared, mask == 0)
    # the pnCCD's 0.9 mm gap and 1.875 mm beam stop at 100 µm pixels: 9 rows, 18.75 px
    gap = np.flatnonzero(np.all(mask & 0x200, axis=1))
    assert list(gap) == list(range(124, 133))
    assert mask[127, 191 + 18] & 0x1 and not mask[127, 191 + 20] & 0x1


def test_binning_sums_pixels_and_updates_pixel_size_centre_and_mask(tmp_path):
    from spidarknet.simulate.detector import bin_mask

    fine, binned = tmp_path / "fine.cxi", tmp_path / "binned.cxi"
    common = ["-n", "24", "--seed", "6", "--fractions", "empty=1,single=2", "-q",
              "--shape", "512", "512", "--half-detector"]
    assert simulate_cmd.main([str(fine)] + common) == 0
    assert simulate_cmd.main([str(binned), "--binning", "4"] + common) == 0
    info_f, _ = _read_back(fine)
    info_b, chunk = _read_back(binned)
    assert info_b.frame_shape == (128, 128)
    assert info_b.geometry.pixel_size_m == pytest.approx((300e-6, 300e-6))
    assert info_b.geometry.centre_px == pytest.approx((63.5, 63.5))
    assert info_b.geometry.distance_m == info_f.geometry.distance_m
    with h5py.File(fine, "r") as f, h5py.File(binned, "r") as b:
        mask_f, mask_b = f[f"{DET}/mask_shared"][()], b[f"{DET}/mask_shared"][()]
        t = {name: b["/truth"][name][()] for name in b["/truth"]}
        frames = b[f"{DET}/data"][()]
    assert np.array_equal(mask_b, bin_mask(mask_f, 4))  # same seed: the same bad pixels
    assert np.array_equal(info_b.mask_shared, mask_b == 0)
    assert not np.any(frames[:, mask_b != 0])
    # truth in written pixels; the background is per detector pixel, 16 per written one
    assert np.all(np.abs(t["centre_x_px"] - 63.5) < 3) and np.all(t["extent_px"] <= 64)
    empty = np.char.decode(t["kind"]) == "empty"
    assert np.mean(t["photons"][empty]) == pytest.approx(
        0.002 * 16 * np.count_nonzero(mask_b == 0), rel=0.1)
    single = ~empty
    assert np.all(t["extent_px"][single] > 30 / 4)


def _first_minimum_px(image, centre, bin_px=0.25, r_max=200):
    yy, xx = np.indices(image.shape, dtype=np.float64)
    r = np.hypot(xx - centre[0], yy - centre[1])
    sel = (r > 4) & (r < r_max)
    index = (r[sel] / bin_px).astype(int)
    profile = np.bincount(index, weights=image[sel]) / np.maximum(np.bincount(index), 1)
    radius = (np.arange(profile.size) + 0.5) * bin_px
    ok = np.bincount(index) > 0
    profile, radius = profile[ok], radius[ok]
    inner = profile[1:-1]
    is_min = (inner < profile[:-2]) & (inner < profile[2:]) & (inner < 0.02 * profile.max())
    return float(radius[1:-1][is_min][0])


@pytest.mark.parametrize("distance, energy_ev", [(0.125, 1700), (0.25, 1700), (0.125, 1200)])
def test_sphere_minimum_moves_with_distance_and_energy(tmp_path, distance, energy_ev):
    """The 70 nm sphere's first minimum (qR = 4.493) sits where the geometry that
    FrameSource reads back from the file puts it."""
    from spidarknet.simulate import SimulationSettings

    path = tmp_path / "m.cxi"
    assert simulate_cmd.main([str(path), "-n", "1", "--fractions", "empty=1", "-q",
                              "--distance", str(distance), "--energy-ev", str(energy_ev),
                              "--shape", "512", "512"]) == 0
    info, _ = _read_back(path)
    g = info.geometry
    settings = SimulationSettings(distance_m=distance, photon_energy_J=energy_ev * EV_J,
                                  shape=(512, 512))
    image = render_expected([Particle("sphere", 70e-9)], geometry=settings.detector)
    found = _first_minimum_px(image, g.centre_px)
    q = 4.493 / 35e-9
    two_theta = 2 * np.arcsin(q * g.wavelength_m / (4 * np.pi))
    expected = g.distance_m * np.tan(two_theta) / g.pixel_size_m[0]
    assert found == pytest.approx(expected, abs=0.5)
    # and it scales: ∝ distance and ≈ ∝ wavelength
    base = 0.125 * np.tan(2 * np.arcsin(q * PNCCD.wavelength_m / (4 * np.pi))) / 75e-6
    assert found / base == pytest.approx(distance / 0.125 * 1700 / energy_ev, rel=0.02)


def test_sample_options(tmp_path):
    path = tmp_path / "s.cxi"
    args = [str(path), "-n", "240", "--seed", "8", "--fractions", "single=3,empty=1", "-q",
            "--shape", "256", "256", "--size-range", "40", "100", "--label-range", "50", "60",
            "--off-size-fraction", "0.2", "--centre-jitter", "5", "--background", "0.01",
            "--fluence-sigma", "0.1"]
    assert simulate_cmd.main(args) == 0
    with h5py.File(path, "r") as f:
        t = {name: f["/truth"][name][()] for name in f["/truth"]}
        attrs = dict(f["/truth"].attrs)
        n_valid = np.count_nonzero(f[f"{DET}/mask_shared"][()] == 0)
    assert attrs["label_rule"] == "single=1: one particle, 50-60 nm"
    assert attrs["off_size_fraction"] == 0.2 and list(attrs["label_range_nm"]) == [50, 60]
    kind = np.char.decode(t["kind"])
    single, d = kind == "single", t["diameter_nm"]
    assert np.all((d[single] >= 40) & (d[single] <= 100))
    labelled = t["label"] == 1
    assert np.array_equal(labelled, single & (d >= 50) & (d <= 60))
    assert np.mean(labelled[single]) == pytest.approx(0.8, abs=0.07)
    assert np.std(np.concatenate([t["centre_x_px"], t["centre_y_px"]]) - 127.5) == pytest.approx(5, rel=0.15)
    assert np.mean(t["photons"][kind == "empty"]) == pytest.approx(0.01 * n_valid, rel=0.05)


def test_separation_and_fluence_sigma():
    from spidarknet.simulate import FrameSimulator, draw_scene

    sim = FrameSimulator(seed=1, separation_diameters=(2.0, 2.5), fluence_sigma=0.2,
                         shape=(64, 64))
    ratios, fluences = [], []
    for _ in range(300):
        scene = draw_scene("multiple", sim.rng, sim.detector, sim.settings)
        fluences.append(scene.fluence_photons_per_m2)
        if len(scene.particles) == 2:
            a, b = scene.particles
            ratios.append(np.linalg.norm(np.subtract(a.position_m, b.position_m))
                          / (0.5 * (a.diameter_m + b.diameter_m)))
    assert len(ratios) > 150 and min(ratios) >= 2 - 1e-9 and max(ratios) <= 2.5 + 1e-9
    assert np.std(np.log(fluences)) == pytest.approx(0.2, rel=0.15)
    assert np.mean(fluences) == pytest.approx(1e22, rel=0.05)


def test_particle_shape_fixes_the_shape():
    """--particle-shape: every single and every member of a multiple has the shape asked
    for (an icosahedron's orientation takes draws a sphere does not, so the streams part)."""
    from spidarknet.simulate import FrameSimulator, draw_scene

    draws = {}
    for shape in ("mixed", "icosahedron", "sphere"):
        sim = FrameSimulator(seed=4, shape=(64, 64), particle_shape=shape)
        scenes = [draw_scene(kind, sim.rng, sim.detector, sim.settings)
                  for kind in ("single", "multiple") * 40]
        draws[shape] = scenes
        if shape != "mixed":
            assert {p.shape for s in scenes for p in s.particles} == {shape}
    assert {s.shape for s in draws["mixed"]} >= {"sphere", "icosahedron"}
    assert all(s.particles[0].rotation is not None for s in draws["icosahedron"])


@pytest.mark.parametrize("args, message", [
    (["--binning", "3"], "does not divide"),
    (["--off-size-fraction", "0.5", "--size-range", "60", "70"], "widen --size-range"),
    (["--size-range", "80", "90", "--photons", "100"], "do not overlap"),
    (["--separation", "0.5", "2"], "overlap"),
    (["--photons", "-5"], "--photons must be > 0"),
    # the option's name, not only the setting's (size_range_nm was all the message said)
    (["--size-range", "80", "55"], "--size-range (size_range_nm) must be LO ≤ HI, got 80 55"),
    (["--label-range", "70", "60"], "--label-range (label_range_nm) must be LO ≤ HI"),
    (["--fluence", "-1"], "--fluence (mean_fluence_photons_per_m2) must be > 0"),
    (["--centre-jitter", "-1"], "--centre-jitter (centre_jitter_px) must be ≥ 0"),
    (["--background", "nan"], "--background (background_photons_per_pixel) must be a finite number"),
    (["--energy-ev", "-3"], "--energy-ev must be > 0, got -3"),
    (["--chunk-frames", "0"], "--chunk-frames must be a whole number ≥ 1"),
    (["--binning", "0"], "--binning must be a whole number ≥ 1"),
    (["--shape", "4", "4"], "--shape ROWS COLS must be two whole numbers ≥ 8"),
    (["--off-size-fraction", "2"], "--off-size-fraction is a share"),
])
def test_bad_settings_are_one_error_line(tmp_path, capsys, args, message):
    path = tmp_path / "bad.cxi"
    assert simulate_cmd.main([str(path), "-n", "2", "-q"] + args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not path.exists()


# -- like a run of yours ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def like_source(tmp_path_factory):
    """A 'run' with non-default options: 128 x 128 frames of 150 µm (a 256 x 256 detector
    binned 2 x 2), half dead, 200 mm, 1.2 keV, 4,000 photons, background 0.01/pixel."""
    path = tmp_path_factory.mktemp("like") / "run.cxi"
    args = [str(path), "-n", "600", "--seed", "1", "--fractions", "single=0.6,empty=0.4", "-q",
            "--shape", "256", "256", "--binning", "2", "--half-detector", "--distance", "0.2",
            "--energy-ev", "1200", "--photons", "4000", "--background", "0.01",
            "--centre-jitter", "2"]
    assert simulate_cmd.main(args) == 0
    return path


def test_like_copies_shape_geometry_mask_and_photon_level(like_source, tmp_path, capsys):
    from spidarknet.simulate.like import measure_photon_level

    out = tmp_path / "pretrain.cxi"
    args = [str(out), "-n", "600", "--seed", "2", "--fractions", "single=0.6,empty=0.4", "-q",
            "--like", str(like_source), "--centre-jitter", "2"]
    assert simulate_cmd.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"like {like_source}: 128 x 128 pixels of 150 µm")
    info_s, _ = _read_back(like_source)
    info_o, _ = _read_back(out)
    assert info_o.frame_shape == info_s.frame_shape == (128, 128)
    gs, go = info_s.geometry, info_o.geometry
    assert go.distance_m == pytest.approx(gs.distance_m) == pytest.approx(0.2)
    assert go.pixel_size_m == pytest.approx(gs.pixel_size_m)
    assert go.wavelength_m == pytest.approx(gs.wavelength_m, rel=1e-9)
    assert go.centre_px == pytest.approx(gs.centre_px)
    with h5py.File(like_source, "r") as s, h5py.File(out, "r") as o:
        assert np.array_equal(s[f"{DET}/mask_shared"][()], o[f"{DET}/mask_shared"][()])
        attrs = dict(o["/truth"].attrs)
    assert attrs["like"] == str(like_source) and attrs["binning"] == 1
    level_s, level_o = measure_photon_level(like_source), measure_photon_level(out)
    assert level_s.median_hit_photons == pytest.approx(4000, rel=0.10)
    assert attrs["photons"] == pytest.approx(level_s.median_hit_photons)
    assert level_o.median_hit_photons == pytest.approx(level_s.median_hit_photons, rel=0.10)
    assert level_s.background_photons_per_pixel == pytest.approx(0.04, rel=0.10)  # 4 x 0.01
    assert level_o.background_photons_per_pixel == pytest.approx(0.04, rel=0.10)
    assert attrs["like_n_hits"] == level_s.n_hits
    median, _ = _signal_median(out)
    assert median == pytest.approx(level_s.median_hit_photons, rel=0.10)


def test_like_with_binning_renders_finer_and_writes_the_files_pixels(like_source, tmp_path):
    out = tmp_path / "fine.cxi"
    assert simulate_cmd.main([str(out), "-n", "8", "-q", "--like", str(like_source),
                              "--binning", "2", "--distance", "0.25"]) == 0
    info_s, _ = _read_back(like_source)
    info_o, _ = _read_back(out)
    assert info_o.frame_shape == (128, 128)
    assert info_o.geometry.pixel_size_m == pytest.approx(info_s.geometry.pixel_size_m)
    assert info_o.geometry.centre_px == pytest.approx(info_s.geometry.centre_px)
    assert info_o.geometry.distance_m == pytest.approx(0.25)  # given explicitly: it wins
    with h5py.File(out, "r") as o, h5py.File(like_source, "r") as s:
        attrs = o["/truth"].attrs
        assert attrs["binning"] == 2 and list(attrs["shape"]) == [256, 256]
        assert attrs["pixel_size_m"] == pytest.approx(75e-6)
        assert np.array_equal(s[f"{DET}/mask_shared"][()], o[f"{DET}/mask_shared"][()])
        assert attrs["background_photons_per_pixel"] == pytest.approx(0.01, rel=0.1)


def test_like_a_plain_hdf5_file_needs_the_geometry_it_lacks(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.05, size=(60, 64, 64)).astype(np.uint16)
    yy, xx = np.indices((64, 64))
    blob = np.exp(-((xx - 31.5) ** 2 + (yy - 31.5) ** 2) / 50.0)
    for i in range(0, 60, 4):  # 15 hits of ~800 photons
        frames[i] += rng.poisson(800 * blob / blob.sum()).astype(np.uint16)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["data"] = frames
    out = tmp_path / "o.cxi"
    base = [str(out), "-n", "4", "-q", "--like", str(plain), "--like-dataset", "/data"]
    assert simulate_cmd.main(base) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--distance" in err
    assert simulate_cmd.main(base + ["--distance", "0.1", "--pixel-size", "2e-4",
                                     "--energy-ev", "2000"]) == 0
    with h5py.File(out, "r") as f:
        attrs = f["/truth"].attrs
        assert f[f"{DET}/data"].shape == (4, 64, 64)
        assert not np.any(f[f"{DET}/mask_shared"][()])  # no mask in the file: all valid
        assert attrs["photons"] == pytest.approx(800, rel=0.1)
        assert attrs["background_photons_per_pixel"] == pytest.approx(0.05, rel=0.1)
        assert list(attrs["centre_xy"]) == [31.5, 31.5]
    for extra, message in ((["--shape", "64", "64"], "--shape cannot be combined"),
                           (["--like", str(tmp_path / "nope.cxi")], "no such file")):
        assert simulate_cmd.main(base + ["--distance", "0.1", "--pixel-size", "2e-4",
                                         "--energy-ev", "2000", "--force"] + extra) == 1
        assert message in capsys.readouterr().err
    assert simulate_cmd.main([str(out), "-n", "2", "--like-dataset", "/data", "--force"]) == 1
    assert "give --like FILE" in capsys.readouterr().err
