"""The monitor and labelling pages, driven in Debian's Chromium by Playwright (no browser download:
Playwright is pointed at the system's Chromium).  Screenshots of both pages are kept in the
artefacts folder ($SPIDARKNET_ARTEFACTS, default build/test-artefacts)."""

from __future__ import annotations

import http.client
import io
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import h5py
import numpy as np
import pytest

from child import sigint_as_ctrl_c
from spidarknet.core.selection import read_selection
from spidarknet.serve.monitor import (DIAMETER_EDGES, FIGURE_HEIGHT_PX, FIGURES, HIT_SIDE_PX, KEPT_HITS, LATEST_HITS,
                                     RATE_BINS, Monitor, MonitorState, make_figure)
from spidarknet.serve.server import host_warning


REPO = Path(__file__).resolve().parents[1]
ARTEFACTS = Path(os.environ.get("SPIDARKNET_ARTEFACTS", REPO / "build" / "test-artefacts"))
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def page():
    """A Chromium page (the system's browser, headless) driven by Playwright."""
    chromium = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    if chromium is None:
        pytest.fail("the page tests drive Chromium: install the Debian package 'chromium' (make system-deps)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def start(argv: list[str], timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """``python -m spidarknet ARGV --port 0`` and the address it prints once its page listens."""
    proc = subprocess.Popen([sys.executable, "-m", "spidarknet", *argv, "--port", "0"], stdout=subprocess.PIPE,
                            text=True, cwd=REPO, preexec_fn=sigint_as_ctrl_c)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not found:
        proc.kill()
        pytest.fail(f"{argv[0]} printed no address within {timeout} s: {line!r}")
    return proc, found.group(1)


def raw_status(url: str, path: str) -> int:
    """The status of GET ``path`` sent as it is (no client tidies the dots away)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> int:
    proc.send_signal(sig)
    code = proc.wait(timeout=30)
    proc.stdout.close()
    return code


class GrowingFile:
    """A CXI file written frame by frame (HDF5 SWMR), as a facility's DAQ writes it."""

    def __init__(self, source: Path, path: Path):
        self.src = h5py.File(source, "r")
        self.out = h5py.File(path, "w", libver="latest")
        det = self.out.create_group("entry_1/instrument_1/detector_1")
        for name in ("distance", "x_pixel_size", "y_pixel_size", "corner_position", "mask_shared"):
            self.src.copy(self.src["entry_1/instrument_1/detector_1/" + name], det, name)
        self.src.copy(self.src["entry_1/instrument_1/source_1"], self.out["entry_1/instrument_1"], "source_1")
        shape = self.src["entry_1/data_1/data"].shape[1:]
        self.data = det.create_dataset("data", shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape),
                                       dtype=self.src["entry_1/data_1/data"].dtype)
        self.out["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
        self.out.swmr_mode = True

    def append(self, first: int, stop: int) -> None:
        frames = self.src["entry_1/data_1/data"]
        for i in range(first, stop):
            self.data.resize((i + 1, *self.data.shape[1:]))
            self.data[i] = frames[i]
            self.data.flush()

    def close(self) -> None:
        self.out.close()
        self.src.close()


def shown_number(page, selector: str) -> int:
    return int(page.inner_text(selector))


@pytest.mark.slow
def test_monitor_numbers_follow_the_frames_appended_to_a_followed_file(page, small_cxi, tmp_path):
    growing, hits = GrowingFile(small_cxi, tmp_path / "live.cxi"), tmp_path / "hits.csv"
    growing.append(0, 12)
    proc, url = start(["detect", str(tmp_path / "live.cxi"), "--follow", "--monitor", "--out", str(hits),
                       "--size-range", "60", "75", "--idle", "60", "--chunk", "4", "--jobs", "1", "--quiet"])
    try:
        page.goto(url)
        page.wait_for_function("document.getElementById('frames').textContent === '12'", timeout=60_000)
        selected_before = shown_number(page, "#selected")
        growing.append(12, 40)
        page.wait_for_function("document.getElementById('frames').textContent === '40'", timeout=60_000)
        # what the page says is what the hit list says
        rows = [line.split(",") for line in hits.read_text().splitlines()[1:]]
        assert shown_number(page, "#selected") == sum(r[8] == "1" for r in rows) >= selected_before
        assert shown_number(page, "#selected") > 0
        page.wait_for_function("[...document.querySelectorAll('#hits img')].length > 0 && "
                               "[...document.querySelectorAll('#hits img, .figures img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        assert page.inner_text("#hit-rate").endswith("%")
        # the figures are one picture, and so are the latest hits: one request each per set
        figures = page.evaluate("[...document.querySelectorAll('.figures img')].map(i => i.src)")
        shown = page.evaluate("[...document.querySelectorAll('#hits img')].map(i => i.src)")
        assert len(figures) == len(FIGURES) and len(set(figures)) == 1
        assert 0 < len(shown) <= LATEST_HITS and len(set(shown)) == 1
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "monitor.png"), full_page=True)
        # only the page's own routes: no path reaches another file
        for path in ("/../../etc/passwd", "/hits/..%2F..%2Fetc%2Fpasswd", "/figures/..%2F..%2Fetc%2Fpasswd.png",
                     "/%2e%2e/%2e%2e/etc/passwd", "/hits/0.png/../../../etc/passwd", "/hits/0.png"):
            assert raw_status(url, path) == 404, path
    finally:
        growing.close()
        code = stop(proc, signal.SIGINT)
    assert code == 130  # interrupted: the follow stops and takes its page down
    with pytest.raises(OSError):
        raw_status(url, "/state")


@pytest.mark.slow
def test_label_page_by_keyboard_writes_rows_and_undo_removes_one(page, small_cxi, tmp_path):
    pos, neg, sel = tmp_path / "single.csv", tmp_path / "other.csv", tmp_path / "selection.json"
    proc, url = start(["label", str(small_cxi), "--positives", str(pos), "--negatives", str(neg), "--selection",
                       str(sel), "--n", "8", "--every", "3", "--jobs", "1", "--quiet"])

    def rows(path):
        return [(os.path.basename(e.file), e.index) for e in read_selection(str(path))] if path.exists() else []

    def press(key: str, labelled: int | None = None):
        row = page.evaluate("document.body.dataset.row")
        page.keyboard.press(key)
        if labelled is not None:
            page.wait_for_function(f"document.body.dataset.labelled === '{labelled}' && !document.body.dataset.busy")
        else:
            page.wait_for_function(f"document.body.dataset.row !== '{row}' && !document.body.dataset.busy")
        return row
    try:
        page.goto(url)
        page.wait_for_function("document.body.dataset.row !== undefined && document.getElementById('frame')"
                               ".complete && document.getElementById('frame').naturalWidth > 0", timeout=60_000)
        index_of = lambda: int(page.inner_text("#facts tr:first-child td:last-child").split("#")[1])  # noqa: E731
        first = index_of()
        press("1", labelled=1)
        assert rows(pos) == [(small_cxi.name, first)] and rows(neg) == []
        second = index_of()
        press("0", labelled=2)
        assert rows(neg) == [(small_cxi.name, second)]
        skipped = index_of()
        press("s")
        third = index_of()
        assert third != skipped
        press("1", labelled=3)   # the third label: the proposals are drawn again
        assert rows(pos) == [(small_cxi.name, first), (small_cxi.name, third)]
        assert "round 2" in page.inner_text("#counts")
        press("z", labelled=2)   # undo: the last label leaves its file, its frame is shown again
        assert rows(pos) == [(small_cxi.name, first)] and index_of() == third
        page.wait_for_function("document.getElementById('profile').complete && "
                               "document.getElementById('profile').naturalWidth > 0")
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "label.png"), full_page=True)
        for key, n in (("1", 3), ("0", 4), ("1", 5), ("0", 6)):
            press(key, labelled=n)
        page.click("#b-learn")
        page.wait_for_selector("#learnt-figures", timeout=120_000)
        assert "F1" in page.inner_text("#learnt-figures") and sel.exists()
        assert raw_status(url, "/../../etc/passwd") == 404 and raw_status(url, "/frame/100000.png") == 404
    finally:
        stop(proc, signal.SIGKILL)   # a killed server loses nothing: every label is in its file already
    assert len(rows(pos)) == 3 and len(rows(neg)) == 3
    assert not set(rows(pos)) & set(rows(neg))


def test_monitor_memory_is_bounded_whatever_the_run_length():
    now = [0.0]
    state = MonitorState(clock=lambda: now[0])
    for chunk in range(1000):   # 20,000 rows over 1,000 minutes
        now[0] = 60.0 * chunk
        state.add([{"file": "a.cxi", "dataset": "/d", "index": str(chunk * 20 + i), "score": f"{(i % 10) / 10:.2f}",
                    "hit": "1" if i % 4 == 0 else "0", "status": "ok", "x": "1", "y": "1", "w": "4", "h": "4",
                    "diameter_nm": "65.0" if i % 4 == 0 else ""} for i in range(20)])
    snap = state.snapshot()
    assert snap["frames"] == 20_000 and snap["selected"] == 5_000 and snap["hit_rate"] == pytest.approx(0.25)
    assert len(state.rate) == RATE_BINS and len(state.latest) == KEPT_HITS and len(snap["latest"]) == LATEST_HITS
    assert state.score_counts.sum() == 20_000 and state.diameter_counts.sum() == 5_000
    assert snap["latest"][0]["index"] == 19_996  # the newest first


def test_monitor_counts_rows_out_of_range_and_blank_as_the_hit_list_says():
    state = MonitorState()
    state.add([{"index": "0", "score": "1.0", "hit": "1", "diameter_nm": "250"},   # a diameter past the last bin
               {"index": "1", "score": "-0.1", "hit": "0", "diameter_nm": ""},     # a score below 0: the first bin
               {"index": "2", "score": "", "hit": "0", "status": "no-valid-pixels"},
               {"index": "3", "score": "0.5", "hit": "1", "diameter_nm": "61.0"}])
    assert (state.frames, state.selected, state.unusable, state.sized) == (4, 2, 1, 2)
    assert state.score_counts.sum() == 3 and state.score_counts[0] == 1 and state.score_counts[-1] == 1
    assert state.score_counts_selected.sum() == 2
    assert state.diameter_counts.sum() == 1 and state.diameter_counts[np.searchsorted(DIAMETER_EDGES, 61.0) - 1] == 1
    assert [h["number"] for h in state.latest] == [1, 4] and state.latest[-1]["diameter_nm"] == 61.0
    trains = MonitorState()
    trains.add([{"index": "0", "score": "0.9", "hit": "1", "trainId": "7"},
                {"index": "1", "score": "0.9", "hit": "1", "trainId": ""}])
    assert trains.frames == 2 and dict(trains.rate) == {7: [1, 1]}   # a row without its train is in no bin


def hit_rows(cxi: Path, first: int, stop: int) -> str:
    """Hit-list rows of frames ``first`` to ``stop`` of ``cxi``, every other one selected."""
    return "".join(f"{cxi},/entry_1/data_1/data,{i},{0.9 if i % 2 == 0 else 0.1},480,480,64,64,{int(i % 2 == 0)},"
                   f"{60 + i % 10}\n" for i in range(first, stop))


def test_monitor_pictures_are_renewed_at_most_every_picture_s_and_only_drawn_when_asked(small_cxi, tmp_path):
    hits = tmp_path / "hits.csv"
    hits.write_text("file,dataset,index,score,x,y,w,h,hit,diameter_nm\n")
    now = [100.0]
    monitor = Monitor(str(hits), picture_s=10.0, clock=lambda: now[0])
    monitor.poll()
    assert monitor.message(-1, -1)["pictures"] == 0             # no rows yet: the empty set
    now[0] += 1.0
    with hits.open("a") as handle:
        handle.write(hit_rows(small_cxi, 0, 10))
    monitor.poll()                                              # the first rows begin a set at once
    first = monitor.message(-1, -1)
    assert first["frames"] == 10 and first["pictures"] == 1 and [h["index"] for h in first["latest"]] == [8, 6, 4, 2, 0]
    assert monitor.message(first["version"], 1) is None        # nothing new: no message
    assert not monitor._made and not monitor._tiles            # nothing drawn until a page asks
    figures = monitor.figures_picture()
    with hits.open("a") as handle:
        handle.write(hit_rows(small_cxi, 10, 20))
    now[0] += 4.0
    monitor.poll()
    second = monitor.message(first["version"], 1)
    assert second["frames"] == 20 and second["pictures"] == 1 and "latest" not in second   # the numbers only
    assert monitor.figures_picture() is figures                 # drawn once per set of pictures
    now[0] += 6.0
    monitor.poll()
    third = monitor.message(second["version"], 1)
    assert third["pictures"] == 2 and [h["index"] for h in third["latest"]][:2] == [18, 16]
    assert monitor.figures_picture() != figures
    strip = monitor.hits_picture(third["latest"][0]["number"])
    assert strip is not None and len(monitor._tiles) == LATEST_HITS
    from PIL import Image
    assert Image.open(io.BytesIO(strip)).size == (LATEST_HITS * HIT_SIDE_PX, HIT_SIDE_PX)
    assert Image.open(io.BytesIO(figures)).size == (sum(FIGURES.values()), FIGURE_HEIGHT_PX)
    assert monitor.hits_picture(third["latest"][0]["number"] - 1) is None   # not a selected frame
    now[0] += 60.0
    monitor.poll()
    assert monitor.message(third["version"], 2) is None         # no new rows: the same pictures


def test_the_strip_of_a_set_of_pictures_is_drawn_after_many_newer_hits(small_cxi, tmp_path):
    """A set's latest hits stay drawable while it is the current set, even when more hits than
    the state keeps arrive before a page asks for them."""
    hits = tmp_path / "hits.csv"
    hits.write_text("file,dataset,index,score,x,y,w,h,hit,diameter_nm\n")
    now = [100.0]
    monitor = Monitor(str(hits), picture_s=10.0, clock=lambda: now[0])
    with hits.open("a") as handle:
        handle.write(hit_rows(small_cxi, 0, 10))
    monitor.poll()
    newest = monitor.message(-1, -1)["latest"][0]["number"]
    with hits.open("a") as handle:   # every other row a hit: more than KEPT_HITS newer hits
        handle.write(hit_rows(small_cxi, 10, 10 + 2 * KEPT_HITS + 20))
    now[0] += 1.0
    monitor.poll()                   # within picture_s: still the first set
    assert monitor.message(-1, -1)["pictures"] == 1
    assert all(h["number"] > newest for h in monitor.state.latest)
    strip = monitor.hits_picture(newest)
    assert strip is not None
    from PIL import Image
    assert Image.open(io.BytesIO(strip)).size == (5 * HIT_SIDE_PX, HIT_SIDE_PX)   # its 5 hits


def test_monitor_figure_drawn_over_its_kept_pixels_equals_the_figure_drawn_whole():
    now = [6000.0]
    state = MonitorState(clock=lambda: now[0])

    def add(first: int, n: int) -> None:
        state.add([{"index": str(i), "score": f"{(i % 10) / 10 + 0.05:.2f}", "hit": "1" if i % 3 == 0 else "0",
                    "diameter_nm": str(50 + i % 30)} for i in range(first, first + n)])
    add(0, 1000)
    for k, name in enumerate(FIGURES):
        kept = make_figure(name)
        before, limits = kept.rgb(state), kept.limits
        now[0] += 60.0
        add(1000 + 10 * k, 10)                     # new numbers within the same axes' limits
        again = kept.rgb(state)
        assert kept.limits == limits and not np.array_equal(again, before), name
        assert np.array_equal(again, make_figure(name).rgb(state)), name


def test_monitor_rate_is_per_train_for_a_run_with_train_ids():
    state = MonitorState()
    state.add([{"file": "r.h5", "dataset": "/d", "index": str(i), "score": "0.9", "hit": "1" if i % 5 == 0 else "0",
                "status": "ok", "trainId": str(1000 + i // 10)} for i in range(50)])
    assert state.rate_unit == "train" and list(state.rate) == [1000, 1001, 1002, 1003, 1004]
    assert [v for v in state.rate.values()] == [[10, 2]] * 5


def test_pages_listen_on_this_machine_unless_told(small_cxi, tmp_path, capsys):
    from spidarknet.cli import detect, monitor
    assert host_warning("127.0.0.1") is None and host_warning("::1") is None and host_warning("localhost") is None
    assert "other machines" in host_warning("0.0.0.0")
    not_hits = tmp_path / "x.csv"
    not_hits.write_text("a,b\n1,2\n")
    assert monitor.main([str(not_hits), "--port", "0"]) == 1
    assert "not a hit list" in capsys.readouterr().err
    assert detect.main([str(small_cxi), "--out", str(tmp_path / "h.csv"), "--monitor"]) == 1
    assert "add --follow" in capsys.readouterr().err
    from spidarknet.cli import label
    same = str(tmp_path / "labels.csv")
    assert label.main([str(small_cxi), "--positives", same, "--negatives", same, "--port", "0"]) == 1
    assert "two files" in capsys.readouterr().err
    assert monitor.main([str(tmp_path / "h.csv"), "--port", "70000"]) == 1
    assert "between 1 and 65535" in capsys.readouterr().err
