"""Frames to a hit list: read, preprocess as recorded for the model, prefilter, detect, collect.

The prefilter is a cheap hit finder in front of the network, as Cheetah and Hummingbird
put one in front of their analysis: it looks at the photons per bin that preprocessing
has already made (no second read) and sends to the network only the frames that hold
more than background.  Frames it rejects get score 0 and an empty box (width and height
0) at the crop's centre; the hit list's JSON counts them.

The default rule is a statistical test that needs no calibration.  An empty shot has a
flat background: its photons fall on the crop's valid pixels in proportion to their
area.  A particle's pattern falls off as q⁻⁴ from the beam centre, so it puts far more
photons near the centre than far from it.  For each frame the crop is split into an
*inner* disc (radius half the crop's half-width, around the beam) and the *outer*
corners (beyond 0.9 of the half-width, where ``pattern_extent`` also takes its
background); with ``N`` photons in the two together and ``p`` the inner share of their
valid pixels, a flat background puts ``N_inner ~ Binomial(N, p)`` photons inside.  A
frame goes to the network when ``N_inner - N p > sigma * sqrt(N p (1 - p))`` (default
3 σ): its crop holds more than the background estimated from its own outer crop can
explain.  So the background level is measured per frame (it may drift during a run),
and the test is in photon counts: set ``adu_per_photon`` right for ADU data.

Measured on the simulator (0.002 background photons/pixel, ~125 in the 256-pixel crop,
pnCCD mask with its beam stop): empty shots pass at ~0.3 % (chance alone), every single
hit had z > 17 at the simulator's fluence and z > 4.3 at 1/20 of it (~140 signal photons
in the crop, fewer than the dimmest singles of a real run), so none was rejected.  What
it cannot see: a pattern that is flat across the crop (particles of ~10 nm and less) or
far off the crop's centre; background that rises towards the centre only makes more
empty frames pass.  ``Prefilter(min_photons=N)`` replaces the test by a fixed floor of
``N`` photons in the crop.

**Frames the model does not fit.**  Where the crop reaches beyond a frame's pixels (a
frame smaller than the crop, or a beam centre near its edge) preprocessing pads it with
zeros; such frames are scored and marked ``padded`` in the hit list.  Frames without a
single usable pixel in the crop (all NaN, negative or masked) never reach the network
and are marked ``no-valid-pixels`` (see :mod:`spidarknet.hits`).  :class:`FrameChecks`
counts both per file, and the NaN or negative pixel values preprocessing masked, for
the hit list's JSON (``frame_checks``) and one warning line each.  Boxes are clipped to
the detector.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from spidarknet.core.defaults import DETECT_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, EngineError
from spidarknet.detection.fits import ScreenedFits
from spidarknet.engine.detector import Detector
from spidarknet.frames.source import FrameChunk, FrameSource
from spidarknet.hits import NO_VALID_PIXELS, OK, PADDED, HitList
from spidarknet.preprocess import Preprocessing, Preprocessor, Processed

log = logging.getLogger(__name__)

#: the background test: standard deviations of inner excess a frame needs to reach the network
PREFILTER_SIGMA = 3.0
#: a pixel is lit (the lit-pixel rule) from this many photons on: one photon, after rounding
LIT_PHOTONS = 0.5
#: radius of the inner disc and start of the outer region, as fractions of the crop's half-width
INNER_FRACTION = 0.5
OUTER_FRACTION = 0.9


@dataclass
class StageTimes:
    """Seconds spent per stage (wall clock, summed over chunks)."""

    read: float = 0.0
    preprocess: float = 0.0
    prefilter: float = 0.0
    inference: float = 0.0
    fit: float = 0.0        # the sphere fits of a size window or selector (after the network)
    total: float = 0.0
    fitted: int = 0             # frames the sphere was fitted to
    fit_cpu: float = 0.0        # CPU seconds of those fits, summed over the processes
    second_particle_cpu: float = 0.0   # ... of which their second-particle tests

    def as_dict(self, frames: int) -> dict:
        out = {"read_s": self.read, "preprocess_s": self.preprocess, "prefilter_s": self.prefilter,
               "inference_s": self.inference, "fit_s": self.fit, "total_s": self.total}
        if self.fitted:
            out.update(fitted_frames=self.fitted, fit_cpu_s=self.fit_cpu,
                       second_particle_cpu_s=self.second_particle_cpu)
        out["frames_per_s"] = frames / self.total if self.total > 0 else None
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}

    def add(self, other: "StageTimes") -> None:
        """Add another process's seconds per stage (not its total: the caller's wall clock is)."""
        for stage in ("read", "preprocess", "prefilter", "inference", "fit"):
            setattr(self, stage, getattr(self, stage) + getattr(other, stage))


class PartialResult(EngineError):
    """The engine failed part-way; ``hits`` holds the frames scored before."""

    def __init__(self, message: str, hits: HitList):
        super().__init__(message)
        self.hits = hits

    def __reduce__(self):  # pickled whole (with its hits) from a worker process
        return type(self), (str(self), self.hits), self.__dict__


@dataclass(frozen=True)
class Prefilter:
    """Which frames reach the network (see the module docstring).

    ``min_photons`` None: the background test at ``sigma``; a number: frames with fewer
    photons than that in the crop are rejected.
    """

    min_photons: float | None = None
    sigma: float = PREFILTER_SIGMA
    #: the facility's lit-pixel rule instead (European XFEL's SPI hit finder): a frame passes when
    #: its lit pixels (valid pixels of the region read with >= LIT_PHOTONS photons) exceed the
    #: median + ``lit_k`` x IQR of the lit pixels of its window (the frames read together: up to
    #: ``--chunk`` frames, of one train for European XFEL runs)
    lit_k: float | None = None

    def __post_init__(self):
        if self.lit_k is not None and not (math.isfinite(self.lit_k) and self.lit_k >= 0):
            raise ConfigError(f"the lit-pixel rule's k must be a number >= 0, not {self.lit_k}")
        if self.lit_k is not None and self.min_photons is not None:
            raise ConfigError("choose one prefilter rule: a photon floor or the lit-pixel rule")
        if self.min_photons is not None and not (math.isfinite(self.min_photons) and self.min_photons >= 0):
            raise ConfigError(f"the prefilter's photon floor must be a number >= 0, not {self.min_photons}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ConfigError(f"the prefilter's sigma must be a number >= 0, not {self.sigma}")

    def to_dict(self) -> dict:
        if self.lit_k is not None:
            return {"rule": "litpixels", "k": self.lit_k, "lit_photons": LIT_PHOTONS}
        if self.min_photons is not None:
            return {"rule": "min_photons", "min_photons": self.min_photons}
        return {"rule": "background", "sigma": self.sigma, "inner_fraction": INNER_FRACTION,
                "outer_fraction": OUTER_FRACTION}

    @classmethod
    def from_dict(cls, values: dict) -> "Prefilter":
        if values["rule"] == "min_photons":
            return cls(min_photons=float(values["min_photons"]))
        if values["rule"] == "litpixels":
            return cls(lit_k=float(values["k"]))
        return cls(sigma=float(values["sigma"]))


class PrefilterGate:
    """A :class:`Prefilter` applied to the crops of one :class:`Preprocessing`."""

    def __init__(self, rule: Prefilter, settings: Preprocessing):
        self.rule = rule
        self.settings = settings
        n = settings.size
        centre = (n - 1) / 2.0
        yy, xx = np.mgrid[0:n, 0:n]
        r = np.hypot(xx - centre, yy - centre).ravel()
        self._inner = np.flatnonzero(r <= INNER_FRACTION * n / 2.0)
        self._outer = np.flatnonzero(r > OUTER_FRACTION * n / 2.0)
        self._valid_seen = None    # the last chunk's mask, and its valid pixels per region
        self._areas = None

    def passes(self, chunk: FrameChunk, photons: np.ndarray) -> np.ndarray:
        """True for each frame of ``chunk`` that goes to the network; ``photons`` per bin."""
        if self.rule.lit_k is not None:
            return lit_pixel_pass(chunk, self.rule.lit_k)
        flat = photons.reshape(len(photons), -1)
        if self.rule.min_photons is not None:
            return flat.sum(axis=1, dtype=np.float64) >= self.rule.min_photons
        # per row, so that a frame's sums do not depend on the chunk it came in
        n_in = flat[:, self._inner].sum(axis=1, dtype=np.float64)
        n_out = flat[:, self._outer].sum(axis=1, dtype=np.float64)
        a_in, a_out = self._region_areas(chunk)
        judged = (a_in > 0) & (a_out > 0)  # without pixels on both sides there is no test: pass
        p = np.where(judged, a_in / np.where(judged, a_in + a_out, 1.0), 0.5)
        total = n_in + n_out
        excess = n_in - total * p
        return ~judged | (excess > self.rule.sigma * np.sqrt(total * p * (1.0 - p)))

    def _region_areas(self, chunk: FrameChunk) -> tuple[np.ndarray, np.ndarray]:
        """Valid detector pixels in the inner and outer region, per frame (or one for all)."""
        if chunk.valid is not self._valid_seen:
            area = crop_valid_area(chunk, self.settings).reshape(-1, self.settings.size ** 2)
            self._areas = (area[:, self._inner].sum(axis=1), area[:, self._outer].sum(axis=1))
            self._valid_seen = chunk.valid
        return self._areas


def lit_pixels(chunk: FrameChunk) -> np.ndarray:
    """Per frame of ``chunk``: its valid pixels with at least :data:`LIT_PHOTONS` photons."""
    lit = (np.nan_to_num(chunk.data, nan=0.0) >= LIT_PHOTONS) & chunk.valid
    return np.count_nonzero(lit.reshape(len(chunk), -1), axis=1)


def lit_pixel_pass(chunk: FrameChunk, k: float) -> np.ndarray:
    """The facility's lit-pixel hit finder on one window (the chunk): lit pixels above the
    window's median + ``k`` x its interquartile range."""
    counts = lit_pixels(chunk).astype(np.float64)
    q1, median, q3 = np.percentile(counts, [25, 50, 75])
    return counts > median + k * (q3 - q1)


def crop_valid_area(chunk: FrameChunk, settings: Preprocessing) -> np.ndarray:
    """Valid detector pixels per bin of the crop: (1, size, size) for a shared mask, else (n, size, size).

    Pixels outside the frame count as invalid (preprocessing pads them with zeros);
    NaN or negative values that preprocessing masks as well are not known here.
    """
    s = settings.for_file(chunk.info)  # a crop in q: in this file's pixels
    r0, r1, c0, c1 = s.crop_box(chunk.info)
    valid = chunk.valid if chunk.valid.ndim == 3 else chunk.valid[None]
    h, w = valid.shape[1:]
    o_r, o_c = chunk.origin
    top, bottom = max(r0, o_r), min(r1, o_r + h)
    left, right = max(c0, o_c), min(c1, o_c + w)
    crop = np.zeros((len(valid), s.crop, s.crop), dtype=np.float32)
    if bottom > top and right > left:
        crop[:, top - r0:bottom - r0, left - c0:right - c0] = valid[:, top - o_r:bottom - o_r, left - o_c:right - o_c]
    import cv2
    scale = np.float32((s.crop / s.size) ** 2)
    return np.stack([cv2.resize(frame, (s.size, s.size), interpolation=cv2.INTER_AREA) * scale
                     for frame in crop])


def boxes_to_frame_pixels(boxes: np.ndarray, settings: Preprocessing, crop_origin: tuple[int, int],
                          frame_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Normalised (cx, cy, w, h) network-input boxes -> (x, y, w, h) full-frame pixels.

    With ``frame_shape`` (rows, columns) the boxes are clipped to the detector: pixel
    centres lie at whole numbers, so its edges are at -0.5 and ``columns - 0.5`` (rows
    likewise); a box wholly outside becomes an empty one on the nearest edge."""
    r0, c0 = crop_origin
    crop = settings.crop
    x = c0 - 0.5 + (boxes[:, 0] - boxes[:, 2] / 2) * crop
    y = r0 - 0.5 + (boxes[:, 1] - boxes[:, 3] / 2) * crop
    w, h = boxes[:, 2] * crop, boxes[:, 3] * crop
    if frame_shape is not None:
        rows, cols = frame_shape
        x, w = _clip_span(x, w, cols)
        y, h = _clip_span(y, h, rows)
    return np.stack([x, y, w, h], axis=1).astype(np.float32)


def _clip_span(start: np.ndarray, length: np.ndarray, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """``start`` and ``length`` cut to [-0.5, pixels - 0.5]; untouched where already inside."""
    lo, hi = -0.5, pixels - 0.5
    outside = (start < lo) | (start + length > hi)
    if not outside.any():
        return start, length
    begin = np.clip(start, lo, hi)
    return np.where(outside, begin, start), np.where(outside, np.clip(start + length, lo, hi) - begin, length)


def score_chunk(detector: Detector, processed: Processed, passed: np.ndarray | None,
                settings: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Scores and full-frame boxes (clipped to the detector) of a preprocessed chunk; only
    ``passed`` frames (all when None) with a usable pixel reach the network, the others
    get score 0 and an empty box at the crop's centre."""
    settings = processed.settings or settings  # a crop in q: in this file's pixels
    if processed.valid_pixels is not None and not processed.valid_pixels.all():
        seen = processed.valid_pixels > 0
        passed = seen if passed is None else passed & seen
    if passed is None:
        found = detector.detect(processed.images)
        return found.scores, boxes_to_frame_pixels(found.boxes, settings, processed.crop_origin,
                                                   processed.frame_shape)
    n = len(processed.images)
    scores = np.zeros(n, dtype=np.float32)
    network_boxes = np.tile(np.array([0.5, 0.5, 0.0, 0.0], dtype=np.float32), (n, 1))
    if passed.any():
        found = detector.detect(processed.images[passed])
        scores[passed] = found.scores
        network_boxes[passed] = found.boxes
    return scores, boxes_to_frame_pixels(network_boxes, settings, processed.crop_origin, processed.frame_shape)


@dataclass
class FrameChecks:
    """Frames the model does not fit and masked bad values, counted per file (absolute path).

    ``padded``: path -> {"frames", "frame_shape" [rows, columns], "crop_px"};
    ``no_valid_pixels``: path -> frames; ``bad_values``: path -> NaN or negative pixel
    values masked.  Counts of several processes add up with :meth:`merge`."""

    padded: dict = field(default_factory=dict)
    no_valid_pixels: dict = field(default_factory=dict)
    bad_values: dict = field(default_factory=dict)

    def add(self, chunk: FrameChunk, processed: Processed) -> np.ndarray:
        """Count one preprocessed chunk; returns its frames' status (see :mod:`spidarknet.hits`)."""
        n = len(chunk)
        status = np.full(n, PADDED if processed.padded else OK, dtype=np.int8)
        if processed.valid_pixels is not None:
            status[processed.valid_pixels == 0] = NO_VALID_PIXELS
        path = chunk.info.path
        n_padded = int(np.count_nonzero(status == PADDED))
        if n_padded:
            s = processed.settings
            entry = self.padded.setdefault(path, {"frames": 0, "frame_shape": list(chunk.info.frame_shape),
                                                  "crop_px": s.crop if s is not None else None})
            entry["frames"] += n_padded
        n_empty = int(np.count_nonzero(status == NO_VALID_PIXELS))
        if n_empty:
            self.no_valid_pixels[path] = self.no_valid_pixels.get(path, 0) + n_empty
        if processed.n_bad_values:
            self.bad_values[path] = self.bad_values.get(path, 0) + int(processed.n_bad_values)
        return status

    def to_dict(self) -> dict:
        """The hit list's ``frame_checks``: totals and counts per file."""
        def in_order(counts: dict) -> dict:  # by path, as the hit list: the same whatever the shards
            return {p: (dict(counts[p]) if isinstance(counts[p], dict) else counts[p]) for p in sorted(counts)}
        return {"padded": {"frames": sum(v["frames"] for v in self.padded.values()),
                           "files": in_order(self.padded)},
                "no_valid_pixels": {"frames": sum(self.no_valid_pixels.values()),
                                    "files": in_order(self.no_valid_pixels)},
                "masked_bad_values": {"values": sum(self.bad_values.values()), "files": in_order(self.bad_values)}}

    def merge(self, values: dict) -> None:
        """Add the counts of another :meth:`to_dict` (a worker's, a rank's, a shard's)."""
        for path, entry in values["padded"]["files"].items():
            mine = self.padded.setdefault(path, {**entry, "frames": 0})
            mine["frames"] += entry["frames"]
        for path, count in values["no_valid_pixels"]["files"].items():
            self.no_valid_pixels[path] = self.no_valid_pixels.get(path, 0) + count
        for path, count in values["masked_bad_values"]["files"].items():
            self.bad_values[path] = self.bad_values.get(path, 0) + count

    @classmethod
    def from_dicts(cls, parts) -> "FrameChecks":
        checks = cls()
        for values in parts:
            if values:
                checks.merge(values)
        return checks

    def warnings(self) -> list[str]:
        """One line each (without ``warning:``) for padded frames, frames without valid
        pixels and masked bad values; none where there were none."""
        lines = []
        if self.padded:
            total = sum(v["frames"] for v in self.padded.values())
            crops = {v["crop_px"] for v in self.padded.values()}
            crop = f" ({next(iter(crops))}x{next(iter(crops))} px)" if len(crops) == 1 and None not in crops else ""
            smaller = all(v["crop_px"] is not None and (v["frame_shape"][0] < v["crop_px"]
                                                        or v["frame_shape"][1] < v["crop_px"])
                          for v in self.padded.values())
            what = "are smaller than" if smaller else "do not fill"
            lines.append(f"{total} frames of {_files({p: v['frames'] for p, v in self.padded.items()})} {what} "
                         f"the model's crop{crop}: padded with zeros (marked padded in the hit list, their "
                         "scores may be low; boxes clipped to the detector)")
        if self.no_valid_pixels:
            lines.append(f"{sum(self.no_valid_pixels.values())} frames of {_files(self.no_valid_pixels)} have no "
                         "valid pixel in the model's crop (all NaN, negative or masked): marked no-valid-pixels "
                         "in the hit list, never selected")
        if self.bad_values:
            lines.append(f"{sum(self.bad_values.values())} NaN or negative pixel values of "
                         f"{_files(self.bad_values)} were masked")
        return lines


def _files(counts: dict) -> str:
    """``run7.cxi`` for one file; ``run7.cxi (120), run8.cxi (30)`` for several (at most 3 named)."""
    counts = {p: counts[p] for p in sorted(counts)}
    names = [os.path.basename(p) for p in counts]
    if len(counts) == 1:
        return names[0]
    shown = ", ".join(f"{name} ({n if isinstance(n, int) else n['frames']})"
                      for name, n in list(zip(names, counts.values()))[:3])
    return shown + (f" and {len(counts) - 3} more files" if len(counts) > 3 else "")


@dataclass
class _Scored:
    """What :func:`detect_frames` has scored so far, chunk by chunk."""

    threshold: float
    prefilter: Prefilter | None
    checks: FrameChecks = field(default_factory=FrameChecks)
    keys: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    status: list = field(default_factory=list)
    ids: dict = field(default_factory=dict)   # name -> arrays per chunk (trainId, pulseId, ... of runs)
    rejected: int = 0           # frames the prefilter kept from the network

    def add(self, chunk: FrameChunk, processed: Processed, scores: np.ndarray, boxes: np.ndarray,
            passed: np.ndarray | None) -> None:
        self.keys.extend(chunk.keys)
        self.scores.append(scores)
        self.boxes.append(boxes)
        self.status.append(self.checks.add(chunk, processed))
        for name, values in (chunk.ids or {}).items():
            self.ids.setdefault(name, []).append(values)
        if passed is not None:
            self.rejected += len(chunk) - int(np.count_nonzero(passed))

    def hits(self) -> HitList:
        """The hit list of the frames so far, with the frame checks and the prefilter's count."""
        hits = HitList(self.keys, np.concatenate(self.scores) if self.scores else np.zeros(0, np.float32),
                       np.concatenate(self.boxes) if self.boxes else np.zeros((0, 4), np.float32), self.threshold,
                       status=np.concatenate(self.status) if self.status else np.zeros(0, np.int8),
                       columns={name: np.concatenate(parts) for name, parts in self.ids.items()
                                if sum(len(p) for p in parts) == sum(len(s) for s in self.scores)})
        hits.meta["frame_checks"] = self.checks.to_dict()
        if self.prefilter is not None:
            hits.meta["prefilter"] = {**self.prefilter.to_dict(), "rejected": self.rejected}
        return hits


def _log_start(source: FrameSource, engine: str, chunk_frames: int, prefilter: Prefilter | None) -> None:
    log.debug("detecting %d frames of %d file%s with %s, %d frames per chunk%s", len(source), len(source.files),
              "s" if len(source.files) != 1 else "", engine, chunk_frames,
              f", prefilter {prefilter.to_dict()}" if prefilter is not None else "")


def _log_chunk(chunk: FrameChunk, passed: np.ndarray | None, engine: str, t: tuple[float, ...]) -> None:
    """One chunk's stage times: ``t`` holds the clock before reading, after reading, after
    preprocessing, after the prefilter and after inference."""
    t0, t1, t2, t3, t4 = t
    to_network = len(chunk) if passed is None else int(np.count_nonzero(passed))
    log.debug("chunk %s[%d:%d]: read %.3f s, preprocessed %.3f s, prefilter %.3f s, %d of %d frames "
              "to %s %.3f s", os.path.basename(chunk.info.path), int(chunk.indices[0]),
              int(chunk.indices[-1]) + 1, t1 - t0, t2 - t1, t3 - t2, to_network, len(chunk), engine,
              t4 - t3)


def detect_frames(source: FrameSource, settings: Preprocessing, detector: Detector, threshold: float, *,
                  prefilter: Prefilter | None = None, chunk_frames: int = DETECT_CHUNK_FRAMES,
                  on_chunk: Callable[[int], None] | None = None,
                  fits: ScreenedFits | None = None) -> tuple[HitList, StageTimes]:
    """Score every selected frame of ``source``; returns the hit list and stage timings.

    With a ``prefilter`` the hit list's ``meta["prefilter"]`` holds its rule and the
    number of frames it rejected; ``meta["frame_checks"]`` always holds
    :meth:`FrameChecks.to_dict`, and each frame's status is in the hit list.  With
    ``fits``, the frames scoring at least ``threshold`` (with a usable pixel) are fitted
    chunk by chunk into it (:mod:`.fits`).
    """
    pre = Preprocessor(settings)
    gate = PrefilterGate(prefilter, settings) if prefilter is not None else None
    scored = _Scored(threshold, prefilter)
    times = StageTimes()
    started = time.perf_counter()
    engine = f"{type(detector).__name__} (batch {getattr(detector, 'batch', '?')})"
    _log_start(source, engine, chunk_frames, prefilter)
    chunks = source.chunks(chunk_frames, roi=pre.roi if fits is None else fits.roi(pre.roi))
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        t1 = time.perf_counter()
        times.read += t1 - t0
        if chunk is None:
            break
        as_read = FrameChunk(info=chunk.info, indices=chunk.indices, data=chunk.data, valid=chunk.valid,
                             origin=chunk.origin)   # preprocessing may narrow the chunk's mask
        processed = pre.process(chunk)
        t2 = time.perf_counter()
        passed = gate.passes(chunk, processed.photons) if gate is not None else None
        t3 = time.perf_counter()
        try:
            chunk_scores, chunk_boxes = score_chunk(detector, processed, passed, settings)
        except EngineError as exc:
            raise PartialResult(str(exc), scored.hits()) from None
        t4 = time.perf_counter()
        times.preprocess += t2 - t1
        times.prefilter += t3 - t2
        times.inference += t4 - t3
        if log.isEnabledFor(logging.DEBUG):
            _log_chunk(chunk, passed, engine, (t0, t1, t2, t3, t4))
        scored.add(chunk, processed, chunk_scores, chunk_boxes, passed)
        if fits is not None:
            t5 = time.perf_counter()
            fits.add(source, as_read, (chunk_scores >= threshold) & (scored.status[-1] != NO_VALID_PIXELS))
            times.fit += time.perf_counter() - t5
        if on_chunk is not None:
            on_chunk(len(chunk))
    times.total = time.perf_counter() - started
    log.debug("detected %d frames in %.2f s: read %.2f s, preprocess %.2f s, prefilter %.2f s, inference %.2f s"
              "%s", len(scored.keys), times.total, times.read, times.preprocess, times.prefilter, times.inference,
              f"; {scored.rejected} frames kept from the network by the prefilter" if prefilter is not None else "")
    return scored.hits(), times
