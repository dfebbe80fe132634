"""The measured-like simulator: each effect is there when asked for and absent by default."""

import json

import h5py
import numpy as np
import pytest

from spidarknet.cli import detect, evaluate
from spidarknet.cli import simulate as simulate_cmd
from spidarknet.core.errors import ConfigError
from spidarknet.frames.source import FrameSource
from spidarknet.simulate import (DEFAULT_SETTINGS, MEASURED_LIKE, MEASURED_LIKE_SETTINGS, FrameSimulator,
                                 simulate_file)

DET = "/entry_1/instrument_1/detector_1"
SMALL = {"shape": (128, 256)}  # two halves of 64 rows, two readout blocks of 128 columns


def _read(path):
    with h5py.File(path, "r") as f:
        truth = {name: f["truth"][name][()] for name in f["truth"]}
        return (f[f"{DET}/data"][()], f[f"{DET}/mask_shared"][()],
                f[f"{DET}/mask"][()] if "mask" in f[DET] else None, truth, f[f"{DET}/corner_position"][()])


def test_off_by_default(tmp_path):
    assert not DEFAULT_SETTINGS.has_detector_effects and MEASURED_LIKE_SETTINGS.has_detector_effects
    assert FrameSimulator(seed=1, **SMALL).effects is None
    clean, measured = tmp_path / "clean.cxi", tmp_path / "measured.cxi"
    simulate_file(clean, 30, seed=5, **SMALL)
    simulate_file(measured, 30, seed=5, settings=MEASURED_LIKE_SETTINGS, **SMALL)
    _, _, frame_mask, t0, _ = _read(clean)
    assert frame_mask is None and "stray_photons" not in t0
    _, _, frame_mask, t1, _ = _read(measured)
    assert frame_mask is not None and {"stray_photons", "saturated_pixels", "written_photons"} <= set(t1)
    assert np.array_equal(t0["kind"], t1["kind"])  # the same mix of kinds


def test_common_mode_stripes_before_correction_and_what_the_correction_leaves():
    sim = FrameSimulator(seed=2, adu_per_photon=100.0, read_noise_adu=10.0, common_mode_adu=40.0,
                         **SMALL)
    effects = sim.effects
    zero = np.zeros((128, 256), dtype=np.uint16)
    raw, saturated = effects.raw_adu(zero)
    assert saturated is None
    row_medians = np.median(raw[:, :128], axis=1)  # one offset per row of the first block
    assert 30 < np.std(row_medians) < 50          # the common mode, σ 40 ADU
    assert 8 < np.std(raw[:, :128] - row_medians[:, None]) < 12  # the read noise within a row, σ 10
    other_block = np.median(raw[:, 128:], axis=1)
    assert abs(np.corrcoef(row_medians, other_block)[0, 1]) < 0.4  # each block its own offsets
    uncorrected = np.floor(raw / 100.0 + 0.4).clip(0)
    assert np.count_nonzero(uncorrected) > 100  # what the stripes would leak uncorrected
    photons = effects.correct(raw)
    assert photons.dtype == np.uint16 and np.count_nonzero(photons) <= 3  # corrected: dark

    leaky = FrameSimulator(seed=2, adu_per_photon=100.0, read_noise_adu=10.0, common_mode_adu=40.0,
                           common_mode_residual_adu=20.0, **SMALL).effects
    false = [np.count_nonzero(leaky.correct(leaky.raw_adu(zero)[0])) for _ in range(5)]
    assert sum(false) > 20  # a residual of 0.2 photon per row lifts whole rows over the threshold


def test_photon_conversion_rounds_with_the_threshold_and_gain_varies_per_pixel():
    sim = FrameSimulator(seed=3, adu_per_photon=100.0, photon_threshold=0.6, **SMALL)
    effects = sim.effects
    counts = np.zeros((128, 256), dtype=np.uint16)
    counts[:, ::3] = 3  # sparse, as photons are: the lines' medians stay at the baseline
    np.testing.assert_array_equal(effects.correct(effects.raw_adu(counts)[0]), counts)
    raw = np.zeros((128, 256), dtype=np.float32)  # row medians 0: nothing to correct
    raw[0, :6] = [0, 59, 60, 159, 160, 161]
    assert list(effects.correct(raw)[0, :6]) == [0, 0, 1, 1, 2, 2]  # n once at n - 1 + 0.6 photons
    gain = FrameSimulator(seed=3, adu_per_photon=100.0, gain_sigma=0.03, **SMALL).effects.gain / 100.0
    assert 0.025 < np.std(gain) < 0.035 and abs(np.mean(gain) - 1) < 0.005


def test_hot_pixels_are_lit_in_every_frame_and_dead_ones_never(tmp_path):
    path = tmp_path / "bad.cxi"
    simulate_file(path, 12, seed=4, fractions={"empty": 1}, adu_per_photon=100.0, read_noise_adu=10.0,
                  hot_pixels=20, dead_pixels=30, bad_pixels_masked=0.0, **SMALL)
    data, shared, _, _, _ = _read(path)
    lit = np.all(data > 0, axis=0)
    assert np.count_nonzero(lit) == 20 and not np.any(shared[lit])  # hot, and not in the mask
    effects = FrameSimulator(seed=4, adu_per_photon=100.0, hot_pixels=20, dead_pixels=30,
                             bad_pixels_masked=0.0, **SMALL).effects
    assert set(np.flatnonzero(lit)) == set(effects.hot_index)
    sparse = np.zeros((128, 256), dtype=np.uint16)
    sparse[:, ::3] = 5  # a third of each line lit: the medians stay at the baseline
    sparse.ravel()[effects.dead_index] = 5
    frame = effects.correct(effects.raw_adu(sparse)[0])
    assert np.all(frame.ravel()[effects.dead_index] == 0) and np.median(frame[:, ::3]) == 5
    masked = tmp_path / "masked.cxi"
    simulate_file(masked, 3, seed=4, fractions={"empty": 1}, adu_per_photon=100.0, hot_pixels=20,
                  dead_pixels=30, bad_pixels_masked=1.0, **SMALL)
    data, shared_all, _, _, _ = _read(masked)
    assert np.count_nonzero(shared_all & 1) - np.count_nonzero(shared & 1) == 50
    assert not np.any(np.all(data > 0, axis=0))  # masked pixels read 0


def test_saturated_pixels_are_clipped_and_flagged_per_frame(tmp_path):
    path = tmp_path / "sat.cxi"
    simulate_file(path, 6, seed=6, fractions={"droplet": 1, "empty": 1}, adu_per_photon=100.0,
                  saturation_adu=1000.0, **SMALL)
    data, shared, frame_mask, truth, _ = _read(path)
    flagged = (frame_mask & 0x2) != 0
    assert np.array_equal(frame_mask & ~np.uint32(0x2), np.broadcast_to(shared, frame_mask.shape))
    n = flagged.reshape(len(data), -1).sum(axis=1)
    assert np.array_equal(n, truth["saturated_pixels"]) and n[truth["kind"] == b"droplet"].min() > 0
    assert n[truth["kind"] == b"empty"].max() == 0
    assert data[flagged].max() <= 10 and data[flagged].min() >= 9  # clipped at 10 photons' worth
    chunk = next(FrameSource([str(path)]).chunks())
    assert not np.any(chunk.valid[flagged])  # readers exclude them per frame


def test_stray_light_adds_photons_outside_the_truth_and_a_ring_in_q(tmp_path):
    clean, stray = tmp_path / "clean.cxi", tmp_path / "stray.cxi"
    simulate_file(clean, 8, seed=7, fractions={"empty": 1, "single": 1})
    simulate_file(stray, 8, seed=7, fractions={"empty": 1, "single": 1}, beamline_photons=2000.0,
                  ring_photons=3000.0, ring_q_inv_nm=1.0, ring_width_inv_nm=0.1, ring_sigma=0.7)
    d0, _, _, t0, _ = _read(clean)
    d1, shared, _, t1, _ = _read(stray)
    # without drift or readout the frames of a seed stay, the stray photons come on top
    np.testing.assert_array_equal(t0["photons"], t1["photons"])
    assert np.array_equal(t1["written_photons"], t1["photons"] + t1["stray_photons"])
    extra = d1.astype(np.int64) - d0
    assert extra.min() >= 0 and np.array_equal(extra.reshape(8, -1).sum(axis=1), t1["stray_photons"])
    assert 0.3 < np.std(np.log(t1["stray_photons"] - 0.9 * 2000)) < 2  # shot-to-shot ring strength
    from spidarknet.core.scattering import pixel_q_inv_m
    from spidarknet.simulate import PNCCD
    q = pixel_q_inv_m(PNCCD.shape, PNCCD.centre_xy, PNCCD.pixel_size_m, PNCCD.distance_m,
                      PNCCD.wavelength_m) / 1e9
    valid = shared == 0
    total = extra.sum(axis=0)

    def per_pixel(lo, hi):
        sel = valid & (q >= lo) & (q < hi)
        return total[sel].sum() / sel.sum()
    assert per_pixel(0.13, 0.2) > 5 * per_pixel(0.4, 0.6)       # beamline: steep near the stop
    assert per_pixel(0.95, 1.05) > 5 * per_pixel(1.4, 1.6)       # the ring
    assert per_pixel(0.95, 1.05) > 3 * per_pixel(0.6, 0.7)


def test_the_beam_centre_drifts_in_the_truth_not_in_the_geometry(tmp_path):
    path = tmp_path / "drift.cxi"
    simulate_file(path, 40, seed=8, fractions={"empty": 1}, centre_jitter_px=0.0, centre_drift_px=6.0,
                  centre_drift_frames=40.0, **SMALL)
    _, _, _, truth, corner = _read(path)
    cx, cy = truth["centre_x_px"] - 127.5, truth["centre_y_px"] - 63.5
    assert corner[0] == pytest.approx(-128 * 75e-6) and corner[1] == pytest.approx(-64 * 75e-6)
    assert 11 < np.ptp(cx) <= 12.01 and 11 < np.ptp(cy) <= 12.01  # one whole period: ± 6 px
    assert np.all(np.abs(np.diff(cx)) < 1.0)  # slow: under 1 px per frame
    jittered = tmp_path / "jitter.cxi"
    simulate_file(jittered, 40, seed=8, fractions={"empty": 1}, centre_jitter_px=1.5,
                  centre_drift_px=6.0, centre_drift_frames=40.0, **SMALL)
    residual = _read(jittered)[3]["centre_x_px"] - truth["centre_x_px"]
    assert 0.8 < np.std(residual) < 2.5  # the jitter rides on the drift


@pytest.mark.parametrize("args, words", [
    (["--read-noise", "10"], "--adu-per-photon"),
    (["--adu-per-photon", "100", "--photon-threshold", "1.5"], "share"),
    (["--measured-like", "--hot-pixels", "-1"], "whole number"),
])
def test_option_mistakes_are_one_error_line(tmp_path, capsys, args, words):
    assert simulate_cmd.main([str(tmp_path / "x.cxi"), "--count", "2", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]
    with pytest.raises(ConfigError):
        DEFAULT_SETTINGS.with_options(saturation_adu=50.0, adu_per_photon=100.0)


def test_measured_like_file_runs_through_detect_and_evaluate(tmp_path, capsys):
    path = tmp_path / "measured.cxi"
    assert simulate_cmd.main([str(path), "--count", "24", "--seed", "9", "--half-detector",
                              "--measured-like", "--read-noise", "12", "--quiet"]) == 0
    with h5py.File(path, "r") as f:
        recorded = json.loads(f["truth"].attrs["settings_json"])
    assert recorded["read_noise_adu"] == 12  # the explicit option wins over the preset
    assert all(recorded[k] == v for k, v in MEASURED_LIKE.items() if k != "read_noise_adu")
    hits = tmp_path / "hits.csv"
    assert detect.main([str(path), "--size-range", "60", "75", "--out", str(hits), "--quiet"]) == 0
    capsys.readouterr()
    assert evaluate.main([str(hits), "--truth-dataset", "/truth/label", "--by", "/truth/kind"]) == 0
    out = capsys.readouterr().out
    assert "24 frames" in out and "by /truth/kind" in out
