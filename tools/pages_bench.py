#!/usr/bin/env python3
"""The monitor's cost to ``detect --follow``, and a labelling session through the page, timed (issue #22).

**Overhead.**  ``detect FILE --follow`` on a finished file scores every frame at full speed
(one process, as --follow runs) and then waits ``--idle`` seconds.  The frames per second are
counted from the hit list as it grows (this process watches its size every 2 ms): from the
first scored row to the last write, so neither the start-up nor the idle wait counts, and
over the second half of the rows (the page has loaded by then).  Variants, run in turn,
paired (``--pairs`` rounds of all, the order rotated each round, after one uncounted run):
``off`` (no monitor), ``monitor`` (``--monitor``: the page is served, nobody looks),
``browser`` (``--monitor`` with the page open in headless Chromium on the same two cores)
and, with ``--base OTHER-CHECKOUT``, ``browser@base`` (the same with that checkout's code).
The CPU seconds of the detection (with its workers), the monitor and the browser (Chromium
and Playwright's driver) are counted over the same intervals: on a machine shared with
other work, wall time is blurred far more than CPU time.  Prints each run and the ratios
to ``off`` of the same round (min, median, max).

**Watching.**  What an open page costs once it is open, in CPU: ``spidarknet monitor`` on a
hit list 100,000 rows long that grows by 200 rows a second, the page open in Chromium; the
CPU of the monitor and of the browser over ``--watch-seconds`` (and the same for ``--base``).

**Labelling.**  ``spidarknet label FILE --n 40`` is started, and a scripted labeller (Playwright
driving Debian's Chromium) answers each frame from the simulator's truth (``/truth/label``)
with the keyboard, as fast as the page lets it: each key waits for the next frame's picture and
profile to be shown.  Timed: the start-up (scoring and fitting the pool, until the page
listens), each label (key to the next frame shown), the 40 labels end to end, and the learn
button (until its figures are shown).  The rows written are checked against the keys pressed.
A person's thinking time is not in it: this is what the machine adds to it.

    flock /work/heavy.lock python tools/pages_bench.py --work /tmp/pages --out pages.json \\
        [--frames 2000] [--pairs 3] [--screenshots docs/] [--base OLD-CHECKOUT] [--skip plain|watching|...]
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
    """The hit list's size over time: every change, with when it was seen."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.stop_flag = path, False
        self.changes: list[tuple[float, int]] = []   # (time, size) once there are rows

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
            if header is not None and size > header and (not self.changes or size != self.changes[-1][1]):
                self.changes.append((now, size))
            time.sleep(0.002)


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(c) for c in handle.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
    return children + [d for c in children for d in descendants(c)]


class CpuWatch(threading.Thread):
    """The CPU seconds used by groups of processes, sampled every 50 ms until stopped.  ``groups()``
    gives {name: pids} at each sample; a process that is gone keeps the seconds it had used."""

    def __init__(self, groups):
        super().__init__(daemon=True)
        self.groups, self.stop_flag = groups, False
        self.used: dict[int, float] = {}
        self.members: dict[str, set[int]] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []

    def run(self) -> None:
        while not self.stop_flag:
            totals = {}
            for name, pids in self.groups().items():
                members = self.members.setdefault(name, set())
                members |= set(pids)
                for pid in pids:
                    used = cpu_s(pid)
                    if used is not None:
                        self.used[pid] = used
                totals[name] = sum(self.used.get(pid, 0.0) for pid in members)
            self.samples.append((time.perf_counter(), totals))
            time.sleep(0.05)

    def between(self, name: str, t0: float, t1: float) -> float:
        """CPU seconds group ``name`` used from ``t0`` to ``t1`` (interpolated between samples)."""
        times = np.array([t for t, _ in self.samples])
        cpu = np.array([c.get(name, 0.0) for _, c in self.samples])
        return float(np.interp(t1, times, cpu) - np.interp(t0, times, cpu))


def monitor_pid(detect_pid: int) -> int:
    """The monitor page's process: the child ``detect --follow --monitor`` started."""
    with open(f"/proc/{detect_pid}/task/{detect_pid}/children") as handle:
        return int(handle.read().split()[0])


def follow_once(cxi: Path, work: Path, variant: str, browser, extra: list[str], base: Path | None = None) -> dict:
    """One ``detect --follow`` run of ``variant``: off, monitor, browser; "…@base": with the
    code of the checkout ``base`` instead of this one (the same detection, an older page)."""
    kind, _, where = variant.partition("@")
    repo = base if where else REPO
    out = work / f"follow-{kind}{'-base' if where else ''}.csv"
    for p in (out, out.with_suffix(".json")):
        p.unlink(missing_ok=True)
    command = [sys.executable, "-m", "spidarknet", "detect", str(cxi), "--follow", "--idle", "1", "--out", str(out),
               "--quiet", *extra]
    if kind != "off":
        command += ["--monitor", "--port", "0"]
    watch = SizeWatch(out)
    watch.start()
    load = os.getloadavg()[0]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=repo,
                            env=dict(os.environ, PYTHONPATH=str(repo)))
    monitor: list[int] = []

    def groups() -> dict[str, list[int]]:
        detect = descendants(proc.pid)
        page = {p for m in monitor for p in [m, *descendants(m)]}
        return {"detect": [proc.pid, *(p for p in detect if p not in page)], "monitor": sorted(page),
                "browser": [p for p in descendants(os.getpid()) if p != proc.pid and p not in detect]}
    cpu = CpuWatch(groups)
    cpu.start()
    page = None
    if kind != "off":
        url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
        monitor.append(monitor_pid(proc.pid))
        if kind == "browser":
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
    proc.stdout.read()
    code = proc.wait()
    watch.stop_flag = cpu.stop_flag = True
    watch.join()
    cpu.join()
    if page is not None:
        page.close()
    if code != 0:
        raise SystemExit(f"detect --follow ({variant}) exited {code}")
    return {"variant": variant, "load_before": load, **window_figures(out, watch.changes, cpu)}


def window_figures(out: Path, changes: list[tuple[float, int]], cpu: CpuWatch) -> dict:
    """Frames/s from the first row to the last, and over the second half of the rows (the page
    has loaded by then: what watching costs while it goes on); the CPU seconds of detect (with
    its workers), of the monitor and of the browser (Chromium and Playwright's driver) over each."""
    newlines = np.flatnonzero(np.frombuffer(out.read_bytes(), dtype=np.uint8) == ord("\n"))
    rows = [int(np.searchsorted(newlines, size, side="left")) - 1 for _, size in changes]
    half = next(i for i, r in enumerate(rows) if r - rows[0] >= (rows[-1] - rows[0]) / 2)
    (t0, _), (th, _), (t1, _) = changes[0], changes[half], changes[-1]
    figures = {"frames": rows[-1] - rows[0], "seconds": t1 - t0, "frames_per_s": (rows[-1] - rows[0]) / (t1 - t0),
               "late_frames_per_s": (rows[-1] - rows[half]) / (t1 - th), "total_rows": rows[-1]}
    for name in ("detect", "monitor", "browser"):
        figures[f"{name}_cpu_s"] = cpu.between(name, t0, t1)
        figures[f"{name}_late_cpu_s"] = cpu.between(name, th, t1)
    return figures


def overhead(cxi: Path, work: Path, pairs: int, browser, extra: list[str], screenshot: Path | None,
             base: Path | None = None) -> dict:
    variants = ["off", "monitor", "browser"] + (["browser@base"] if base else [])
    follow_once(cxi, work, "off", browser, extra)  # a warm-up, not counted: the file into the page cache
    runs = []
    for k in range(pairs):
        order = variants[k % len(variants):] + variants[:k % len(variants)]
        for variant in order:
            run = follow_once(cxi, work, variant, browser, extra, base)
            run["round"] = k
            runs.append(run)
            watchers = run["monitor_cpu_s"] + run["browser_cpu_s"]
            print(f"  round {k} {variant:12s} {run['frames']} frames in {run['seconds']:.2f} s: "
                  f"{run['frames_per_s']:.0f} frames/s (second half {run['late_frames_per_s']:.0f}); CPU s: "
                  f"detect {run['detect_cpu_s']:.2f}, monitor {run['monitor_cpu_s']:.2f}, browser "
                  f"{run['browser_cpu_s']:.2f} ({100 * watchers / run['seconds']:.1f} % of a core); "
                  f"load {run['load_before']:.1f}", flush=True)
    if screenshot is not None:
        monitor_screenshot(cxi, work, browser, extra, screenshot)
    return summary(runs, variants) | {"detect_options": extra}


def summary(runs: list[dict], variants: list[str]) -> dict:
    """Per variant: the median frames/s; the ratios to the 'off' run of the same round (whole run
    and second half: min, median, max); the CPU the monitor and the browser used, in % of one core."""
    def off(r: dict, key: str) -> float:
        return next(o[key] for o in runs if o["variant"] == "off" and o["round"] == r["round"])

    def spread(values: list[float]) -> dict:
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}
    result = {"runs": runs}
    for v in variants:
        mine = [r for r in runs if r["variant"] == v]
        result[v] = {"median_frames_per_s": statistics.median(r["frames_per_s"] for r in mine),
                     "watchers_core_percent": spread([100 * (r["monitor_cpu_s"] + r["browser_cpu_s"]) / r["seconds"]
                                                      for r in mine])}
        if v != "off":
            result[v]["ratio_to_off"] = spread([r["frames_per_s"] / off(r, "frames_per_s") for r in mine])
            result[v]["late_ratio_to_off"] = spread([r["late_frames_per_s"] / off(r, "late_frames_per_s")
                                                     for r in mine])
    return result


def watching(source: Path, work: Path, browser, seconds: float, rate: float, prefill: int,
             base: Path | None = None) -> dict:
    """What watching costs once the page is open, in CPU: ``spidarknet monitor`` follows a hit
    list that grows by ``rate`` rows a second (rows of ``source``, a hit list of the followed
    file, over again), already ``prefill`` rows long (a run some minutes old); the page is
    open in headless Chromium; after 5 s, the CPU seconds of the monitor, of Chromium and
    of Playwright's driver are counted over ``seconds``.  With ``base``, the same for that
    checkout's monitor, in turn.  CPU time is not stolen by other people's work the way
    wall time is, so this holds on a loaded machine."""
    lines = source.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    result = {"rows_per_s": rate, "prefill_rows": prefill, "seconds": seconds}
    for name, repo in [("here", REPO)] + ([("base", base)] if base else []):
        hits = work / f"watched-{name}.csv"
        hits.write_text(header + "".join(rows[k % len(rows)] for k in range(prefill)))
        proc = subprocess.Popen([sys.executable, "-m", "spidarknet", "monitor", str(hits), "--port", "0"],
                                stdout=subprocess.PIPE, text=True, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)))
        url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
        done = threading.Event()

        def grow(k: int = prefill) -> None:
            started = time.perf_counter()
            with open(hits, "a") as handle:
                while not done.is_set():
                    due = prefill + int((time.perf_counter() - started) * rate)
                    handle.writelines(rows[i % len(rows)] for i in range(k, due))
                    handle.flush()
                    k = due
                    time.sleep(0.05)
        feeder = threading.Thread(target=grow, daemon=True)
        feeder.start()
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.wait_for_timeout(5000)
        mine = [p for p in descendants(os.getpid()) if p != proc.pid]
        before = {p: cpu_s(p) or 0.0 for p in [proc.pid, *mine]}
        asked = len(requests)
        page.wait_for_timeout(1000 * seconds)
        used = {p: (cpu_s(p) or before[p]) - before[p] for p in before}
        result[name] = {"monitor_core_percent": 100 * used[proc.pid] / seconds,
                        "browser_core_percent": 100 * sum(used[p] for p in mine) / seconds,
                        "requests_per_s": (len(requests) - asked) / seconds}
        done.set()
        feeder.join()
        page.close()
        proc.terminate()
        proc.wait()
        hits.unlink()
        print(f"  watching ({name}): monitor {result[name]['monitor_core_percent']:.2f} % of a core, browser "
              f"{result[name]['browser_core_percent']:.2f} %, {result[name]['requests_per_s']:.2f} requests/s",
              flush=True)
    return result


def monitor_screenshot(cxi: Path, work: Path, browser, extra: list[str], path: Path) -> None:
    """The monitor page at the end of a followed run: once every frame is counted and the next
    set of pictures (figures, latest hits) has come (the idle wait long enough to look)."""
    from spidarknet.serve.monitor import PICTURE_S
    out = work / "follow-shot.csv"
    out.unlink(missing_ok=True)
    with h5py.File(cxi, "r") as f:
        frames = f["entry_1/data_1/data"].shape[0]
    proc = subprocess.Popen([sys.executable, "-m", "spidarknet", "detect", str(cxi), "--follow", "--idle",
                             str(PICTURE_S + 20), "--out", str(out), "--quiet", "--monitor", "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_function(f"document.getElementById('frames').textContent === '{frames}'", timeout=600_000)
    page.wait_for_timeout(1000 * (PICTURE_S + 2))
    page.wait_for_function("[...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
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
    parser.add_argument("--skip", choices=("overhead", "plain", "watching", "labelling"), action="append", default=[],
                        help="leave out a part: overhead (both), plain (the overhead without --size-range), "
                             "watching, labelling")
    parser.add_argument("--watch-seconds", type=float, default=40.0, help="CPU counted while watching (default 40)")
    parser.add_argument("--base", type=Path,
                        help="another checkout (an older monitor): its page, watched, is run in the same rounds")
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
            if "plain" not in args.skip:
                print(f"detect --follow on {args.frames} frames, with and without the monitor", flush=True)
                result["overhead"] = overhead(followed, args.work, args.pairs, browser, [], None, args.base)
            print("the same with --size-range 60 75 (the fit decides)", flush=True)
            result["overhead_size_window"] = overhead(followed, args.work, args.pairs, browser,
                                                      ["--size-range", "60", "75"],
                                                      shots / "monitor.png" if shots else None, args.base)
        if "watching" not in args.skip:
            source = args.work / "watched-source.csv"
            if not source.exists():
                follow_once(simulate(args.work / f"follow-{args.frames}.cxi", args.frames, seed=71), args.work, "off",
                            browser, ["--size-range", "60", "75"])
                (args.work / "follow-off.csv").rename(source)
            print("the cost of watching, in CPU: 200 rows a second, 100,000 rows already", flush=True)
            result["watching"] = watching(source, args.work, browser, args.watch_seconds, 200.0, 100_000, args.base)
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
