"""detect --follow on a file that another process is still writing (HDF5 SWMR)."""

import json
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from spidarknet.cli import detect
from spidarknet.hits import read_hits
from spidarknet.selection.features import HIT_COLUMNS
from spidarknet.simulate import MEASURED_LIKE_SETTINGS, simulate_file

WRITER = """
import os, sys, time, h5py
src_path, out_path, n, step, hits_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
# "rows": each step once the follower's rows of the one before are in the hit list; "paced":
# once the hit list is begun, a step every 0.5 s (rows that wait for the file's background
# shape come later; the follower looks every 0.2 s)
paced = len(sys.argv) > 6 and sys.argv[6] == "paced"


def rows_scored():
    try:
        with open(hits_path) as handle:
            return max(0, sum(1 for _ in handle) - 1)  # less the header
    except FileNotFoundError:
        return 0


with h5py.File(src_path, "r") as src, h5py.File(out_path, "w", libver="latest") as out:
    det = out.create_group("entry_1/instrument_1/detector_1")
    for name in ("distance", "x_pixel_size", "y_pixel_size", "corner_position", "mask_shared"):
        src.copy(src["entry_1/instrument_1/detector_1/" + name], det, name)
    data = det.create_dataset("data", shape=(0, 1024, 1024), maxshape=(None, 1024, 1024),
                              chunks=(1, 1024, 1024), dtype="u2")
    out["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    out.swmr_mode = True
    print("ready", flush=True)
    frames = src["entry_1/data_1/data"]
    for i in range(n):
        data.resize((i + 1, 1024, 1024))
        data[i] = frames[i % frames.shape[0]]
        data.flush()
        if (i + 1) % step == 0 and i + 1 < n:
            # the next frames only once the follower has scored these: written while it follows
            deadline = time.monotonic() + 60
            if paced:
                time.sleep(0.5)
            while (rows_scored() < i + 1) if not paced else not os.path.exists(hits_path):
                if time.monotonic() > deadline:
                    sys.exit(f"the follower scored {rows_scored()} of {i + 1} frames within 60 s")
                time.sleep(0.01)
"""


def test_every_frame_written_while_following_is_classified_once(untrained_weights, small_cxi, tmp_path):
    growing, out = tmp_path / "live.cxi", tmp_path / "hits.csv"
    # 40 frames in steps of 8, each step written once the rows of the one before are in the hit list
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(small_cxi), str(growing), "40", "8", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([writer.stdout], [], [], 60)
        assert ready and writer.stdout.readline() == "ready\n", "the writer did not open its file for SWMR"
        assert detect.main([str(growing), "--weights", str(untrained_weights), "--out", str(out), "--follow",
                            "--idle", "2", "--chunk", "4", "--quiet"]) == 0
    finally:
        assert writer.wait(timeout=60) == 0
        writer.stdout.close()
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


@pytest.mark.slow
def test_follow_applies_the_size_window_as_frames_arrive(small_cxi, tmp_path):
    """--follow --size-range: the network screens, the frames it lets through are fitted from
    the followed chunks, and the rows carry the fit and the reason, as the window gives
    them on the finished file (a file of fewer frames than a batch run samples for the
    background shape: the rows wait until it ends)."""
    growing, out = tmp_path / "live.cxi", tmp_path / "hits.csv"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(small_cxi), str(growing), "40", "10", str(out),
                               "paced"],
                              stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([writer.stdout], [], [], 60)
        assert ready and writer.stdout.readline() == "ready\n", "the writer did not open its file for SWMR"
        assert detect.main([str(growing), "--out", str(out), "--follow", "--size-range", "60", "75",
                            "--energy-ev", "1700", "--idle", "2", "--chunk", "5", "--quiet"]) == 0
    finally:
        assert writer.wait(timeout=120) == 0
        writer.stdout.close()
    followed = read_hits(out)
    assert [k.index for k in followed.keys] == list(range(40))
    after = tmp_path / "after.csv"
    assert detect.main([str(growing), "--out", str(after), "--size-range", "60", "75", "--energy-ev", "1700",
                        "--quiet", "--jobs", "1"]) == 0
    whole = read_hits(after)
    assert followed.hits.any() and list(followed.hits) == list(whole.hits)
    d0, d1 = followed.columns["diameter_nm"], whole.columns["diameter_nm"]
    assert np.allclose(d0, d1, equal_nan=True, atol=0.01)
    assert followed.columns["reason"] == whole.columns["reason"]


@pytest.mark.parametrize("frames", [64, 40])
def test_follow_fits_with_the_files_background_shape_as_detect_does(tmp_path, frames):
    """On a measured-like file (stray light) the followed fits have the file's background
    shape, found once the file holds the frames a batch run samples, or from all its frames
    when it ends before (40: the rows wait until the file is done): the rows' fit columns and
    reasons are those of detect --size-range on the finished file (with a flat background,
    empty shots under the stray light had hundreds of signal photons)."""
    path, followed, whole = tmp_path / "measured.cxi", tmp_path / "followed.csv", tmp_path / "whole.csv"
    simulate_file(path, frames, seed=11, settings=MEASURED_LIKE_SETTINGS, half_detector=True)
    assert detect.main([str(path), "--out", str(followed), "--follow", "--size-range", "60", "75", "--idle", "0.5",
                        "--chunk", "16", "--quiet"]) == 0
    assert detect.main([str(path), "--out", str(whole), "--size-range", "60", "75", "--jobs", "1", "--quiet"]) == 0
    followed, whole = read_hits(followed), read_hits(whole)
    assert [k.index for k in followed.keys] == list(range(frames))
    assert list(followed.hits) == list(whole.hits) and whole.n_hits >= 1
    for name in HIT_COLUMNS:
        np.testing.assert_allclose(followed.columns[name], whole.columns[name], rtol=1e-6, equal_nan=True,
                                   err_msg=name)
    assert followed.columns["reason"] == whole.columns["reason"]
    assert any("stray light" in reason for reason in followed.columns["reason"])  # the shape was used


def test_a_followed_file_s_rows_wait_until_the_background_shape_is_final(tmp_path):
    """The decider asks for the file's shape with every chunk that has frames to fit until the
    answer is final (a growing file holds the frames a batch run samples), then keeps it; the
    chunks scored before wait and come out in order, fitted with the final shape; what still
    waits when the file ends is decided with the shape of every frame written."""
    from spidarknet.frames.source import FrameSource
    from spidarknet.hits import HitList
    from spidarknet.selection.decide import ChunkDecider
    path = tmp_path / "small.cxi"
    simulate_file(path, 8, seed=3, shape=(256, 256), binning=2)
    asked = []

    def background(info, finished):
        asked.append(finished)
        return None, len(asked) == 2 or finished  # final at the second asking

    def hit_list(chunk):
        return HitList(list(chunk.keys), np.ones(len(chunk.keys)), np.zeros((len(chunk.keys), 4)), 0.5)

    decider = ChunkDecider(size_range=(60.0, 75.0), background=background)
    released = [decider(chunk, hit_list(chunk)) for chunk in FrameSource([str(path)]).chunks(2)]
    assert [[h.keys[0].index for h in r] for r in released] == [[], [0, 2], [4], [6]]
    assert asked == [False, False] and decider.finish() == []  # asked with the first two, kept after
    for hits in released[1]:
        assert "diameter_nm" in hits.columns and len(hits.columns["reason"]) == len(hits.keys)
    ending = ChunkDecider(size_range=(60.0, 75.0), background=lambda info, finished: (None, finished))
    chunk = next(iter(FrameSource([str(path)]).chunks(3)))
    assert ending(chunk, hit_list(chunk)) == []
    assert [h.keys[0].index for h in ending.finish()] == [0] and ending.finish() == []


def test_a_followed_file_that_pauses_has_its_waiting_rows_written(tmp_path):
    """A live view does not wait for frames that may not come: once the file has paused for
    FOLLOW_MAX_PAUSE_S, the rows waiting for the background shape are decided (flat) and
    written; the shape is still looked for with the next chunks."""
    from spidarknet.frames.source import FrameSource
    from spidarknet.hits import HitList
    from spidarknet.jobs.follow import FOLLOW_MAX_PAUSE_S, _on_pause
    from spidarknet.selection.decide import ChunkDecider
    path = tmp_path / "small.cxi"
    simulate_file(path, 4, seed=3, shape=(256, 256), binning=2)
    asked = []

    def background(info, finished):
        asked.append(finished)
        return None, False

    decider, written = ChunkDecider(size_range=(60.0, 75.0), background=background), []
    assert _on_pause(None, written) is None
    chunks = list(FrameSource([str(path)]).chunks(2))
    for chunk in chunks:
        hits = HitList(list(chunk.keys), np.ones(len(chunk.keys)), np.zeros((len(chunk.keys), 4)), 0.5)
        assert decider(chunk, hits) == []
    paused = _on_pause(decider, written)
    paused(FOLLOW_MAX_PAUSE_S / 2)
    assert written == []
    paused(FOLLOW_MAX_PAUSE_S)
    assert [h.keys[0].index for h in written] == [0, 2] and "reason" in written[0].columns
    assert asked == [False, False] and decider.finish() == []


def test_follow_refines_by_an_icosahedron_near_the_windows_edge(small_cxi, tmp_path):
    """--follow with a window (the icosahedron on by default): frame 55's sphere (69.7 nm,
    2.3 nm below a 60-72 nm window's edge) is refined by an icosahedron in the followed fits
    (69.1 nm); the summary records it."""
    from spidarknet.frames.source import FrameSource
    from spidarknet.hits import summary_path
    from spidarknet.selection.decide import decide
    out = tmp_path / "hits.csv"
    assert detect.main([str(small_cxi), "--out", str(out), "--follow", "--size-range", "60", "72",
                        "--idle", "0.5", "--frames", "55:", "--quiet"]) == 0
    followed = read_hits(out)
    assert [k.index for k in followed.keys] == list(range(55, 60))
    assert json.loads(summary_path(str(out)).read_text())["icosahedron"] is True
    sphere = read_hits(out)
    sphere.selected = None
    decide(sphere, FrameSource([str(small_cxi)], frames=slice(55, 60)), size_range=(60.0, 72.0), jobs=1,
           icosahedron=False)
    d_followed, d_sphere = followed.columns["diameter_nm"][0], sphere.columns["diameter_nm"][0]
    assert abs(d_sphere - 69.7) < 0.1 and abs(d_followed - 69.1) < 0.1
