"""The prefilter in front of the network: it only keeps background from the network."""

import dataclasses
import json

import h5py
import numpy as np
import pytest

from spidarknet.cli import detect
from spidarknet.detection.local import Prefilter, PrefilterGate, crop_valid_area
from spidarknet.frames.source import FrameSource
from spidarknet.hits import read_hits
from spidarknet.preprocess import Preprocessing, Preprocessor
from spidarknet.simulate import simulate_file

WEIGHTS = "backup/yolov2-tiny-spi_final.weights"


def run_detect(cxi, weights, out, *extra) -> tuple:
    assert detect.main([str(cxi), "--weights", str(weights), "--out", str(out), "--quiet", *extra]) == 0
    return read_hits(out), json.loads(out.with_suffix(".json").read_text())


def kinds_of(cxi, hits) -> np.ndarray:
    with h5py.File(cxi) as f:
        kinds = f["/truth/kind"][()].astype(str)
    return kinds[[k.index for k in hits.keys]]


@pytest.fixture(scope="module")
def trained_pair(trained, heldout_cxi, tmp_path_factory):
    """The held-out file scored by the trained network alone and behind the prefilter,
    at the model's threshold and at 0.05."""
    out = tmp_path_factory.mktemp("cascade")
    weights = trained / WEIGHTS
    pairs = {}
    for threshold in ([], ["--threshold", "0.05"]):
        name = threshold[-1] if threshold else "model"
        alone = run_detect(heldout_cxi, weights, out / f"alone-{name}.csv", "--no-prefilter", *threshold)
        cascade = run_detect(heldout_cxi, weights, out / f"cascade-{name}.csv", *threshold)
        pairs[name] = (alone, cascade)
    return pairs


@pytest.mark.parametrize("threshold", ["model", "0.05"])
def test_prefilter_never_drops_a_frame_the_network_selects(trained_pair, threshold):
    (alone, _), (cascade, summary) = trained_pair[threshold]
    assert alone.keys == cascade.keys
    assert alone.n_hits > 0
    assert np.all(cascade.hits[alone.hits]), "the prefilter rejected a frame the network selects"
    assert np.array_equal(cascade.hits, alone.hits)
    # frames that reached the network were scored exactly as without the prefilter
    rejected = cascade.boxes[:, 2] == 0
    assert np.array_equal(cascade.scores[~rejected], alone.scores[~rejected])
    assert np.array_equal(cascade.boxes[~rejected], alone.boxes[~rejected])
    assert np.all(cascade.scores[rejected] == 0)
    assert summary["prefilter"]["rule"] == "background"
    assert summary["prefilter"]["rejected"] == np.count_nonzero(rejected) > 0


def test_rejected_frames_are_background(trained_pair, heldout_cxi):
    (alone, _), (cascade, _) = trained_pair["0.05"]
    kinds = kinds_of(heldout_cxi, cascade)
    rejected = cascade.boxes[:, 2] == 0
    assert set(kinds[rejected]) <= {"empty", "tiny"}, "the prefilter rejected a frame with a particle pattern"
    assert np.count_nonzero(rejected & (kinds == "empty")) >= 0.9 * np.count_nonzero(kinds == "empty")
    # the network alone gave them low scores too
    assert alone.scores[rejected].max() < 0.05
    # an empty box at the crop's centre marks them
    centre = cascade.boxes[rejected, :2]
    assert np.all(np.abs(centre - 511.5) < 8) and np.all(cascade.boxes[rejected, 3] == 0)


def test_prefilter_results_do_not_depend_on_the_processes(untrained_weights, heldout_cxi, tmp_path):
    one, s1 = run_detect(heldout_cxi, untrained_weights, tmp_path / "j1.csv", "--jobs", "1", "--chunk", "16")
    two, s2 = run_detect(heldout_cxi, untrained_weights, tmp_path / "j2.csv", "--jobs", "2", "--chunk", "16")
    assert s2["jobs"] == 2 and s1["jobs"] == 1
    assert one.keys == two.keys
    assert np.array_equal(one.scores, two.scores) and np.array_equal(one.boxes, two.boxes)
    assert s1["prefilter"] == s2["prefilter"] and s1["prefilter"]["rejected"] > 0


def test_photon_floor_and_switching_off(untrained_weights, heldout_cxi, tmp_path, capsys):
    frames = ["--frames", "0:40", "--jobs", "1"]
    plain, _ = run_detect(heldout_cxi, untrained_weights, tmp_path / "off.csv", "--no-prefilter", *frames)
    zero, s0 = run_detect(heldout_cxi, untrained_weights, tmp_path / "zero.csv", "--prefilter-photons", "0", *frames)
    assert np.array_equal(zero.scores, plain.scores) and s0["prefilter"]["rejected"] == 0
    high, s1 = run_detect(heldout_cxi, untrained_weights, tmp_path / "high.csv", "--prefilter-photons", "1e9",
                          *frames)
    assert np.all(high.scores == 0) and s1["prefilter"] == {"rule": "min_photons", "min_photons": 1e9,
                                                            "rejected": 40}
    capsys.readouterr()
    assert detect.main([str(heldout_cxi), "--weights", str(untrained_weights), "--out", str(tmp_path / "x.csv"),
                        "--no-prefilter", "--prefilter-photons", "10", "--quiet"]) == 1
    assert "exclude each other" in capsys.readouterr().err


def test_background_test_counts_only_valid_pixels(small_cxi):
    """A flat background over the masked crop (beam stop, gap) is judged background; the
    same frame with a few hundred photons near the centre is not."""
    settings = Preprocessing()
    pre = Preprocessor(settings)
    chunk = next(FrameSource([str(small_cxi)], frames=slice(0, 8)).chunks(8, roi=pre.roi))
    area = crop_valid_area(chunk, settings)
    assert area.shape == (1, 128, 128) and area.max() == 4
    assert 0.9 * 256 ** 2 < area.sum() < 256 ** 2  # the beam stop and the gap are masked
    rng = np.random.default_rng(0)
    flat = rng.poisson(0.002 * np.repeat(area, 400, axis=0)).astype(np.float32)
    gate = PrefilterGate(Prefilter(), settings)
    assert np.mean(gate.passes(chunk, flat)) < 0.02
    lit = flat.copy()
    lit[:, 50:78, 50:78] += rng.poisson(0.25, (400, 28, 28)) * (area[:, 50:78, 50:78] > 0)
    assert np.all(gate.passes(chunk, lit))


def test_dim_single_hits_pass(tmp_path):
    """Single hits thinned to 150 signal photons in the crop (over ~125 of background),
    dimmer than the dimmest singles of a real run, all reach the network."""
    path = tmp_path / "singles.cxi"
    simulate_file(path, 48, seed=4, fractions={"single": 1})
    settings = Preprocessing()
    pre, gate = Preprocessor(settings), PrefilterGate(Prefilter(), settings)
    background = 0.002  # the simulator's photons per pixel
    rng = np.random.default_rng(1)
    passed = []
    for chunk in FrameSource([str(path)]).chunks(16, roi=pre.roi):
        counts = chunk.data.astype(np.int64) * chunk.valid
        signal = counts.sum(axis=(1, 2)) - background * chunk.valid.sum()
        keep = np.clip(150 / signal, 0, 1)[:, None, None]
        # keeping each photon with probability `keep` scales the pattern; the background is put back
        dim = rng.binomial(counts, keep) + rng.poisson(background * (1 - keep) * chunk.valid)
        dim_chunk = dataclasses.replace(chunk, data=dim.astype(np.uint16))
        passed.append(gate.passes(dim_chunk, pre.process(dim_chunk).photons))
    assert np.all(np.concatenate(passed))


def test_prefilter_settings_are_checked():
    with pytest.raises(Exception, match="photon floor"):
        Prefilter(min_photons=-1)
    rule = Prefilter(sigma=2.5)
    assert Prefilter.from_dict(rule.to_dict()) == rule
