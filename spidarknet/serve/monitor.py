"""The monitor page: a hit list that ``detect --follow`` is writing, watched as it grows.

:class:`HitListTail` reads the rows appended to the hit list since the last look (only whole
lines: ``detect --follow`` writes whole rows at once); :class:`MonitorState` keeps what the
page shows in memory that does not grow with the run: totals, fixed-bin histograms of the
score and the fitted diameter, the hit rate per minute (or per train, where the hit list has a
train column, as hit lists of European XFEL runs have: ``trainId``) over the last
:data:`RATE_BINS` bins, and the last :data:`KEPT_HITS` selected frames (the page shows
:data:`LATEST_HITS` of them).  The page subscribes to ``/events`` (server-sent events): a
small JSON object each time the numbers change.  Figures and the latest hits' pictures are
PNGs drawn on the server when the page asks for them: a figure at most once per change of
the numbers, a hit's picture once (its address names the frame; the browser keeps it), and
the page asks at most every 5 s.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from spidarknet.core.errors import InputError, SpidarknetError
from spidarknet.frames.source import FileInfo, FrameSource
from spidarknet.report import plot
from spidarknet.serve import server
from spidarknet.serve.images import around_centre, frame_picture, read_frame
from spidarknet.sizing import SizingSettings, r_max_px

#: selected frames whose pictures the page shows
LATEST_HITS = 8
#: selected frames kept, so that a picture the page asks for a moment late is still there
KEPT_HITS = 64
#: bins of the hit-rate history kept (minutes, or trains)
RATE_BINS = 240
SCORE_EDGES = np.linspace(0.0, 1.0, 41)
DIAMETER_EDGES = np.arange(0.0, 202.0, 2.0)
#: the figures of the page
FIGURES = ("rate", "scores", "diameters")
#: the hit-list columns that hold a frame's train ID (European XFEL runs)
TRAIN_COLUMNS = ("trainId", "train_id")
#: bytes of the hit list read per look at most (the rest at the next look)
READ_LIMIT = 4 << 20


class HitListTail:
    """The rows appended to a hit-list CSV since the last :meth:`read`, as dicts."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.header: list[str] | None = None
        self.rest = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(READ_LIMIT)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        if len(self.rest) > READ_LIMIT:
            raise InputError(f"{self.path} has a line longer than {READ_LIMIT >> 20} MB: it is not a hit list")
        lines = data[:cut].decode("utf-8", errors="replace").splitlines()
        rows = list(csv.reader(io.StringIO("\n".join(lines)))) if lines else []
        if rows and self.header is None:
            self.header = [c.strip() for c in rows.pop(0)]
            if not {"file", "index", "score", "hit"} <= set(self.header):
                raise InputError(f"{self.path} is not a hit list (its header is {','.join(self.header)!r}); "
                                 "give the CSV that 'detect --follow' writes")
        return [dict(zip(self.header, row)) for row in rows if len(row) == len(self.header)]


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


@dataclass
class MonitorState:
    """What the monitor shows, in memory bounded whatever the length of the run."""

    clock: Callable[[], float] = time.time
    frames: int = 0
    selected: int = 0
    unusable: int = 0
    sized: int = 0
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_EDGES) - 1, dtype=np.int64))
    score_counts_selected: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_EDGES) - 1, dtype=np.int64))
    diameter_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(DIAMETER_EDGES) - 1, dtype=np.int64))
    diameter_counts_selected: np.ndarray = field(
        default_factory=lambda: np.zeros(len(DIAMETER_EDGES) - 1, dtype=np.int64))
    #: hit-rate bin (minute since the epoch, or train ID) -> [frames, selected]
    rate: "OrderedDict[int, list[int]]" = field(default_factory=OrderedDict)
    rate_unit: str = "minute"
    train_column: str | None = None
    latest: deque = field(default_factory=lambda: deque(maxlen=KEPT_HITS))
    version: int = 0
    error: str = ""
    started: float = field(default_factory=time.time)

    def add(self, rows: list[dict]) -> None:
        """Count appended hit-list rows."""
        if not rows:
            return
        now = self.clock()
        self.train_column = next((c for c in TRAIN_COLUMNS if c in rows[0]), None)
        if self.train_column is not None:
            self.rate_unit = "train"
        for row in rows:
            self._add_row(row, now)
        while len(self.rate) > RATE_BINS:
            self.rate.popitem(last=False)
        self.version += 1

    def _add_row(self, row: dict, now: float) -> None:
        selected = row.get("hit") == "1"
        score = _number(row.get("score"))
        diameter = _number(row.get("diameter_nm"))
        self.frames += 1
        self.selected += selected
        self.unusable += row.get("status") == "no-valid-pixels"
        if math.isfinite(score):
            b = min(max(int(np.searchsorted(SCORE_EDGES, score, side="right")) - 1, 0), len(SCORE_EDGES) - 2)
            self.score_counts[b] += 1
            self.score_counts_selected[b] += selected
        if math.isfinite(diameter):
            self.sized += 1
            b = int(np.searchsorted(DIAMETER_EDGES, diameter, side="right")) - 1
            if 0 <= b < len(DIAMETER_EDGES) - 1:
                self.diameter_counts[b] += 1
                self.diameter_counts_selected[b] += selected
        unit = int(_number(row.get(self.train_column))) if self.train_column else int(now // 60)
        counts = self.rate.setdefault(unit, [0, 0])
        counts[0] += 1
        counts[1] += selected
        if selected:
            box = [_number(row.get(c)) for c in ("x", "y", "w", "h")]
            self.latest.append({"file": row.get("file", ""), "dataset": row.get("dataset", ""),
                                "index": int(_number(row.get("index"))), "score": score, "diameter_nm": diameter,
                                "diameter_err_nm": _number(row.get("diameter_err_nm")), "box": box,
                                "number": self.frames})

    def snapshot(self) -> dict:
        """The numbers of the page (JSON-ready)."""
        rate = list(self.rate.items())
        last = rate[-1][1] if rate else [0, 0]
        return {"version": self.version, "frames": self.frames, "selected": self.selected,
                "unusable": self.unusable, "sized": self.sized,
                "hit_rate": self.selected / self.frames if self.frames else None,
                "last_bin_rate": last[1] / last[0] if last[0] else None, "rate_unit": self.rate_unit,
                "latest": [{k: v for k, v in hit.items() if k != "box"}
                           for hit in list(reversed(self.latest))[:LATEST_HITS]],
                "elapsed_s": round(self.clock() - self.started, 1), "error": self.error}


#: the monitor's figures are drawn at fixed margins (pixels: left, right, bottom, top)
MARGINS_PX = (56, 12, 44, 26)


def rate_figure(state: MonitorState):
    with plot.figure(520, 230, MARGINS_PX) as (fig, ax):
        items = list(state.rate.items())
        if items:
            x = np.array([k for k, _ in items], dtype=np.float64)
            counts = np.array([v for _, v in items], dtype=np.float64)
            if state.rate_unit == "minute":
                x = x - x[-1]
                ax.set_xlim(min(x[0], -10.0) - 0.5, 0.5)
            rate = 100.0 * counts[:, 1] / np.maximum(counts[:, 0], 1)
            ax.plot(x, rate, "o-", ms=3, color=plot.BLUE)
            ax.set_ylim(0, max(5.0, 1.15 * float(rate.max())))
        ax.set_xlabel("minutes before now" if state.rate_unit == "minute" else "train ID")
        ax.set_ylabel("selected (%)")
        ax.set_title(f"hit rate per {state.rate_unit}")
    return fig


def histogram_figure(edges: np.ndarray, counts: np.ndarray, selected: np.ndarray, title: str, xlabel: str):
    from matplotlib.ticker import MaxNLocator
    with plot.figure(400, 230, MARGINS_PX) as (fig, ax):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.stairs(counts, edges, fill=True, color=plot.LIGHT, label="all frames")
        ax.stairs(selected, edges, fill=True, color=plot.ORANGE, alpha=0.85, label="selected")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("frames")
        ax.set_title(title)
        ax.legend(loc="upper right")
    return fig


class Monitor:
    """The monitor of one hit list: the tail, the state, the figures drawn for the latest numbers."""

    def __init__(self, hits_path: str, poll_s: float = 0.5):
        self.tail = HitListTail(hits_path)
        self.state = MonitorState()
        self.poll_s = poll_s
        self.lock = threading.Lock()
        self._figures: dict[str, tuple[int, bytes]] = {}
        self._files: dict[tuple[str, str], FileInfo] = {}

    def poll(self) -> None:
        """Count the rows appended since the last look (a file that is not a hit list: the page
        says so, and nothing more is read)."""
        if self.state.error:
            return
        try:
            rows = self.tail.read()
        except InputError as exc:
            with self.lock:
                self.state.error = str(exc)
                self.state.version += 1
            return
        with self.lock:
            self.state.add(rows)

    def figure(self, name: str) -> bytes | None:
        """The PNG of figure ``name`` for the current numbers (drawn once per change)."""
        with self.lock:
            version = self.state.version
            cached = self._figures.get(name)
            if cached is not None and cached[0] == version:
                return cached[1]
            s = self.state
            if name == "rate":
                fig = rate_figure(s)
            elif name == "scores":
                fig = histogram_figure(SCORE_EDGES, s.score_counts, s.score_counts_selected, "network score", "score")
            elif name == "diameters":
                fig = histogram_figure(DIAMETER_EDGES, s.diameter_counts, s.diameter_counts_selected,
                                       "fitted diameter", "diameter (nm)")
            else:
                return None
        data = server.png_of_figure(fig)
        self._figures[name] = (version, data)
        return data

    def hit_picture(self, number: int) -> bytes | None:
        """The PNG of the selected frame that was the run's ``number``-th row, while it is among
        the latest hits (the page asks each picture once: its address names the frame, not a
        place on the page)."""
        with self.lock:
            hit = next((h for h in self.state.latest if h["number"] == number), None)
        if hit is None:
            return None
        info = self._file(hit["file"], hit["dataset"])
        photons, valid = read_frame(info, hit["index"])
        origin = (0, 0)
        try:
            half = r_max_px(info.geometry, SizingSettings())
            photons, valid, origin = around_centre(photons, valid, info.geometry.centre_px, half)
        except SpidarknetError:
            pass  # a file without the geometry of q: the whole frame
        return server.png_of_rgb(frame_picture(photons, valid, hit["box"], side_px=220, origin=origin))

    def _file(self, path: str, dataset: str) -> FileInfo:
        """The checked file (geometry, mask) of a hit-list row; only files the hit list names."""
        key = (path, dataset)
        if key not in self._files:
            if len(self._files) > 64:
                self._files.clear()
            self._files[key] = FrameSource([path], dataset=dataset or None).files[0]
        return self._files[key]


def monitor_app(monitor: Monitor, title: str):
    """The Starlette application of the monitor page."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    async def page(request):
        return server.html_response(server.render_template("monitor.html", title=title,
                                                           hits_path=os.path.basename(monitor.tail.path)))

    async def figure(request):
        data = await run_in_threadpool(monitor.figure, request.path_params["name"])
        return server.png_response(data) if data is not None else server.not_found()

    async def hit(request):
        try:
            data = await run_in_threadpool(monitor.hit_picture, request.path_params["number"])
        except (OSError, KeyError, IndexError, InputError):
            data = None  # the file moved or the frame is not readable yet
        return server.png_response(data, cache_s=600) if data is not None else server.not_found()

    async def state(request):
        with monitor.lock:
            return server.json_response(monitor.state.snapshot())

    async def events():
        sent = -1
        while True:
            with monitor.lock:
                snap = monitor.state.snapshot() if monitor.state.version != sent else None
            if snap is not None:
                sent = snap["version"]
            yield snap  # None: nothing new (the stream looks whether the server is stopping)
            await asyncio.sleep(monitor.poll_s)

    async def stream(request):
        return server.sse_response(request, events)

    async def poller():
        while True:
            await run_in_threadpool(monitor.poll)
            await asyncio.sleep(monitor.poll_s)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        # matplotlib's first figure costs most (imports, fonts): paid before the page is announced
        await run_in_threadpool(lambda: [monitor.figure(name) for name in FIGURES])
        task = asyncio.ensure_future(poller())
        try:
            yield
        finally:
            task.cancel()

    routes = [Route("/", page), Route("/events", stream), Route("/state", state),
              Route("/figure/{name:str}.png", figure), Route("/hit/{number:int}.png", hit)]
    return Starlette(routes=routes, lifespan=lifespan)
