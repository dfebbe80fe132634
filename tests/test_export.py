"""export-dataset on simulated CXI files, proven against the real darknet engine."""

import csv
import json

import cv2
import h5py
import numpy as np
import pytest

from spidarknet.cli import export_dataset
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.data_folder import ExportedDataset, darknet_label_path
from spidarknet.preprocess import DEFAULT_Q_MAX_INV_NM, Preprocessing


def export(*args):
    return export_dataset.main([str(a) for a in args] + ["--quiet"])


@pytest.fixture(scope="module")
def exported(small_cxi, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "ds"
    assert export(small_cxi, "--labels-dataset", "/truth/label", "--out", out, "--max-batches", "2",
                  "--width-scale", "0.25", "--burn-in", "1", "--orientations", "1") == 0
    return out


def test_layout_lists_and_definitions(exported, small_cxi):
    for name in ("images", "labels", "backup", "train.txt", "valid.txt", "obj.names", "obj.data",
                 "yolov2-tiny-spi.cfg", "preprocess.json", "frames.csv", "export.json"):
        assert (exported / name).exists(), name
    data = dict(line.replace(" ", "").split("=") for line in (exported / "obj.data").read_text().splitlines())
    assert data == {"classes": "1", "train": "train.txt", "valid": "valid.txt", "names": "obj.names",
                    "backup": "backup"}
    assert (exported / "obj.names").read_text() == "single\n"
    cfg = DarknetCfg.load(exported / "yolov2-tiny-spi.cfg")
    assert cfg.input_size == (128, 128, 3) and cfg.classes == 1
    region_index, region = cfg.detection_layer()
    assert cfg.layers[region_index - 1].get_int("filters") == 30 and region.get("random") == "0"
    # the default crop is in q, the pixel default's 256 pixels on the simulator's pnCCD geometry,
    # with the beam stop in q of its 25-pixel beam stop (rounded down)
    settings = Preprocessing.load(exported / "preprocess.json")
    assert settings == Preprocessing(crop=None, q_max_inv_nm=DEFAULT_Q_MAX_INV_NM, q_min_inv_nm=0.1297)
    assert json.loads((exported / "export.json").read_text())["inputs"][0]["crop_px"] == 256
    train = (exported / "train.txt").read_text().split()
    valid = (exported / "valid.txt").read_text().split()
    assert len(train) + len(valid) == 60 and not set(train) & set(valid)
    assert len(valid) == pytest.approx(12, abs=1)
    assert all(not p.startswith("/") and p.startswith("images/") for p in train + valid)


def test_labels_follow_the_truth_and_boxes_are_valid(exported, small_cxi):
    with h5py.File(small_cxi) as f:
        truth = f["/truth/label"][()]
    rows = list(csv.DictReader(open(exported / "frames.csv")))
    assert len(rows) == 60
    for row in rows:
        label_text = (exported / darknet_label_path(row["image"])).read_text()
        index = int(row["index"])
        assert int(row["label"]) == truth[index]
        if truth[index]:
            cls, cx, cy, w, h = label_text.split()
            assert cls == "0"
            cx, cy, w, h = map(float, (cx, cy, w, h))
            assert 0.4 < cx < 0.6 and 0.4 < cy < 0.6   # centred on the beam
            assert 0.1 <= w <= 1 and 0.1 <= h <= 1
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
        else:
            assert label_text == ""  # negatives need an empty file, or darknet segfaults
        image = cv2.imread(str(exported / row["image"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    summary = json.loads((exported / "export.json").read_text())
    counts = summary["counts"]
    assert counts["train_single"] + counts["valid_single"] == int(truth.sum())
    assert counts["valid_single"] >= 1


def test_single_hits_are_brighter_than_empty_frames(exported, small_cxi):
    with h5py.File(small_cxi) as f:
        kinds = f["/truth/kind"][()]
    rows = {int(r["index"]): r["image"] for r in csv.DictReader(open(exported / "frames.csv"))}
    mean = {k: np.mean([cv2.imread(str(exported / rows[i])).mean() for i in range(60) if kinds[i] == k])
            for k in (b"single", b"empty")}
    assert mean[b"single"] > 2 * mean[b"empty"]


@pytest.mark.slow
def test_darknet_trains_on_the_export(exported, darknet_bin):
    """The format is proven by the engine itself: two real training iterations."""
    from spidarknet.engine.train import train
    ds = ExportedDataset.open(exported)
    result = train(ds, darknet_bin, log_path=exported / "train.log")
    assert [p.iteration for p in result.history] == [1, 2]
    assert all(np.isfinite(p.loss) for p in result.history)
    assert result.weights.is_file() and result.weights.name == "yolov2-tiny-spi_final.weights"
    assert "Couldn't open" not in (exported / "train.log").read_text()


def test_refuses_to_overwrite_without_force(exported, small_cxi, capsys):
    before = sorted(p.name for p in exported.iterdir())
    assert export(small_cxi, "--labels-dataset", "/truth/label", "--out", exported) == 1
    assert "already exists; use --force" in capsys.readouterr().err
    assert sorted(p.name for p in exported.iterdir()) == before


def test_force_replaces_and_no_staging_folder_is_left(small_cxi, tmp_path):
    out = tmp_path / "ds"
    assert export(small_cxi, "--labels-dataset", "/truth/label", "--out", out, "--frames", "0:30") == 0
    assert export(small_cxi, "--labels-dataset", "/truth/label", "--out", out, "--frames", "0:40",
                  "--force", "--size", "160", "--colormap", "viridis", "--orientations", "1") == 0
    assert len((out / "train.txt").read_text().split()) + len((out / "valid.txt").read_text().split()) == 40
    assert DarknetCfg.load(out / "yolov2-tiny-spi.cfg").input_size[0] == 160
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_selection_csvs_and_split_by_file(small_cxi, tmp_path):
    import shutil
    other = tmp_path / "late_run.cxi"
    shutil.copy(small_cxi, other)
    with h5py.File(small_cxi) as f:
        truth = f["/truth/label"][()]
    positives = tmp_path / "pos.csv"
    positives.write_text("file,index\n" + "".join(f"{small_cxi.name},{i}\n" for i in np.flatnonzero(truth))
                         + "".join(f"{other},{i}\n" for i in np.flatnonzero(truth)))
    negatives = tmp_path / "neg.csv"
    negatives.write_text("".join(f"{small_cxi},{i}\n" for i in range(5) if not truth[i])
                         + "".join(f"{other},{i}\n" for i in range(5) if not truth[i]))
    out = tmp_path / "ds"
    assert export(small_cxi, other, "--positives", positives, "--negatives", negatives,
                  "--valid-files", other, "--out", out, "--orientations", "1") == 0
    rows = list(csv.DictReader(open(out / "frames.csv")))
    n_neg = sum(1 for i in range(5) if not truth[i])
    assert len(rows) == 2 * (int(truth.sum()) + n_neg)  # unlisted frames are left out
    assert all((r["subset"] == "valid") == (r["file"] == str(other)) for r in rows)


def test_selection_naming_missing_frames_is_an_error(small_cxi, tmp_path, capsys):
    sel = tmp_path / "pos.csv"
    sel.write_text(f"{small_cxi},3\n{small_cxi},999\n")
    assert export(small_cxi, "--positives", sel, "--out", tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "1 frames that do not exist" in err and "small.cxi:999" in err
    assert not (tmp_path / "ds").exists()


def test_empty_class_and_missing_label_dataset(small_cxi, tmp_path, capsys):
    with h5py.File(small_cxi) as f:
        truth = f["/truth/label"][()]
    negatives_only = np.flatnonzero(truth == 0)
    first, last = negatives_only[0], negatives_only[0] + 1
    assert export(small_cxi, "--labels-dataset", "/truth/label", "--frames", f"{first}:{last}",
                  "--out", tmp_path / "a") == 1
    assert "no single-hit (positive) frames" in capsys.readouterr().err
    assert export(small_cxi, "--labels-dataset", "/truth/nope", "--out", tmp_path / "b") == 1
    err = capsys.readouterr().err
    assert "no label dataset /truth/nope" in err and "/truth/label" in err
    assert export(small_cxi, "--out", tmp_path / "c") == 1
    assert "give the labels either" in capsys.readouterr().err


def test_nan_and_negative_pixels_are_masked_with_a_warning(small_cxi, tmp_path, capsys):
    path = tmp_path / "float.cxi"
    with h5py.File(small_cxi) as src, h5py.File(path, "w") as dst:
        for name in ("entry_1/instrument_1/detector_1/distance", "entry_1/instrument_1/detector_1/x_pixel_size",
                     "entry_1/instrument_1/detector_1/y_pixel_size",
                     "entry_1/instrument_1/detector_1/corner_position", "truth/label"):
            src.copy(src[name], dst, name)
        data = src["/entry_1/data_1/data"][:12].astype(np.float32)
        data[:, 500:502, 400] = np.nan
        data[:, 520, 420] = -3.0
        dst["/entry_1/data_1/data"] = data
        label = np.zeros(12, dtype=np.int8)
        label[:3] = 1
        del dst["truth/label"]
        dst["truth/label"] = label
    assert export(path, "--labels-dataset", "/truth/label", "--out", tmp_path / "ds") == 0
    captured = capsys.readouterr()
    assert "warning: 36 NaN or negative pixel values were masked" in captured.err
    assert json.loads((tmp_path / "ds" / "export.json").read_text())["masked_bad_values"] == 36


def test_orientations_write_turned_training_copies_with_turned_boxes(small_cxi, tmp_path):
    out = tmp_path / "ds4"
    assert export(small_cxi, "--labels-dataset", "/truth/label", "--out", out, "--max-batches", "2",
                  "--orientations", "4") == 0
    train = (out / "train.txt").read_text().split()
    valid = (out / "valid.txt").read_text().split()
    assert len(train) == 4 * (60 - len(valid))  # validation frames are written once, as they are
    assert not any("_r" in p for p in valid)
    rows = {r["image"]: r for r in csv.DictReader(open(out / "frames.csv"))}
    assert set(rows) == set(train) | set(valid)
    assert json.loads((out / "export.json").read_text())["orientations"] == 4
    stems = [p[len("images/"):-len(".png")] for p in train if "_r" not in p]
    checked = 0
    for stem in stems:
        original = cv2.imread(str(out / "images" / f"{stem}.png"))
        box = (out / "labels" / f"{stem}.txt").read_text().split()
        for turns in (1, 2, 3):
            turned = cv2.imread(str(out / "images" / f"{stem}_r{turns}.png"))
            assert np.array_equal(turned, np.rot90(original, turns, axes=(0, 1)))
            assert rows[f"images/{stem}_r{turns}.png"]["index"] == rows[f"images/{stem}.png"]["index"]
            if box:
                cx, cy, w, h = map(float, box[1:])
                tcx, tcy, tw, th = map(float, (out / "labels" / f"{stem}_r{turns}.txt").read_text().split()[1:])
                for _ in range(turns):
                    cx, cy, w, h = cy, 1 - cx, h, w
                assert (tcx, tcy, tw, th) == pytest.approx((cx, cy, w, h), abs=2e-6)
                checked += 1
    assert checked >= 3


def test_orient_box_matches_the_image_for_a_marked_pixel():
    from spidarknet.dataset import ORIENTATIONS, orient_box, orient_image
    image = np.zeros((8, 8), dtype=np.uint8)
    image[1, 6] = 255  # row 1, column 6: normalised centre (6.5/8, 1.5/8)
    for turns, mirror in ORIENTATIONS:
        out = orient_image(image, turns, mirror)
        row, col = np.argwhere(out == 255)[0]
        cx, cy, _, _ = orient_box((6.5 / 8, 1.5 / 8, 0.1, 0.2), turns, mirror)
        assert (col + 0.5) / 8 == pytest.approx(cx) and (row + 0.5) / 8 == pytest.approx(cy)
