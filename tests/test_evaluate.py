"""evaluate (P/R/F1, curves, thresholds, coverage checks) and compare (counts, Jaccard)."""

import csv
import json
import os

import h5py
import numpy as np
import pytest

from spidarknet.commands import compare as compare_cmd
from spidarknet.commands import evaluate as evaluate_cmd
from spidarknet.frames import FrameKey
from spidarknet.hits import HitList
from spidarknet.report.evaluation import MAX_CURVE_POINTS, evaluate
from spidarknet.report.selected import write_selected

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
