"""Judging a selection by its structure: truth intensities, alignment, shell correlations,
and compare's structure view.

The truth is checked against the simulator's own 2D patterns (projection-slice theorem);
alignment and shell correlations on synthetic volumes; the ranking of a true and a diluted
selection on real Dragonfly EMC reconstructions (slow; skipped without Dragonfly unless
SPIDARKNET_REQUIRE_DRAGONFLY=1).
"""

import json
import math
import time

import h5py
import numpy as np
import pytest

from spidarknet.cli import compare as compare_cmd
from spidarknet.core.errors import InputError
from spidarknet.simulate import simulate_file
from spidarknet.core.scattering import sphere_intensity
from spidarknet.simulate.physics import ELEMENTARY_CHARGE_C, Particle, Renderer, random_rotation, wavelength_m
from spidarknet.judge.structure import (TruthModel, align, icosahedral_group, icosahedron_amplitude,
                                  icosahedron_faces, judge_halves, judge_selection, resolution,
                                  rotation_angle_deg, shell_correlation, truth_from_simulation,
                                  truth_intensity, voxel_q)

LAMBDA_M = wavelength_m(1700 * ELEMENTARY_CHARGE_C)


def write_recon(folder, volume, dq):
    """A reconstruction folder in the layout 'spidarknet reconstruct' writes."""
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "intensity.h5", "w") as f:
        f["intensity"] = volume
        f["intensity"].attrs["q_per_voxel_inv_nm"] = dq
    return folder


def detector_slice(renderer, centre):
    """(|q| nm⁻¹, the pixels' transverse q vectors (nm⁻¹, q_z = 0)) as the simulator samples them."""
    qmag = renderer.q_map_inv_m(centre).astype(np.float64) * 1e-9
    rows, cols = np.mgrid[0:renderer.shape[0], 0:renderer.shape[1]]
    dx, dy = cols - centre[0], rows - centre[1]
    rho = np.hypot(dx, dy)
    rho[rho == 0] = 1.0
    return qmag, np.stack([qmag * dx / rho, qmag * dy / rho, np.zeros_like(qmag)], axis=-1)


# -- the truth ---------------------------------------------------------------------------------------

def test_icosahedron_geometry_and_form_factor_against_a_voxel_sum():
    d = 40.0
    faces = icosahedron_faces(d)
    assert faces.shape == (20, 3, 3)
    volume = sum(abs(np.linalg.det(f)) / 6 for f in faces)       # tetrahedra from the centre
    assert volume == pytest.approx(math.pi / 6 * d ** 3, rel=1e-12)
    # the faces' normals (outward, anticlockwise vertices) are the simulator's
    normals = np.cross(faces[:, 1] - faces[:, 0], faces[:, 2] - faces[:, 0])
    assert np.all(np.einsum("ij,ij->i", normals, faces.mean(axis=1)) > 0)
    # brute force: the cosine transform summed over a fine grid of points inside
    h = 0.5
    axis = np.arange(-30, 30 + h, h) + h / 2    # off the symmetry planes
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    unit = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    r_in = float(np.dot(unit[0], faces[0, 0]))
    pts = pts[np.all(pts @ unit.T <= r_in, axis=1)]
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 3))
    q *= (rng.uniform(0.05, 0.5, 6) / np.linalg.norm(q, axis=1))[:, None]
    q = np.vstack([q, [[0.2, 0, 0], [0.1, 0.1, 0.1], [0, 0, 0]]])   # a two-fold, a three-fold axis, 0
    brute = np.array([np.cos(pts @ v).sum() for v in q]) / len(pts)
    exact = icosahedron_amplitude(q, d)
    assert exact[-1] == 1.0
    np.testing.assert_allclose(exact, brute, atol=1.5e-3)   # the voxel sum's own error ~5e-4


@pytest.mark.parametrize("seed", [None, 7])
def test_icosahedron_truth_is_the_simulators_pattern_through_the_projection_slice_theorem(seed):
    # the simulator projects the density and Fourier transforms it in 2D; the central slice
    # q_z = 0 of the 3D transform of the (rotated) body is the same function
    centre = (127.5, 127.5)
    renderer = Renderer((256, 256), 300e-6, 0.125, LAMBDA_M, centre)   # to |q| 3.5 nm⁻¹
    rotation = None if seed is None else random_rotation(np.random.default_rng(seed))
    particle = Particle("icosahedron", 70e-9, rotation=rotation)
    simulated = renderer.intensity_electrons2([particle], centre) / particle.electrons ** 2
    _, q = detector_slice(renderer, centre)
    if rotation is not None:
        q = q @ rotation        # the rotated body's amplitude at q is the standard one's at Rᵀq
    truth = icosahedron_amplitude(q, 70.0) ** 2
    signal = truth > 1e-5
    # the simulator's stated accuracy: ~1-2 % (its projection grid and interpolation)
    assert np.abs(simulated - truth).sum() / truth.sum() < 0.01
    assert np.median(np.abs(simulated[signal] / truth[signal] - 1)) < 0.04
    assert np.corrcoef(np.log(simulated[signal]), np.log(truth[signal]))[0, 1] > 0.998
    # truth_intensity's grid is the same function at the voxels, with rotation= the rotated body
    n, dq = 9, 0.05
    grid = truth_intensity("icosahedron", 70.0, n, dq, rotation=rotation)
    qv = voxel_q(n, dq)
    np.testing.assert_allclose(grid, icosahedron_amplitude(qv if rotation is None else qv @ rotation, 70.0) ** 2)
    assert grid[n // 2, n // 2, n // 2] == 1.0


def test_sphere_truth_matches_the_simulator_averaged_over_the_sizes():
    centre = (63.5, 63.5)
    renderer = Renderer((128, 128), 600e-6, 0.125, LAMBDA_M, centre)
    sizes = np.array([62.0, 66.0, 71.0, 74.0])
    particles = [Particle("sphere", d * 1e-9) for d in sizes]
    simulated = sum(renderer.intensity_electrons2([p], centre) for p in particles)
    simulated /= sum(p.electrons ** 2 for p in particles)       # photons ∝ n_e², as the truth weights them
    qmag, _ = detector_slice(renderer, centre)
    n, dq = 129, 0.6 / 64          # one line of the volume along q_x covers the detector's |q|
    volume = truth_intensity("sphere", 68.0, n, dq, sizes_nm=sizes)
    line = volume[n // 2:, n // 2, n // 2]
    assert line[0] == pytest.approx(1.0)
    inside = qmag < line.size * dq * 0.99
    truth = np.interp(qmag[inside], np.arange(line.size) * dq, line)
    signal = truth > 1e-4
    assert np.abs(simulated[inside] - truth).sum() / truth.sum() < 1e-2    # linear interpolation of the line
    assert np.corrcoef(np.log(simulated[inside][signal]), np.log(truth[signal]))[0, 1] > 0.999
    # one size: exactly the simulator's sphere intensity
    one = truth_intensity("sphere", 70.0, 33, 0.02)
    q = np.linalg.norm(voxel_q(33, 0.02), axis=-1)
    np.testing.assert_allclose(one, sphere_intensity(q * 1e9, 70e-9), rtol=1e-5, atol=1e-9)


def test_truth_from_a_simulated_file(tmp_path):
    path = tmp_path / "ico.cxi"
    simulate_file(path, 12, seed=4, particle_shape="icosahedron", size_range_nm=(60.0, 70.0),
                  shape=(64, 64), fractions={"single": 2, "multiple": 1})
    with h5py.File(path) as f:
        kind = f["truth/kind"][()].astype(str)
        diameters = f["truth/diameter_nm"][()]
    model = truth_from_simulation(path, np.arange(12))
    assert model.shape == "icosahedron"
    np.testing.assert_allclose(np.sort(model.sizes_nm), np.sort(diameters[kind == "single"]))
    spread = truth_from_simulation(path)
    assert spread.sizes_nm.min() == 60.0 and spread.sizes_nm.max() == 70.0
    mixed = tmp_path / "mixed.cxi"
    simulate_file(mixed, 2, seed=4, shape=(64, 64), fractions={"single": 1})
    with pytest.raises(InputError, match="particle-shape"):
        truth_from_simulation(mixed)


# -- shells, resolution ------------------------------------------------------------------------------

def test_shell_correlation_uses_valid_voxels_only_and_resolution_interpolates():
    rng = np.random.default_rng(1)
    n, dq = 33, 0.01
    a = rng.uniform(1, 2, (n, n, n))
    b = a + 1e-3 * rng.normal(size=a.shape)
    sc = shell_correlation(a, b, dq)
    assert sc.method == "pearson"
    assert np.all(sc.cc[1:17] > 0.99)
    assert sc.q_inv_nm[5] == pytest.approx(5 * dq)
    # unmeasured voxels (0, -1, NaN) in either volume are left out, not correlated
    c = b.copy()
    c[:, :, :10] = 0.0
    c[:5] = -1.0
    c[-3:] = np.nan
    sc2 = shell_correlation(a, c, dq)
    assert np.all(sc2.cc[2:15] > 0.99)
    assert sc2.n_voxels.sum() < sc.n_voxels.sum()
    # contrast: noise leaves it at 1, what adds the same to every orientation lowers it, CC does not see that
    truth = truth_intensity("icosahedron", 60.0, n, 2 * math.pi / 60 / 3)
    noisy = truth * (1 + 0.3 * rng.normal(size=truth.shape))
    shells = slice(4, 15)
    k = shell_correlation(noisy, truth, dq).contrast[shells]
    assert np.all(np.abs(k - 1) < 0.15), k
    r2 = np.sum((voxel_q(n, 1.0)) ** 2, axis=-1)
    flat = np.bincount(np.rint(np.sqrt(r2)).astype(int).ravel(), weights=truth.ravel()) / np.bincount(
        np.rint(np.sqrt(r2)).astype(int).ravel())
    diluted = 0.7 * truth + 0.3 * flat[np.rint(np.sqrt(r2)).astype(int)] * 2.0     # an isotropic part
    both = shell_correlation(diluted, truth, dq)
    np.testing.assert_allclose(both.cc[shells], 1.0, atol=1e-9)
    assert np.all(both.contrast[shells] < 0.7)
    noise = shell_correlation(a, rng.uniform(1, 2, a.shape), dq)
    assert np.nanmax(np.abs(noise.cc[4:16])) < 0.2
    # resolution: linear between the last shell above and the first below the threshold
    q = np.arange(6) * 0.1
    res = resolution(q, [np.nan, 0.9, 0.8, 0.6, 0.4, 0.7], 0.5)
    assert res.q_inv_nm == pytest.approx(0.35) and not res.reached_edge
    assert res.d_nm == pytest.approx(2 * math.pi / 0.35)
    edge = resolution(q, [1, 0.9, 0.8, 0.7, 0.6, 0.55])
    assert edge.reached_edge and edge.q_inv_nm == pytest.approx(0.5)
    assert resolution(q, [0.9, 0.9, 0.9, 0.4, 0.9, 0.9], q_min_inv_nm=0.35).q_inv_nm == pytest.approx(0.5)
    # low shells below the threshold before the curve first reaches it are passed over
    late = resolution(q, [0.1, 0.3, 0.8, 0.9, 0.2, 0.9])
    assert late.q_inv_nm == pytest.approx(0.3 + 0.1 * 4 / 7) and late.start_q_inv_nm == pytest.approx(0.2)
    never = resolution(q, [0.1, 0.3, 0.2, 0.1, 0.2, 0.4])
    assert math.isnan(never.q_inv_nm) and "none" in never.text()


def test_radial_band_figure_tells_sphere_sizes_apart():
    n, dq = 65, 2 * math.pi / 70 / 3.0
    truth = truth_intensity("sphere", 70.0, n, dq)
    same = truth * 3.7 * (1 + 0.05 * np.random.default_rng(2).normal(size=truth.shape))
    other = truth_intensity("sphere", 75.0, n, dq)
    a = shell_correlation(same, truth, dq, method="radial-band")
    b = shell_correlation(other, truth, dq, method="radial-band")
    use = slice(4, 30)
    assert np.nanmin(a.cc[use]) > 0.95               # scale-free, noise-tolerant
    assert np.nanmean(b.cc[use]) < np.nanmean(a.cc[use]) - 0.2
    assert resolution(b.q_inv_nm, b.cc).q_inv_nm < resolution(a.q_inv_nm, a.cc).q_inv_nm


# -- alignment -----------------------------------------------------------------------------------------

def test_alignment_recovers_the_rotation_and_the_correlation():
    n, d = 49, 70.0
    dq = 2 * math.pi / d / 3.0                  # 3 voxels per fringe
    truth = truth_intensity("icosahedron", d, n, dq)
    rotation = random_rotation(np.random.default_rng(5))
    rng = np.random.default_rng(0)
    noise = 1 + 0.3 * rng.normal(size=truth.shape)
    recon = truth_intensity("icosahedron", d, n, dq, rotation=rotation) * noise
    recon[np.linalg.norm(voxel_q(n, 1.0), axis=-1) < 3] = 0.0     # a beam stop
    t0 = time.perf_counter()
    al = align(recon, truth, dq, (3 * dq, 20 * dq))
    seconds = time.perf_counter() - t0
    # recon(R' q) ≈ truth(q): R' is the body's rotation up to one of its 60 symmetries
    group = icosahedral_group()
    error = min(rotation_angle_deg(al.rotation, rotation @ g) for g in group)
    assert error < 1.5, error
    assert seconds < 20, seconds
    # the truth computed in the found orientation correlates as well as in the true one
    found = shell_correlation(recon, truth_intensity("icosahedron", d, n, dq, rotation=al.rotation), dq)
    ideal = shell_correlation(truth * noise, truth, dq)
    shells = slice(4, 24)
    assert np.nanmean(found.cc[shells]) > np.nanmean(ideal.cc[shells]) - 0.01
    assert np.nanmean(shell_correlation(al.rotated, truth, dq).cc[shells]) > 0.85
    print(f"alignment {seconds:.1f} s, error {error:.2f} deg, mean CC {np.nanmean(found.cc[shells]):.3f} "
          f"(ideal {np.nanmean(ideal.cc[shells]):.3f})")


def blob_intensity(n, dq, rotation=None, seed=3):
    """|F|² of an asymmetric object (five Gaussian blobs), rotated by ``rotation``."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-15, 15, (5, 3))
    weights = rng.uniform(0.5, 1.5, 5)
    q = voxel_q(n, dq)
    if rotation is not None:
        q = q @ rotation
    phase = np.einsum("...i,ji->...j", q, centres)
    amp = np.exp(-0.5 * 16 * np.sum(q * q, axis=-1))[..., None] * weights * np.exp(-1j * phase)
    return np.abs(amp.sum(-1)) ** 2


def test_judge_halves_aligns_half2_onto_half1(tmp_path):
    n, dq = 41, 0.04
    rng = np.random.default_rng(8)
    rotation = random_rotation(np.random.default_rng(9))
    base = tmp_path / "recon"
    write_recon(base / "half1", blob_intensity(n, dq) * (1 + 0.1 * rng.normal(size=(n,) * 3)), dq)
    write_recon(base / "half2", blob_intensity(n, dq, rotation) * (1 + 0.1 * rng.normal(size=(n,) * 3)), dq)
    j = judge_halves(base, n_frames=300)
    # half2(R' q) ≈ half1(q) with half2(q) = I(Rᵀq): R' = R (Friedel: or R times the inversion)
    assert rotation_angle_deg(np.array(j.alignment["rotation"]), rotation) < 2.0
    assert j.figure() > 0.8
    assert "half-set" in j.note and "half1 vs half2" in j.reference
    with pytest.raises(InputError, match="--halves"):
        judge_halves(tmp_path)


def test_a_reconstruction_without_its_voxel_size_or_cube_is_an_input_error(tmp_path):
    """The judge reads volumes through reconstruct's reader: what it lacks is named."""
    from spidarknet.judge.structure import read_volume
    folder = write_recon(tmp_path / "r", np.ones((5, 5, 5)), 0.05)
    with h5py.File(folder / "intensity.h5", "a") as f:
        del f["intensity"].attrs["q_per_voxel_inv_nm"]
    with pytest.raises(InputError, match="no q_per_voxel_inv_nm attribute"):
        read_volume(folder)
    write_recon(tmp_path / "flat", np.ones((5, 5, 4)), 0.05)
    with pytest.raises(InputError, match="cubic"):
        read_volume(tmp_path / "flat")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "intensity.h5").write_bytes(b"not HDF5")
    with pytest.raises(InputError, match="intensity.h5"):
        read_volume(tmp_path / "bad")


def test_judge_selection_against_a_truth_model(tmp_path):
    n, d = 41, 66.0
    dq = 2 * math.pi / d / 3.0
    model = TruthModel("icosahedron", d, np.array([65.0, 67.0]))
    rotation = random_rotation(np.random.default_rng(2))
    noisy = model.intensity(n, dq, rotation) * (1 + 0.2 * np.random.default_rng(3).normal(size=(n,) * 3))
    folder = write_recon(tmp_path / "good", noisy, dq)
    j = judge_selection(folder, model, n_frames=500)
    assert j.shells.method == "pearson" and j.figure() > 0.9
    assert abs(j.contrast() - 1) < 0.1 and j.rank_figure() == j.contrast()
    assert j.resolution.reached_edge
    d_ = j.to_dict()
    assert d_["resolution"]["convention"].startswith("d = 2π/q")
    json.dumps(d_)        # plain JSON
    assert "good: 500 frames" in j.line()


# -- compare --recon -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sphere_set(tmp_path_factory):
    """A sphere sample, two selections of it and two 'reconstructions': the good one the truth
    with a little noise, the poor one with its fringes filled in."""
    root = tmp_path_factory.mktemp("structure")
    sim = root / "spheres.cxi"
    simulate_file(sim, 20, seed=5, particle_shape="sphere", size_range_nm=(64.0, 68.0), shape=(64, 64),
                  fractions={"single": 3, "multiple": 1})
    with h5py.File(sim) as f:
        kind = f["truth/kind"][()].astype(str)
    singles = np.flatnonzero(kind == "single")
    others = np.flatnonzero(kind != "single")
    (root / "true.csv").write_text("file,index\n" + "".join(f"spheres.cxi,{i}\n" for i in singles))
    (root / "diluted.csv").write_text("file,index\n" + "".join(f"spheres.cxi,{i}\n"
                                                               for i in sorted([*singles[:10], *others])))
    n, dq = 49, 2 * math.pi / 66 / 3.0
    truth = truth_intensity("sphere", 66.0, n, dq)
    rng = np.random.default_rng(4)
    good = truth * (1 + 0.05 * rng.normal(size=truth.shape))
    filled = 0.6 * truth + 0.4 * truth_intensity("sphere", 58.0, n, dq)    # minima filled in
    poor = filled * (1 + 0.05 * rng.normal(size=truth.shape))
    for v in (good, poor):
        v[np.linalg.norm(voxel_q(n, 1.0), axis=-1) < 3] = 0.0
    write_recon(root / "recon_true", good, dq)
    write_recon(root / "recon_diluted", poor, dq)
    return root, sim


def test_compare_ranks_selections_by_structure(sphere_set, tmp_path, capsys):
    root, sim = sphere_set
    out = tmp_path / "struct"
    js = tmp_path / "table.json"
    args = [str(root / "diluted.csv"), str(root / "true.csv"), "--recon", str(root / "recon_diluted"),
            str(root / "recon_true"), "--truth", str(sim), "--structure-out", str(out), "--out", str(js)]
    assert compare_cmd.main(args) == 0
    text = capsys.readouterr().out
    assert "radial-band" in text and "resolution" in text
    data = json.loads((out / "structure.json").read_text())
    assert data["rank"] == ["true", "diluted"]
    assert "mean per-shell CC" in data["ranked_by"]          # spheres: the radial-band figure
    first = data["selections"][1]
    assert first["name"] == "true" and first["rank"] == 1 and first["method"] == "radial-band"
    assert len(first["cc_at_q"]) == 4
    assert "sizes" in first["reference"]
    assert (out / "structure.md").read_text().startswith("# Selections judged by their structure")
    assert json.loads(js.read_text())["structure"]["rank"] == ["true", "diluted"]
    # the counts and intersections are still there
    assert "∩ true" in text
    print(text)


def test_compare_structure_bad_inputs(sphere_set, tmp_path, capsys):
    root, sim = sphere_set
    a, b = str(root / "true.csv"), str(root / "diluted.csv")
    assert compare_cmd.main([a, b, "--recon", str(root / "recon_true")]) == 1
    assert "one reconstruction folder per input" in capsys.readouterr().err
    assert compare_cmd.main([a, b, "--truth", str(sim)]) == 1
    assert "give --recon" in capsys.readouterr().err
    assert compare_cmd.main([a, b, "--threshold", "1.5"]) == 1
    assert "between 0 and 1" in capsys.readouterr().err
    assert compare_cmd.main([a, b, "--recon", str(root / "recon_true"), str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    # no truth: half sets are needed
    assert compare_cmd.main([a, b, "--recon", str(root / "recon_true"), str(root / "recon_diluted")]) == 1
    assert "--halves" in capsys.readouterr().err


# -- real EMC: the true selection against one diluted with 30 % multiples --------------------------------

@pytest.mark.slow
def test_compare_ranks_the_true_selection_above_one_diluted_with_multiples(tmp_path, capsys, dragonfly_emc):
    """240 single 66-72 nm icosahedra against 168 of them plus 72 multiples (30 %), both
    reconstructed by Dragonfly (num_div 4, 20 iterations, q ≤ 0.5 nm⁻¹, 128 x 128 detector
    of 300 µm pixels, 10,000 photons a single hit, no beam jitter: EMC models no shifts); the
    true one also as two half sets, judged against each other as measured data would be.

    Measured on the 2-core machine (~25-45 s per reconstruction): CC per shell 0.99 / 0.98
    at q 0.24, 0.95 / 0.92 at 0.42 nm⁻¹ (true / diluted), mean contrast 0.77 / 0.64, both
    reaching CC 0.5 near the edge (0.54 nm⁻¹, d = 11.7 nm): the Pearson CC alone barely
    separates them, the contrast does.
    """
    from spidarknet.frames.source import FrameKey
    from spidarknet.hits import HitList
    from spidarknet.reconstruct import reconstruct

    n_true, n_mult = 240, 72
    sim = tmp_path / "ico.cxi"
    simulate_file(sim, n_true + n_mult, seed=21, fractions={"single": n_true, "multiple": n_mult},
                  particle_shape="icosahedron", size_range_nm=(66.0, 72.0), label_range_nm=(66.0, 72.0),
                  shape=(128, 128), pixel_size_m=300e-6, photons=10000.0, centre_jitter_px=0.0)
    with h5py.File(sim) as f:
        kind = f["truth/kind"][()].astype(str)
    singles, multiples = np.flatnonzero(kind == "single"), np.flatnonzero(kind == "multiple")
    chosen = {"true": singles, "diluted": np.sort(np.concatenate([singles[:n_true - n_mult], multiples]))}
    keys = [FrameKey(str(sim), "/entry_1/data_1/data", i) for i in range(len(kind))]
    lists, folders, seconds = [], [], {}
    for name, rows in chosen.items():
        flags = np.zeros(len(kind))
        flags[rows] = 1.0
        path = tmp_path / f"{name}.csv"
        HitList(keys, flags, np.zeros((len(kind), 4)), 0.5).write_csv(path)
        t0 = time.perf_counter()
        reconstruct(path, tmp_path / f"recon_{name}", num_div=4, iterations=20, q_max_inv_nm=0.5,
                    threads=2, progress=False, halves=name == "true")
        seconds[name] = time.perf_counter() - t0
        lists.append(str(path))
        folders.append(str(tmp_path / f"recon_{name}"))
    t0 = time.perf_counter()
    assert compare_cmd.main([*lists, "--recon", *folders, "--truth", str(sim),
                             "--structure-out", str(tmp_path / "structure")]) == 0
    judged = time.perf_counter() - t0
    text = capsys.readouterr().out
    data = json.loads((tmp_path / "structure" / "structure.json").read_text())
    by_name = {s["name"]: s for s in data["selections"]}
    true, diluted = by_name["true"], by_name["diluted"]
    print(text)
    print(f"EMC {seconds['true']:.0f} s + {seconds['diluted']:.0f} s, judging both {judged:.1f} s; "
          f"alignment {true['alignment']['seconds']:.1f} s + {diluted['alignment']['seconds']:.1f} s")
    assert data["rank"] == ["true", "diluted"], text
    assert true["rank_figure"] > diluted["rank_figure"] + 0.05, text
    assert true["mean_cc"] > 0.8, text            # a real reconstruction of the particle
    assert true["n_frames"] == diluted["n_frames"] == n_true
    # measured data's view: the true selection's half sets (120 frames each) against each other
    halves = judge_halves(folders[0], n_frames=n_true)
    print(halves.line())
    print("half-set CC per shell:", np.round(halves.shells.cc[5:26], 2))
    assert halves.figure() > 0.5 and math.isfinite(halves.resolution.q_inv_nm)
