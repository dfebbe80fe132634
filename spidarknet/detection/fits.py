"""The sphere fit of the frames the network lets through, done where they were scored.

``detect --size-range`` (or ``--selector``) fits a sphere to every frame whose score reaches
the threshold.  Fitted after the detection, in processes of their own, each of those
processes pays its start (an interpreter, numba's kernels, scipy: about a second each);
fitted here, by the process that scored them, as each chunk is scored, it does not.  The
screened frames of a chunk are read again with the fit's region
(:func:`spidarknet.sizing.fit_roi`, larger than the network's crop: reading it for every
frame cost more than reading it again for the tenth that a run's network lets through) and
fitted (:func:`spidarknet.sizing.size_frames`, each frame exactly as a separate fit would:
the results do not depend on where it ran).

:class:`ScreenedFits` collects the fits of one process (or, merged, of all workers); the
decision after the network takes them by frame key and fits only frames it lacks.
"""

from __future__ import annotations

import os
import time

import numpy as np

from spidarknet.frames.source import FrameChunk, FrameSource
from spidarknet.sizing import SizeResult, SizingSettings, fit_roi, size_frames


class ScreenedFits:
    """Sphere fits of the frames scoring at least a threshold, chunk by chunk.

    ``results`` holds one :class:`~spidarknet.sizing.SizeResult` per fitted frame (without
    its profile), ``seconds`` the wall time spent fitting here."""

    def __init__(self, settings: SizingSettings | None = None):
        self.settings = (settings or SizingSettings()).check()
        self.results: list[SizeResult] = []
        self.seconds = 0.0
        self._regions: dict = {}

    def add(self, source: FrameSource, chunk: FrameChunk, screened: np.ndarray) -> None:
        """Fit the frames ``screened`` (a bool per frame) of ``chunk`` (frames of ``source``),
        read again with the fit's region."""
        index = np.flatnonzero(screened)
        if not len(index):
            return
        started = time.perf_counter()
        frames = source.select({chunk.info.path: chunk.indices[index]})
        for part in frames.chunks(len(index), roi=lambda info: fit_roi(info, self.settings)):
            self.results.extend(size_frames(part.data, part.valid, part.origin, part.info.geometry, part.keys,
                                            self.settings, self._regions))
        self.seconds += time.perf_counter() - started

    def merge(self, results: list[SizeResult]) -> None:
        """Add the fits of another process."""
        self.results.extend(results)

    def by_key(self) -> dict:
        """The fits by (absolute file path, frame index)."""
        return {(os.path.abspath(r.key.file), r.key.index): r for r in self.results}
