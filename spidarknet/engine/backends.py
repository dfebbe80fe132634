"""Choosing and opening an inference backend for a model."""

from __future__ import annotations

import logging
import tempfile
import time

from spidarknet.core.defaults import INFERENCE_BATCH
from spidarknet.core.errors import EngineError
from spidarknet.core.pool import core_count
from spidarknet.engine.locate import find_darknet, find_libdarknet
from spidarknet.engine.model import Model

log = logging.getLogger(__name__)

BACKENDS = ("auto", "darknet", "darknet-cli", "opencv")


def resolve_auto(libdarknet: str | None = None) -> str:
    """``auto``: a GPU build of libdarknet when there is one, else OpenCV (fastest on CPU)."""
    try:
        found = find_libdarknet(libdarknet)
    except EngineError:
        return "opencv"
    return "darknet" if found.gpu else "opencv"


class OpenedDetector:
    """A detector with the temporary cfg file it reads; use as a context manager."""

    def __init__(self, model: Model, backend: str, *, batch: int = INFERENCE_BATCH, workers: int | None = None,
                 gpu: int | None = None, darknet: str | None = None, libdarknet: str | None = None,
                 threads: int | None = None, isolate: bool = True):
        """``isolate=False`` loads libdarknet in this process: for callers that already are
        a worker process of their own (the crash barrier), as detection shards are."""
        if backend not in BACKENDS:
            raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "auto":
            backend = resolve_auto(libdarknet)
        started = time.perf_counter()
        self._tmp = tempfile.TemporaryDirectory(prefix="spidarknet-model-")
        cfg_path = model.write_cfg(self._tmp.name)
        spec = model.spec
        cores = core_count()
        try:
            if backend == "opencv":
                from spidarknet.engine.opencv_backend import OpenCVDetector
                self.detector = OpenCVDetector(cfg_path, model.weights, spec, batch=batch, threads=threads)
            elif backend == "darknet" and not isolate:
                from spidarknet.engine.darknet_lib import NetworkDetector
                lib = find_libdarknet(libdarknet)
                self.detector = NetworkDetector(lib.path, cfg_path, model.weights, spec, batch=batch, gpu=gpu)
            elif backend == "darknet":
                from spidarknet.engine.workers import DarknetLibDetector
                lib = find_libdarknet(libdarknet)
                n_workers = workers or (1 if lib.gpu else cores)
                self.detector = DarknetLibDetector(lib.path, cfg_path, model.weights, spec, batch=batch,
                                                   workers=n_workers, gpu=gpu)
                self.detector.library = str(lib.path)
            else:
                from spidarknet.engine.cli_backend import DarknetCliDetector
                self.detector = DarknetCliDetector(find_darknet(darknet), cfg_path, model.weights,
                                                   names=tuple(model.names), gpu=gpu)
        except BaseException:
            self._tmp.cleanup()
            raise
        self.name = backend
        log.debug("opened the %s backend (%s) on %s: batch %d, %dx%d grid, in %.2f s", backend,
                  type(self.detector).__name__, model.weights, getattr(self.detector, "batch", batch),
                  spec.grid, spec.grid, time.perf_counter() - started)

    def __enter__(self):
        return self.detector

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.detector.close()
        self._tmp.cleanup()
