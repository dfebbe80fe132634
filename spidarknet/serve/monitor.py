"""The monitor page: a hit list that ``detect --follow`` is writing, watched as it grows.

:class:`HitListTail` reads the rows appended to the hit list since the last look (only whole
lines: ``detect --follow`` writes whole rows at once); :class:`MonitorState` keeps what the
page shows in memory that does not grow with the run: totals, fixed-bin histograms of the
score and the fitted diameter, the hit rate per minute (or per train, where the hit list has a
train column, as hit lists of European XFEL runs have: ``trainId``) over the last
:data:`RATE_BINS` bins, and the last :data:`KEPT_HITS` selected frames (the page shows
:data:`LATEST_HITS` of them).

What watching costs is bounded, so that the page never slows the detection beside it: the
hit list is read once per ``poll_s`` (1 s), and the page gets a small JSON message (server-
sent events) after a read that found rows, never more often.  The figures and the latest
hits' pictures are drawn on the server (matplotlib, Pillow) only when a page asks for them,
and at most once per :data:`PICTURE_S`: the messages carry the number of the current set of
pictures, which changes at most that often, and the latest hits only when they change.
A figure is made once and drawn again with the new numbers; a hit's picture is drawn once
(its address names the frame, and the browser keeps it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
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
from spidarknet.serve.images import frame_picture, read_frame, region_around
from spidarknet.sizing import SizingSettings, r_max_px

log = logging.getLogger(__name__)

#: selected frames whose pictures the page shows
LATEST_HITS = 8
#: selected frames kept, so that a picture the page asks for a moment late is still there
KEPT_HITS = 64
#: bins of the hit-rate history kept (minutes, or trains)
RATE_BINS = 240
SCORE_EDGES = np.linspace(0.0, 1.0, 41)
DIAMETER_EDGES = np.arange(0.0, 202.0, 2.0)
#: the figures of the page and their widths (pixels): one picture, side by side in this order
FIGURES = {"rate": 520, "scores": 400, "diameters": 400}
FIGURE_HEIGHT_PX = 230
#: the hit-list columns that hold a frame's train ID (European XFEL runs)
TRAIN_COLUMNS = ("trainId", "train_id")
#: bytes of the hit list read per look at most (the rest at the next look)
READ_LIMIT = 4 << 20
#: seconds between two sets of figures and hit pictures at least (each set is drawn only when a
#: page asks for it); the totals reach the page after every read of the hit list
PICTURE_S = 10.0
#: side of a latest hit's picture (pixels); the latest hits are one picture, side by side
HIT_SIDE_PX = 220
#: the colour of a latest hit's place where its frame could not be read (the page's grey)
NO_PICTURE_RGB = (238, 238, 238)


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
        rows = list(csv.reader(io.StringIO(data[:cut].decode("utf-8", errors="replace")))) if cut else []
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


def _numbers(texts: list) -> np.ndarray:
    return np.array([_number(t) for t in texts], dtype=np.float64)


def _count_into(counts: np.ndarray, counts_selected: np.ndarray, edges: np.ndarray, values: np.ndarray,
                selected: np.ndarray, clip: bool) -> None:
    """Add the finite ``values`` to the histogram ``counts`` (and the selected ones to
    ``counts_selected``); ``clip``: values outside the edges go to the first or last bin,
    else they are left out."""
    finite = np.isfinite(values)
    bins = np.searchsorted(edges, values[finite], side="right") - 1
    chosen = selected[finite]
    if clip:
        bins = np.clip(bins, 0, len(counts) - 1)
    else:
        inside = (bins >= 0) & (bins < len(counts))
        bins, chosen = bins[inside], chosen[inside]
    counts += np.bincount(bins, minlength=len(counts))
    counts_selected += np.bincount(bins[chosen], minlength=len(counts))


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
        """Count appended hit-list rows (column by column: a second of a fast run is a few
        milliseconds)."""
        if not rows:
            return
        now = self.clock()
        self.train_column = next((c for c in TRAIN_COLUMNS if c in rows[0]), None)
        if self.train_column is not None:
            self.rate_unit = "train"
        column = lambda name: [row.get(name) for row in rows]  # noqa: E731
        selected = np.array([v == "1" for v in column("hit")], dtype=bool)
        score, diameter = _numbers(column("score")), _numbers(column("diameter_nm"))
        _count_into(self.score_counts, self.score_counts_selected, SCORE_EDGES, score, selected, clip=True)
        _count_into(self.diameter_counts, self.diameter_counts_selected, DIAMETER_EDGES, diameter, selected,
                    clip=False)
        units = (_numbers(column(self.train_column)) if self.train_column
                 else np.full(len(rows), float(now // 60)))
        self._add_rate(units, selected)
        for i in np.flatnonzero(selected)[-KEPT_HITS:]:
            self._add_hit(rows[i], self.frames + int(i) + 1, score[i], diameter[i])
        self.frames += len(rows)
        self.selected += int(selected.sum())
        self.unusable += sum(v == "no-valid-pixels" for v in column("status"))
        self.sized += int(np.isfinite(diameter).sum())
        self.version += 1

    def _add_rate(self, units: np.ndarray, selected: np.ndarray) -> None:
        finite = np.isfinite(units)
        found, where = np.unique(units[finite].astype(np.int64), return_inverse=True)
        frames = np.bincount(where, minlength=len(found))
        hits = np.bincount(where, weights=selected[finite], minlength=len(found))
        for unit, n, k in zip(found.tolist(), frames.tolist(), hits.tolist()):
            counts = self.rate.setdefault(unit, [0, 0])
            counts[0] += n
            counts[1] += int(k)
        while len(self.rate) > RATE_BINS:
            self.rate.popitem(last=False)

    def _add_hit(self, row: dict, number: int, score: float, diameter: float) -> None:
        self.latest.append({"file": row.get("file", ""), "dataset": row.get("dataset", ""),
                            "index": int(_number(row.get("index"))), "score": float(score),
                            "diameter_nm": float(diameter), "diameter_err_nm": _number(row.get("diameter_err_nm")),
                            "box": [_number(row.get(c)) for c in ("x", "y", "w", "h")], "number": number})

    def latest_hits(self) -> list[dict]:
        """The :data:`LATEST_HITS` newest selected frames, newest first (JSON-ready)."""
        return [{k: v for k, v in hit.items() if k != "box"} for hit in list(reversed(self.latest))[:LATEST_HITS]]

    def snapshot(self) -> dict:
        """The numbers of the page (JSON-ready)."""
        rate = list(self.rate.values())
        last = rate[-1] if rate else [0, 0]
        return {"version": self.version, "frames": self.frames, "selected": self.selected,
                "unusable": self.unusable, "sized": self.sized,
                "hit_rate": self.selected / self.frames if self.frames else None,
                "last_bin_rate": last[1] / last[0] if last[0] else None, "rate_unit": self.rate_unit,
                "latest": self.latest_hits(), "elapsed_s": round(self.clock() - self.started, 1),
                "error": self.error}


#: the monitor's figures are drawn at fixed margins (pixels: left, right, bottom, top)
MARGINS_PX = (56, 12, 44, 26)
#: the steps an axis' top goes up by (times a power of ten), so that it changes seldom
NICE_STEPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def nice_top(value: float) -> float:
    """The smallest of :data:`NICE_STEPS` times a power of ten that is at least ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in NICE_STEPS if step * power >= value * (1 - 1e-12))


class LiveFigure:
    """A figure drawn again and again with new numbers.  What does not move with them (axes,
    ticks, labels, title, legend) is drawn once and kept as pixels; only the ``moving`` artists
    (the data) are drawn over it, until ``update(state)`` returns other limits (axes' tops go
    up in :data:`NICE_STEPS`, so that is seldom): a few milliseconds instead of tens."""

    def __init__(self, fig, moving: list, update: Callable):
        self.fig, self.moving, self.update = fig, moving, update
        for artist in moving:
            artist.set_animated(True)   # left out of the full drawing, drawn over the kept pixels
        self.limits = None
        self.background = None

    def rgb(self, state: "MonitorState") -> np.ndarray:
        """The figure for ``state``, (height, width, 3) uint8 (the state's lock held while it is read)."""
        with plot.style():
            limits = self.update(state)
            canvas = self.fig.canvas
            if limits != self.limits:
                canvas.draw()
                self.background, self.limits = canvas.copy_from_bbox(self.fig.bbox), limits
            else:
                canvas.restore_region(self.background)
            for artist in self.moving:
                artist.axes.draw_artist(artist)
            return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def rate_figure() -> LiveFigure:
    """The hit rate per minute or train."""
    with plot.figure(FIGURES["rate"], FIGURE_HEIGHT_PX, MARGINS_PX) as (fig, ax):
        line, = ax.plot([], [], "o-", ms=3, color=plot.BLUE)
        ax.set_ylabel("selected (%)")

    def update(state: MonitorState) -> tuple:
        items = list(state.rate.items())
        ax.set_xlabel("minutes before now" if state.rate_unit == "minute" else "train ID")
        ax.set_title(f"hit rate per {state.rate_unit}")
        x = np.array([k for k, _ in items], dtype=np.float64)
        counts = np.array([v for _, v in items], dtype=np.float64).reshape(-1, 2)
        rate = 100.0 * counts[:, 1] / np.maximum(counts[:, 0], 1)
        if state.rate_unit == "minute":
            x = x - (x[-1] if len(x) else 0.0)
            ax.set_xlim(min(x[0] if len(x) else 0.0, -10.0) - 0.5, 0.5)
        elif len(x):
            ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
        line.set_data(x, rate)
        ax.set_ylim(0, nice_top(max(5.0, 1.15 * float(rate.max(initial=0.0)))))
        return state.rate_unit, ax.get_xlim(), ax.get_ylim()
    return LiveFigure(fig, [line], update)


def histogram_figure(width_px: int, edges: np.ndarray, counts_of: Callable, title: str, xlabel: str) -> LiveFigure:
    """A histogram, all frames and those selected; ``counts_of(state)`` gives (all, selected).
    The legend is above the axes, where no bar reaches it."""
    from matplotlib.ticker import MaxNLocator
    zeros = np.zeros(len(edges) - 1)
    with plot.figure(width_px, FIGURE_HEIGHT_PX, MARGINS_PX) as (fig, ax):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        every = ax.stairs(zeros, edges, fill=True, color=plot.LIGHT, label="all frames")
        chosen = ax.stairs(zeros, edges, fill=True, color=plot.ORANGE, alpha=0.85, label="selected")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("frames")
        ax.set_title(title)
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False, borderaxespad=0.1,
                  handlelength=1.2, columnspacing=1.0)

    def update(state: MonitorState) -> tuple:
        counts, selected = counts_of(state)
        every.set_data(counts.astype(np.float64))
        chosen.set_data(selected.astype(np.float64))
        ax.set_ylim(0, nice_top(max(1.0, 1.05 * float(counts.max()))))
        return ax.get_ylim()
    return LiveFigure(fig, [every, chosen], update)


def make_figure(name: str) -> LiveFigure:
    """Figure ``name`` (one of :data:`FIGURES`)."""
    if name == "rate":
        return rate_figure()
    if name == "scores":
        return histogram_figure(FIGURES[name], SCORE_EDGES, lambda s: (s.score_counts, s.score_counts_selected),
                                "network score", "score")
    return histogram_figure(FIGURES[name], DIAMETER_EDGES, lambda s: (s.diameter_counts, s.diameter_counts_selected),
                            "fitted diameter", "diameter (nm)")


class Monitor:
    """The monitor of one hit list: the tail, the state, and the pictures of the moment (the
    figures and the latest hits), renewed at most once per ``picture_s``."""

    def __init__(self, hits_path: str, poll_s: float = 1.0, picture_s: float = PICTURE_S,
                 clock: Callable[[], float] = time.monotonic):
        self.tail = HitListTail(hits_path)
        self.state = MonitorState()
        self.poll_s, self.picture_s, self.clock = poll_s, picture_s, clock
        #: the state, the pictures' number and their hits; the figures are drawn holding it
        self.lock = threading.Lock()
        #: the latest hits' pictures are drawn one strip at a time
        self.hits_lock = threading.Lock()
        #: the number of the current set of pictures, when it began, the state version it shows
        #: (set 0: the empty run; set 1 begins with the first rows)
        self.pictures, self._pictures_at, self._pictured_version = 0, -math.inf, self.state.version
        self._pictured_hits: list[dict] = []
        #: the same hits with their boxes, newest first: the strip of the set is drawn from them,
        #: whatever number of newer hits has arrived since (the state keeps only KEPT_HITS)
        self._strip_hits: list[dict] = []
        self._made: dict[str, LiveFigure] = {}
        self._figures: tuple[int, bytes] | None = None
        self._tiles: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._files: dict[tuple[str, str], FileInfo] = {}

    def poll(self) -> None:
        """Count the rows appended since the last look (a file that is not a hit list: the page
        says so, and nothing more is read); a new set of pictures begins where it is due."""
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
            now = self.clock()
            if self.state.version != self._pictured_version and now - self._pictures_at >= self.picture_s:
                self.pictures, self._pictures_at = self.pictures + 1, now
                self._pictured_version = self.state.version
                self._pictured_hits = self.state.latest_hits()
                self._strip_hits = list(reversed(self.state.latest))[:LATEST_HITS]

    def message(self, sent_version: int, sent_pictures: int) -> dict | None:
        """The message for a page that was last sent ``sent_version`` of the numbers and set
        ``sent_pictures`` of the pictures (-1: nothing yet); None when nothing changed.  The
        latest hits are in it only with a new set of pictures."""
        with self.lock:
            if self.state.version == sent_version and self.pictures == sent_pictures:
                return None
            message = self.state.snapshot()
            message["pictures"] = self.pictures
            if self.pictures != sent_pictures:
                message["latest"] = self._pictured_hits
            else:
                del message["latest"]
        return message

    def figures_picture(self) -> bytes:
        """One PNG of the :data:`FIGURES` side by side for the current set of pictures (drawn
        once per set, and only when a page asks; the page shows each figure as its part)."""
        with self.lock:
            if self._figures is not None and self._figures[0] == self.pictures:
                return self._figures[1]
            for name in FIGURES:
                if name not in self._made:
                    self._made[name] = make_figure(name)
            data = server.png_of_rgb(np.hstack([self._made[name].rgb(self.state) for name in FIGURES]))
            self._figures = (self.pictures, data)
        return data

    def hits_picture(self, number: int) -> bytes | None:
        """One PNG of the :data:`LATEST_HITS` selected frames up to the run's ``number``-th row,
        newest first, side by side (:data:`HIT_SIDE_PX` each); the page shows each hit as its
        part, so a set of hits is one request and one picture to decode.  Its address names
        what it shows, so the browser keeps it.  None when that row is not a kept hit."""
        with self.lock:
            if self._strip_hits and self._strip_hits[0]["number"] == number:
                hits = list(self._strip_hits)   # the current set's, kept with it
            else:
                kept = [h for h in self.state.latest if h["number"] <= number]
                if not kept or kept[-1]["number"] != number:
                    return None
                hits = kept[-LATEST_HITS:][::-1]
        strip = np.empty((HIT_SIDE_PX, HIT_SIDE_PX * len(hits), 3), dtype=np.uint8)
        strip[:] = NO_PICTURE_RGB
        with self.hits_lock:
            for k, hit in enumerate(hits):
                tile = self._tile(hit)
                if tile is not None:
                    h, w = tile.shape[:2]
                    y, x = (HIT_SIDE_PX - h) // 2, k * HIT_SIDE_PX + (HIT_SIDE_PX - w) // 2
                    strip[y:y + h, x:x + w] = tile
        return server.png_of_rgb(strip)

    def _tile(self, hit: dict) -> np.ndarray | None:
        """The picture of one selected frame, drawn once (the strips of the next sets reuse it);
        None while its frame cannot be read (the file moved, or the frame is not there yet)."""
        tile = self._tiles.get(hit["number"])
        if tile is None:
            try:
                tile = self._draw_hit(hit)
            except (OSError, KeyError, IndexError, SpidarknetError) as exc:
                log.debug("no picture of %s #%s: %s", hit["file"], hit["index"], exc)
                return None
            self._tiles[hit["number"]] = tile
            while len(self._tiles) > 2 * LATEST_HITS:
                self._tiles.popitem(last=False)
        return tile

    def _draw_hit(self, hit: dict) -> np.ndarray:
        info = self._file(hit["file"], hit["dataset"])
        try:
            half = r_max_px(info.geometry, SizingSettings())
        except SpidarknetError:
            half = None  # a file without the geometry of q: the whole frame
        region = None if half is None else region_around(info.frame_shape, info.geometry.centre_px, half)
        photons, valid = read_frame(info, hit["index"], region)
        origin = (0, 0) if region is None else (region[0].start, region[1].start)
        return frame_picture(photons, valid, hit["box"], side_px=HIT_SIDE_PX, origin=origin)

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
        offsets = np.cumsum([0, *FIGURES.values()])
        figures = [(name, width, int(offset)) for (name, width), offset in zip(FIGURES.items(), offsets)]
        return server.html_response(server.render_template(
            "monitor.html", title=title, hits_path=os.path.basename(monitor.tail.path), figures=figures,
            figure_height=FIGURE_HEIGHT_PX, hit_side=HIT_SIDE_PX))

    async def figures(request):
        return server.png_response(await run_in_threadpool(monitor.figures_picture))

    async def hits(request):
        data = await run_in_threadpool(monitor.hits_picture, request.path_params["number"])
        return server.png_response(data, cache_s=600) if data is not None else server.not_found()

    async def state(request):
        with monitor.lock:
            return server.json_response(monitor.state.snapshot())

    async def events():
        sent_version = sent_pictures = -1
        while True:
            message = monitor.message(sent_version, sent_pictures)
            if message is not None:
                sent_version, sent_pictures = message["version"], message["pictures"]
            yield message  # None: nothing new (the stream looks whether the server is stopping)
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
        await run_in_threadpool(monitor.figures_picture)
        task = asyncio.ensure_future(poller())
        try:
            yield
        finally:
            task.cancel()

    routes = [Route("/", page), Route("/events", stream), Route("/state", state),
              Route("/figures/{pictures:int}.png", figures), Route("/hits/{number:int}.png", hits)]
    return Starlette(routes=routes, lifespan=lifespan)
