"""The engine end to end: training learns, backends agree, hit lists, bad inputs, crashes."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from child import sigint_as_ctrl_c
from spidarknet.cli import detect, train
from spidarknet.core import metrics
from spidarknet.core.errors import EngineError
from spidarknet.detection.local import PartialResult, detect_frames
from spidarknet.engine.cfg import DarknetCfg, configure_network, load_template
from spidarknet.engine.data_folder import ExportedDataset
from spidarknet.engine.detector import RegionSpec, clip_boxes, decode_region
from spidarknet.engine.model import load_model
from spidarknet.engine.weights import check_weights
from spidarknet.engine.workers import DarknetLibDetector
from spidarknet.frames.source import FrameSource
from spidarknet.hits import COLUMNS, read_hits


WEIGHTS = "backup/yolov2-tiny-spi_final.weights"


@pytest.fixture(scope="module")
def weights(trained):
    return trained / WEIGHTS


@pytest.fixture(scope="module")
def hit_lists(weights, heldout_cxi, tmp_path_factory):
    """The held-out file scored by every backend."""
    out = tmp_path_factory.mktemp("hits")
    lists = {}
    for backend in ("opencv", "darknet", "darknet-cli"):
        path = out / f"{backend}.csv"
        assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(path),
                            "--backend", backend, "--quiet", "--jobs", "2"]) == 0
        lists[backend] = read_hits(path)
    return lists


def test_training_learns_single_hits(hit_lists, heldout_cxi):
    """Held-out single hits score higher than the rest: AUC well above chance (0.5)."""
    hits = hit_lists["opencv"]
    with h5py.File(heldout_cxi) as f:
        truth = f["/truth/label"][()]
    labels = truth[[k.index for k in hits.keys]]
    auc = metrics.roc_auc(hits.scores, labels)
    # training is seeded (train --seed 0): the session's 500-iteration model scores 0.950 every run
    assert auc >= 0.8, f"held-out ROC AUC {auc:.3f} (the seeded session model gives 0.950 on every run)"


def test_model_card_makes_the_weights_self_contained(trained, weights):
    card = json.loads(weights.with_suffix(".json").read_text())
    assert 0 < card["threshold"] < 1
    v = card["validation"]
    assert v["n_frames"] == len((trained / "valid.txt").read_text().split()) and v["n_single"] > 0
    assert v["roc_auc"] > 0.7 and 0 <= v["f1"] <= 1
    assert card["iterations"] == 500 and card["preprocessing"]["size"] == 128
    assert DarknetCfg.parse(card["cfg"]).input_size == (128, 128, 3)
    model = load_model(weights)
    assert model.threshold == card["threshold"] and model.origin.startswith("model card")


def test_backends_agree_on_every_frame(hit_lists):
    """Tolerance 1e-3 in score; darknet-cli reports nothing below its 0.005 threshold."""
    ref = hit_lists["opencv"]
    lib, cli = hit_lists["darknet"], hit_lists["darknet-cli"]
    assert ref.keys == lib.keys == cli.keys
    assert np.abs(ref.scores - lib.scores).max() < 1e-3
    above = ref.scores > 0.006
    assert np.abs(ref.scores[above] - cli.scores[above]).max() < 1e-3
    assert np.all(cli.scores[~above] < 0.006)
    assert np.array_equal(ref.hits, lib.hits)
    # boxes agree too, in detector pixels
    assert np.abs(ref.boxes - lib.boxes).max() < 0.5


def test_hit_list_format(hit_lists, weights, heldout_cxi, tmp_path):
    path = tmp_path / "h.csv"
    assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(path), "--quiet",
                        "--frames", "0:30", "--threshold", "0.3"]) == 0
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0].keys()) == COLUMNS and len(rows) == 30
    assert [int(r["index"]) for r in rows] == list(range(30))
    for r in rows:
        assert r["file"] == str(heldout_cxi) and r["dataset"] == "/entry_1/data_1/data"
        assert int(r["hit"]) == (float(r["score"]) >= 0.3)
        x, y, w, h = (float(r[c]) for c in "xywh")
        assert 0 <= w <= 256 and 0 <= h <= 256 and 300 < x + w / 2 < 724 and 300 < y + h / 2 < 724
    summary = json.loads(path.with_suffix(".json").read_text())
    assert summary["threshold"] == 0.3 and summary["frames"] == 30
    assert summary["hits"] == sum(int(r["hit"]) for r in rows)
    assert summary["backend"] == "opencv" and summary["timing"]["frames_per_s"] > 0


def test_write_cxi_copies_the_selected_frames(weights, heldout_cxi, tmp_path):
    hits_path, cxi = tmp_path / "h.csv", tmp_path / "sel.cxi"
    assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(hits_path),
                        "--write-cxi", str(cxi), "--frames", "0:40", "--quiet"]) == 0
    hits = read_hits(hits_path)
    selected = [k.index for k in hits.selected_keys()]
    assert selected, "no frame selected"
    source = FrameSource([str(cxi)])
    assert source.files[0].n_frames == len(selected)
    assert source.files[0].geometry == FrameSource([str(heldout_cxi)]).files[0].geometry
    with h5py.File(cxi) as out, h5py.File(heldout_cxi) as src:
        assert np.array_equal(out["/spidarknet/source_index"][()], selected)
        assert np.array_equal(out["/entry_1/data_1/data"][-1], src["/entry_1/data_1/data"][selected[-1]])
        assert np.array_equal(out["/entry_1/instrument_1/detector_1/mask_shared"][()] != 0,
                              src["/entry_1/instrument_1/detector_1/mask_shared"][()] != 0)


def test_numpy_decoding_matches_darknets_own(trained, weights, libdarknet, tmp_path):
    """Our batched decoding of the region output equals get_network_boxes (struct layouts too)."""
    from spidarknet.engine.darknet_lib import LibDarknet
    cfg = DarknetCfg.load(trained / "yolov2-tiny-spi.cfg")
    cfg.net.options.update(batch="1", subdivisions="1")
    cfg.save(tmp_path / "b1.cfg")
    spec = RegionSpec.from_cfg(cfg)
    from spidarknet.detection.threshold import load_images
    ds = ExportedDataset.open(trained)
    image = load_images(ds, ds.valid_images[:1])
    lib = LibDarknet(libdarknet.path)
    lib.use_gpu(None)
    with lib.load(tmp_path / "b1.cfg", weights) as net:
        out = net.predict(image.transpose(0, 3, 1, 2).astype(np.float32) / 255, spec.outputs)
        theirs = net.region_boxes(spec.classes, thresh=0.0)
    ours = decode_region(out, spec)
    best = max(theirs, key=lambda d: max(d[2]))  # darknet's prob already includes the objectness
    assert len(theirs) == spec.grid * spec.grid * spec.num
    assert ours.scores[0] == pytest.approx(best[2][0], abs=1e-5)
    assert ours.scores[0] == pytest.approx(best[0], abs=1e-5)  # one class: prob == objectness
    assert ours.boxes[0] == pytest.approx(clip_boxes(np.array([best[1]]))[0], abs=1e-4)


def test_mismatched_or_truncated_weights_are_refused(trained, weights, tmp_path, heldout_cxi, capsys):
    cut = tmp_path / "cut.weights"
    cut.write_bytes(weights.read_bytes()[:-1000])
    cfg = DarknetCfg.load(trained / "yolov2-tiny-spi.cfg")
    with pytest.raises(EngineError, match="truncated or belong to another network"):
        check_weights(cfg, cut)
    wider = configure_network(load_template("yolov2-tiny-spi"), size=128, width_scale=0.5)
    with pytest.raises(EngineError, match="cfg and weights must match"):
        check_weights(wider, weights)
    wider.save(tmp_path / "wider.cfg")
    assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(tmp_path / "h.csv"),
                        "--cfg", str(tmp_path / "wider.cfg"), "--preprocess",
                        str(trained / "preprocess.json"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "parameters" in err and not (tmp_path / "h.csv").exists()
    junk = tmp_path / "junk.weights"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(EngineError, match="does not look like darknet weights"):
        check_weights(cfg, junk)


def test_cfg_from_another_data_set_is_refused(trained, tmp_path, capsys):
    other = configure_network(load_template("yolov2-tiny-spi"), size=160)
    other.save(tmp_path / "other.cfg")
    assert train.main([str(trained), "--cfg", str(tmp_path / "other.cfg"), "--quiet"]) == 1
    assert "expects 160x160 inputs but the images are 128x128" in capsys.readouterr().err


def test_weights_without_card_use_their_data_set(trained, heldout_cxi, tmp_path):
    backup = trained / "backup" / "yolov2-tiny-spi_100.weights"
    assert backup.is_file() and not backup.with_suffix(".json").exists()
    out = tmp_path / "h.csv"
    assert detect.main([str(heldout_cxi), "--weights", str(backup), "--out", str(out), "--frames", "0:8",
                        "--quiet"]) == 0
    assert len(read_hits(out)) == 8


def test_missing_engine_is_a_clear_error(trained, heldout_cxi, weights, tmp_path, capsys, monkeypatch):
    assert train.main([str(trained), "--darknet", str(tmp_path / "no-darknet"), "--quiet"]) == 1
    assert "does not exist or is not executable" in capsys.readouterr().err
    monkeypatch.setenv("SPIDARKNET_LIBDARKNET", str(tmp_path / "libnone.so"))
    assert detect.main([str(heldout_cxi), "--weights", str(weights), "--out", str(tmp_path / "h.csv"),
                        "--backend", "darknet", "--quiet"]) == 1
    assert "SPIDARKNET_LIBDARKNET" in capsys.readouterr().err


def test_unreadable_frames_leave_no_output(weights, tmp_path, capsys):
    bad = tmp_path / "bad.cxi"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    out = tmp_path / "h.csv"
    assert detect.main([str(bad), "--weights", str(weights), "--out", str(out), "--quiet"]) == 1
    assert "not a readable HDF5/CXI file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [bad]


def test_a_darknet_that_dies_mid_run_keeps_what_was_scored(trained, weights, libdarknet, heldout_cxi):
    model = load_model(weights)
    detector = DarknetLibDetector(libdarknet.path, trained / "yolov2-tiny-spi.cfg", weights, model.spec,
                                  batch=8, workers=1)
    chunks = []

    def kill_after_first(n):
        chunks.append(n)
        if len(chunks) == 1:
            proc = detector.pool.workers[0].proc
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    try:
        with pytest.raises(PartialResult, match="killed by SIGKILL") as info:
            detect_frames(FrameSource([str(heldout_cxi)], frames=slice(0, 48)), model.preprocessing, detector,
                          model.threshold, chunk_frames=16, on_chunk=kill_after_first)
    finally:
        detector.close()
    assert len(info.value.hits) == 16 and [k.index for k in info.value.hits.keys] == list(range(16))


def _darknet_workers() -> list[int]:
    """Process ids of this process's darknet worker children (spidarknet.engine.workers)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        try:
            if not proc_dir.name.isdigit():
                continue
            ppid = int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and b"spidarknet.engine.workers" in (proc_dir / "cmdline").read_bytes():
                found.append(int(proc_dir.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def _wait_until_dead(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` is a zombie or gone (it is not ours to reap: its Popen does that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"darknet worker {pid} still alive {timeout} s after SIGKILL")


def test_detect_writes_the_frames_scored_before_the_engine_failed_as_partial(untrained_weights, small_cxi,
                                                                               tmp_path, capsys, monkeypatch):
    """'spidarknet detect' with the darknet backend: its real libdarknet workers are killed once
    the first chunk is scored.  The one hook is the progress bar (cli.progress), which detect
    updates after each chunk: it is where the test learns that a chunk is done."""
    common = [str(small_cxi), "--weights", str(untrained_weights), "--frames", "0:48", "--backend", "darknet",
              "--jobs", "1", "--chunk", "16", "--batch", "8", "--quiet"]
    whole = tmp_path / "whole.csv"
    assert detect.main([*common, "--out", str(whole)]) == 0
    capsys.readouterr()
    real_progress = detect.cli.progress
    killed = []

    def progress(*args, **kwargs):
        bar = real_progress(*args, **kwargs)
        update = bar.update

        def update_then_kill(n=1):
            update(n)
            if not killed:
                killed.extend(_darknet_workers())
                assert killed, "no darknet worker process found"
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
                for pid in killed:
                    _wait_until_dead(pid)
        bar.update = update_then_kill
        return bar

    monkeypatch.setattr(detect.cli, "progress", progress)
    out = tmp_path / "hits.csv"
    assert detect.main([*common, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert killed and err.startswith("error: the darknet worker process was killed by SIGKILL"), err
    partial = Path(f"{out}.partial")
    assert f"16 frames scored before the failure are in {partial}" in err
    # the final hit list and its summary are not written; the partial list is a hit list
    assert not out.exists() and not out.with_suffix(".json").exists()
    part, full = read_hits(partial), read_hits(whole)
    assert [k.index for k in part.keys] == list(range(16))
    assert part.keys == full.keys[:16]
    assert np.array_equal(part.scores, full.scores[:16]) and np.array_equal(part.boxes, full.boxes[:16])
    from spidarknet.hits import summary_path
    summary = json.loads(summary_path(partial).read_text())
    assert summary["partial"] is True and summary["frames"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["whole.csv", "whole.json", partial.name, summary_path(partial).name])


def test_training_refuses_to_overwrite_and_resumes(trained, capsys):
    assert train.main([str(trained), "--quiet"]) == 1
    assert "use --resume to continue it" in capsys.readouterr().err
    # resuming at max_batches finishes at once and rewrites the card
    assert train.main([str(trained), "--resume", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "model card:" in out


@pytest.mark.slow
def test_ctrl_c_stops_training_cleanly(small_cxi, tmp_path):
    from spidarknet.cli import export_dataset
    ds = tmp_path / "ds"
    assert export_dataset.main([str(small_cxi), "--labels-dataset", "/truth/label", "--out", str(ds),
                                "--width-scale", "0.25", "--max-batches", "5000", "--quiet"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "spidarknet", "train", str(ds), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
                            preexec_fn=sigint_as_ctrl_c)
    log = ds / "train.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (log.exists() and " avg," in log.read_text()):
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it was interrupted: {proc.communicate()[1][-2000:]}"
    assert " avg," in log.read_text(), "training never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: darknet stopped" in err and "--resume" in err and "Traceback" not in err
    # darknet ran with the data set as its working directory: no such process may be left.  No
    # grace period: train waits for darknet before it exits, so darknet is gone by now
    left = []
    for proc_dir in Path("/proc").iterdir():
        try:
            if proc_dir.name.isdigit() and os.readlink(proc_dir / "cwd") == str(ds):
                left.append(proc_dir.name)
        except OSError:
            pass
    assert not left, f"processes still running in {ds}: {left}"


def test_pretrained_weights_start_a_new_training(trained, weights, small_cxi, tmp_path):
    from spidarknet.cli import export_dataset
    ds = tmp_path / "ds"
    assert export_dataset.main([str(small_cxi), "--labels-dataset", "/truth/label", "--out", str(ds),
                                "--width-scale", "0.25", "--max-batches", "3", "--quiet"]) == 0
    assert train.main([str(ds), "--pretrained", str(weights), "--quiet"]) == 0
    card = json.loads((ds / WEIGHTS).with_suffix(".json").read_text())
    assert card["iterations"] == 3  # -clear restarted the count from the pretrained weights' 500
    assert "-clear" in (ds / "train.log").read_text() and str(weights) in (ds / "train.log").read_text()
    wrong = tmp_path / "wrong.weights"
    wrong.write_bytes(weights.read_bytes() + b"\0" * 4000)
    assert train.main([str(ds), "--pretrained", str(wrong), "--force", "--quiet"]) == 1


def test_size_range_narrows_the_selection_to_the_window(weights, heldout_cxi, tmp_path):
    plain, sized = tmp_path / "plain.csv", tmp_path / "sized.csv"
    common = [str(heldout_cxi), "--weights", str(weights), "--frames", "0:40", "--quiet", "--threshold", "0.2"]
    assert detect.main([*common, "--out", str(plain)]) == 0
    assert detect.main([*common, "--out", str(sized), "--size-range", "60", "75"]) == 0
    a, b = read_hits(plain), read_hits(sized)
    assert a.keys == b.keys and np.array_equal(a.scores, b.scores)
    assert np.all(b.hits <= a.hits) and b.n_hits < a.n_hits
    with h5py.File(heldout_cxi) as f:
        kinds = f["/truth/kind"][()]
    # what the window dropped is mostly not a 60-75 nm single particle
    dropped = [k.index for k, x, y in zip(a.keys, a.hits, b.hits) if x and not y]
    assert sum(kinds[i] != b"single" for i in dropped) >= len(dropped) / 2
    assert json.loads(sized.with_suffix(".json").read_text())["size_range_nm"] == [60.0, 75.0]


def test_openmp_wait_policy_follows_the_load(monkeypatch):
    from spidarknet.engine import train as engine_train
    assert engine_train.omp_wait_policy("active") == "active"
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(engine_train.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert engine_train.omp_wait_policy("auto") == "active"
    monkeypatch.setattr(engine_train.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert engine_train.omp_wait_policy("auto") == "passive"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert engine_train.omp_wait_policy("auto") == "active"
