"""Classifying a file that is still being written (HDF5 SWMR, as facilities write).

:func:`follow_chunks` polls the frame dataset of one file opened for single-writer /
multiple-reader access, yields the frames that appeared since the last look in chunks,
and stops when no new frame arrived for ``idle_s`` seconds.  :class:`RowAppender` adds
complete hit-list rows to a CSV as they are scored (one ``write`` per chunk, flushed), so
a reader of the hit list never sees half a row.
"""

from __future__ import annotations

import io
import os
import time
from typing import Callable, Iterator

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.detection.local import FrameChecks, PrefilterGate, score_chunk
from spidarknet.engine.detector import Detector
from spidarknet.frames.source import FileInfo, FrameChunk, Roi, _clip_roi
from spidarknet.hits import COLUMNS, HitList
from spidarknet.preprocess import Preprocessor


def follow_chunks(info: FileInfo, roi: Roi | None, chunk_frames: int, *, start: int = 0, poll_s: float = 0.2,
                  idle_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep,
                  on_pause: Callable[[float], object] | None = None) -> Iterator[FrameChunk]:
    """Frames ``start, start+1, ...`` of ``info``'s dataset as they are written;
    ``on_pause`` is told, at each look that finds no new frame, how long none has come."""
    import h5py
    r0, r1, c0, c1 = _clip_roi(roi, info.frame_shape)
    valid_shared = (info.mask_shared[r0:r1, c0:c1] if info.mask_shared is not None
                    else np.ones((r1 - r0, c1 - c0), dtype=bool))
    try:
        handle = h5py.File(info.path, "r", swmr=True)
    except OSError as exc:
        raise InputError(f"cannot open {info.path} for following: {exc}") from None
    with handle:
        ds = handle[info.dataset]
        mask_ds = handle[info.mask_dataset] if info.mask_dataset else None  # per-frame masks (CXI bits)
        done = start
        last_new = clock()
        while True:
            for d in (ds, mask_ds) if mask_ds is not None else (ds,):
                d.refresh()
            available = _written(ds, mask_ds)
            if available > done:
                for first in range(done, available, chunk_frames):
                    stop = min(first + chunk_frames, available)
                    data = ds[first:stop, r0:r1, c0:c1]
                    valid = (valid_shared if mask_ds is None
                             else valid_shared & (mask_ds[first:stop, r0:r1, c0:c1] == 0))
                    yield FrameChunk(info=info, indices=np.arange(first, stop), data=data, valid=valid,
                                     origin=(r0, c0))
                done = available
                last_new = clock()
            elif clock() - last_new >= idle_s:
                return
            else:
                if on_pause is not None:
                    on_pause(clock() - last_new)
                sleep(poll_s)


def frames_written(info: FileInfo) -> int:
    """The frames of ``info``'s dataset written by now (with their per-frame masks, where
    the file has them), as :func:`follow_chunks` counts them."""
    import h5py
    try:
        handle = h5py.File(info.path, "r", swmr=True)
    except OSError as exc:
        raise InputError(f"cannot open {info.path} for following: {exc}") from None
    with handle:
        return _written(handle[info.dataset], handle[info.mask_dataset] if info.mask_dataset else None)


def _written(ds, mask_ds) -> int:
    """The frames of an open frame dataset written by its last refresh; a frame counts once
    its per-frame mask (``mask_ds``, where the file has one) is written too.  (A handle opened
    for the count is not refreshed: two handles on one file in one process share HDF5's
    metadata cache, and refreshing the second broke the first's reads.)"""
    return int(ds.shape[0] if mask_ds is None else min(ds.shape[0], mask_ds.shape[0]))


class RowAppender:
    """A hit-list CSV that grows by complete rows."""

    def __init__(self, path: str | os.PathLike, threshold: float, columns: tuple[str, ...] = ()):
        """``columns``: the extra columns every appended hit list carries (a decision's)."""
        self.path = path
        self.threshold = threshold
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self.rows = 0
        self.hits = 0
        os.write(self.fd, (",".join(COLUMNS + list(columns)) + "\n").encode())

    def append(self, hits: HitList) -> None:
        buffer = io.StringIO()
        hits.write_rows(buffer)
        os.write(self.fd, buffer.getvalue().encode())  # one write: whole rows only
        os.fsync(self.fd)
        self.rows += len(hits)
        self.hits += hits.n_hits

    def close(self) -> None:
        os.close(self.fd)


def append_scored(chunk: FrameChunk, pre: Preprocessor, gate: PrefilterGate | None, detector: Detector,
                  checks: FrameChecks, appender: RowAppender,
                  decide: Callable[[FrameChunk, HitList], list[HitList]] | None = None) -> int:
    """Score one chunk of a followed file and append its rows (narrowed by ``decide``, which
    may fit the chunk's frames, add columns, and hold rows back: it returns the hit lists
    decided by now, in order); returns the frames the prefilter kept from the network."""
    data, valid, origin = chunk.data, chunk.valid, chunk.origin  # preprocessing may narrow the chunk's mask
    processed = pre.process(chunk)
    passed = gate.passes(chunk, processed.photons) if gate is not None else None
    scores, boxes = score_chunk(detector, processed, passed, pre.settings)
    status = checks.add(chunk, processed)
    hits = HitList(chunk.keys, scores, boxes, appender.threshold, status=status)
    decided = [hits] if decide is None else decide(
        FrameChunk(info=chunk.info, indices=chunk.indices, data=data, valid=valid, origin=origin), hits)
    for ready in decided:
        appender.append(ready)
    return len(chunk) - int(np.count_nonzero(passed)) if passed is not None else 0
