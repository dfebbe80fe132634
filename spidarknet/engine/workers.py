"""libdarknet inference in worker processes, so that darknet cannot take the caller down.

Each worker process loads libdarknet and one network (a network per process: darknet
keeps state per network and ``free_network`` leaks, so each is loaded once), receives
batches of 8-bit images through a pipe, and returns each image's score and box, decoded
by :class:`~spidarknet.engine.darknet_lib.NetworkDetector` in the worker.  Darknet's own
printing goes to a log file.  If a worker dies (a segfault, darknet's ``exit()``),
:class:`DarknetLibDetector` raises an :class:`EngineError` naming the signal and the
tail of that log; frames scored before stay with the caller.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from spidarknet.core.errors import EngineError
from spidarknet.engine.cfg import DarknetCfg
from spidarknet.engine.detector import Detections, RegionSpec


def _worker_main(conn, lib_path: str, cfg_path: str, weights_path: str, batch: int,
                 gpu: int | None, log_path: str) -> None:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        from spidarknet.engine.darknet_lib import NetworkDetector
        spec = RegionSpec.from_cfg(DarknetCfg.load(cfg_path))
        detector = NetworkDetector(lib_path, cfg_path, weights_path, spec, batch=batch, gpu=gpu)
    except Exception as exc:  # report why, then leave
        conn.send(("error", str(exc)))
        return
    width, height = detector.net.width, detector.net.height
    conn.send(("ready", width, height))
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            break
        if not message:
            break
        images = np.frombuffer(message, dtype=np.uint8).reshape(-1, height, width, 3)
        found = detector.detect(images)
        conn.send_bytes(np.concatenate([found.scores[:, None], found.boxes], axis=1).astype(np.float32).tobytes())
    detector.close()


class DarknetLibDetector:
    """The ``darknet`` backend: batched libdarknet inference in ``workers`` processes."""

    name = "darknet"

    def __init__(self, lib_path: Path, cfg_path: Path, weights_path: Path, spec: RegionSpec, *,
                 batch: int = 16, workers: int = 1, gpu: int | None = None, threads_per_worker: int = 1):
        self.spec = spec
        self.batch = batch
        self._tmp = tempfile.TemporaryDirectory(prefix="spidarknet-darknet-")
        self.size = DarknetCfg.load(cfg_path).input_size[0]
        self.log_path = Path(self._tmp.name) / "darknet.log"
        self._workers = []
        settings = json.dumps([str(lib_path), str(cfg_path), str(weights_path), batch, gpu,
                               str(self.log_path)])
        package_root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_worker), PYTHONPATH=python_path)
        try:
            for _ in range(max(1, workers)):
                parent, child = socket.socketpair()
                # a fresh interpreter, not multiprocessing: no re-import of the caller's __main__
                proc = subprocess.Popen([sys.executable, "-m", "spidarknet.engine.workers",
                                         str(child.fileno()), settings], pass_fds=(child.fileno(),),
                                        env=env, stdin=subprocess.DEVNULL, start_new_session=True)
                child.close()
                self._workers.append((proc, Connection(parent.detach())))
            for proc, conn in self._workers:
                reply = self._receive(proc, conn, lambda c: c.recv())
                if reply[0] == "error":
                    raise EngineError(f"darknet worker could not start: {reply[1]}")
                if reply[1:] != (self.size, self.size):
                    raise EngineError(f"libdarknet built a {reply[1]}x{reply[2]} network from a "
                                      f"{self.size}x{self.size} cfg: wrong library?")
        except BaseException:
            self.close()
            raise

    def _log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def _receive(self, proc, conn, read):
        try:
            return read(conn)
        except (EOFError, ConnectionResetError, BrokenPipeError, OSError):
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None and code < 0:
                try:
                    how = f"was killed by {signal.Signals(-code).name}"
                except ValueError:
                    how = f"was killed by signal {-code}"
            else:
                how = f"exited with status {code}"
            raise EngineError(f"the darknet worker process {how} (darknet crashed or called exit()); "
                              f"its last output:\n{self._log_tail()}") from None

    def detect(self, images: np.ndarray) -> Detections:
        if len(images) == 0:
            return Detections.concat([])
        if images.shape[1:] != (self.size, self.size, 3) or images.dtype != np.uint8:
            raise EngineError(f"expected ({self.size}, {self.size}, 3) uint8 images, got {images.shape} {images.dtype}")
        # the worker pads a short batch itself (NetworkDetector)
        batches = [images[start:start + self.batch] for start in range(0, len(images), self.batch)]
        results = [None] * len(batches)
        in_flight = collections.deque()
        next_batch = 0
        # keep two batches queued per worker so that no worker waits for the parent
        while next_batch < len(batches) or in_flight:
            while next_batch < len(batches) and len(in_flight) < 2 * len(self._workers):
                proc, conn = self._workers[next_batch % len(self._workers)]
                try:
                    conn.send_bytes(np.ascontiguousarray(batches[next_batch]).tobytes())
                except (BrokenPipeError, ConnectionResetError):
                    self._receive(proc, conn, lambda c: c.recv_bytes())  # raises with the reason
                in_flight.append(next_batch)
                next_batch += 1
            done = in_flight.popleft()
            proc, conn = self._workers[done % len(self._workers)]
            rows = np.frombuffer(self._receive(proc, conn, lambda c: c.recv_bytes()), dtype=np.float32)
            rows = rows.reshape(len(batches[done]), 5)  # score, cx, cy, w, h
            results[done] = Detections(rows[:, 0].copy(), rows[:, 1:].copy())
        return Detections.concat(results)

    def close(self) -> None:
        for proc, conn in getattr(self, "_workers", []):
            try:
                conn.send_bytes(b"")
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            conn.close()
        self._workers = []
        if getattr(self, "_tmp", None) is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


if __name__ == "__main__":  # started by DarknetLibDetector: FD SETTINGS_JSON
    _worker_main(Connection(int(sys.argv[1])), *json.loads(sys.argv[2]))
