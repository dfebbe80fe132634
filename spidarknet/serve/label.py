"""The labelling page: the frames ``propose`` ranks, shown one at a time, labelled by key.

At the start the network scores every frame and the sphere fit measures a pool of them (as
``propose`` does); the pool's proposals are then shown one by one: the frame (log scale, mask
shaded, the network's box), its radial profile with the sphere fit, the score and the diameter.
Every label goes at once into the positives or negatives CSV (``file,dataset,index``, what
``learn`` reads), rewritten whole under a temporary name and renamed into place, so a closed
tab or a killed server loses nothing and never leaves half a file.  Undo takes the last label
(or skip) back, out of its file too.  Every ``every`` labels the proposals are drawn again with
the selector learnt from the labels so far (uncertain frames near its boundary, and
representative ones), and the learn button runs ``learn`` on the files as written.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from spidarknet.core.errors import ConfigError, InputError, SpidarknetError
from spidarknet.core.outputs import atomic_path
from spidarknet.core.selection import read_selection
from spidarknet.frames.source import FrameKey, FrameSource
from spidarknet.report import plot
from spidarknet.selection.features import Measured
from spidarknet.selection.propose import propose
from spidarknet.selection.selector import Selector, learn_selector
from spidarknet.serve import server
from spidarknet.serve.images import around_centre, frame_picture, profile_figure

log = logging.getLogger(__name__)

SINGLE, NOT_SINGLE, SKIP = "1", "0", "skip"
#: frames whose pictures are kept drawn (the current one, the next, a few back for undo)
PICTURE_CACHE = 6


@dataclass
class LabelFiles:
    """The positives and negatives CSVs, kept in memory and rewritten whole at every change."""

    positives: str
    negatives: str
    rows: dict = field(default_factory=lambda: {SINGLE: [], NOT_SINGLE: []})

    def load(self) -> None:
        """The rows the files hold already (a session goes on where the last one stopped)."""
        for label, path in ((SINGLE, self.positives), (NOT_SINGLE, self.negatives)):
            if os.path.exists(path) and os.path.getsize(path) > 0:
                self.rows[label] = [(os.path.abspath(e.file), e.dataset or "", e.index) for e in read_selection(path)]

    def labelled(self) -> dict[tuple[str, int], str]:
        """(absolute file, index) -> label of every row."""
        return {(f, i): label for label in (SINGLE, NOT_SINGLE) for f, _, i in self.rows[label]}

    def add(self, key: FrameKey, label: str) -> None:
        self.rows[label].append((os.path.abspath(key.file), key.dataset, int(key.index)))
        self.write(label)

    def remove_last(self, key: FrameKey, label: str) -> None:
        wanted = (os.path.abspath(key.file), key.dataset, int(key.index))
        rows = self.rows[label]
        where = max(i for i, row in enumerate(rows) if row == wanted)
        del rows[where]
        self.write(label)

    def write(self, label: str) -> None:
        """The file of ``label``, written under a temporary name, synced and renamed into place."""
        path = self.positives if label == SINGLE else self.negatives
        with atomic_path(path, True, "label list") as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["file", "dataset", "index"])
                writer.writerows(self.rows[label])
                handle.flush()
                os.fsync(handle.fileno())


@dataclass
class Pool:
    """What the page shows of each frame of the pool: its key, box and features."""

    measured: Measured
    boxes: np.ndarray
    screen: float

    def row_of(self) -> dict[tuple[str, int], int]:
        return {(os.path.abspath(k.file), int(k.index)): i for i, k in enumerate(self.measured.keys)}


class LabelSession:
    """One person labelling one run: the queue of proposals, the labels, undo, re-proposals."""

    def __init__(self, source: FrameSource, pool: Pool, files: LabelFiles, *, n: int, every: int,
                 learn: Callable[[], Selector], seed: int = 0, selector: Selector | None = None):
        self.source, self.pool, self.files = source, pool, files
        self.n, self.every, self.seed = n, every, seed
        self.learn_fn = learn
        self.selector = selector
        self.lock = threading.RLock()
        self.history: list[tuple[int, str]] = []
        self.skipped: set[int] = set()
        self.since_proposal = 0
        self.round = 0
        self.learnt: dict | None = None
        self.probability = np.full(len(pool.measured), np.nan)
        self.why: dict[int, str] = {}
        self.queue: list[int] = []
        self._pictures: OrderedDict = OrderedDict()
        self._drawing: dict[int, threading.Event] = {}
        self.propose()

    # -- the queue ---------------------------------------------------------------------------
    def labelled_mask(self) -> np.ndarray:
        done = self.files.labelled()
        return np.array([(os.path.abspath(k.file), int(k.index)) in done or i in self.skipped
                         for i, k in enumerate(self.pool.measured.keys)], dtype=bool)

    def labels_in_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """(pool rows, their 1/0 labels) of the labelled frames of the pool."""
        done = self.files.labelled()
        rows, labels = [], []
        for i, k in enumerate(self.pool.measured.keys):
            label = done.get((os.path.abspath(k.file), int(k.index)))
            if label is not None:
                rows.append(i)
                labels.append(int(label))
        return np.asarray(rows, dtype=int), np.asarray(labels, dtype=int)

    def propose(self) -> None:
        """Draw the queue again: with a selector learnt from the labels so far (where each class
        has 3 labels at least), half of the frames near its boundary."""
        rows, labels = self.labels_in_pool()
        if len(rows) and np.bincount(labels, minlength=2).min() >= 3:
            try:
                self.selector = learn_selector(self.pool.measured.subset(rows), labels, card_screen=None,
                                               weights={}, seed=self.seed, screen=self.pool.screen)
            except (SpidarknetError, ValueError):
                pass  # labels a selector cannot be learnt from yet: representative frames only
        if self.selector is not None:
            self.probability = self.selector.probability(self.pool.measured)
        chosen, why = propose(self.pool.measured, self.n, selector=self.selector, labelled=self.labelled_mask(),
                              seed=self.seed + self.round, screen=self.pool.screen)
        self.queue = list(chosen)
        self.why.update(zip(chosen, why))
        self.round += 1
        self.since_proposal = 0

    # -- what the person does ----------------------------------------------------------------
    def label(self, row: int, value: str) -> None:
        """Label (``"1"``, ``"0"``) or skip (``"skip"``) the frame at the head of the queue,
        which must be ``row`` (a key pressed twice labels one frame, not two)."""
        if value not in (SINGLE, NOT_SINGLE, SKIP):
            raise ConfigError(f"label {value!r}: give 1 (single), 0 (not single) or skip")
        with self.lock:
            if not self.queue or self.queue[0] != row:
                raise InputError("that frame is not the one to label now; reload the page")
            if value == SKIP:
                self.skipped.add(row)
            else:
                self.files.add(self.pool.measured.keys[row], value)
                self.since_proposal += 1
            self.queue.pop(0)
            self.history.append((row, value))
            if value != SKIP and self.since_proposal >= self.every:
                self.propose()

    def undo(self) -> None:
        """Take the last label or skip back: out of its file, and its frame shown again."""
        with self.lock:
            if not self.history:
                raise InputError("nothing to undo")
            row, value = self.history.pop()
            if value == SKIP:
                self.skipped.discard(row)
            else:
                self.files.remove_last(self.pool.measured.keys[row], value)
                self.since_proposal = max(self.since_proposal - 1, 0)
            if row in self.queue:
                self.queue.remove(row)
            self.queue.insert(0, row)

    def learn(self) -> dict:
        """``learn`` on the label files as written; its cross-validated figures."""
        selector = self.learn_fn()
        with self.lock:
            self.selector = selector
            self.learnt = {"figures": selector.figures, "screen": selector.screen,
                           "weights": [{"feature": n, "linear": a, "square": b} for n, a, b in selector.weight_table()]}
            return self.learnt

    # -- what the page shows -----------------------------------------------------------------
    def state(self) -> dict:
        with self.lock:
            done = self.files.labelled()
            current = self.describe(self.queue[0]) if self.queue else None
            return {"current": current, "remaining": len(self.queue), "round": self.round,
                    "single": sum(v == SINGLE for v in done.values()),
                    "not_single": sum(v == NOT_SINGLE for v in done.values()),
                    "skipped": len(self.skipped), "labelled_here": sum(v != SKIP for _, v in self.history),
                    "can_undo": bool(self.history), "every": self.every, "learnt": self.learnt,
                    "positives": self.files.positives, "negatives": self.files.negatives}

    def describe(self, row: int) -> dict:
        m = self.pool.measured
        v = m.values
        key = m.keys[row]
        return {"row": row, "file": key.file, "name": os.path.basename(key.file), "index": int(key.index),
                "why": self.why.get(row, ""), "score": v["score"][row], "diameter_nm": v["diameter_nm"][row],
                "diameter_err_nm": v["diameter_err_nm"][row], "misfit": v["misfit"][row],
                "second_particle_z": v["second_particle_z"][row], "signal_photons": v["signal_photons"][row],
                "probability": self.probability[row], "fit_reason": m.fit_reason[row]}

    def pictures(self, row: int) -> tuple[bytes, bytes]:
        """(the frame's PNG, its profile's PNG), drawn once for the last few frames asked (a
        frame being drawn already, for the page or ahead of it, is waited for)."""
        if not 0 <= row < len(self.pool.measured):
            raise IndexError(row)
        with self.lock:
            if row in self._pictures:
                self._pictures.move_to_end(row)
                return self._pictures[row]
            drawing = self._drawing.get(row)
            if drawing is None:
                self._drawing[row] = threading.Event()
        if drawing is not None:
            drawing.wait()
            return self.pictures(row)
        try:
            drawn = self._draw(row)
            with self.lock:
                self._pictures[row] = drawn
                while len(self._pictures) > PICTURE_CACHE:
                    self._pictures.popitem(last=False)
        finally:
            with self.lock:
                self._drawing.pop(row).set()
        return drawn

    def draw_ahead(self) -> None:
        """Draw the next frames of the queue in the background, while the current one is looked at."""
        with self.lock:
            ahead = [row for row in self.queue[:2] if row not in self._pictures and row not in self._drawing]
        def draw() -> None:
            for row in ahead:
                try:
                    self.pictures(row)
                except Exception:  # drawn again, and its error told, when the page asks for it
                    log.debug("drawing frame %d ahead failed", row, exc_info=True)
        if ahead:
            threading.Thread(target=draw, daemon=True).start()

    def _draw(self, row: int) -> tuple[bytes, bytes]:
        from spidarknet.sizing import SizingSettings, file_background, r_max_px, size_frame
        key = self.pool.measured.keys[row]
        frames = self.source.select_keys([key])
        info = next(f for f in frames.files if len(f.indices))
        chunk = next(frames.chunks(1))
        photons = np.asarray(chunk.data[0], dtype=np.float64)
        valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[0]
        settings = SizingSettings()   # the fit detect made, with the file's background shape
        found = file_background(frames, info, settings)
        result = size_frame(photons, valid, info.geometry, key, settings, background_shape=found.shape,
                            row_stripes=found.row_stripes)
        crop, crop_valid, origin = around_centre(photons, valid, result.centre_xy,
                                                 r_max_px(info.geometry, settings))
        picture = frame_picture(crop, crop_valid, self.pool.boxes[row], side_px=440, origin=origin)
        return server.png_of_rgb(picture), server.png_of_figure(profile_figure(result, info.geometry))


def weights_figure(learnt: dict):
    """The learnt selector's feature weights (standardised), as horizontal bars."""
    rows = [w for w in learnt["weights"] if w["linear"] or w["square"]] or learnt["weights"]
    with plot.figure(460, 60 + 22 * len(rows)) as (fig, ax):
        y = np.arange(len(rows))
        ax.barh(y - 0.2, [w["linear"] for w in rows], 0.4, color=plot.BLUE, label="z")
        ax.barh(y + 0.2, [w["square"] for w in rows], 0.4, color=plot.ORANGE, label="z²")
        ax.set_yticks(y, [w["feature"] for w in rows])
        ax.invert_yaxis()
        ax.axvline(0, color=plot.DARK, lw=0.8)
        ax.set_title("the selector's weights")
        ax.legend(loc="lower right")
    return fig


def start_session(source: FrameSource, model, files: LabelFiles, *, n: int, every: int, pool_size: int,
                  selection_out: str, seed: int = 0, jobs: int | None = None, folds: int = 5,
                  selector: Selector | None = None,
                  progress: Callable[[str, int | None], Callable[[int], object]] | None = None) -> LabelSession:
    """Score every frame of ``source``, measure the pool proposals are drawn from, and open the
    session; ``learn`` (the page's button) learns from ``files`` as written and saves the
    selection to ``selection_out``.  ``progress`` is given each stage ("score", "fit") and its
    number of frames and returns the callback counting them."""
    from spidarknet.dataset import labels_from_selections
    from spidarknet.selection.pipeline import labelled_among, learn_from_labels, measure_pool, score_frames
    files.load()
    count = (lambda stage, total: progress(stage, total)) if progress is not None else (lambda stage, total: None)
    hits = score_frames(source, model, on_chunk=count("score", len(source)))
    screen = selector.screen if selector else model.validation.get("screening_threshold", model.threshold)
    written = [p for p in (files.positives, files.negatives) if os.path.exists(p) and os.path.getsize(p) > 0]
    labelled = labelled_among(source, hits, written)
    rows, measured = measure_pool(source, hits, screen, size=pool_size, seed=seed, labelled=labelled, jobs=jobs,
                                  on_frames=count("fit", None))
    if len(measured) == 0:
        raise InputError("every frame of the inputs is labelled already: nothing is left to propose")

    def learn() -> Selector:
        labels = labels_from_selections(source, [files.positives], [files.negatives])
        found = np.bincount(np.concatenate([v[v >= 0] for v in labels.values()]), minlength=2)
        if found.min() < 3:
            raise InputError(f"learn needs 3 labels of each kind at least; there are {found[1]} single and "
                             f"{found[0]} not single")
        learnt = learn_from_labels(source, labels, model, folds=folds, seed=seed, jobs=jobs)
        learnt.save(selection_out, force=True)
        return learnt
    pool = Pool(measured, hits.boxes[rows], screen)
    return LabelSession(source, pool, files, n=n, every=every, learn=learn, seed=seed, selector=selector)


def label_app(session: LabelSession, title: str):
    """The Starlette application of the labelling page."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    async def page(request):
        return server.html_response(server.render_template("label.html", title=title))

    async def state(request):
        session.draw_ahead()
        return server.json_response(await run_in_threadpool(session.state))

    async def act(request):
        try:
            body = await request.json()
            what = request.path_params["action"]
            if what == "label":
                await run_in_threadpool(session.label, int(body["row"]), str(body["label"]))
            elif what == "undo":
                await run_in_threadpool(session.undo)
            elif what == "learn":
                await run_in_threadpool(session.learn)
            else:
                return server.not_found()
        except SpidarknetError as exc:
            return server.json_response({"error": str(exc), **session.state()}, status_code=409)
        except (ValueError, KeyError, TypeError):
            return server.json_response({"error": "expected JSON {\"row\": N, \"label\": \"1\"|\"0\"|\"skip\"}"},
                                        status_code=400)
        session.draw_ahead()
        return server.json_response(await run_in_threadpool(session.state))

    async def picture(request):
        if request.path_params["what"] not in ("frame", "profile"):
            return server.not_found()
        try:
            frame, profile = await run_in_threadpool(session.pictures, request.path_params["row"])
        except IndexError:
            return server.not_found()
        return server.png_response(frame if request.path_params["what"] == "frame" else profile)

    async def weights(request):
        if session.learnt is None:
            return server.not_found()
        return server.png_response(await run_in_threadpool(
            lambda: server.png_of_figure(weights_figure(session.learnt))))

    routes = [Route("/", page), Route("/api/state", state), Route("/api/{action:str}", act, methods=["POST"]),
              Route("/{what:str}/{row:int}.png", picture), Route("/learnt/weights.png", weights)]
    return Starlette(routes=routes)
