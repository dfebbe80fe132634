"""reconstruct: Dragonfly's EMC, run for real on frames from spidarknet's own simulator.

The EMC tests need the ``dragonfly-spi`` package ('make build/dragonfly/.installed'); they
are skipped without it unless SPIDARKNET_REQUIRE_DRAGONFLY=1 makes its absence a failure.
Sizes measured on the 2-core development machine (2 OpenMP threads): 300 frames x 4,060
pixels x 420 orientations (num_div 2) take ~0.55 s per iteration, plus ~2 s to start
Dragonfly; the same frames with num_div 4 (3,240 orientations) ~3-4 s per iteration.
"""

import csv
import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from child import sigint_as_ctrl_c
from spidarknet.cli import export_emc
from spidarknet.cli import reconstruct as reconstruct_cmd
from spidarknet.frames.source import FrameKey
from spidarknet.hits import HitList
from spidarknet.reconstruct import (DragonflyError, read_intensity, read_log, reconstruct,
                                    run_dragonfly)


DIAMETER_NM = 70.0
@pytest.fixture(scope="module")
def sphere_hits(tmp_path_factory):
    """300 single 70 nm spheres on a 128 x 128 detector of 300 µm pixels (a pnCCD binned 4 x 4),
    beam centre fixed (EMC models no per-frame shift), and a hit list selecting all of them."""
    from spidarknet.simulate import simulate_file
    root = tmp_path_factory.mktemp("spheres")
    cxi = root / "spheres.cxi"
    simulate_file(cxi, 300, seed=3, fractions={"single": 1.0}, particle_shape="sphere",
                  size_range_nm=(DIAMETER_NM, DIAMETER_NM), shape=(128, 128), pixel_size_m=300e-6,
                  photons=3000.0, centre_jitter_px=0.0)
    keys = [FrameKey(str(cxi), "/entry_1/data_1/data", i) for i in range(300)]
    path = root / "hits.csv"
    HitList(keys, np.ones(300), np.zeros((300, 4)), 0.5).write_csv(path)
    return path


@pytest.fixture(scope="module")
def recon(sphere_hits, tmp_path_factory, dragonfly_emc):
    """The default reduction (chosen from the data), num_div 2 (a sphere has no orientation
    to find), 8 iterations, and the two halves."""
    out = tmp_path_factory.mktemp("recon") / "r"
    t0 = time.perf_counter()
    result = reconstruct(sphere_hits, out, num_div=2, iterations=8, halves=True, threads=2, progress=False)
    return result, time.perf_counter() - t0


def fit_sphere_diameter(volume, q_per_voxel):
    """Diameter (nm) of the sphere form factor a (3 (sin x - x cos x) / x³)² + b, x = q d / 2,
    that best fits the spherical average of ``volume`` (shells of one voxel, q = 0 at n // 2),
    in least squares with each shell's residual scaled by q⁴ (the Porod fall-off)."""
    n = volume.shape[0]
    c = n // 2
    i, j, k = np.indices(volume.shape) - c
    shell = np.rint(np.sqrt(i * i + j * j + k * k)).astype(int).ravel()
    values = volume.ravel()
    profile = np.bincount(shell, values) / np.maximum(np.bincount(shell), 1)
    covered = np.bincount(shell, values > 0) / np.maximum(np.bincount(shell), 1)
    r = np.arange(len(profile))
    use = (covered > 0.99) & (r <= c - 2)            # shells the detector filled, inside the model
    q, y = r[use] * q_per_voxel, profile[use]
    best = None
    for d in np.arange(40.0, 110.0, 0.05):
        x = q * d / 2
        s = (3 * (np.sin(x) - x * np.cos(x)) / x ** 3) ** 2
        design = np.stack([s, np.ones_like(s)], axis=1) * q[:, None] ** 4
        coef, *_ = np.linalg.lstsq(design, y * q ** 4, rcond=None)
        cost = float(np.sum((design @ coef - y * q ** 4) ** 2))
        if best is None or cost < best[0]:
            best = (cost, d)
    return best[1], q.min(), q.max()


# -- EMC for real ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_sphere_reconstruction_gives_its_diameter(recon):
    result, seconds = recon
    out = result.out
    volume, q_vox = read_intensity(out)
    n = volume.shape[0]
    assert volume.shape == (n, n, n) and volume.dtype == np.float64 and n % 2 == 1
    # q of one voxel: 2π / (λ ewald_rad), ewald_rad = the distance in pixels (unbinned here)
    wavelength_nm = 1239.84198 / 1700.0
    assert result.q_per_voxel_inv_nm == pytest.approx(q_vox)
    assert q_vox == pytest.approx(2 * np.pi / wavelength_nm / (0.125 / 300e-6), rel=1e-3)
    diameter, q_lo, q_hi = fit_sphere_diameter(volume, q_vox)
    assert abs(diameter - DIAMETER_NM) < 0.05 * DIAMETER_NM, (diameter, q_lo, q_hi)
    # the centre q = 0 sits at n // 2: Friedel mates agree, and the zero ring of the
    # sphere's first fringe (q R = 4.49) lies where it should, along every axis
    c = n // 2
    first_zero_vox = 4.4934 / (DIAMETER_NM / 2) / q_vox
    for axis in range(3):
        line = np.moveaxis(volume, axis, 0)[:, c, c]
        np.testing.assert_allclose(line[c + 1:], line[c - 1::-1][:n - c - 1], rtol=1e-6)
        ring = line[c + int(first_zero_vox) - 1:c + int(first_zero_vox) + 3]
        peak = line[c + int(first_zero_vox) + 1:c + int(2 * first_zero_vox)].max()
        assert ring.min() < 0.3 * peak
    with h5py.File(out / "intensity.h5", "r") as f:
        attrs = f["intensity"].attrs
        assert attrs["frames"] == 300 and attrs["iterations"] == 8 and attrs["num_div"] == 2
        assert f["likelihood_per_frame"].shape == (300,) and f["scale"].shape == (300,)
    log = read_log(out)
    assert list(log["iteration"]) == list(range(1, 9)) and np.all(log["num_rot"] == 420)
    assert log["log_likelihood"][-1] > log["log_likelihood"][0]
    summary = json.loads((out / "reconstruct.json").read_text())
    assert summary["frames"] == 300 and summary["num_rot"] == 420
    why = summary["input"]["reduction"]["why"]
    assert abs(why["typical_diameter_nm"] - DIAMETER_NM) < 2     # the powder's sphere fit chose the binning
    assert summary["input"]["reduction"]["binning"] == 1 and result.num_pix < 72 * 72
    for name in ("slices.png", "convergence.png", "report.html", "log.csv", "frames.csv",
                 "dragonfly/config.ini", "dragonfly/EMC.log"):
        assert (out / name).is_file(), name
    assert [p.name for p in (out / "dragonfly" / "data").iterdir()] == ["output_008.h5"]
    page = (out / "report.html").read_text()
    assert 'src="slices.png"' in page and 'src="convergence.png"' in page and "half1/report.html" in page
    assert not out.with_name(out.name + ".partial").exists()
    print(f"\n300 frames x {result.num_pix} pixels x 420 orientations: "
          f"{summary['seconds_per_iteration']:.2f} s per iteration; whole run with halves {seconds:.1f} s")


@pytest.mark.slow
def test_halves_are_the_even_and_odd_frames_with_the_same_layout(recon):
    result, _ = recon
    out = result.out
    assert result.halves is not None
    h1, h2 = result.halves
    assert (h1.frames, h2.frames) == (150, 150) and h1.out == out / "half1" and h2.out == out / "half2"
    table = list(csv.DictReader(open(out / "frames.csv")))
    assert [int(r["half"]) for r in table] == [1 + k % 2 for k in range(300)]
    for k, half in ((1, h1), (2, h2)):
        for name in ("intensity.h5", "log.csv", "reconstruct.json", "slices.png", "convergence.png",
                     "report.html"):
            assert (half.out / name).is_file(), name
        blacklist = (half.out / "dragonfly" / "blacklist.dat").read_text().split()
        assert blacklist == ["0" if d % 2 == k - 1 else "1" for d in range(300)]
        volume, q_vox = read_intensity(half.out / "intensity.h5")
        assert q_vox == pytest.approx(result.q_per_voxel_inv_nm) and volume.shape[0] == result.size
        with h5py.File(half.out / "intensity.h5", "r") as f:
            assert f["intensity"].attrs["frames"] == 150
        diameter, _, _ = fit_sphere_diameter(volume, q_vox)
        assert abs(diameter - DIAMETER_NM) < 0.05 * DIAMETER_NM


@pytest.mark.slow
def test_an_interrupted_run_keeps_its_iterations_and_resumes(sphere_hits, tmp_path, dragonfly_emc):
    exe = dragonfly_emc
    out = tmp_path / "r"
    partial = tmp_path / "r.partial"
    command = [sys.executable, "-m", "spidarknet", "reconstruct", str(sphere_hits), "--out", str(out),
               "--num-div", "2", "--q-max", "0.5", "--iterations", "60", "--threads", "2", "-q",
               "--dragonfly", str(exe)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_ctrl_c)
    log_path = partial / "dragonfly" / "EMC.log"
    deadline = time.monotonic() + 60
    from spidarknet.reconstruct import parse_dragonfly_log
    while time.monotonic() < deadline and proc.poll() is None and len(parse_dragonfly_log(log_path)) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)                     # Ctrl-C
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "--resume" in err, err
    assert not out.exists() and partial.is_dir()
    done = parse_dragonfly_log(log_path)
    assert 2 <= len(done) < 60
    # continue the interrupted run to two more iterations than it had
    result = reconstruct(sphere_hits, out, iterations=len(done) + 2, resume=True, progress=False, threads=2)
    log = read_log(out)
    assert list(log["iteration"]) == list(range(1, len(done) + 3))
    np.testing.assert_allclose(log["log_likelihood"][:len(done)], [r[4] for r in done])
    assert result.iterations == len(done) + 2 and not partial.exists()
    # and a finished one to one more
    reconstruct(sphere_hits, out, iterations=len(done) + 3, resume=True, progress=False, threads=2)
    assert len(read_log(out)["iteration"]) == len(done) + 3
    with h5py.File(out / "intensity.h5", "r") as f:
        assert f["intensity"].attrs["iterations"] == len(done) + 3


@pytest.mark.slow
def test_an_export_folder_binned_and_cropped_is_reconstructed_as_it_is(sphere_hits, tmp_path, dragonfly_emc):
    emc = tmp_path / "emc"
    assert export_emc.main([str(sphere_hits), "--out", str(emc), "--binning", "2", "--q-max", "0.6", "-q"]) == 0
    with h5py.File(emc / "detector.h5", "r") as f:
        num_pix = f["qx"].shape[0]
        assert f.attrs["binning"] == 2 and f["pixel_index"].shape == (num_pix,)
        assert f["detd"][()] == pytest.approx(0.125 / 600e-6)
    assert reconstruct_cmd.main([str(emc), "--out", str(tmp_path / "r"), "--num-div", "2", "--iterations", "2",
                                 "-q"]) == 0
    volume, q_vox = read_intensity(tmp_path / "r")
    assert q_vox == pytest.approx(2 * np.pi / (1239.84198 / 1700.0) / (0.125 / 600e-6), rel=1e-3)
    # Dragonfly's model: 2 ceil(q_max) + 3 voxels across, q_max the largest pixel |q| in voxels
    assert volume.shape[0] % 2 == 1 and abs(volume.shape[0] - (2 * 0.6 / q_vox + 3)) <= 2
    summary = json.loads((tmp_path / "r" / "reconstruct.json").read_text())
    assert summary["input"]["reduction"]["num_pix"] == num_pix
    # a reduced export cannot be reduced again
    assert reconstruct_cmd.main([str(emc), "--out", str(tmp_path / "r2"), "--binning", "3", "-q"]) == 1
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r2.partial").exists()
    # Dragonfly's random start is seeded: the same frames and settings give the same volume
    assert reconstruct_cmd.main([str(emc), "--out", str(tmp_path / "r3"), "--num-div", "2", "--iterations", "2",
                                 "-q"]) == 0
    again, _ = read_intensity(tmp_path / "r3")
    assert np.allclose(again, volume, rtol=1e-6, atol=1e-9)
    # another seed, another start model (ours, on Dragonfly's grid), the same again when repeated
    for name in ("s1", "s1b"):
        assert reconstruct_cmd.main([str(emc), "--out", str(tmp_path / name), "--num-div", "2", "--iterations",
                                     "2", "--seed", "7", "-q"]) == 0
    s1, _ = read_intensity(tmp_path / "s1")
    s1b, _ = read_intensity(tmp_path / "s1b")
    assert s1.shape == volume.shape and np.array_equal(s1, s1b) and not np.allclose(s1, volume, rtol=1e-3)


# -- errors, no EMC ----------------------------------------------------------------------------------

def test_a_missing_dragonfly_is_one_error_line_naming_what_to_install(sphere_hits, tmp_path, capsys,
                                                                    monkeypatch):
    out = tmp_path / "r"
    assert reconstruct_cmd.main([str(sphere_hits), "--out", str(out), "--dragonfly", "/nonexistent"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), captured.err
    assert "make build/dragonfly/.installed" in lines[0] and "pip install dragonfly-spi" in lines[0]
    assert "/nonexistent" in lines[0] and captured.out == ""
    monkeypatch.setenv("SPIDARKNET_DRAGONFLY", str(tmp_path / "gone" / "dragonfly.emc"))
    assert reconstruct_cmd.main([str(sphere_hits), "--out", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SPIDARKNET_DRAGONFLY" in lines[0] and "pip install dragonfly-spi" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_existing_output_is_refused_without_force(sphere_hits, tmp_path, capsys, dragonfly_emc):
    exe = dragonfly_emc
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert reconstruct_cmd.main([str(sphere_hits), "--out", str(out), "--dragonfly", str(exe)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--force" in err and len(err.strip().splitlines()) == 1
    assert (out / "keep.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    (tmp_path / "s.partial").mkdir()
    assert reconstruct_cmd.main([str(sphere_hits), "--out", str(tmp_path / "s"), "--dragonfly", str(exe)]) == 1
    assert "--resume" in capsys.readouterr().err
    assert reconstruct_cmd.main([str(sphere_hits), "--out", str(tmp_path / "t"), "--resume",
                                 "--dragonfly", str(exe)]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_a_failing_dragonfly_reports_status_command_and_output(tmp_path):
    """Dragonfly itself cannot be made to fail on purpose after our checks, so a stand-in
    script that fails as a broken installation would."""
    fake = tmp_path / "dragonfly.emc"
    fake.write_text("#!/bin/sh\necho 'Doing 3D recon'\necho 'ImportError: libgsl.so.27: cannot open' >&2\nexit 3\n")
    fake.chmod(0o755)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.ini").write_text("[emc]\n")
    with pytest.raises(DragonflyError) as info:
        run_dragonfly(folder, 3, threads=1, dragonfly=fake, progress=False)
    message = str(info.value)
    assert "status 3" in message and str(fake) in message and "libgsl.so.27" in message
