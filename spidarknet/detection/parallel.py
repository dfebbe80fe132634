"""Detection on all cores: the frames cut into shards, one worker process per shard.

Each worker reads its frames, preprocesses them and runs the network (OpenCV with one
thread, or libdarknet loaded in the worker) — the whole per-frame path in one process
per core, with nothing shared, so two cores give twice the frames per second.  The
workers are those of the one process pool (:mod:`spidarknet.core.pool`): fresh
interpreters, so nothing of the caller's ``__main__`` is re-imported and a darknet crash
ends only its worker.  Each gets a :class:`DetectionJob` (set up while the parent opens the
frames: :func:`start_workers`), then its share of the frames, reports :class:`Progress` per chunk
and ends with a :class:`Result` holding its :class:`ShardScores` (scores and boxes: a few
bytes a frame); the shards are joined in frame-key order.  A worker that fails hands back
the frames it scored (:class:`PartialResult`), and the run raises the first failure with
every frame scored by then.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from spidarknet.core.errors import EngineError, SpidarknetError
from spidarknet.core.pool import Died, Failed, Pool, Progress, Result
from spidarknet.detection.fits import ScreenedFits, warm_up
from spidarknet.detection.local import FrameChecks, PartialResult, Prefilter, StageTimes, detect_frames
from spidarknet.frames.euxfel import open_early, source_from_spec
from spidarknet.frames.source import FrameSource
from spidarknet.hits import HitList, join_columns
from spidarknet.preprocess import Preprocessing
from spidarknet.sizing import SizeResult, SizingSettings, file_background

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionJob:
    """What every worker needs to repeat a detection."""

    cfg: str                        # the network's cfg, as text
    weights: str                    # path of the weights
    preprocessing: dict             # Preprocessing.to_dict()
    threshold: float
    backend: str                    # opencv or darknet
    batch: int                      # images per network call
    chunk: int                      # frames read per chunk (one Progress each)
    prefilter: dict | None = None   # Prefilter.to_dict(); None: every frame reaches the network
    libdarknet: str | None = None   # the darknet backend's library
    gpu: int | None = None
    fit: SizingSettings | None = None  # fit the frames at or above the threshold too (ScreenedFits)
    runs: dict | None = None        # European XFEL runs, opened while the parent opens them (open_early)


@dataclass
class ShardScores:
    """A worker's result: its share's hit list (frame checks and prefilter counts in its
    meta), its stage times and the sphere fits of its screened frames (``DetectionJob.fit``)."""

    hits: HitList
    times: StageTimes
    fits: list[SizeResult] | None = None


def serve(conn) -> None:
    """A detection worker (run by the pool): its :class:`DetectionJob` set up (the runs
    opened; the network loaded; numba's kernels where it fits) while the parent opens the
    frames, then its share of the frames (``FrameSource.spec()``) scored chunk by chunk."""
    from spidarknet.engine.backends import OpenedDetector
    from spidarknet.engine.cfg import DarknetCfg
    from spidarknet.engine.model import Model
    job: DetectionJob = conn.recv()
    opened = open_early(job.runs)
    settings = Preprocessing.from_dict(job.preprocessing)
    model = Model(weights=Path(job.weights), cfg=DarknetCfg.parse(job.cfg), preprocessing=settings)
    prefilter = Prefilter.from_dict(job.prefilter) if job.prefilter else None
    fits = ScreenedFits(job.fit) if job.fit is not None else None
    # this process is the crash barrier: load darknet here, one thread per worker
    with OpenedDetector(model, job.backend, batch=job.batch, threads=1, isolate=False,
                        libdarknet=job.libdarknet, gpu=job.gpu) as detector:
        if fits is not None:
            warm_up()
        source = source_from_spec(conn.recv(), opened)
        if fits is not None:   # the background shapes of the files that other workers share
            fits.backgrounds.update(conn.recv())
        # a PartialResult (the engine failed part-way) goes back whole, with the frames scored
        hits, times = detect_frames(source, settings, detector, job.threshold, prefilter=prefilter,
                                    chunk_frames=job.chunk, on_chunk=lambda n: conn.send(Progress(n)), fits=fits)
    conn.send(Result(ShardScores(hits, times, fits.results if fits is not None else None)))


def worker_count(requested: int, frames: int, chunk_frames: int) -> int:
    """The processes worth starting: no more than there are chunks of frames, one for none."""
    if frames == 0:
        return 1
    return min(requested, max(1, frames // chunk_frames + 1))


def start_workers(job: DetectionJob, count: int) -> Pool:
    """``count`` detection workers started on ``job``: each loads the network (and numba's
    kernels where it fits) while the caller opens the frames; :func:`detect_parallel` hands
    them their shares (and counts the time from here).  Close the pool where it is not
    handed on."""
    return Pool("spidarknet.detection.parallel:serve", [job] * count, label="detection worker {number} of {count}",
                error=EngineError, quick_exit=True)


def detect_parallel(source: FrameSource, job: DetectionJob, jobs: int, *,
                    on_chunk: Callable[[int], None] | None = None,
                    fits: ScreenedFits | None = None, pool: Pool | None = None) -> tuple[HitList, StageTimes]:
    """Score ``source`` in ``jobs`` worker processes (``pool``: those of
    :func:`start_workers`, closed here); with ``fits`` (and ``job.fit``) the workers'
    sphere fits of their screened frames are merged into it.

    A worker's failure is raised as the project's error it raised (or :class:`EngineError`
    for a death or a foreign exception), with ``worker_type`` and ``worker_traceback``;
    when frames were scored before it, as a :class:`PartialResult` holding them, caused by
    that error.
    """
    started = pool.started if pool is not None else time.perf_counter()   # the workers' start counts
    base = source.spec()
    # a worker opens only the files of its own share
    shards = [dict(base, inputs=[p for p in base["inputs"] if p in shard],
                   indices={p: v.tolist() for p, v in shard.items()}) for shard in source.shards(jobs) if shard]
    parts: list[HitList | None] = [None] * len(shards)
    times = StageTimes()
    failure: SpidarknetError | None = None
    log.debug("detecting %d frames in %d worker processes (%s backend, batch %d, %d frames per chunk): %s frames each",
              len(source), len(shards), job.backend, job.batch, job.chunk,
              ", ".join(str(sum(len(v) for v in shard["indices"].values())) for shard in shards))
    if pool is not None and len(pool) != len(shards):
        pool.close()
        pool = None
    pool = pool if pool is not None else start_workers(job, len(shards))
    try:
        for index, shard in enumerate(shards):
            pool.send(index, shard)
        if job.fit is not None:   # while the workers open their frames
            backgrounds = shared_backgrounds(source, [shard["inputs"] for shard in shards], job.fit)
            for index in range(len(shards)):
                pool.send(index, backgrounds)
        failure = _collect(pool, parts, times, on_chunk, fits)
    finally:
        pool.close(grace_s=2)
    hits = join_shards([p for p in parts if p is not None], job.threshold, job.prefilter)
    if failure is not None:
        if len(hits) == 0 and not isinstance(failure, PartialResult):
            raise failure
        raise PartialResult(str(failure), hits.sorted()) from failure
    times.total = time.perf_counter() - started
    log.debug("%d worker processes detected %d frames in %.2f s; summed over them: read %.2f s, preprocess %.2f s, "
              "prefilter %.2f s, inference %.2f s", len(shards), len(hits), times.total, times.read,
              times.preprocess, times.prefilter, times.inference)
    return hits, times


def _collect(pool: Pool, parts: list, times: StageTimes, on_chunk: Callable[[int], None] | None,
             fits: ScreenedFits | None) -> SpidarknetError | None:
    """The workers' messages until each has given its last word: their hit lists into
    ``parts``, their stage times into ``times``, their fits into ``fits``; returns the
    first failure (None where none failed)."""
    failure = None
    for index, message in pool.replies():
        if isinstance(message, Progress):
            if on_chunk is not None:
                on_chunk(message.count)
        elif isinstance(message, Result):
            parts[index] = message.value.hits
            times.add(message.value.times)
            if fits is not None and message.value.fits:
                fits.merge(message.value.fits)
        elif isinstance(message, (Failed, Died)):
            error = pool.error(index, message)
            if isinstance(error, PartialResult):
                parts[index] = error.hits
            failure = failure or error
    return failure


def shared_backgrounds(source: FrameSource, inputs: list[list[str]], settings: SizingSettings) -> dict:
    """The background shapes (:func:`~spidarknet.sizing.file_background`) of the files of
    ``source`` that more than one worker reads (``inputs``: each worker's files), by (path,
    dataset): found once here rather than by each of them (its sample is read whatever a
    worker's share of the file); a worker finds those of its own files itself."""
    counts = Counter(path for paths in inputs for path in paths)
    return {(info.path, info.dataset): file_background(source, info, settings)
            for info in source.files if counts[info.path] > 1}


def join_shards(parts: list[HitList], threshold: float, prefilter: dict | None = None) -> HitList:
    """The hit lists of several processes (workers, MPI ranks) as one, in the order given;
    their frame checks summed (one warning for the run), and with ``prefilter``
    (:meth:`Prefilter.to_dict`) their frames rejected by it."""
    empty = np.zeros(0, np.float32)
    hits = HitList([k for part in parts for k in part.keys],
                   np.concatenate([part.scores for part in parts]) if parts else empty,
                   np.concatenate([part.boxes for part in parts]) if parts else np.zeros((0, 4), np.float32),
                   threshold,
                   status=np.concatenate([part.status for part in parts]) if parts else np.zeros(0, np.int8),
                   columns=join_columns(parts))
    hits.meta["frame_checks"] = FrameChecks.from_dicts(part.meta["frame_checks"] for part in parts).to_dict()
    if prefilter:
        rejected = sum(part.meta.get("prefilter", {}).get("rejected", 0) for part in parts)
        hits.meta["prefilter"] = {**prefilter, "rejected": rejected}
    return hits
