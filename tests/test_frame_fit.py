"""Frames the model does not fit (issue 11, item 3): padded frames, frames without a valid
pixel and NaN/negative values are said once per run, marked in the hit list, never
selected when unusable, with boxes inside the detector; --jobs 1 and 2 agree."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest

from spidarknet.cli import detect, evaluate, export_hits, select
from spidarknet.detection.local import boxes_to_frame_pixels
from spidarknet.frames.source import FrameSource
from spidarknet.hits import NO_VALID_PIXELS, OK, PADDED, read_hits
from spidarknet.preprocess import Preprocessing
from spidarknet.simulate import simulate_file

DETECTOR = "/entry_1/instrument_1/detector_1"


@pytest.fixture(scope="module")
def small_cxi(tmp_path_factory):
    """6 simulated frames of 200 x 200 pixels: smaller than the untrained model's 256-pixel crop."""
    path = tmp_path_factory.mktemp("fit") / "run7.cxi"
    simulate_file(path, 6, seed=5, shape=(200, 200))
    return path


@pytest.fixture(scope="module")
def bad_cxi(tmp_path_factory):
    """4 float frames with the geometry, mask and truth of a simulated 300 x 300 file:
    0 as simulated, 1 all NaN, 2 fully masked (per-frame mask), 3 with 10 NaN and 5
    negative pixels at valid places of the crop.  Returns (path, NaN/negative values in the crop)."""
    folder = tmp_path_factory.mktemp("bad")
    sim = folder / "sim.cxi"
    simulate_file(sim, 4, seed=6, shape=(300, 300))
    path = folder / "bad.cxi"
    with h5py.File(sim, "r") as src, h5py.File(path, "w") as dst:
        for name in ("cxi_version", "entry_1/instrument_1/source_1", "truth"):
            src.copy(src[name], dst, name=name)
        det = dst.create_group(DETECTOR)
        for name in ("distance", "x_pixel_size", "y_pixel_size", "corner_position", "mask_shared"):
            src.copy(src[f"{DETECTOR}/{name}"], det, name=name)
        data = src[f"{DETECTOR}/data"][()].astype(np.float32)
        valid = src[f"{DETECTOR}/mask_shared"][()] == 0
        mask = np.zeros(data.shape, dtype=np.uint32)
        data[1] = np.nan
        mask[2] = 1                                    # CXI bit 0x1: invalid
        info = FrameSource([str(sim)]).files[0]
        r0, r1, c0, c1 = Preprocessing().crop_box(info)
        rows, cols = np.nonzero(valid[r0:r1, c0:c1])
        data[3, rows[:10] + r0, cols[:10] + c0] = np.nan
        data[3, rows[-5:] + r0, cols[-5:] + c0] = -3.0
        det["data"] = data
        det["mask"] = mask
    return path, int(len(rows)) + 15  # frame 1's valid crop pixels and frame 3's 15


def _detect(capsys, inputs, out, weights, *extra):
    assert detect.main([*map(str, inputs), "--weights", str(weights), "--out", str(out), "--backend", "opencv",
                        "--quiet", *extra]) == 0
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _rows(path):
    return path.read_text().splitlines()


def test_boxes_clipped_to_the_detector():
    settings = Preprocessing()  # crop 256
    boxes = np.array([[0.5, 0.5, 1.0, 1.0], [0.1, 0.9, 0.4, 0.4], [0.5, 0.5, 0.0, 0.0]], dtype=np.float32)
    out = boxes_to_frame_pixels(boxes, settings, (-28, -28), (200, 200))
    x, y, w, h = out.T
    assert np.all(x >= -0.5) and np.all(y >= -0.5)
    assert np.all(x + w <= 199.5 + 1e-4) and np.all(y + h <= 199.5 + 1e-4)
    assert out[0] == pytest.approx([-0.5, -0.5, 200.0, 200.0])
    assert out[2] == pytest.approx([99.5, 99.5, 0.0, 0.0])  # the empty box at the crop's centre stays
    # a crop on the detector leaves the boxes as they were
    inside = boxes_to_frame_pixels(boxes, settings, (100, 100), (1024, 1024))
    assert np.array_equal(inside, boxes_to_frame_pixels(boxes, settings, (100, 100)))


def test_small_frames_are_padded_said_once_and_jobs_agree(small_cxi, untrained_weights, tmp_path, capsys):
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"hits{jobs}.csv"
        warnings = _detect(capsys, [small_cxi], out, untrained_weights, "--jobs", str(jobs), "--chunk", "2")
        results[jobs] = (warnings, _rows(out), json.loads(out.with_suffix(".json").read_text())["frame_checks"])
    assert results[1] == results[2]
    warnings, rows, checks = results[1]
    assert warnings == ["warning: 6 frames of run7.cxi are smaller than the model's crop (256x256 px): padded with "
                        "zeros (marked padded in the hit list, their scores may be low; boxes clipped to the "
                        "detector)"]
    assert checks["padded"] == {"frames": 6, "files": {str(small_cxi): {"frames": 6, "frame_shape": [200, 200],
                                                                        "crop_px": 256}}}
    assert checks["no_valid_pixels"]["frames"] == 0 and checks["masked_bad_values"]["values"] == 0
    assert rows[0].split(",")[-1] == "status"
    hits = read_hits(tmp_path / "hits1.csv")
    assert np.all(hits.status == PADDED)
    x, y, w, h = hits.boxes.T
    assert np.all(x >= -0.5) and np.all(y >= -0.5) and np.all(w >= 0) and np.all(h >= 0)
    assert np.all(x + w <= 199.5 + 0.05) and np.all(y + h <= 199.5 + 0.05)  # CSV keeps one decimal


def test_frames_without_valid_pixels_are_marked_and_never_selected(bad_cxi, untrained_weights, tmp_path, capsys):
    path, n_bad = bad_cxi
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"hits{jobs}.csv"
        warnings = _detect(capsys, [path], out, untrained_weights, "--jobs", str(jobs), "--chunk", "1",
                           "--threshold", "0")
        results[jobs] = (warnings, _rows(out), json.loads(out.with_suffix(".json").read_text())["frame_checks"])
    assert results[1] == results[2]
    warnings, rows, checks = results[1]
    assert warnings == [
        "warning: 2 frames of bad.cxi have no valid pixel in the model's crop (all NaN, negative or masked): "
        "marked no-valid-pixels in the hit list, never selected",
        f"warning: {n_bad} NaN or negative pixel values of bad.cxi were masked"]
    assert checks["no_valid_pixels"] == {"frames": 2, "files": {str(path): 2}}
    assert checks["masked_bad_values"] == {"values": n_bad, "files": {str(path): n_bad}}
    assert checks["padded"]["frames"] == 0
    hits = read_hits(tmp_path / "hits1.csv")
    assert hits.status.tolist() == [OK, NO_VALID_PIXELS, NO_VALID_PIXELS, OK]
    assert hits.hits.tolist() == [True, False, False, True]  # threshold 0 selects every judged frame
    assert [r.split(",")[-2:] for r in rows[1:]] == [["1", "ok"], ["0", "no-valid-pixels"],
                                                    ["0", "no-valid-pixels"], ["1", "ok"]]
    assert hits.scores[1] == 0 and hits.scores[2] == 0

    # select, evaluate and export-hits never select them and say how many there were
    sel = tmp_path / "sel.csv"
    assert select.main([str(tmp_path / "hits1.csv"), "--threshold", "0", "--out", str(sel), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "(2 without a valid pixel, never selected): 2 selected" in printed
    selected = read_hits(sel)
    assert selected.hits.tolist() == [True, False, False, True]
    assert selected.status.tolist() == hits.status.tolist()
    report = tmp_path / "eval.json"
    assert evaluate.main([str(tmp_path / "hits1.csv"), "--truth-dataset", "/truth/label", "--out", str(report),
                          "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 frames have no valid pixel (status no-valid-pixels): never selected" in printed
    result = json.loads(report.read_text())
    assert result["no_valid_pixel_frames"] == 2 and result["at_threshold"]["selected"] == 2
    lst = tmp_path / "hits.lst"
    assert export_hits.main([str(tmp_path / "hits1.csv"), "--lst", str(lst), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 frames without a valid pixel" in printed
    assert [line.split("//")[1] for line in lst.read_text().splitlines()] == ["0", "3"]


def test_old_hit_lists_without_status_still_read(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("file,dataset,index,score,x,y,w,h,hit\n"
                   "/a.cxi,/entry_1/data_1/data,0,0.900000,1.0,2.0,3.0,4.0,1\n"
                   "/a.cxi,/entry_1/data_1/data,1,0.000000,0.0,0.0,0.0,0.0,0\n")
    hits = read_hits(old)
    assert hits.status.tolist() == [OK, OK] and hits.hits.tolist() == [True, False]
    again = tmp_path / "again.csv"
    hits.write_csv(again)
    assert re.fullmatch(r".*,1,ok", _rows(again)[1]) and read_hits(again).hits.tolist() == [True, False]
    broken = tmp_path / "broken.csv"
    broken.write_text(old.read_text().splitlines()[0] + ",status\n/a.cxi,/d,0,0.5,0,0,0,0,1,lost\n")
    from spidarknet.core.errors import InputError
    with pytest.raises(InputError, match="status must be one of ok, padded, no-valid-pixels"):
        read_hits(broken)


def test_shards_and_follow_keep_the_marks(bad_cxi, untrained_weights, tmp_path, capsys):
    from spidarknet.cli import merge
    path, n_bad = bad_cxi
    parts = []
    for k in (1, 2):
        parts.append(str(tmp_path / f"part{k}.csv"))
        _detect(capsys, [path], parts[-1], untrained_weights, "--shard", f"{k}/2", "--threshold", "0")
    assert merge.main([*parts, "--out", str(tmp_path / "all.csv"), "--quiet"]) == 0
    merged = read_hits(tmp_path / "all.csv")
    assert merged.status.tolist() == [OK, NO_VALID_PIXELS, NO_VALID_PIXELS, OK]
    assert merged.hits.tolist() == [True, False, False, True]
    checks = json.loads((tmp_path / "all.json").read_text())["frame_checks"]
    assert checks["no_valid_pixels"]["frames"] == 2 and checks["masked_bad_values"]["values"] == n_bad

    followed = tmp_path / "follow.csv"
    warnings = _detect(capsys, [path], followed, untrained_weights, "--follow", "--idle", "0.3", "--threshold", "0")
    assert len(warnings) == 2 and "2 frames of bad.cxi have no valid pixel" in warnings[0]
    assert [r.split(",")[-1] for r in _rows(followed)[1:]] == ["ok", "no-valid-pixels", "no-valid-pixels", "ok"]
    assert read_hits(followed).hits.tolist() == [True, False, False, True]
