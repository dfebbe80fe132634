#!/usr/bin/env python3
"""The monitor's cost to ``detect --follow``, and a labelling session through the page, timed (issue #22).

**Overhead.**  ``detect FILE --follow`` on a finished file scores every frame at full speed
(one process, as --follow runs) and then waits ``--idle`` seconds.  The frames per second are
counted from the hit list as it grows (this process watches its size every 2 ms): from the
first scored row to the last write, so neither the start-up nor the idle wait counts.  Three
variants, run in turn, paired (``--pairs`` rounds of all three, the order rotated each round, after one uncounted run):
``off`` (no monitor), ``monitor`` (``--monitor``: the page is served, nobody looks) and
``browser`` (``--monitor`` with the page open in headless Chromium, which receives every
event and redraws its figures and pictures, on the same two cores).  Prints frames/s per
run, the median per variant and the median of the per-round ratios to ``off``.

**Labelling.**  ``spidarknet label FILE --n 40`` is started, and a scripted labeller (Playwright
driving Debian's Chromium) answers each frame from the simulator's truth (``/truth/label``)
with the keyboard, as fast as the page lets it: each key waits for the next frame's picture and
profile to be shown.  Timed: the start-up (scoring and fitting the pool, until the page
listens), each label (key to the next frame shown), the 40 labels end to end, and the learn
button (until its figures are shown).  The rows written are checked against the keys pressed.
A person's thinking time is not in it: this is what the machine adds to it.

    flock /work/heavy.lock python tools/pages_bench.py --work /tmp/pages --out pages.json \\
        [--frames 2000] [--pairs 3] [--screenshots docs/]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def simulate(path: Path, count: int, seed: int) -> Path:
    if not path.exists():
        from spidarknet.simulate import simulate_file
        simulate_file(path, count, seed=seed)
    return path


class SizeWatch(threading.Thread):
    """The hit list's size over time: when the first row appeared, and its last change."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.stop_flag = path, False
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] = (0.0, 0)

    def run(self) -> None:
        header = None
        while not self.stop_flag:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            now = time.perf_counter()
            if size and header is None:
                with open(self.path, "rb") as handle:
                    header = len(handle.readline())
            if header is not None and size > header:
                if self.first is None:
                    self.first = (now, size)
                if size != self.last[1]:
                    self.last = (now, size)
            time.sleep(0.002)


class CpuWatch(threading.Thread):
    """The CPU seconds (user + system) a process has used, sampled until it is gone."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.cpu_s = pid, 0.0
        self.tick = os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, float]] = []

    def run(self) -> None:
        while True:
            try:
                with open(f"/proc/{self.pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                return
            if fields[0] == "Z":
                return
            self.cpu_s = (int(fields[11]) + int(fields[12])) / self.tick
            self.samples.append((time.perf_counter(), self.cpu_s))
            time.sleep(0.05)

    def between(self, t0: float, t1: float) -> float:
        """CPU seconds used from ``t0`` to ``t1`` (the samples nearest them)."""
        times = np.array([t for t, _ in self.samples])
        cpu = np.array([c for _, c in self.samples])
        return float(np.interp(t1, times, cpu) - np.interp(t0, times, cpu))


def monitor_pid(detect_pid: int) -> int:
    """The monitor page's process: the child ``detect --follow --monitor`` started."""
    with open(f"/proc/{detect_pid}/task/{detect_pid}/children") as handle:
        return int(handle.read().split()[0])


def rows_up_to(path: Path, size: int) -> int:
    with open(path, "rb") as handle:
        return handle.read(size).count(b"\n") - 1  # less the header


def follow_once(cxi: Path, work: Path, variant: str, browser, extra: list[str]) -> dict:
    out = work / f"follow-{variant}.csv"
    for p in (out, out.with_suffix(".json")):
        p.unlink(missing_ok=True)
    command = [sys.executable, "-m", "spidarknet", "detect", str(cxi), "--follow", "--idle", "1", "--out", str(out),
               "--quiet", *extra]
    if variant != "off":
        command += ["--monitor", "--port", "0"]
    watch = SizeWatch(out)
    watch.start()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    page = cpu = None
    if variant != "off":
        url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
        cpu = CpuWatch(monitor_pid(proc.pid))
        cpu.start()
        if variant == "browser":
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
    proc.stdout.read()
    code = proc.wait()
    watch.stop_flag = True
    watch.join()
    if page is not None:
        page.close()
    if code != 0:
        raise SystemExit(f"detect --follow ({variant}) exited {code}")
    t0, size0 = watch.first
    t1, size1 = watch.last
    frames = rows_up_to(out, size1) - rows_up_to(out, size0)
    if cpu is not None:
        cpu.join()
    return {"variant": variant, "frames": frames, "seconds": t1 - t0, "frames_per_s": frames / (t1 - t0),
            "total_rows": rows_up_to(out, size1),
            # the monitor's CPU while the frames were scored, as a share of one core
            "monitor_core_share": cpu.between(t0, t1) / (t1 - t0) if cpu is not None else None}


def overhead(cxi: Path, work: Path, pairs: int, browser, extra: list[str], screenshot: Path | None) -> dict:
    variants = ["off", "monitor", "browser"]
    follow_once(cxi, work, "off", browser, extra)  # a warm-up, not counted: the file into the page cache
    runs = []
    for k in range(pairs):
        order = variants[k % 3:] + variants[:k % 3]
        for variant in order:
            run = follow_once(cxi, work, variant, browser, extra)
            run["round"] = k
            runs.append(run)
            cpu = ("" if run["monitor_core_share"] is None
                   else f"; the monitor used {100 * run['monitor_core_share']:.0f} % of a core meanwhile")
            print(f"  round {k} {variant:8s} {run['frames']} frames in {run['seconds']:.2f} s: "
                  f"{run['frames_per_s']:.0f} frames/s{cpu}", flush=True)
    if screenshot is not None:
        monitor_screenshot(cxi, work, browser, extra, screenshot)
    by = {v: [r["frames_per_s"] for r in runs if r["variant"] == v] for v in variants}
    ratios = {v: [r["frames_per_s"] / next(o["frames_per_s"] for o in runs
                                          if o["variant"] == "off" and o["round"] == r["round"])
                  for r in runs if r["variant"] == v] for v in variants[1:]}
    cpu = {v: statistics.median(r["monitor_core_share"] for r in runs if r["variant"] == v) for v in variants[1:]}
    return {"runs": runs, "median_frames_per_s": {v: statistics.median(x) for v, x in by.items()},
            "median_monitor_core_share": cpu,
            "median_ratio_to_off": {v: statistics.median(x) for v, x in ratios.items()},
            "ratios": ratios, "detect_options": extra}


def monitor_screenshot(cxi: Path, work: Path, browser, extra: list[str], path: Path) -> None:
    """The monitor page at the end of a followed run (its idle wait long enough to look)."""
    out = work / "follow-shot.csv"
    out.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "spidarknet", "detect", str(cxi), "--follow", "--idle", "8",
                             "--out", str(out), "--quiet", "--monitor", "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_timeout(6000)
    page.screenshot(path=str(path), full_page=True)
    page.close()
    proc.stdout.read()
    proc.wait()


def labelling(cxi: Path, work: Path, browser, n: int, screenshot: Path | None) -> dict:
    pos, neg, sel = work / "single.csv", work / "other.csv", work / "selection.json"
    for p in (pos, neg, sel):
        p.unlink(missing_ok=True)
    with h5py.File(cxi, "r") as f:
        truth = np.asarray(f["truth/label"])
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "spidarknet", "label", str(cxi), "--positives", str(pos),
                             "--negatives", str(neg), "--selection", str(sel), "--n", str(n), "--every", "10",
                             "--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    ready, _, _ = select.select([proc.stdout], [], [], 600)
    url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
    startup = time.perf_counter() - started
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        return _label_all(page, url, truth, n, pos, neg, sel, startup, started, screenshot)
    finally:
        page.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


SHOWN = ("document.body.dataset.row !== undefined && document.body.dataset.row !== '{row}' && "
         "!document.body.dataset.busy && ['frame', 'profile'].every(id => {{ const i = document.getElementById(id); "
         "return i.complete && i.naturalWidth > 0 && i.src.includes('/' + document.body.dataset.row + '.png'); }})")


def _label_all(page, url, truth, n, pos, neg, sel, startup, started, screenshot) -> dict:
    page.goto(url)
    page.wait_for_function(SHOWN.format(row="none"), timeout=120_000)
    shown_at = time.perf_counter()
    latencies, pressed = [], []
    for _ in range(n):
        row = page.evaluate("document.body.dataset.row")
        index = int(page.inner_text("#facts tr:first-child td:last-child").split("#")[1])
        key = "1" if truth[index] == 1 else "0"
        t = time.perf_counter()
        page.keyboard.press(key)
        page.wait_for_function(f"document.body.dataset.labelled === '{len(pressed) + 1}'", timeout=60_000)
        if len(pressed) + 1 < n:
            page.wait_for_function(SHOWN.format(row=row), timeout=60_000)
        latencies.append(time.perf_counter() - t)
        pressed.append((index, key))
    labelled_at = time.perf_counter()
    page.click("#b-learn")
    page.wait_for_function("document.getElementById('learnt-figures') !== null || "
                           "(!document.body.dataset.busy && document.getElementById('message').textContent !== '' "
                           "&& document.getElementById('message').textContent !== 'learning…')", timeout=600_000)
    learnt_at = time.perf_counter()
    learn_error = page.inner_text("#message")
    page.wait_for_timeout(300)
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    from spidarknet.core.selection import read_selection
    written = {("1", e.index) for e in read_selection(str(pos))} | {("0", e.index) for e in read_selection(str(neg))}
    assert written == {(k, i) for i, k in pressed}, "the rows written differ from the keys pressed"
    figures = json.loads(sel.read_text()) if sel.exists() else {}
    return {"learn_error": learn_error, "frames": n, "singles": sum(k == "1" for _, k in pressed), "startup_s": startup,
            "first_frame_shown_s": shown_at - started, "labels_s": labelled_at - shown_at,
            "per_label_s": {"median": statistics.median(latencies), "p90": float(np.percentile(latencies, 90)),
                            "max": max(latencies)},
            "learn_s": learnt_at - labelled_at, "end_to_end_s": learnt_at - started,
            "learn_figures": {k: figures.get("figures", {}).get(k) for k in ("precision", "recall", "f1", "labels")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="folder for the simulated files and outputs")
    parser.add_argument("--out", required=True, type=Path, help="JSON of every figure")
    parser.add_argument("--frames", type=int, default=2000, help="frames of the followed file (default 2000)")
    parser.add_argument("--label-frames", type=int, default=300, help="frames of the labelled run (default 300)")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of the three follow variants (default 3)")
    parser.add_argument("--n", type=int, default=40, help="frames labelled (default 40)")
    parser.add_argument("--screenshots", type=Path, help="folder for monitor.png and label.png")
    parser.add_argument("--skip", choices=("overhead", "labelling"), action="append", default=[])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chromium = next(shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n))
    from playwright.sync_api import sync_playwright
    result = {"cores": os.cpu_count()}
    shots = args.screenshots
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        if "overhead" not in args.skip:
            followed = simulate(args.work / f"follow-{args.frames}.cxi", args.frames, seed=71)
            print(f"detect --follow on {args.frames} frames, with and without the monitor", flush=True)
            result["overhead"] = overhead(followed, args.work, args.pairs, browser, [], None)
            print("the same with --size-range 60 75 (the fit decides)", flush=True)
            result["overhead_size_window"] = overhead(followed, args.work, args.pairs, browser,
                                                      ["--size-range", "60", "75"],
                                                      shots / "monitor.png" if shots else None)
        if "labelling" not in args.skip:
            run = simulate(args.work / f"label-{args.label_frames}.cxi", args.label_frames, seed=72)
            print(f"labelling {args.n} frames of {args.label_frames} through the page", flush=True)
            result["labelling"] = labelling(run, args.work, browser, args.n, shots / "label.png" if shots else None)
        browser.close()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items()}, indent=2, default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
