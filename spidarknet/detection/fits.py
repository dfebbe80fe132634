"""The sphere fit of the frames the network lets through, done where they were scored.

``detect --size-range`` (or ``--selector``) fits a sphere to every frame whose score reaches
the threshold.  Fitted after the detection, in processes of their own, each of those
processes pays its start (an interpreter, numba's kernels, scipy: about a second each);
fitted here, by the process that scored them, as each chunk is scored, it does not.  The
fit needs a larger region of each frame than the network's crop
(:func:`spidarknet.sizing.fit_roi`).  Where the frames are stored uncompressed, a region
costs its own bytes: the screened frames of a chunk are read again with the fit's region
(reading it for every frame cost more than reading it again for the tenth that a run's
network lets through).  Where they are compressed, any region costs a whole frame's
decompression: each chunk is read once with the fit's region joined to the network's crop.
Either way each frame is fitted exactly as a separate fit would fit it
(:func:`spidarknet.sizing.size_frames`): the results do not depend on where it ran.

:class:`ScreenedFits` collects the fits of one process (or, merged, of all workers); the
decision after the network takes them by frame key and fits only frames it lacks.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from spidarknet.frames.source import FileInfo, FrameChunk, FrameSource, open_h5
from spidarknet.sizing import SizeResult, SizingSettings, file_background, fit_roi, size_frames

Roi = tuple[int, int, int, int]


class ScreenedFits:
    """Sphere fits of the frames scoring at least a threshold, chunk by chunk.

    ``results`` holds one :class:`~spidarknet.sizing.SizeResult` per fitted frame (without
    its profile), ``seconds`` the wall time spent fitting here; ``backgrounds``, the files'
    background shapes found already (:func:`~spidarknet.sizing.file_background`), by (path,
    dataset): a file's is found here where it is not among them."""

    def __init__(self, settings: SizingSettings | None = None):
        self.settings = (settings or SizingSettings()).check()
        self.results: list[SizeResult] = []
        self.seconds = 0.0
        self.backgrounds: dict = {}
        self._regions: dict = {}

    def roi(self, network_roi: Callable[[FileInfo], Roi]) -> Callable[[FileInfo], Roi]:
        """The region of each file to read for the network: its crop, joined to the fit's
        region where the frames are compressed (see the module notes)."""
        def chosen(info: FileInfo) -> Roi:
            crop = network_roi(info)
            if not _compressed(info):
                return crop
            fit = fit_roi(info, self.settings)
            return min(crop[0], fit[0]), max(crop[1], fit[1]), min(crop[2], fit[2]), max(crop[3], fit[3])
        return chosen

    def add(self, source: FrameSource, chunk: FrameChunk, screened: np.ndarray) -> None:
        """Fit the frames ``screened`` (a bool per frame) of ``chunk`` (frames of ``source``
        read with :meth:`roi`, its mask as read): from its pixels where they hold the fit's
        region, else read again with that region."""
        index = np.flatnonzero(screened)
        if not len(index):
            return
        started = time.perf_counter()
        if _holds(chunk, fit_roi(chunk.info, self.settings)):
            parts = [FrameChunk(info=chunk.info, indices=chunk.indices[index], data=chunk.data[index],
                                valid=chunk.valid if chunk.valid.ndim == 2 else chunk.valid[index],
                                origin=chunk.origin)]
        else:
            frames = source.select({chunk.info.path: chunk.indices[index]})
            parts = frames.chunks(len(index), roi=lambda info: fit_roi(info, self.settings))
        key = (chunk.info.path, chunk.info.dataset)
        background = (self.backgrounds[key] if key in self.backgrounds
                      else file_background(source, chunk.info, self.settings))
        for part in parts:
            self.results.extend(size_frames(part.data, part.valid, part.origin, part.info.geometry, part.keys,
                                            self.settings, self._regions, background))
        self.seconds += time.perf_counter() - started

    def merge(self, results: list[SizeResult]) -> None:
        """Add the fits of another process."""
        self.results.extend(results)

    def by_key(self) -> dict:
        """The fits by (absolute file path, frame index)."""
        return {(os.path.abspath(r.key.file), r.key.index): r for r in self.results}


def warm_up() -> None:
    """numba imported and its compiler's tables loaded (about 0.5 s of CPU, paid by a process
    at its first fit): a detection worker started before its frames are opened pays it
    while the parent opens them."""
    from spidarknet import sizing_kernels  # noqa: F401  (imports numba)
    try:  # what numba does at the first call of any kernel (scipy's BLAS looked for, its registries)
        from numba.core.registry import cpu_target
        cpu_target.target_context.refresh()
    except (ImportError, AttributeError):  # another numba: the first fit pays it
        pass


def _holds(chunk: FrameChunk, region: Roi) -> bool:
    """Whether ``chunk`` holds every pixel of ``region`` that lies on its frames."""
    rows, cols = chunk.info.frame_shape
    r0, r1, c0, c1 = max(region[0], 0), min(region[1], rows), max(region[2], 0), min(region[3], cols)
    o_r, o_c = chunk.origin
    h, w = chunk.data.shape[1:]
    return o_r <= r0 and r1 <= o_r + h and o_c <= c0 and c1 <= o_c + w


#: whether a file's frames are stored compressed (filtered), by path
_compressed_cache: dict[str, bool] = {}


def _compressed(info: FileInfo) -> bool:
    """Whether the frames of ``info`` pass through an HDF5 filter (compression), so that
    reading any part of a frame costs the whole frame.  A European XFEL run (a folder) reads
    only the module rows a region needs: taken as uncompressed."""
    if os.path.isdir(info.path):
        return False
    if info.path not in _compressed_cache:
        with open_h5(info.path) as handle:
            _compressed_cache[info.path] = handle[info.dataset].id.get_create_plist().get_nfilters() > 0
    return _compressed_cache[info.path]
