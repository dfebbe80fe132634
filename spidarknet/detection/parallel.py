"""Detection on all cores: the frames cut into shards, one worker process per shard.

Each worker reads its frames, preprocesses them and runs the network (OpenCV with one
thread, or libdarknet loaded in the worker) — the whole per-frame path in one process
per core, with nothing shared, so two cores give twice the frames per second.  Workers
are fresh interpreters (``python -m spidarknet.detection.parallel``), not ``multiprocessing``
forks: nothing of the caller's ``__main__`` is re-imported, and a darknet crash ends
only its worker.  Results come back per chunk (scores and boxes: a few bytes a frame)
and are joined in frame-key order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable

import numpy as np

from spidarknet.detection.local import FrameChecks, PartialResult, Prefilter, StageTimes, detect_frames
from spidarknet.frames.source import FrameKey, FrameSource
from spidarknet.hits import HitList


def _worker(conn: Connection) -> None:
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    from spidarknet.preprocess import Preprocessing
    job = conn.recv()
    # darknet prints its layer table and more: keep it out of the user's terminal
    log_fd = os.open(job.get("log", os.devnull), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        from spidarknet.engine.backends import OpenedDetector
        from spidarknet.engine.cfg import DarknetCfg
        from spidarknet.engine.model import Model
        settings = Preprocessing.from_dict(job["preprocessing"])
        model = Model(weights=Path(job["weights"]), cfg=DarknetCfg.parse(job["cfg"]), preprocessing=settings)
        source = FrameSource.from_spec(job["source"])
        prefilter = Prefilter.from_dict(job["prefilter"]) if job.get("prefilter") else None
        # this process is the crash barrier: load darknet here, one thread per worker
        with OpenedDetector(model, job["backend"], batch=job["batch"], threads=1, isolate=False,
                            libdarknet=job.get("libdarknet"), gpu=job.get("gpu")) as detector:
            try:
                hits, times = detect_frames(source, settings, detector, job["threshold"], prefilter=prefilter,
                                            chunk_frames=job["chunk"],
                                            on_chunk=lambda n: conn.send(("progress", n)))
            except PartialResult as exc:  # hand back what was scored before the engine failed
                part = exc.hits
                conn.send(("partial", [(k.file, k.dataset, k.index) for k in part.keys], part.scores,
                           part.boxes, part.status, part.meta["frame_checks"], str(exc)))
                return
            conn.send(("done", [(k.file, k.dataset, k.index) for k in hits.keys], hits.scores, hits.boxes,
                       hits.status, hits.meta["frame_checks"],
                       {"read": times.read, "preprocess": times.preprocess, "prefilter": times.prefilter,
                        "inference": times.inference}, hits.meta.get("prefilter", {}).get("rejected", 0)))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped (Ctrl-C, or another worker failed)
    except Exception as exc:  # report to the parent, which raises it as one error line
        conn.send(("error", str(exc) or type(exc).__name__))


def detect_parallel(source: FrameSource, job: dict, jobs: int, *,
                    on_chunk: Callable[[int], None] | None = None) -> tuple[HitList, StageTimes]:
    """Score ``source`` in ``jobs`` worker processes.

    ``job`` holds: cfg (text), weights, preprocessing (dict), threshold, backend
    (``opencv`` or ``darknet``), batch, chunk, prefilter (:meth:`Prefilter.to_dict`, or
    None for none), and for darknet libdarknet (and gpu).
    """
    started = time.perf_counter()
    shards = [s for s in source.shards(jobs) if s]
    package_root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=python_path)
    workers = []
    base_spec = source.spec()
    try:
        for shard in shards:
            parent, child = socket.socketpair()
            proc = subprocess.Popen([sys.executable, "-m", "spidarknet.detection.parallel", str(child.fileno())],
                                    pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL)
            child.close()
            conn = Connection(parent.detach())
            # a worker opens only the files of its own share
            spec = dict(base_spec, inputs=[p for p in base_spec["inputs"] if p in shard],
                        indices={p: v.tolist() for p, v in shard.items()})
            conn.send(dict(job, source=spec))
            workers.append((proc, conn))
        results: list[tuple | None] = [None] * len(workers)
        times = StageTimes()
        rejected = 0
        live = {conn: i for i, (_, conn) in enumerate(workers)}
        failure = None
        while live:
            for conn in wait(list(live)):
                i = live[conn]
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    code = workers[i][0].wait()
                    failure = failure or f"detection worker {i + 1} of {len(workers)} died (exit status {code})"
                    del live[conn]
                    continue
                kind = message[0]
                if kind == "progress" and on_chunk is not None:
                    on_chunk(message[1])
                elif kind == "done":
                    results[i] = message[1:6]
                    for stage, seconds in message[6].items():
                        setattr(times, stage, getattr(times, stage) + seconds)
                    rejected += message[7]
                    del live[conn]
                elif kind == "partial":
                    results[i] = message[1:6]
                    failure = failure or message[6]
                    del live[conn]
                elif kind == "error":
                    failure = failure or message[1]
                    del live[conn]
        keys, scores, boxes, status = [], [], [], []
        checks = FrameChecks()  # the workers' counts summed: one warning for the run
        for result in results:
            if result is None:
                continue
            keys.extend(FrameKey(*k) for k in result[0])
            scores.append(result[1])
            boxes.append(result[2].reshape(-1, 4))
            status.append(result[3])
            checks.merge(result[4])
        hits = HitList(keys, np.concatenate(scores) if scores else np.zeros(0, np.float32),
                       np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32), job["threshold"],
                       status=np.concatenate(status) if status else np.zeros(0, np.int8))
        hits.meta["frame_checks"] = checks.to_dict()
        if job.get("prefilter"):
            hits.meta["prefilter"] = {**job["prefilter"], "rejected": rejected}
        if failure:
            raise PartialResult(failure, hits.sorted())
        times.total = time.perf_counter() - started
        return hits, times
    finally:
        for proc, conn in workers:
            conn.close()
            try:
                proc.wait(timeout=2 if proc.poll() is None else 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":  # a worker: python -m spidarknet.detection.parallel FD
    _worker(Connection(int(sys.argv[1])))
