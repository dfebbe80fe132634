"""The seed's three questions: the table, the answers' rules, and a small run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spidarknet.core.errors import InputError
from spidarknet.experiments import seed_questions as sq


def test_seed_table_counts_and_intersections():
    truth = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    a = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    b = np.array([1, 1, 1, 1, 1, 1], dtype=bool)
    rows = {r["selection"]: r for r in sq.seed_table({"truth": truth, "a": a, "b": b}, truth)}
    assert rows["truth"]["frames"] == 3 and rows["truth"]["share_true"] == 1.0
    assert rows["a"]["frames"] == 3 and rows["a"]["with_truth"] == 2
    assert rows["a"]["truth_found"] == pytest.approx(2 / 3)
    assert rows["b"]["share_true"] == 0.5 and rows["b"]["truth_found"] == 1.0
    assert rows["a"]["jaccard"]["b"] == pytest.approx(3 / 6)
    assert rows["a"]["jaccard"]["truth"] == pytest.approx(2 / 4)


def _result(f1: dict, structure=None):
    runs = [{"name": f"run{i}"} for i in range(1, 6)]
    per_run = {name: {f"run{i}": {"f1": v[i - 1]} for i in range(1, 6)} for name, v in f1.items()}
    return {"runs": runs, "first_runs": 2, "per_run_f1": per_run, "structure": structure or {}}


def test_answers_follow_their_rules():
    good = [0.95] * 5
    drop = [0.95, 0.95, 0.80, 0.75, 0.70]
    out = sq.answers(_result({"all-log": good, "all-linear": [0.9] * 5,
                              "first-log": drop, "first-linear": [0.9] * 5}))
    assert out["reasonable_selection"].startswith("yes") and "all-log" in out["reasonable_selection"]
    assert out["first_runs_enough"].startswith("no")       # log loses 0.20 on runs 3-5
    assert out["linear_or_log"].startswith("either")        # log (0.95 + 0.83) / 2 vs linear 0.9
    out = sq.answers(_result({"all-log": good, "all-linear": [0.5] * 5,
                              "first-log": good, "first-linear": [0.52] * 5}))
    assert out["first_runs_enough"].startswith("yes") and out["linear_or_log"].startswith("log")
    assert sq.answers(_result({"all-log": [0.6] * 5}))["reasonable_selection"].startswith("no")


def test_structure_within_ten_percent_up_to_the_truths_resolution():
    q = np.linspace(0.05, 0.5, 10)
    truth = {"q_inv_nm": q, "cc": np.linspace(0.99, 0.2, 10), "resolution_q_inv_nm": q[6]}
    close = {"q_inv_nm": q, "cc": truth["cc"] * 0.92}
    far = {"q_inv_nm": q, "cc": np.where(q < 0.2, truth["cc"], truth["cc"] * 0.8)}
    beyond = {"q_inv_nm": q, "cc": np.where(q > q[6], 0.0, truth["cc"])}  # worse only past the limit
    assert sq._structure_within(close, truth, 0.10)
    assert not sq._structure_within(far, truth, 0.10)
    assert sq._structure_within(beyond, truth, 0.10)
    with_contrast = {**close, "contrast": np.full(10, 0.5)}
    assert not sq._structure_within(with_contrast, {**truth, "contrast": np.full(10, 0.7)}, 0.10, "contrast")
    assert sq._structure_within(with_contrast, {**truth, "contrast": np.full(10, 0.54)}, 0.10, "contrast")
    result = _result({"all-log": [0.95] * 5}, {"truth": truth, "all-log": far})
    assert sq.answers(result)["reasonable_selection"].startswith("no")


def test_runs_found_from_a_relative_work_folder(tmp_path, monkeypatch):
    """The Makefile's --workdir is relative; hit lists hold absolute paths: each frame still
    finds its run (it ended in "'.../data/run1.cxi' is not in list")."""
    monkeypatch.chdir(tmp_path)
    data = [Path("work") / "data" / f"run{i}.cxi" for i in (1, 2)]
    files = np.array([str(tmp_path / "work" / "data" / "run2.cxi"), str(tmp_path / "work/data/run1.cxi"),
                      str(tmp_path / "work" / "data" / "run2.cxi")], dtype=object)
    assert sq.run_index(files, data).tolist() == [1, 0, 1]
    labels, selected = np.array([1, 1, 0], dtype=bool), np.array([1, 0, 0], dtype=bool)
    kinds = np.array(["single", "single", "empty"], dtype=object)
    runs = sq.BEAMTIME[:2]
    per_run = sq._per_run(selected, labels, kinds, files, runs, data)
    assert per_run["run1"]["positives"] == 1 and per_run["run1"]["selected"] == 0
    assert per_run["run2"]["f1"] == 1.0 and per_run["run2"]["selected"] == 1
    with pytest.raises(InputError, match="none of the runs"):
        sq.run_index(np.array([str(tmp_path / "elsewhere.cxi")], dtype=object), data)


@pytest.mark.slow
def test_a_small_beamtime_end_to_end(tmp_path, capsys, monkeypatch):
    """Simulate a small beamtime, train the four recipes briefly, detect, tabulate (no EMC),
    in a work folder given relative to the current one, as the Makefile gives it."""
    from spidarknet.cli import seed_questions as command

    monkeypatch.chdir(tmp_path.parent)
    args = ["--workdir", tmp_path.name, "--frames-per-run", "60", "--labelled-frames", "100",
            "--max-batches", "10", "--no-reconstruct", "-q"]
    assert command.main(args) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "seed-questions.json").read_text())
    assert set(result["per_run_f1"]) == {"all-log", "all-linear", "first-log", "first-linear"}
    assert all(set(v) == {f"run{i}" for i in range(1, 6)} for v in result["per_run_f1"].values())
    truth = result["table"][0]
    assert truth["selection"] == "truth" and truth["frames"] == truth["with_truth"] > 0
    # the true selection holds every single particle of the runs' files, and nothing else
    from spidarknet.experiments.science import read_truth
    singles = sum(int(np.sum(read_truth(tmp_path / "data" / f"run{i}.cxi")["kind"] == "single"))
                  for i in range(1, 6))
    assert truth["frames"] == singles
    assert set(result["answers"]) == {"reasonable_selection", "first_runs_enough", "linear_or_log"}
    assert "the seed's table" in out and "answers:" in out
    # the first-runs recipes learnt from run1 and run2 only
    recipe = json.loads((tmp_path / "recipes" / "first-log" / "recipe.json").read_text())
    assert [p.rsplit("/", 1)[-1] for p in recipe["files"]] == ["train-first-run1.cxi", "train-first-run2.cxi"]
    # a second run reuses the files and models: the same figures
    assert command.main(args) == 0
    again = json.loads((tmp_path / "seed-questions.json").read_text())
    assert again["per_run_f1"] == result["per_run_f1"]


def test_differences_are_paired_and_their_intervals_cover_the_point():
    rng = np.random.default_rng(3)
    labels = rng.random(600) < 0.4
    run_of = np.repeat(np.arange(5), 120)
    perfect = labels.copy()
    noisy = labels ^ (rng.random(600) < 0.15)
    sel = {"all-log": perfect, "first-log": noisy, "all-linear": noisy, "first-linear": noisy}
    d = sq.differences(sel, labels, run_of, later=[2, 3, 4], n_boot=200)
    assert set(d) == {"first_runs_log", "first_runs_linear", "log_minus_linear"}
    assert d["first_runs_linear"]["difference"] == 0.0 and d["first_runs_linear"]["interval_95"] == [0.0, 0.0]
    lo, hi = d["first_runs_log"]["interval_95"]
    assert 0 < lo <= d["first_runs_log"]["difference"] <= hi
    # log - linear: (1 + F1(noisy)) / 2 - F1(noisy) > 0, clearly
    assert d["log_minus_linear"]["interval_95"][0] > 0
    out = sq.answers({**_result({k: [0.9] * 5 for k in sel}), "differences": d})
    assert out["linear_or_log"].startswith("log") and "95 %" in out["linear_or_log"]


@pytest.mark.slow
def test_a_selection_is_judged_by_the_mean_over_its_starts(tmp_path, dragonfly_emc):
    """Two EMC starts of one small selection: both kept, the per-shell mean lies between
    their extremes, and the figures name both seeds."""
    from spidarknet.frames.source import FrameKey
    from spidarknet.hits import HitList
    from spidarknet.simulate import simulate_file
    from spidarknet.judge.structure import TruthModel

    cxi = tmp_path / "ico.cxi"
    simulate_file(cxi, 120, seed=5, fractions={"single": 1.0}, particle_shape="icosahedron",
                  size_range_nm=(70.0, 70.0), shape=(128, 128), pixel_size_m=300e-6, photons=10000.0,
                  centre_jitter_px=0.0)
    hits = tmp_path / "hits.csv"
    HitList([FrameKey(str(cxi), "/entry_1/data_1/data", i) for i in range(120)], np.ones(120),
            np.zeros((120, 4)), 0.5).write_csv(hits)
    config = sq.SeedConfig(workdir=tmp_path, recon_iterations=3, recon_num_div=2, recon_q_max=0.45,
                           recon_seeds=(0, 1))
    out = sq._reconstruct(hits, tmp_path / "recon" / "all", TruthModel("icosahedron", 70.0), config)
    assert (tmp_path / "recon" / "all" / "seed0" / "intensity.h5").exists()
    assert (tmp_path / "recon" / "all" / "seed1" / "intensity.h5").exists()
    cc, lo, hi = (np.array(out[k]) for k in ("cc", "cc_min", "cc_max"))
    assert len(cc) == len(out["q_inv_nm"]) > 5 and np.all(lo <= cc + 1e-12) and np.all(cc <= hi + 1e-12)
    assert out["seeds"] == [0, 1] and len(out["mean_cc_per_seed"]) == 2
    assert out["mean_cc"] == pytest.approx(np.mean(out["mean_cc_per_seed"]))
    assert np.any(hi - lo > 0)                      # two starts, two different optima
