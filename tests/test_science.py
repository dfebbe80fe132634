"""The science benchmark, end to end on a tiny scale: simulate, export, train, detect, judge."""

import json

import h5py
import numpy as np
import pytest

from spidarknet.experiments.science import (AGIPD_DEV_SETS, AGIPD_TEST_SETS, DEV_SETS, GEOMETRIES, GEOMETRY_TRAIN_SETS,
                                           KIND_ROWS, SIZE_WINDOW, TEST_SETS, STRAY_TRAIN_SETS, TRAIN_SETS, TRAINING_GEOMETRY,
                                           ScienceConfig, format_result, _as_json, geometry_table, run_science)

#: the pnCCD files (the AGIPD regime's run folders are judged in a test of their own, with the built-in model)
PNCCD_TEST_SETS = tuple(s for s in TEST_SETS if s not in AGIPD_TEST_SETS)
PNCCD_DEV_SETS = tuple(s for s in DEV_SETS if s not in AGIPD_DEV_SETS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, darknet_bin):
    work = tmp_path_factory.mktemp("science")
    config = ScienceConfig(workdir=work, scale_counts=0.04, export_options={"max_batches": 20},
                           positives="single", label="tiny", test_sets=PNCCD_TEST_SETS, dev_sets=PNCCD_DEV_SETS)
    return work, run_science(config, say=lambda *a: None)


def test_the_stray_light_training_files_do_not_repeat_the_measured_regime():
    from spidarknet.simulate.settings import MEASURED_LIKE_SETTINGS
    assert not set(STRAY_TRAIN_SETS) & set(TRAIN_SETS) and all(s.half_detector for s in STRAY_TRAIN_SETS)
    for s in STRAY_TRAIN_SETS:
        effects = s.effects()
        assert effects.beamline_photons > 0 and effects.ring_photons > 0
        # no readout chain, bad pixels or drift, and the ring elsewhere than the measured preset's
        assert effects.adu_per_photon == 0 and effects.centre_drift_px == 0
        assert effects.ring_q_inv_nm != MEASURED_LIKE_SETTINGS.ring_q_inv_nm
        assert s.simulate_kwargs()["settings"] is not None and not s.measured


def test_seeds_of_training_dev_and_test_files_never_meet():
    seeds = [s.seed for s in (*TRAIN_SETS, *STRAY_TRAIN_SETS, *GEOMETRY_TRAIN_SETS, *DEV_SETS, *TEST_SETS)]
    assert len(set(seeds)) == len(seeds)
    assert {s.half_detector for s in TEST_SETS} == {True, False}


@pytest.mark.slow
def test_every_frame_is_judged_once_per_kind_and_photon_bin(tiny_run):
    work, result = tiny_run
    assert set(result["tests"]) == {s.name for s in PNCCD_TEST_SETS}
    assert set(result["dev"]) == {s.name for s in PNCCD_DEV_SETS}
    for name, figures in {**result["dev"], **result["tests"]}.items():
        path = next((work / "data").glob(f"{name}-s*.cxi"))
        with h5py.File(path) as f:
            kinds = f["truth/kind"][()].astype(str)
            labels = f["truth/label"][()]
        assert figures["frames"] == len(kinds)
        assert figures["positives"] == int(labels.sum())
        rows = figures["kinds"]
        assert set(rows) == set(KIND_ROWS)
        assert sum(r["frames"] for r in rows.values()) == len(kinds)
        assert rows["single"]["frames"] == int(labels.sum())
        assert rows["multiple"]["frames"] == int(np.count_nonzero(kinds == "multiple"))
        assert sum(r["selected"] for r in rows.values()) == figures["selected"]
        assert sum(b["frames"] for b in figures["photon_bins"]) == len(kinds)
        assert sum(b["positives"] for b in figures["photon_bins"]) == figures["positives"]
        p, r = figures["precision"], figures["recall"]
        assert figures["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
        assert figures["detect_frames_per_s"] > 0


@pytest.mark.slow
def test_single_positives_list_every_one_particle_frame(tiny_run):
    work, result = tiny_run
    assert result["positives"] == "single"
    listed = (work / "runs" / "tiny" / "singles.csv").read_text().split()[1:]
    expected = 0
    for path in sorted((work / "data").glob("train-*.cxi")):
        with h5py.File(path) as f:
            expected += int(np.count_nonzero(f["truth/kind"][()] == b"single"))
    assert len(listed) == expected > 0


@pytest.mark.slow
def test_figures_are_written_as_json_and_printed(tiny_run):
    work, result = tiny_run
    saved = json.loads((work / "runs" / "tiny" / "science.json").read_text())
    assert saved["tests"]["dim"]["f1"] == pytest.approx(result["tests"]["dim"]["f1"])
    assert saved["train_seconds"] > 0
    text = format_result(result)
    assert "dim" in text and "bright" in text and "multiple" in text


@pytest.mark.slow
def test_reuse_judges_the_same_weights_again(tiny_run):
    work, result = tiny_run
    again = run_science(ScienceConfig(workdir=work, scale_counts=0.04, positives="single", label="tiny",
                                      reuse=True, test_sets=PNCCD_TEST_SETS[:1], dev_sets=()), say=lambda *a: None)
    assert again["weights"] == result["weights"]
    assert again["tests"]["dim"]["f1"] == pytest.approx(result["tests"]["dim"]["f1"], abs=1e-9)


@pytest.mark.slow
def test_save_model_carries_the_figures_and_scores_frames(tiny_run, tmp_path, small_cxi):
    from spidarknet.cli import detect
    from spidarknet.engine.model import load_model
    from spidarknet.experiments.science import save_model
    _, result = tiny_run
    card = save_model(result, tmp_path / "m.weights")
    values = json.loads(card.read_text())
    assert values["science"]["tests"]["dim"]["f1"] == pytest.approx(result["tests"]["dim"]["f1"])
    assert "expected-hit-rate" in values["threshold_note"]
    model = load_model(tmp_path / "m.weights")
    assert model.threshold == pytest.approx(result["validation"]["threshold"])
    assert detect.main([str(small_cxi), "--weights", str(tmp_path / "m.weights"), "--out",
                        str(tmp_path / "h.csv"), "--quiet"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["--variant", "noequals"], "NAME=OPTIONS"),
    (["--no-default"], "nothing to judge"),
    (["--save-model", "x.weights", "--no-default", "--variant", "a=--scale log"], "drop --no-default"),
    (["--scale-counts", "0"], "must be positive"),
    (["--weights", "w.weights", "--save-model", "x.weights"], "drop one or the other"),
    (["--weights", "w.weights", "--regimes", "measurd"], "unknown regime 'measurd'"),
    (["--weights", "w.weights", "--train-geometries"], "drop one or the other"),
    (["--weights", "w.weights", "--train-stray"], "drop one or the other"),
    (["--weights", "w.weights", "--regimes", "dim@binned5"], "unknown regime 'dim@binned5'"),
])
def test_bench_science_option_mistakes_are_one_error_line(argv, words, capsys, tmp_path):
    from spidarknet.cli import bench
    assert bench.main(["--science", "--workdir", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


def test_regimes_pick_their_development_and_test_files(tmp_path):
    config = ScienceConfig(workdir=tmp_path).for_regimes(["measured"])
    assert [s.name for s in config.test_sets] == ["measured"]
    assert [s.name for s in config.dev_sets] == ["dev-measured"]
    assert all(s.measured and s.half_detector for s in (*config.test_sets, *config.dev_sets))
    assert not any(s.measured for s in (*TRAIN_SETS, *DEV_SETS[:2], *TEST_SETS[:2]))


def test_a_given_model_is_judged_on_the_measured_regime_without_training(tmp_path):
    from spidarknet.engine.model import builtin_weights
    config = ScienceConfig(workdir=tmp_path, scale_counts=0.035, weights=builtin_weights(),
                           label="builtin").for_regimes(["measured"])
    result = run_science(config, say=lambda *a: None)
    assert set(result["tests"]) == {"measured"} and set(result["dev"]) == {"dev-measured"}
    assert not result["trained_here"] and result["train_seconds"] == 0
    assert sorted(p.name for p in (tmp_path / "data").glob("*.cxi")) == [
        "dev-measured-s303-n20.cxi", "measured-s373-n21.cxi"]  # no training files made
    figures = result["tests"]["measured"]
    assert sum(k["frames"] for k in figures["kinds"].values()) == figures["frames"] == 21
    with h5py.File(tmp_path / "data" / "measured-s373-n21.cxi", "r") as f:
        assert f["truth"].attrs["adu_per_photon"] > 0 and "mask" in f["entry_1/instrument_1/detector_1"]
    assert "not trained here" in format_result(result)


def test_every_geometry_is_judged_in_both_regimes_at_the_training_geometry_s_fluence(tmp_path):
    """A set at another geometry keeps the training geometry's fluence and background per
    solid angle: the same sample and beam, another detector."""
    from spidarknet.simulate import FrameSimulator
    for g in GEOMETRIES:
        assert {s.conditions for s in TEST_SETS if s.geometry == g} >= {"dim", "bright"}
        assert {s.conditions for s in DEV_SETS if s.geometry == g} >= {"dim", "bright"}
    spec = next(s for s in TEST_SETS if s.name == "dim@binned8-581mm")
    kwargs = spec.simulate_kwargs()
    assert "photons" not in kwargs and kwargs["binning"] == 8 and kwargs["distance_m"] == 0.581
    at_training = FrameSimulator(seed=spec.seed, half_detector=True, photons=spec.photons,
                                 background_photons_per_pixel=spec.background, centre_jitter_px=spec.centre_jitter_px,
                                 fluence_sigma=spec.fluence_sigma)
    assert kwargs["mean_fluence_photons_per_m2"] == pytest.approx(at_training.settings.mean_fluence_photons_per_m2)
    assert kwargs["background_photons_per_pixel"] == pytest.approx(spec.background * (0.125 / 0.581) ** 2)
    assert spec.background_per_written_pixel() == pytest.approx(64 * kwargs["background_photons_per_pixel"])
    assert "geometry" not in _as_json(TEST_SETS[0])  # older files' settings still match


def test_the_pipeline_is_judged_with_the_size_window_of_the_simulator_s_labels():
    from spidarknet.simulate.settings import DEFAULT_SETTINGS, MEASURED_LIKE_SETTINGS
    assert SIZE_WINDOW == tuple(DEFAULT_SETTINGS.label_range_nm) == tuple(MEASURED_LIKE_SETTINGS.label_range_nm)
    assert ScienceConfig(workdir=".").detect_options["size_range"] == SIZE_WINDOW
    # bench --science --icosahedron: detect's window with its icosahedron, a field of DetectSettings
    from spidarknet.experiments.science import RecipeSettings, _detect_options
    from spidarknet.frames.options import FrameOptions
    from spidarknet.jobs import with_options
    from spidarknet.jobs.detect import DetectSettings
    options = _detect_options(RecipeSettings(icosahedron=True))
    assert options == {"size_range": SIZE_WINDOW, "icosahedron": True}
    detect = with_options(DetectSettings(FrameOptions(("x.cxi",)), out="h.csv"), options)
    assert detect.icosahedron and tuple(detect.size_range) == SIZE_WINDOW
    assert _detect_options(RecipeSettings()) == {"size_range": SIZE_WINDOW}   # detect's default: on
    assert _detect_options(RecipeSettings(icosahedron=False)) == {"size_range": SIZE_WINDOW, "icosahedron": False}


def test_the_geometry_table_says_how_far_each_geometry_is_from_the_training_one():
    figures = {"dim": {"frames": 800, "positives": 160, "f1": 0.95, "network": {"f1": 0.8, "f1_single": 0.9}},
               "dim@binned4": {"frames": 400, "positives": 80, "f1": 0.90, "network": {"f1": 0.7, "f1_single": 0.85}}}
    specs = [s for s in TEST_SETS if s.name in figures]
    table = geometry_table(figures, specs)
    assert set(table) == {TRAINING_GEOMETRY.name, "binned4"}
    row = table["binned4"]["regimes"]["dim"]
    assert row["delta_f1"] == pytest.approx(-0.05) and row["f1_network"] == 0.7 and row["frames"] == 400
    assert row["seed"] == 381 and table[TRAINING_GEOMETRY.name]["regimes"]["dim"]["delta_f1"] == 0


def test_the_agipd_regime_is_judged_on_runs_beside_its_pnccd_twin_and_the_lit_pixel_finder(tmp_path):
    """The AGIPD regime with the built-in model: a run folder in the facility's layout and its
    pnCCD twin, each judged as the other regimes are, and the lit-pixel hit finder beside them."""
    from dataclasses import replace

    from spidarknet.engine.model import builtin_weights
    from spidarknet.hits import read_hits
    config = ScienceConfig(workdir=tmp_path, scale_counts=0.03, weights=builtin_weights(),
                           label="builtin").for_regimes(["agipd-sparse"])
    assert [s.name for s in config.dev_sets] == ["dev-agipd-sparse", "dev-agipd-sparse@pnccd"]
    result = run_science(replace(config, dev_sets=()), say=lambda *a: None)
    assert set(result["tests"]) == {"agipd-sparse", "agipd-sparse@pnccd"}
    run = tmp_path / "data" / "agipd-sparse-s2633-n42"
    assert len(list(run.glob("CORR-R0001-AGIPD*-S00000.h5"))) == 16 and (run / "agipd1m.geom").is_file()
    with h5py.File(run / "CORR-R0001-AGIPD04-S00000.h5") as f:  # written compressed (docs/euxfel.md)
        data = f["INSTRUMENT/SPB_DET_AGIPD1M-1/CORR/4CH0:output/image/data"]
        assert data.compression == "gzip" and data.shuffle
    with h5py.File(run / "spidarknet-truth.hdf5") as f:
        kinds = f["truth/kind"][()].astype(str)
    assert np.count_nonzero(kinds == "empty") == round(0.85 * 42)  # the sparse mix
    hits = read_hits(tmp_path / "runs" / "builtin" / "hits-agipd-sparse.csv")
    assert set(hits.columns["trainId"]) == {10000}
    for name in result["tests"]:
        figures, lit = result["tests"][name], result["tests"][name]["lit_pixel"]
        assert lit["k"] == 3 and lit["frames"] == figures["frames"] == 42
        assert lit["kinds"]["empty"]["frames"] == 36 and lit["kinds"]["empty"]["selected"] == 0
        assert lit["selected"] > figures["selected"]  # it passes every kind of hit, spidarknet the singles
    row = result["geometries"]["agipd1m"]["regimes"]["agipd-sparse"]
    twin = result["tests"]["agipd-sparse@pnccd"]["f1"]
    assert row["delta_f1"] == pytest.approx(result["tests"]["agipd-sparse"]["f1"] - twin)
    text = format_result(result)
    assert "lit-pixel (k = 3)" in text and "| agipd-sparse | spidarknet |" in text
    check_merged_into_a_card(result, tmp_path)


def check_merged_into_a_card(result: dict, tmp_path) -> None:
    """The AGIPD figures of a real (small) run put into a copy of the built-in model's card: its
    sets and their rows of the per-geometry table join the card's, which still formats."""
    import runpy
    import shutil
    from pathlib import Path

    from spidarknet.core.errors import ConfigError, InputError
    from spidarknet.engine.model import builtin_weights
    from spidarknet.experiments.science import RecipeSettings, merge_into_card, run_recipes
    weights = tmp_path / "model" / "spi-default.weights"
    weights.parent.mkdir()
    shutil.copyfile(builtin_weights(), weights)
    shutil.copyfile(builtin_weights().with_suffix(".json"), weights.with_suffix(".json"))
    before = json.loads(weights.with_suffix(".json").read_text())["science"]
    with pytest.raises(InputError, match="not comparable"):
        merge_into_card({**result, "detect_options": {}}, weights)
    from spidarknet.core.outputs import write_json
    write_json({"recipes": [result]}, tmp_path / "figures.json")  # as bench --science --out writes them
    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "science_into_card.py"))
    assert tool["main"]([str(tmp_path / "figures.json"), str(weights)]) == 0
    science = json.loads(weights.with_suffix(".json").read_text())["science"]
    assert science["tests"]["dim"] == before["tests"]["dim"]
    assert science["tests"]["agipd-sparse"]["f1"] == result["tests"]["agipd-sparse"]["f1"]
    row = science["geometries"]["agipd1m"]["regimes"]["agipd-sparse"]
    assert row["frames"] == 42 and row["delta_f1"] == pytest.approx(
        result["tests"]["agipd-sparse"]["f1"] - result["tests"]["agipd-sparse@pnccd"]["f1"])
    replaced = {"agipd-sparse"}  # the run's own regime; every other row as it was measured (seeds too)
    for key in ("geometries", "dev_geometries"):
        assert all(science[key][g]["regimes"][c] == r for g, row in before[key].items()
                   for c, r in row["regimes"].items() if c not in replaced)
    assert set(science["geometries"]["pnccd"]["regimes"]) == {"dim", "bright", "agipd-sparse"} | set(
        before["geometries"]["pnccd"]["regimes"])
    assert science["merged"][-1]["sets"] == ["agipd-sparse", "agipd-sparse@pnccd"]
    assert "| agipd1m | agipd-sparse | agipd-sparse (2633) | 42 (" in format_result(science)
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(InputError, match="not .*spi-default.weights"):
        merge_into_card(result, weights)
    with pytest.raises(ConfigError, match="--into-card"):
        run_recipes(RecipeSettings(into_card=True))
