"""detect --follow on a file that another process is still writing (HDF5 SWMR)."""

import subprocess
import sys
import time

import h5py
import pytest

from spidarknet.commands import detect
from spidarknet.hits import read_hits

WRITER = """
import sys, time, json, h5py
src_path, out_path, n, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with h5py.File(src_path, "r") as src, h5py.File(out_path, "w", libver="latest") as out:
    det = out.create_group("entry_1/instrument_1/detector_1")
    for name in ("distance", "x_pixel_size", "y_pixel_size", "corner_position", "mask_shared"):
        src.copy(src["entry_1/instrument_1/detector_1/" + name], det, name)
    data = det.create_dataset("data", shape=(0, 1024, 1024), maxshape=(None, 1024, 1024),
                              chunks=(1, 1024, 1024), dtype="u2")
    out["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    out.swmr_mode = True
    frames = src["entry_1/data_1/data"]
    for i in range(n):
        data.resize((i + 1, 1024, 1024))
        data[i] = frames[i % frames.shape[0]]
        data.flush()
        time.sleep(pause)
"""




def test_every_frame_written_while_following_is_classified_once(untrained_weights, small_cxi, tmp_path):
    growing = tmp_path / "live.cxi"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(small_cxi), str(growing), "40", "0.05"])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with h5py.File(growing, "r", swmr=True) as f:
                    if "entry_1/data_1/data" in f:
                        break
            except OSError:
                pass
            time.sleep(0.05)
        out = tmp_path / "hits.csv"
        assert detect.main([str(growing), "--weights", str(untrained_weights), "--out", str(out), "--follow",
                            "--idle", "2", "--chunk", "4", "--quiet"]) == 0
    finally:
        assert writer.wait(timeout=60) == 0
    hits = read_hits(out)
    assert [k.index for k in hits.keys] == list(range(40))
    # the same frames scored after the fact give the same scores
    again = tmp_path / "again.csv"
    assert detect.main([str(growing), "--weights", str(untrained_weights), "--out", str(again), "--quiet", "--jobs", "1"]) == 0
    assert list(read_hits(again).scores) == pytest.approx(list(hits.scores), abs=1e-6)


def test_follow_refuses_several_files_and_stops_when_idle(untrained_weights, small_cxi, tmp_path, capsys):
    out = tmp_path / "h.csv"
    assert detect.main([str(small_cxi), str(small_cxi), "--weights", str(untrained_weights), "--out", str(out),
                        "--follow", "--quiet"]) == 1
    assert "exactly one input file" in capsys.readouterr().err
    started = time.monotonic()
    assert detect.main([str(small_cxi), "--weights", str(untrained_weights), "--out", str(out), "--follow",
                        "--idle", "0.5", "--frames", "50:", "--quiet"]) == 0
    assert time.monotonic() - started < 30
    assert [k.index for k in read_hits(out).keys] == list(range(50, 60))
