"""The decision after the network: the size window, or the selector learnt from labels.

The network screens (a frame below the hit list's threshold is never selected), the sphere
fit measures the frames it lets through, and then either the size window (a diameter range,
one round particle, no second particle's fringes) or a :class:`~spidarknet.selection.selector.Selector`
decides.  Every row of the hit list then carries what was measured (:data:`HIT_COLUMNS`), the
selector's ``probability`` where one decided, and the ``reason`` a screened frame was dropped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from spidarknet.core.errors import ConfigError
from spidarknet.frames.source import FileInfo, FrameChunk, FrameSource
from spidarknet.hits import HitList
from spidarknet.selection.features import HIT_COLUMNS, Measured, measure, measured_from
from spidarknet.selection.selector import Selector
from spidarknet.sizing import (SIZE_WINDOW_MAX_MISFIT, FileBackground, SizingSettings, size_frames, window_cuts,
                               window_verdicts)


def window_reasons(measured: Measured, size_range: Sequence[float],
                   max_misfit: float = SIZE_WINDOW_MAX_MISFIT) -> tuple[np.ndarray, list[str], dict]:
    """(selected, reason per frame, counts) of the size window on measured frames; only
    fitted (screened) frames can be selected, and only they get a reason."""
    v = measured.values
    cut = window_cuts(v.get("second_particle_cut", np.full(len(measured), np.nan)), v["signal_photons"])
    inside, poor, several, fitted = window_verdicts(v["diameter_nm"], v["misfit"], v["second_particle_z"], cut,
                                                    size_range, max_misfit)
    lo, hi = size_range
    reasons = []
    for i in range(len(measured)):
        if not measured.fitted[i] or inside[i]:
            reasons.append("")
        elif not np.isfinite(v["diameter_nm"][i]):
            reasons.append(f"no size: {measured.fit_reason[i] or 'fit failed'}")
        elif poor[i]:
            reasons.append(f"misfit {v['misfit'][i]:.2f} > {max_misfit:g}: not one round particle")
        elif several[i]:
            reasons.append(f"second particle: z {v['second_particle_z'][i]:.1f} > {cut[i]:.1f}")
        else:
            reasons.append(f"diameter {v['diameter_nm'][i]:.1f} nm outside {lo:g}-{hi:g} nm")
    tried = measured.fitted
    counts = {"inside": int(inside.sum()), "outside": int((fitted & ~inside & tried).sum()),
              "failed": int((tried & ~fitted).sum()), "misfit": int(poor.sum()), "second_particle": int(several.sum())}
    return inside & tried, reasons, counts


def selector_reasons(measured: Measured, selector: Selector) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(selected, probability, reason per frame) of a selector on measured frames."""
    selected, p = selector.decide(measured)
    selected &= measured.fitted
    reasons = ["" if s or not f else f"selector: probability {q:.2f} < {selector.threshold:g}"
               for s, f, q in zip(selected, measured.fitted, p)]
    return selected, np.where(measured.fitted, p, np.nan), reasons


def check_icosahedron(icosahedron: bool | None, size_range) -> bool:
    """Whether the icosahedron refines the fits near a size window's edges: wherever a window
    is given, unless ``icosahedron`` is False (``--no-icosahedron``); a
    :class:`~spidarknet.core.errors.ConfigError` where it is asked for (True,
    ``--icosahedron``) without a window."""
    if icosahedron and not size_range:
        raise ConfigError("--icosahedron refines the sphere fit near the edges of a size window: add "
                          "--size-range MIN MAX (e.g. --size-range 60 75 --icosahedron)")
    return bool(size_range) and icosahedron is not False


def decide(hits: HitList, source: FrameSource, *, size_range: Sequence[float] | None = None,
           selector: Selector | None = None, jobs: int | None = None,
           on_frames: Callable[[int], object] | None = None, fitted: dict | None = None,
           icosahedron: bool | None = None) -> dict:
    """Measure the frames ``hits`` selects (frames of ``source``; those ``fitted`` lacks, see
    :func:`~spidarknet.selection.features.measure`) and narrow the selection by the size
    window or the selector (the window's fits near its edges refined by an icosahedron unless
    ``icosahedron`` is False: :attr:`~spidarknet.sizing.SizingSettings.icosahedron`, recorded in
    ``hits.meta``); the measurements go into ``hits.columns``.  Returns the counts
    (window) or the selected number (selector), with the frames fitted (``fitted_frames``)
    and the fits' CPU seconds (``cpu_s``: ``fit``, ``second_particle``)."""
    if (size_range is None) == (selector is None):
        raise ValueError("give a size range or a selector")
    icosahedron = check_icosahedron(icosahedron, size_range)
    scores = np.where(hits.hits, hits.scores, -1.0)  # only what the network let through is fitted
    measured = measure(source, hits.keys, scores, 0.0, jobs=jobs, on_frames=on_frames, size_range=size_range,
                       fitted=fitted, window=None if size_range is None else tuple(size_range),
                       icosahedron=icosahedron)
    if icosahedron:
        hits.meta["icosahedron"] = True
    return apply_measured(hits, measured, size_range, selector)


def apply_measured(hits: HitList, measured: Measured, size_range, selector: Selector | None) -> dict:
    """Narrow ``hits`` by the window or the selector on ``measured`` (its fitted frames)."""
    measured.values["score"] = hits.scores.astype(np.float64)
    if selector is not None:
        selected, probability, reasons = selector_reasons(measured, selector)
        counts = {"selected": int(selected.sum()), "fitted": int(measured.fitted.sum())}
        extra = {"probability": probability}
    else:
        selected, reasons, counts = window_reasons(measured, size_range)
        extra = {}
    hits.selected = selected
    hits.columns.update({name: measured.values[name] for name in HIT_COLUMNS})
    hits.columns.update(extra)
    hits.columns["reason"] = reasons
    if measured.warnings:
        hits.meta["geometry_warnings"] = measured.warnings
    counts["fitted_frames"] = int(measured.fitted.sum())
    counts["cpu_s"] = measured.cpu_s
    return counts


class ChunkDecider:
    """The window or the selector applied chunk by chunk (``detect --follow``): the frames of
    a chunk that the network lets through are fitted here, from the chunk's own pixels
    (read with :func:`~spidarknet.sizing.fit_roi`'s region), as they arrive.

    ``background(info, finished)`` finds what the file holds beside its particles (see
    :func:`~spidarknet.sizing.file_background`; None: a flat background) and says whether it
    is final: once the file holds the frames a batch run samples, or when ``finished`` (the
    file is done: from every frame written, as a batch run on it samples them).  Until it is
    final, chunks with frames to fit wait (their rows come later, in order, fitted with the
    final background, as ``detect`` fits them, or with a flat one when :meth:`release` is
    called before); it is then kept for the rest of the run.  Without it the fits have a
    flat background and nothing waits."""

    def __init__(self, size_range: Sequence[float] | None = None, selector: Selector | None = None,
                 background: Callable[[FileInfo, bool], tuple[FileBackground | None, bool]] | None = None,
                 icosahedron: bool | None = None):
        if (size_range is None) == (selector is None):
            raise ValueError("give a size range or a selector")
        self.size_range, self.selector = size_range, selector
        # as detect's: a size window alone judges the fits, which go only as far as it needs
        self.settings = SizingSettings(window_nm=None if size_range is None else tuple(size_range),
                                       icosahedron=icosahedron is not False)
        self.regions: dict = {}
        self.columns = HIT_COLUMNS + (("probability",) if selector is not None else ()) + ("reason",)
        self._find_background = background
        self.background: FileBackground | None = None
        self._waiting: list[tuple[FrameChunk, HitList, np.ndarray]] = []

    def __call__(self, chunk: FrameChunk, hits: HitList) -> list[HitList]:
        """The hit lists decided by now, in order (``hits`` itself, or none while the
        background shape is not final, or every chunk that waited)."""
        index = np.flatnonzero(hits.hits)
        valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[index]
        self._waiting.append((FrameChunk(info=chunk.info, indices=chunk.indices[index], data=chunk.data[index],
                                         valid=valid, origin=chunk.origin), hits, index))
        if self._find_background is not None and any(len(i) for _, _, i in self._waiting):
            self.background, final = self._find_background(chunk.info, False)
            if not final:
                return []
            self._find_background = None  # kept for the rest of the run
        return self.release()

    def finish(self) -> list[HitList]:
        """The chunks that still wait, decided with the shape of every frame written."""
        if self._find_background is not None and any(len(i) for _, _, i in self._waiting):
            self.background, _ = self._find_background(self._waiting[0][0].info, True)
            self._find_background = None
        return self.release()

    def release(self) -> list[HitList]:
        """The chunks that wait, decided now with the background known by now (a flat one
        before the shape is final, which is still looked for with the next chunks)."""
        released = []
        for chunk, hits, index in self._waiting:
            results = size_frames(chunk.data, chunk.valid, chunk.origin, chunk.info.geometry,
                                  [hits.keys[i] for i in index], self.settings, self.regions, self.background)
            measured = measured_from(hits.keys, hits.scores, index, results, [chunk.info])
            apply_measured(hits, measured, self.size_range, self.selector)
            released.append(hits)
        self._waiting = []
        return released
