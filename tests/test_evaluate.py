"""evaluate (P/R/F1, curves, thresholds, coverage checks) and compare (counts, Jaccard)."""

import csv
import json
import os

import h5py
import numpy as np
import pytest

from spidarknet.cli import compare as compare_cmd
from spidarknet.cli import evaluate as evaluate_cmd
from spidarknet.cli import select as select_cmd
from spidarknet.core import metrics
from spidarknet.frames.source import FrameKey
from spidarknet.hits import HitList, read_hits
from spidarknet.hits import write_selected
from spidarknet.judge.breakdown import PHOTON_EDGES, RANGE_BINS
from spidarknet.judge.evaluation import MAX_CURVE_POINTS, evaluate

DATA = "/entry_1/data_1/data"


@pytest.fixture(scope="module")
def labels(small_cxi):
    with h5py.File(small_cxi) as f:
        return f["truth/label"][()].astype(bool)


@pytest.fixture()
def hit_list(small_cxi, labels, tmp_path):
    """Scores from the truth plus noise (a detector that is good, not perfect)."""
    rng = np.random.default_rng(5)
    scores = np.clip(0.5 * labels + rng.normal(0.25, 0.17, len(labels)), 0, 1)
    keys = [FrameKey(str(small_cxi), DATA, i) for i in range(len(labels))]
    hits = HitList(keys, scores, np.tile([400.0, 400.0, 224.0, 224.0], (len(labels), 1)), 0.5)
    path = tmp_path / "hits.csv"
    hits.write_csv(path)
    return path, hits


def test_evaluate_reports_the_figures_at_the_threshold_and_suggests_thresholds(hit_list, labels, tmp_path,
                                                                                capsys):
    path, hits = hit_list
    out = tmp_path / "eval.json"
    assert evaluate_cmd.main([str(path), "--truth-dataset", "/truth/label", "--beta", "0.5",
                              "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "suggested thresholds" in printed and "F0.5" in printed
    result = json.loads(out.read_text())
    selected = hits.scores >= 0.5
    tp = int(np.sum(selected & labels))
    fp = int(np.sum(selected & ~labels))
    fn = int(np.sum(~selected & labels))
    at = result["at_threshold"]
    assert (at["tp"], at["fp"], at["fn"]) == (tp, fp, fn)
    assert at["precision"] == pytest.approx(tp / (tp + fp))
    assert at["recall"] == pytest.approx(tp / (tp + fn))
    assert at["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    p, r = at["precision"], at["recall"]
    assert at["f0.5"] == pytest.approx(1.25 * p * r / (0.25 * p + r))
    assert result["confusion_matrix"]["matrix"] == [[at["tn"], fp], [fn, tp]]
    assert result["positives"] == labels.sum() and result["frames"] == len(labels)
    assert 0.5 < result["roc_auc"] <= 1.0 and 0 < result["average_precision"] <= 1.0
    # every threshold: the suggested max-F1 one is the best, the high-recall one reaches the target
    f1_all = []
    for t in np.unique(hits.scores):
        s = hits.scores >= t
        tp_t = np.sum(s & labels)
        f1_all.append(2 * tp_t / (2 * tp_t + np.sum(s & ~labels) + np.sum(~s & labels)))
    best = result["suggested_thresholds"]["max_f1"]
    assert best["f1"] == pytest.approx(max(f1_all))
    high = result["suggested_thresholds"]["high_recall"]
    assert high["recall"] >= 0.9 and high["target_reached"]
    reaching = [np.sum((hits.scores >= t) & labels) / np.sum((hits.scores >= t))
                for t in np.unique(hits.scores) if np.sum((hits.scores >= t) & labels) >= 0.9 * labels.sum()]
    assert high["precision"] == pytest.approx(max(reaching))
    assert "max_f0.5" in result["suggested_thresholds"]
    pr = result["pr_curve"]
    assert len(pr["precision"]) == len(pr["recall"]) == len(pr["threshold"]) <= MAX_CURVE_POINTS
    assert result["roc_curve"]["fpr"][0] == 0.0 and result["roc_curve"]["tpr"][-1] == 1.0


def test_curves_are_subsampled_to_200_points():
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.1
    scores = rng.random(5000) + labels
    result = evaluate(scores, labels, 1.0)
    for curve in ("pr_curve", "roc_curve"):
        values = next(iter(result[curve].values()))
        assert 150 <= len(values) <= MAX_CURVE_POINTS
    assert result["pr_curve"]["recall"][-1] == 1.0          # the last point (all selected) is kept


def test_truth_from_a_csv_matched_by_file_name(hit_list, labels, tmp_path, capsys):
    path, _ = hit_list
    truth = tmp_path / "truth.csv"
    with open(truth, "w") as handle:
        handle.write("file,index,label\n")
        for i, value in enumerate(labels):
            handle.write(f"small.cxi,{i},{int(value)}\n")        # base name only
    assert evaluate_cmd.main([str(path), "--truth", str(truth)]) == 0
    assert f"{labels.sum()} positive" in capsys.readouterr().out


def test_coverage_mismatch_names_the_missing_frames_on_each_side(small_cxi, labels, tmp_path, capsys):
    keys = [FrameKey(str(small_cxi), DATA, i) for i in range(10, 60)]
    HitList(keys, np.linspace(0, 1, 50), np.zeros((50, 4)), 0.5).write_csv(tmp_path / "part.csv")
    out = tmp_path / "e.json"
    assert evaluate_cmd.main([str(tmp_path / "part.csv"), "--truth-dataset", "/truth/label",
                              "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "10 of the 60 frames with truth are not in the hit list" in err and "small.cxi:0" in err
    assert "--common-only" in err
    assert not out.exists()
    # a truth CSV that lacks some hit-list frames and names others: both counts
    truth = tmp_path / "truth.csv"
    truth.write_text("".join(f"small.cxi,{i},{int(labels[i])}\n" for i in range(0, 40)))
    assert evaluate_cmd.main([str(tmp_path / "part.csv"), "--truth", str(truth)]) == 1
    err = capsys.readouterr().err
    assert "20 of the hit list's 50 frames have no truth" in err and "small.cxi:40" in err
    assert "10 of the 40 frames with truth are not in the hit list" in err
    # --common-only evaluates the 30 frames both cover
    assert evaluate_cmd.main([str(tmp_path / "part.csv"), "--truth", str(truth), "--common-only",
                              "--out", str(out)]) == 0
    assert json.loads(out.read_text())["frames"] == 30


def test_truth_without_positives_is_a_clear_error(hit_list, labels, tmp_path, capsys):
    path, _ = hit_list
    truth = tmp_path / "zeros.csv"
    truth.write_text("".join(f"small.cxi,{i},0\n" for i in range(len(labels))))
    assert evaluate_cmd.main([str(path), "--truth", str(truth)]) == 1
    err = capsys.readouterr().err
    assert "none of the 60 frames as a positive" in err
    assert evaluate_cmd.main([str(path), "--truth-dataset", "/truth/kind"]) == 1
    assert "not 0/1 labels" in capsys.readouterr().err
    assert evaluate_cmd.main([str(path), "--truth-dataset", "/truth/nothing"]) == 1
    assert "has no truth dataset /truth/nothing" in capsys.readouterr().err


def test_a_mistyped_truth_dataset_names_the_nearest_and_its_neighbours(hit_list, capsys):
    """``/truth/labels`` for /truth/label: the error names it and lists the datasets beside it first."""
    path, _ = hit_list
    assert evaluate_cmd.main([str(path), "--truth-dataset", "/truth/labels"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "has no truth dataset /truth/labels (did you mean /truth/label? datasets in the file: /truth/" in err
    listed = err.split("datasets in the file: ")[1].split(";")[0].split(", ")
    assert all(entry.startswith("/truth/") for entry in listed[:8]), err  # its neighbours, per-frame ones


def test_evaluate_uses_the_hit_column_as_written(hit_list, labels, tmp_path):
    """A hit list narrowed by 'select' (hit=0 for some frames above the threshold)."""
    _, hits = hit_list
    flags = (hits.scores >= 0.5) & labels                    # a perfect size filter
    write_selected(hits, flags, tmp_path / "sel.csv")
    out = tmp_path / "e.json"
    assert evaluate_cmd.main([str(tmp_path / "sel.csv"), "--truth-dataset", "/truth/label",
                              "--out", str(out)]) == 0
    at = json.loads(out.read_text())["at_threshold"]
    assert at["fp"] == 0 and at["precision"] == 1.0 and at["selected"] == flags.sum()


def test_a_size_window_is_part_of_the_threshold_sweep(hit_list, small_cxi, labels, tmp_path, capsys):
    """A hit column narrowed by a size window: the suggested max-F1 threshold is at least as
    good as the list itself (before, the sweep ignored the window and suggested a worse one)."""
    _, hits = hit_list
    with h5py.File(small_cxi) as f:
        diameter = f["truth/diameter_nm"][()]
    window = (diameter >= 60) & (diameter <= 75)            # a sizer that is always right
    flags = (hits.scores >= 0.5) & window
    assert ((hits.scores >= 0.5) & ~window).any()             # the window dropped frames above the threshold
    write_selected(hits, flags, tmp_path / "sized.csv", meta={"size_range_nm": [60.0, 75.0]})
    out = tmp_path / "e.json"
    assert evaluate_cmd.main([str(tmp_path / "sized.csv"), "--truth-dataset", "/truth/label",
                              "--out", str(out)]) == 0
    assert "as never selected" in capsys.readouterr().out
    result = json.loads(out.read_text())
    own = result["at_threshold"]["f1"]
    tp = np.sum(flags & labels)
    assert own == pytest.approx(2 * tp / (flags.sum() + labels.sum()))
    # what the old sweep (scores alone, window ignored) suggested is worse than the list
    old = metrics.best_f_threshold(hits.scores, labels)
    assert metrics.confusion(hits.scores, labels, old).f1 < own
    best = result["suggested_thresholds"]["max_f1"]
    assert best["f1"] >= own
    # the suggestion's figures are those of the window's rule at that threshold
    chosen = (hits.scores >= best["threshold"]) & ~((hits.scores >= 0.5) & ~window)
    assert best["selected"] == chosen.sum() and best["precision"] == pytest.approx(
        np.sum(chosen & labels) / chosen.sum())
    assert result["sweep"]["dropped_frames"] == int(np.sum((hits.scores >= 0.5) & ~window))
    assert max(result["pr_curve"]["recall"]) <= 1.0


def test_select_size_range_then_evaluate_a_real_hit_list(heldout_hits, heldout_cxi, tmp_path):
    """detect, then the real 'select --size-range' (sphere fits), then evaluate: the
    max-F1 suggestion is never worse than the windowed list's own F1."""
    sized = tmp_path / "sized.csv"
    assert select_cmd.main([str(heldout_hits), "--threshold", "0.2", "--size-range", "60", "75",
                            "--out", str(sized), "--quiet"]) == 0
    hits = read_hits(sized)
    assert hits.selected is not None and hits.n_hits < int(np.sum(hits.scores >= 0.2))
    out = tmp_path / "e.json"
    assert evaluate_cmd.main([str(sized), "--truth-dataset", "/truth/label", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["at_threshold"]["selected"] == hits.n_hits
    assert result["sweep"]["dropped_frames"] == int(np.sum(hits.scores >= 0.2)) - hits.n_hits
    assert result["suggested_thresholds"]["max_f1"]["f1"] >= result["at_threshold"]["f1"]


def test_evaluate_by_kind_and_photon_bins_of_a_real_hit_list(heldout_hits, heldout_cxi, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert evaluate_cmd.main([str(heldout_hits), "--truth-dataset", "/truth/label", "--by", "/truth/kind",
                              "--by", "/truth/n_particles", "--by", "/truth/diameter_nm", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "by /truth/kind" in printed and "by photons per frame" in printed and "single" in printed
    with h5py.File(heldout_cxi) as f:
        kind = f["truth/kind"][()]
        label = f["truth/label"][()].astype(bool)
        photons = f["truth/photons"][()]
    hits = read_hits(heldout_hits)
    assert 0 < hits.n_hits < len(hits)
    rows = np.array([k.index for k in hits.keys])
    selected = np.zeros(len(kind), dtype=bool)
    selected[rows] = hits.hits
    result = json.loads(out.read_text())
    by_kind = result["by"]["/truth/kind"]["categories"]
    names, counts = np.unique(kind, return_counts=True)
    assert {c["category"]: c["frames"] for c in by_kind} == {n.decode(): int(m) for n, m in zip(names, counts)}
    assert sum(c["frames"] for c in by_kind) == len(hits) == len(kind)
    assert sum(c["selected"] for c in by_kind) == hits.n_hits == result["at_threshold"]["selected"]
    assert sum(c["positives"] for c in by_kind) == label.sum()
    for c in by_kind:
        member = kind == c["category"].encode()
        assert c["selected"] == np.sum(member & selected)
        assert c["selected_share"] == pytest.approx(c["selected"] / c["frames"])
        if c["positives"]:
            assert c["recall"] == pytest.approx(np.sum(member & selected & label) / np.sum(member & label))
        else:
            assert c["recall"] is None
    assert sum(c["frames"] for c in result["by"]["/truth/n_particles"]["categories"]) == len(kind)
    # a diameter has too many values to list: ranges of about equal counts, NaN (empty shots) apart
    ranges = result["by"]["/truth/diameter_nm"]["categories"]
    assert len(ranges) <= RANGE_BINS + 1 and ranges[-1]["category"] == "n/a"
    assert ranges[-1]["frames"] == np.sum(kind == b"empty")
    assert sum(c["frames"] for c in ranges) == len(kind)
    # photon bins (default /truth/photons): counts add up and match the stated edges
    bins = result["photon_bins"]
    assert bins["edges"] == list(PHOTON_EDGES) and len(bins["bins"]) == len(PHOTON_EDGES) + 1
    expected = np.histogram(photons, bins=[0, *PHOTON_EDGES, np.inf])[0]
    assert [b["frames"] for b in bins["bins"]] == expected.tolist()
    assert sum(b["selected"] for b in bins["bins"]) == hits.n_hits
    assert sum(b["positives"] for b in bins["bins"]) == label.sum()
    assert sum(b["tp"] for b in bins["bins"]) == result["at_threshold"]["tp"]
    for b in bins["bins"]:
        assert b["tp"] + b["fp"] + b["tn"] + b["fn"] == b["frames"]
        if b["positives"]:
            assert b["f1"] == pytest.approx(2 * b["tp"] / (2 * b["tp"] + b["fp"] + b["fn"]))


def test_by_a_truth_csv_column_and_unknown_names(heldout_hits, heldout_cxi, tmp_path, capsys):
    with h5py.File(heldout_cxi) as f:
        kind = f["truth/kind"][()]
        label = f["truth/label"][()]
    truth = tmp_path / "truth.csv"
    truth.write_text("file,index,label,kind\n" + "".join(f"heldout.cxi,{i},{label[i]},{k.decode()}\n"
                                                         for i, k in enumerate(kind)))
    out = tmp_path / "e.json"
    assert evaluate_cmd.main([str(heldout_hits), "--truth", str(truth), "--by", "kind", "--out", str(out)]) == 0
    categories = json.loads(out.read_text())["by"]["kind"]["categories"]
    assert {c["category"]: c["frames"] for c in categories} == {
        n.decode(): int(np.sum(kind == n)) for n in np.unique(kind)}
    capsys.readouterr()
    # a dataset that does not exist: one error line naming what does
    assert evaluate_cmd.main([str(heldout_hits), "--truth-dataset", "/truth/label", "--by", "/truth/knd"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --by /truth/knd") and err.count("\n") == 1
    assert "/truth/kind" in err and "/truth/photons" in err
    # a column the truth CSV lacks (and no such dataset either): its columns are named
    assert evaluate_cmd.main([str(heldout_hits), "--truth", str(truth), "--by", "knd"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --by knd") and err.count("\n") == 1 and "file, index, label, kind" in err
    # a photon dataset that does not exist, and edges that do not increase
    assert evaluate_cmd.main([str(heldout_hits), "--truth-dataset", "/truth/label",
                              "--photons-dataset", "/truth/nothing"]) == 1
    assert "--photons-dataset /truth/nothing" in capsys.readouterr().err
    assert evaluate_cmd.main([str(heldout_hits), "--truth-dataset", "/truth/label",
                              "--photon-bins", "1e4", "1e3"]) == 1
    assert "increasing" in capsys.readouterr().err


def test_compare_counts_intersections_and_jaccard(hit_list, small_cxi, labels, tmp_path, capsys):
    path, hits = hit_list
    with h5py.File(small_cxi) as f:
        kind = f["truth/kind"][()]
    manual = tmp_path / "manual.csv"
    manual.write_text("file,index\n" + "".join(f"small.cxi,{i}\n" for i in np.flatnonzero(labels)))
    em = tmp_path / "em.csv"                                  # absolute paths, no header
    em.write_text("".join(f"{os.path.abspath(small_cxi)},{i}\n" for i in np.flatnonzero(kind == b"single")))
    out = tmp_path / "table.csv"
    assert compare_cmd.main([str(path), str(manual), str(em), "--names", "cnn", "manual", "em",
                             "--out", str(out)]) == 0
    table = capsys.readouterr().out
    sets = {"cnn": set(np.flatnonzero(hits.scores >= 0.5)), "manual": set(np.flatnonzero(labels)),
            "em": set(np.flatnonzero(kind == b"single"))}
    assert f"{len(sets['cnn'])} of 60" in table and "selected by all 3" in table
    with open(out, newline="") as handle:
        rows = {(r["a"], r["b"]): r for r in csv.DictReader(handle)}
    for (a, b), row in rows.items():
        inter, union = len(sets[a] & sets[b]), len(sets[a] | sets[b])
        assert int(row["intersection"]) == inter and int(row["union"]) == union
        assert float(row["jaccard"]) == pytest.approx(inter / union, abs=1e-4)
        assert f"{inter} ({inter / union:.2f})" in table
    assert len(rows) == 3
    js = tmp_path / "table.json"
    assert compare_cmd.main([str(path), str(manual), "--out", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["intersection_matrix"][0][1] == len(sets["cnn"] & sets["manual"])
    assert [s["kind"] for s in data["selections"]] == ["hit list", "selection"]


def test_compare_bad_inputs(hit_list, tmp_path, capsys):
    path, _ = hit_list
    assert compare_cmd.main([str(path)]) == 1
    assert "at least two" in capsys.readouterr().err
    assert compare_cmd.main([str(path), str(path), "--names", "a"]) == 1
    assert "one name per input" in capsys.readouterr().err
    assert compare_cmd.main([str(path), str(tmp_path / "missing.csv")]) == 1
    assert "does not exist" in capsys.readouterr().err
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (tmp_path / "x.csv").write_text(f"{a}/run.cxi,1\n{b}/run.cxi,2\n")
    (tmp_path / "y.csv").write_text("run.cxi,1\n")
    assert compare_cmd.main([str(tmp_path / "x.csv"), str(tmp_path / "y.csv")]) == 1
    assert "ambiguous" in capsys.readouterr().err
    assert compare_cmd.main([str(path), str(path), "--names", "a", "b", "--out", str(tmp_path / "t.txt")]) == 1
    assert ".csv or .json" in capsys.readouterr().err
