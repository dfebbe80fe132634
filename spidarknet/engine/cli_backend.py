"""The plain way, kept as a reference: images on disk, ``darknet detector valid``, parse.

``detector valid`` letterboxes each image to the network input (an identity for our
square images of that size), decodes with threshold 0.005 and NMS 0.45, and writes
``<results>/comp4_det_test_<class>.txt`` lines ``<image> <prob> <xmin> <ymin> <xmax>
<ymax>`` in 1-based image pixels.  A frame's score is its highest ``prob`` (0 when
darknet listed nothing above 0.005).  The results folder must exist beforehand, or
darknet segfaults.

``detector valid`` starts its first :data:`VALID_THREADS` image loads from the list's
first entries without looking at its length: a list of fewer images (a short last
chunk, or a chunk the prefilter thinned out) makes it read past its array of paths
("Cannot load image (null)", SIGSEGV).  The list is therefore padded to that length by
repeating its last image; the repeats give that image's lines again, which change
nothing (a frame's score is its highest ``prob``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from spidarknet.core.errors import EngineError
from spidarknet.engine.detector import Detections
from spidarknet.engine.locate import Found
from spidarknet.engine.runner import run_darknet

#: images ``detector valid`` loads at once (``nthreads`` in examples/detector.c): its list needs as many
VALID_THREADS = 4


class DarknetCliDetector:
    name = "darknet-cli"

    def __init__(self, darknet: Found, cfg_path: Path, weights_path: Path, *, batch: int = 256,
                 names: tuple[str, ...] = ("single",), gpu: int | None = None):
        self.darknet = darknet
        self.cfg_path = Path(cfg_path).resolve()
        self.weights_path = Path(weights_path).resolve()
        self.batch = batch
        self.names = names
        self.gpu = gpu

    def detect(self, images: np.ndarray) -> Detections:
        import cv2
        n, h, w = images.shape[:3]
        if n == 0:
            return Detections(np.zeros(0, dtype=np.float32), np.zeros((0, 4), dtype=np.float32))
        work = Path(tempfile.mkdtemp(prefix="spidarknet-valid-"))
        log_path = work.parent / f"{work.name}.log"  # outside the folder: kept for the error that names it
        try:
            (work / "images").mkdir()
            (work / "results").mkdir()
            lines = []
            for i, image in enumerate(images):
                rel = f"images/{i:07d}.png"
                if not cv2.imwrite(str(work / rel), np.ascontiguousarray(image[..., ::-1])):
                    raise EngineError(f"cannot write {work / rel}")
                lines.append(rel)
            lines += lines[-1:] * (VALID_THREADS - n)  # darknet reads past a shorter list
            (work / "valid.txt").write_text("\n".join(lines) + "\n")
            (work / "obj.names").write_text("\n".join(self.names) + "\n")
            (work / "obj.data").write_text(f"classes = {len(self.names)}\nvalid = valid.txt\n"
                                           "names = obj.names\nresults = results\n")
            args = [str(self.darknet.path), "detector", "valid", "obj.data", str(self.cfg_path),
                    str(self.weights_path)]
            if self.darknet.gpu:
                # never -nogpu: a GPU build's CPU region layer skips its activations
                args[1:1] = ["-i", str(self.gpu if self.gpu is not None and self.gpu >= 0 else 0)]
            run_darknet(args, cwd=work, log_path=log_path, what="darknet detector valid")
            log_path.unlink()
            scores = np.zeros(n, dtype=np.float32)
            boxes = np.zeros((n, 4), dtype=np.float32)
            result = work / "results" / f"comp4_det_test_{self.names[0]}.txt"
            if not result.is_file():
                raise EngineError(f"darknet detector valid wrote no {result.name}")
            for line in result.read_text().splitlines():
                parts = line.split()
                if len(parts) != 6:
                    raise EngineError(f"unexpected line in {result.name}: {line!r}")
                i = int(parts[0])
                prob, x0, y0, x1, y1 = (float(v) for v in parts[1:])
                if prob > scores[i]:
                    scores[i] = prob
                    boxes[i] = ((x0 + x1) / 2 - 1) / w, ((y0 + y1) / 2 - 1) / h, (x1 - x0) / w, (y1 - y0) / h
            return Detections(scores, boxes)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def close(self) -> None:
        pass
