"""libdarknet inference in worker processes, so that darknet cannot take the caller down.

Each worker (one process of a :class:`~spidarknet.core.pool.Pool`) loads libdarknet and one
network (a network per process: darknet keeps state per network and ``free_network`` leaks,
so each is loaded once), receives batches of 8-bit images (:class:`Batch`) and returns each
image's score and box, decoded by :class:`~spidarknet.engine.darknet_lib.NetworkDetector` in
the worker.  Darknet's own printing goes to the pool's log file.  If a worker dies (a
segfault, darknet's ``exit()``), :class:`DarknetLibDetector` raises an :class:`EngineError`
naming the signal and the tail of that log; an exception in a worker arrives as the
project's error with the worker's traceback (:mod:`spidarknet.core.pool`); frames scored
before stay with the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidarknet.core.defaults import INFERENCE_BATCH
from spidarknet.core.errors import EngineError
from spidarknet.core.pool import Pool, Ready, Result, Stop
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.detector import Detections, RegionSpec


@dataclass(frozen=True)
class DarknetJob:
    """A darknet worker's job: the library and the network it loads."""

    lib_path: str
    cfg_path: str
    weights_path: str
    batch: int
    gpu: int | None = None


@dataclass(frozen=True)
class Batch:
    """A task: (n, h, w, 3) uint8 images.  Its :class:`Result` is (n, 5) float32 rows of score,
    cx, cy, w, h; the worker pads a short batch itself (NetworkDetector)."""

    images: np.ndarray


def serve(conn) -> None:
    """A darknet worker (run by the pool): :class:`Ready` with the network's (width,
    height), then one :class:`Result` per :class:`Batch` until :class:`Stop`."""
    from spidarknet.engine.darknet_lib import NetworkDetector
    job: DarknetJob = conn.recv()
    spec = RegionSpec.from_cfg(DarknetCfg.load(job.cfg_path))
    detector = NetworkDetector(job.lib_path, job.cfg_path, job.weights_path, spec, batch=job.batch, gpu=job.gpu)
    try:
        conn.send(Ready((detector.net.width, detector.net.height)))
        while not isinstance(task := conn.recv(), Stop):
            found = detector.detect(task.images)
            conn.send(Result(np.concatenate([found.scores[:, None], found.boxes], axis=1).astype(np.float32)))
    finally:
        detector.close()


class DarknetLibDetector:
    """The ``darknet`` backend: batched libdarknet inference in ``workers`` processes."""

    name = "darknet"

    def __init__(self, lib_path: Path, cfg_path: Path, weights_path: Path, spec: RegionSpec, *,
                 batch: int = INFERENCE_BATCH, workers: int = 1, gpu: int | None = None, threads_per_worker: int = 1):
        self.spec = spec
        self.batch = batch
        self.size = DarknetCfg.load(cfg_path).input_size[0]
        job = DarknetJob(str(lib_path), str(cfg_path), str(weights_path), batch, gpu)
        self.pool = Pool("spidarknet.engine.workers:serve", [job] * max(1, workers),
                         label="the darknet worker process", died_hint=" (darknet crashed or called exit())",
                         error=EngineError, threads=threads_per_worker, new_session=True)
        try:
            for index in range(len(self.pool)):
                size = self.pool.recv(index).info
                if size != (self.size, self.size):
                    raise EngineError(f"libdarknet built a {size[0]}x{size[1]} network from a "
                                      f"{self.size}x{self.size} cfg: wrong library?")
        except BaseException:
            self.close()
            raise

    def detect(self, images: np.ndarray) -> Detections:
        if len(images) == 0:
            return Detections.concat([])
        if images.shape[1:] != (self.size, self.size, 3) or images.dtype != np.uint8:
            raise EngineError(f"expected ({self.size}, {self.size}, 3) uint8 images, got {images.shape} {images.dtype}")
        batches = (Batch(np.ascontiguousarray(images[start:start + self.batch]))
                   for start in range(0, len(images), self.batch))
        results = [Detections(rows[:, 0].copy(), rows[:, 1:].copy()) for rows in self.pool.map(batches)]
        return Detections.concat(results)

    def close(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.close()
            self.pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
