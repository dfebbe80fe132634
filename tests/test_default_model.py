"""Scoring without training: the built-in model, and thresholds set on the user's own run."""

import json

import numpy as np
import pytest

from spidarknet.cli import detect
from spidarknet.jobs.detect import threshold_for_rate
from spidarknet.hits import read_hits


def test_threshold_for_rate_selects_that_share_and_never_the_prefiltered():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    t = threshold_for_rate(scores, 0.2)
    assert np.count_nonzero(scores >= t) == 2
    t = threshold_for_rate(scores, 0.9)  # more than the frames that reached the network
    assert np.count_nonzero(scores >= t) == 4


def test_expected_hit_rate_sets_the_threshold_from_the_run(trained, heldout_cxi, tmp_path):
    weights = trained / "backup" / "yolov2-tiny-spi_final.weights"
    out = tmp_path / "rate.csv"
    assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(out), "--backend", "opencv",
                        "--expected-hit-rate", "0.25", "--quiet"]) == 0
    hits = read_hits(out)
    assert hits.n_hits == pytest.approx(0.25 * len(hits), abs=2)
    chosen = hits.hits
    assert hits.scores[chosen].min() >= hits.scores[~chosen].max()  # the top-scoring frames
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["threshold_from"] == {"expected_hit_rate": 0.25}
    assert summary["threshold"] == pytest.approx(hits.threshold)


@pytest.mark.parametrize("extra, words", [
    (["--expected-hit-rate", "1.5"], "between 0 and 1"),
    (["--expected-hit-rate", "0.1", "--threshold", "0.3"], "exclude each other"),
    (["--expected-hit-rate", "0.1", "--shard", "1/2"], "--follow or --shard"),
])
def test_expected_hit_rate_mistakes_are_one_error_line(small_cxi, tmp_path, capsys, extra, words):
    assert detect.main([str(small_cxi), "--out", str(tmp_path / "h.csv"), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


def test_the_built_in_model_scores_frames_without_weights(small_cxi, tmp_path, capsys):
    from spidarknet.engine.model import builtin_weights, load_model
    weights = builtin_weights()
    assert weights.stat().st_size <= 5 * 2 ** 20
    card = json.loads(weights.with_suffix(".json").read_text())
    science = card["science"]
    assert {"dim", "bright"} <= set(science["tests"]) and science["positives"] == "single"
    for figures in science["tests"].values():
        assert 0 <= figures["f1"] <= 1 and sum(k["frames"] for k in figures["kinds"].values()) == figures["frames"]
    check_geometries_table(science)
    from spidarknet.experiments.science import format_result
    assert format_result(science).splitlines()[0].endswith("max_batches=3000; detect size_range=60.0,75.0")
    model = load_model(weights)
    assert model.preprocessing.scale == "log" and model.preprocessing.q_min_inv_nm == 0.1297  # the training beam stop
    out = tmp_path / "hits.csv"
    assert detect.main([str(small_cxi), "--out", str(out), "--quiet"]) == 0
    assert "using the built-in model" in capsys.readouterr().err
    hits = read_hits(out)
    assert len(hits) == 60 and np.isfinite(hits.scores).all() and hits.scores.max() > 0
    assert json.loads(out.with_suffix(".json").read_text())["weights_sha256"]
    # it has learnt something: single hits score above empty shots on average
    import h5py
    with h5py.File(small_cxi) as f:
        kind = f["truth/kind"][()].astype(str)
    index = np.array([k.index for k in hits.keys])
    scores = dict(zip(index, hits.scores))
    singles = [scores[i] for i in np.flatnonzero(kind == "single")]
    empties = [scores[i] for i in np.flatnonzero(kind == "empty")]
    assert np.mean(singles) > np.mean(empties) + 0.3


def check_geometries_table(science: dict) -> None:
    """The card's held-out F1 per geometry (both regimes at each of the benchmark's geometries,
    at equal fluence): the pipeline's, the network's alone, the frames, and the distance to the
    training geometry's F1 (issue #18: within 0.03 is the target)."""
    from spidarknet.experiments.science import AGIPD_GEOMETRY, GEOMETRIES, TRAINING_GEOMETRY
    table = science["geometries"]
    assert set(GEOMETRIES) <= set(table) <= set(GEOMETRIES) | {AGIPD_GEOMETRY.name}  # the AGIPD regime's runs
    base = table[TRAINING_GEOMETRY.name]["regimes"]
    assert base["dim"]["f1"] == science["tests"]["dim"]["f1"] and base["bright"]["set"] == "bright"
    for name, row in table.items():
        assert row["about"] and (name not in GEOMETRIES or {"dim", "bright"} <= set(row["regimes"]))
        for conditions, r in row["regimes"].items():
            figures = science["tests"][r["set"]]
            assert r["frames"] == figures["frames"] >= 300 and r["positives"] == figures["positives"]
            assert 0 <= r["f1"] <= 1 and 0 <= r["f1_network"] <= 1 and 0 <= r["f1_network_single"] <= 1
            assert r["f1_network"] == figures["network"]["f1"]
            assert r["delta_f1"] == pytest.approx(r["f1"] - base[conditions]["f1"])


@pytest.mark.parametrize("mistake", ["missing input", "existing output"])
def test_an_input_error_comes_alone_without_the_built_in_model_line(small_cxi, tmp_path, capsys, mistake):
    """The built-in model is named only once the inputs and outputs were checked."""
    out = tmp_path / "hits.csv"
    frames = str(tmp_path / "missing.cxi") if mistake == "missing input" else str(small_cxi)
    if mistake == "existing output":
        out.write_text("mine\n")
    assert detect.main([frames, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert ("does not exist" if mistake == "missing input" else "already exists") in err[0]


@pytest.mark.slow
def test_with_a_size_window_the_built_in_model_screens_at_its_recall_threshold(small_cxi, tmp_path, capsys):
    """--size-range without a threshold: the network screens at the card's screening threshold
    (below the one keeping 98 % of its validation singles) and the fit decides; a
    threshold given by hand still wins."""
    from spidarknet.engine.model import builtin_weights, load_model
    validation = load_model(builtin_weights()).validation
    screen = validation["screening_threshold"]
    assert validation["screening_recall"] >= 0.98 and screen < validation["threshold"]
    out = tmp_path / "hits.csv"
    assert detect.main([str(small_cxi), "--out", str(out), "--size-range", "60", "75", "--jobs", "1"]) == 0
    assert f"screens at threshold {screen:.3g}" in capsys.readouterr().err
    hits = read_hits(out)
    assert hits.threshold == pytest.approx(screen)
    assert json.loads(out.with_suffix(".json").read_text())["threshold_from"] == {
        "screening_recall": validation["screening_recall"]}
    assert hits.selected.sum() <= (hits.scores >= screen).sum()
    given = tmp_path / "given.csv"
    assert detect.main([str(small_cxi), "--out", str(given), "--size-range", "60", "75", "--jobs", "1",
                        "--threshold", "0.6", "--quiet"]) == 0
    assert read_hits(given).threshold == pytest.approx(0.6)


@pytest.mark.slow
def test_the_built_in_model_holds_at_one_and_a_half_times_the_distance(tmp_path):
    """The same sample and beam (same fluence) 1.5 x farther away: the pattern covers 1.5 x
    the pixels, and the beam stop is smaller in q, so the bright centre that training never
    showed falls on the detector.  The card's q_min blanks it: singles (of any size, what
    the network learnt) keep their ranking and recall at the card's threshold (measured
    without it: recall 0.55 against 0.95 at the near distance, AUC 0.97 and 0.98)."""
    from spidarknet.core.metrics import confusion, roc_auc
    from spidarknet.simulate import simulate_file
    near, far = tmp_path / "near.cxi", tmp_path / "far.cxi"
    common = dict(seed=301, half_detector=True, centre_jitter_px=3.0, background_photons_per_pixel=0.003)
    simulate_file(near, 160, photons=1500, **common)
    import h5py
    with h5py.File(near) as f:
        fluence = float(f["/truth"].attrs["mean_fluence_photons_per_m2"])
    simulate_file(far, 160, mean_fluence_photons_per_m2=fluence, distance_m=0.1875, **common)
    figures = {}
    for name, path in (("near", near), ("far", far)):
        out = tmp_path / f"{name}.csv"
        assert detect.main([str(path), "--out", str(out), "--quiet", "--jobs", "1"]) == 0
        hits = read_hits(out)
        with h5py.File(path) as f:
            single = f["truth/kind"][()].astype(str) == "single"
        truth = single[[k.index for k in hits.keys]]
        figures[name] = (roc_auc(hits.scores, truth), confusion(hits.scores, truth, hits.threshold).recall)
    (auc0, recall0), (auc1, recall1) = figures["near"], figures["far"]
    assert auc0 > 0.85 and recall0 > 0.7, figures
    assert auc1 >= auc0 - 0.05 and recall1 >= recall0 - 0.15, figures


@pytest.mark.slow
def test_the_size_window_fits_the_frames_as_detect_opened_them(small_cxi, tmp_path):
    """A file that states a wrong distance, corrected by --distance: the size fits behind
    --size-range use the corrected geometry (the run's own opened files), so the
    selection is the one of the file with the right distance."""
    import shutil

    import h5py
    wrong = tmp_path / "wrong-distance.cxi"
    shutil.copyfile(small_cxi, wrong)
    with h5py.File(wrong, "r+") as f:
        f["/entry_1/instrument_1/detector_1/distance"][()] = 0.2
    selections = {}
    for name, path, extra in (("right", small_cxi, []), ("corrected", wrong, ["--distance", "0.125"])):
        out = tmp_path / f"{name}.csv"
        assert detect.main([str(path), "--out", str(out), "--quiet", "--jobs", "1", "--size-range", "60", "75",
                            *extra]) == 0
        hits = read_hits(out)
        selections[name] = [k.index for k, s in zip(hits.keys, hits.selected) if s]
    assert selections["right"] and selections["corrected"] == selections["right"]


def crop_cxi(src, dst, half: int):
    """A copy of a simulated CXI file whose frames (and mask) are cut to 2 ``half`` pixels
    around the beam, the corner position moved with them: a detector that ends sooner."""
    import h5py
    detector = "entry_1/instrument_1/detector_1"
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        pixel = float(f[f"{detector}/x_pixel_size"][()])
        corner = f[f"{detector}/corner_position"][()]
        r0 = int(round(-corner[1] / pixel - 0.5)) - half
        c0 = int(round(-corner[0] / pixel - 0.5)) - half
        cut = (slice(r0, r0 + 2 * half), slice(c0, c0 + 2 * half))

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                target = g.require_group(name)
            elif name == f"{detector}/data":
                target = g.create_dataset(name, data=obj[(slice(None), *cut)])
            elif name == f"{detector}/mask_shared":
                target = g.create_dataset(name, data=obj[cut])
            elif name == f"{detector}/corner_position":
                target = g.create_dataset(name, data=obj[()] + np.array([c0, r0, 0][:obj.size]) * pixel)
            else:
                target = g.create_dataset(name, data=obj[()])
            target.attrs.update(dict(obj.attrs))
        f.visititems(visit)
    return dst


@pytest.mark.slow
def test_the_built_in_model_scores_frames_whose_detector_ends_before_its_q_range(tmp_path, caplog):
    """The same frames cut to 208 x 208 pixels (q ≤ 0.537 nm⁻¹ of the model's 0.66, like a
    measured 8 x 8-binned crop): not refused; the band the detector lacks is padded like a
    masked region, and the scores stay close to the whole frames'.  Measured (300 dim
    half-detector frames, seed 901) with the model trained across geometries (seventh
    session): ROC AUC 0.980 -> 0.979, F1 at the card's threshold 0.931 -> 0.900, score
    correlation 0.968 (the pnCCD-trained model before it: 0.981 -> 0.977, 0.914 -> 0.917,
    0.964).  Tolerance: AUC within 0.03, correlation ≥ 0.9, and F1 within 0.04: the F1 of
    one threshold on ~100 singles moves by more than the scores do (a paired bootstrap of
    these frames puts the F1 difference at 0.030 ± 0.022)."""
    import h5py
    from spidarknet.core.metrics import confusion, roc_auc
    from spidarknet.hits import PADDED
    from spidarknet.simulate import simulate_file
    whole = tmp_path / "whole.cxi"
    simulate_file(whole, 300, seed=901, half_detector=True, photons=1500, background_photons_per_pixel=0.003)
    cut = crop_cxi(whole, tmp_path / "cut.cxi", 104)
    with h5py.File(whole) as f:
        single = f["truth/kind"][()].astype(str) == "single"
    lists = {}
    for path in (whole, cut):
        out = path.with_suffix(".csv")
        assert detect.main([str(path), "--out", str(out), "--quiet", "--jobs", "1"]) == 0
        lists[path] = read_hits(out)
    assert "reaches q 0.537" in caplog.text
    a, b = lists[whole], lists[cut]
    assert set(b.status) == {PADDED} and PADDED not in set(a.status)
    assert abs(roc_auc(a.scores, single) - roc_auc(b.scores, single)) <= 0.03
    assert abs(confusion(a.scores, single, a.threshold).f1 - confusion(b.scores, single, b.threshold).f1) <= 0.04
    assert np.corrcoef(a.scores, b.scores)[0, 1] >= 0.9
