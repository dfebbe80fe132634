"""The sphere fit of the frames the network lets through, done where they were scored.

``detect --size-range`` (or ``--selector``) fits a sphere to every frame whose score reaches
the threshold.  Fitted after the detection, in processes of their own, those frames are read
a second time and each fitting process pays its start (an interpreter, numba's kernels, scipy:
about a second each); fitted here, by the process that scored them, from the pixels it has
just read, neither happens.  The detection then reads each chunk with the fit's region
(:func:`spidarknet.sizing.fit_roi`) joined to the network's crop, and after scoring it fits
the screened frames (:func:`spidarknet.sizing.size_frames`, each frame exactly as a
separate fit would: the results do not depend on where it ran).

:class:`ScreenedFits` collects the fits of one process (or, merged, of all workers); the
decision after the network takes them by frame key and fits only frames it lacks.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from spidarknet.frames.source import FileInfo, FrameChunk
from spidarknet.sizing import SizeResult, SizingSettings, fit_roi, size_frames

Roi = tuple[int, int, int, int]


class ScreenedFits:
    """Sphere fits of the frames scoring at least a threshold, chunk by chunk.

    ``results`` holds one :class:`~spidarknet.sizing.SizeResult` per fitted frame (without
    its profile), ``seconds`` the wall time spent fitting here."""

    def __init__(self, settings: SizingSettings | None = None):
        self.settings = (settings or SizingSettings()).check()
        self.results: list[SizeResult] = []
        self.seconds = 0.0
        self._regions: dict = {}

    def roi(self, network_roi: Callable[[FileInfo], Roi]) -> Callable[[FileInfo], Roi]:
        """The region to read of each file: the network's crop joined to the fit's region."""
        def joined(info: FileInfo) -> Roi:
            a, b = network_roi(info), fit_roi(info, self.settings)
            return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
        return joined

    def add(self, chunk: FrameChunk, screened: np.ndarray) -> None:
        """Fit the frames ``screened`` (a bool per frame) of ``chunk`` (read with :meth:`roi`,
        its mask as read)."""
        index = np.flatnonzero(screened)
        if not len(index):
            return
        started = time.perf_counter()
        valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[index]
        self.results.extend(size_frames(chunk.data[index], valid, chunk.origin, chunk.info.geometry,
                                        [chunk.keys[i] for i in index], self.settings, self._regions))
        self.seconds += time.perf_counter() - started

    def merge(self, results: list[SizeResult]) -> None:
        """Add the fits of another process."""
        self.results.extend(results)

    def by_key(self) -> dict:
        """The fits by (absolute file path, frame index)."""
        return {(os.path.abspath(r.key.file), r.key.index): r for r in self.results}
