"""The learning curve of fine-tuning on a few labels, in miniature: real simulator, real
darknet, tiny files (512 × 512 detector, 64-pixel images) and a few iterations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spidarknet.experiments.learning_curve import (Experiment, format_learning_curve, pick_labels, pretrain,
                                       run_learning_curve)
from spidarknet.core.outputs import write_json
from spidarknet.preprocess import Preprocessing

SHAPE = (512, 512)


@pytest.mark.slow
def test_learning_curve_structure(tmp_path, darknet_bin):
    # pretrained on the default geometry with export's default crop in q (and the beam stop's
    # q as --q-min), which fine-tuning must repeat on the experiment's files
    weights = pretrain(tmp_path, frames=96, seed=11, options={"shape": SHAPE}, say=lambda _: None,
                       export_options={"size": 64, "scale": "log", "batch": 8, "max_batches": 60, "burn_in": 10})
    # the experiment: 2 x 2-binned at 0.25 m, so its pixels span the angle of the pretraining's
    experiment = Experiment(labelled_frames=60, test_frames=40, labelled_seed=21, test_seed=22,
                            options={"shape": SHAPE, "binning": 2, "distance_m": 0.25, "photons": 800.0,
                                     "half_detector": True})
    result = run_learning_curve(tmp_path / "lc", weights, (10, 20), experiment=experiment, iterations=12,
                                orientations=1, say=lambda _: None)

    labelled, test = result["experiment"]["labelled_file"], result["experiment"]["test_file"]
    assert labelled != test
    q = result["crop_q_max_inv_nm"]
    assert abs(q["experiment"] - q["pretraining"]) < 1e-3 * q["pretraining"]
    pre = Preprocessing.from_dict(result["pretrained"]["preprocessing"])
    assert (pre.q_max_inv_nm, pre.size, pre.scale) == (0.66, 64, "log") and pre.q_min_inv_nm > 0

    rows = {(r["labels"], r["arm"]): r for r in result["rows"]}
    assert sorted(rows) == [(10, "pretrained"), (10, "scratch"), (20, "pretrained"), (20, "scratch")]
    for (n, arm), row in rows.items():
        # exactly the N labelled frames, all from the labelled file: the test file trains nothing
        assert row["n_positive"] + row["n_negative"] == n and row["n_positive"] >= 1
        assert row["train_frames"] + row["valid_frames"] == n
        assert row["files"] == [labelled]
        listed = set()
        for name in ("train.txt", "valid.txt"):
            listed |= set((tmp_path / "lc" / "runs" / f"n{n}-{arm}" / "ds" / name).read_text().split())
        frames = (tmp_path / "lc" / "runs" / f"n{n}-{arm}" / "ds" / "frames.csv").read_text()
        assert test not in frames and len(listed) == n
        # fine-tuning exported the frames with the pretrained model's own preprocessing
        assert Preprocessing.load(f"{row['dataset']}/preprocess.json") == pre
        assert row["iterations"] == 12
        assert 0.0 <= row["test"]["roc_auc"] <= 1.0 or row["test"]["roc_auc"] != row["test"]["roc_auc"]
    for n in (10, 20):
        # the pretrained weights were loaded: the first iteration starts from a trained net
        assert rows[(n, "pretrained")]["first_loss"] < rows[(n, "scratch")]["first_loss"]
        assert rows[(n, "pretrained")]["steps"][1]["train"]["pretrained"] == str(weights.resolve())
        assert "pretrained" not in rows[(n, "scratch")]["steps"][1]["train"]
    assert set(result["zero_shot"]["from_labels"]) == {"10", "20"}

    # the labels are nested: the 10 are among the 20
    def listed_frames(n):
        out = set()
        for name in ("positives.csv", "negatives.csv"):
            out |= set((tmp_path / "lc" / "labels" / f"n{n}" / name).read_text().split()[1:])
        return out
    assert listed_frames(10) < listed_frames(20)

    table = format_learning_curve(result)
    assert "pretrained, own threshold" in table and table.count("fine-tuned") == 2
    write_json(result, tmp_path / "lc.json")
    assert json.loads((tmp_path / "lc.json").read_text())["schedule"]["iterations"] == 12

    # asked again with the same settings, nothing is trained again
    again = run_learning_curve(tmp_path / "lc", weights, (10, 20), experiment=experiment, iterations=12,
                               orientations=1, say=lambda _: None)
    assert [r["train_seconds"] for r in again["rows"]] == [r["train_seconds"] for r in result["rows"]]


def test_pick_labels_stratified_and_enriched():
    labels = np.r_[np.ones(30), np.zeros(170)].astype(int)  # hit ratio 0.15
    sets = pick_labels(labels, (20, 100), seed=3)
    assert [len(v) for v in sets.values()] == [20, 100]
    assert labels[sets[20]].sum() == 3 and labels[sets[100]].sum() == 15
    assert set(sets[20]) < set(sets[100])
    enriched = pick_labels(labels, (20,), positive_share=0.5)
    assert labels[enriched[20]].sum() == 10


def test_preprocess_options_round_trip():
    """The export settings of a model's preprocessing give it back, through the command line's
    options as through the library's."""
    from spidarknet.cli import export_dataset
    from spidarknet.experiments.learning_curve import preprocess_options
    from spidarknet.jobs import with_options
    from spidarknet.jobs.export_dataset import ExportSettings, preprocessing_for
    from spidarknet.frames.options import FrameOptions
    for settings in (Preprocessing(size=128, crop=256, scale="log"),
                     Preprocessing(size=64, crop=200, q_min_inv_nm=0.05, vmax=40.0, colormap="viridis",
                                   centre_px=(100.5, 99.0), adu_per_photon=12.5),
                     Preprocessing(size=128, crop=None, q_max_inv_nm=0.66, scale="sqrt"),
                     Preprocessing(size=128, crop=None, q_max_inv_nm=0.5, q_min_inv_nm=0.04)):
        export = with_options(ExportSettings(FrameOptions(("x.cxi",)), out="ds"), preprocess_options(settings))
        assert preprocessing_for(export.preprocessing) == settings
    # the command line's options name the same settings (bench --science --variant)
    assert export_dataset.options_of(["--q-max", "0.5", "--q-min", "0.04", "--size", "64", "--centre", "1", "2"]) == {
        "q_max_inv_nm": 0.5, "q_min_inv_nm": 0.04, "size": 64, "centre_px": (1.0, 2.0)}
