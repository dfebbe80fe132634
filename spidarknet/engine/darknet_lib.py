"""ctypes bindings of pjreddie's libdarknet (commit 61c9d02e), loaded explicitly.

Nothing is loaded at import.  :class:`LibDarknet` opens a given ``libdarknet.so``,
refuses other forks (AlexeyAB's exports ``network_predict_ptr``; its structs differ),
declares the few functions spidarknet calls, and checks the ``image`` struct layout
by a round trip through ``make_image``.  ``network`` stays an opaque pointer: its
layout changes with ``-DGPU``.

Hazards this module does not remove, which is why detection runs it in worker
processes (:mod:`spidarknet.engine.workers`): a missing file makes darknet call
``exit(0)``; ``load_weights`` reads whatever it is given.  Callers validate cfg and
weights first (:func:`spidarknet.engine.weights.check_weights`).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from spidarknet.core.defaults import INFERENCE_BATCH
from spidarknet.core.errors import EngineError

REQUIRED = ("load_network", "network_predict", "free_network", "network_width", "network_height",
            "make_image", "free_image", "get_network_boxes", "free_detections")
OTHER_FORKS = ("network_predict_ptr", "load_network_custom")


class Image(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float))]


class Box(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("w", ctypes.c_float), ("h", ctypes.c_float)]


class Detection(ctypes.Structure):
    _fields_ = [("bbox", Box), ("classes", ctypes.c_int), ("prob", ctypes.POINTER(ctypes.c_float)),
                ("mask", ctypes.POINTER(ctypes.c_float)), ("objectness", ctypes.c_float),
                ("sort_class", ctypes.c_int)]


#: the struct sizes of darknet 61c9d02e on a 64-bit platform (x86-64, aarch64)
STRUCT_SIZES = {"image": 24, "detection": 48}


class LibDarknet:
    """An opened libdarknet with its functions declared."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        sizes = {"image": ctypes.sizeof(Image), "detection": ctypes.sizeof(Detection)}
        if sizes != STRUCT_SIZES:
            raise EngineError(f"this platform lays out darknet's structs as {sizes}, not {STRUCT_SIZES} "
                              "(64-bit); use the darknet-cli or opencv backend here")
        try:
            lib = ctypes.CDLL(str(self.path), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        except OSError as exc:
            raise EngineError(f"cannot load {self.path}: {exc}") from None
        missing = [name for name in REQUIRED if not hasattr(lib, name)]
        if missing:
            raise EngineError(f"{self.path} lacks {', '.join(missing)}: not pjreddie's libdarknet")
        if any(hasattr(lib, name) for name in OTHER_FORKS):
            raise EngineError(f"{self.path} is another darknet fork (AlexeyAB's?) whose structs differ; "
                              "use the build from 'make darknet'")
        vp = ctypes.c_void_p
        lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        lib.load_network.restype = vp
        lib.network_predict.argtypes = [vp, ctypes.POINTER(ctypes.c_float)]
        lib.network_predict.restype = ctypes.POINTER(ctypes.c_float)
        lib.free_network.argtypes = [vp]
        lib.free_network.restype = None
        lib.network_width.argtypes = [vp]
        lib.network_height.argtypes = [vp]
        lib.make_image.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.make_image.restype = Image
        lib.free_image.argtypes = [Image]
        lib.free_image.restype = None
        lib.get_network_boxes.argtypes = [vp, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float,
                                          ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                                          ctypes.POINTER(ctypes.c_int)]
        lib.get_network_boxes.restype = ctypes.POINTER(Detection)
        lib.free_detections.argtypes = [ctypes.POINTER(Detection), ctypes.c_int]
        lib.free_detections.restype = None
        self.lib = lib
        self.gpu = hasattr(lib, "cuda_set_device") and b"libcudart" in self.path.read_bytes()
        self._check_image_layout()

    def _check_image_layout(self) -> None:
        im = self.lib.make_image(3, 2, 1)
        try:
            if (im.w, im.h, im.c) != (3, 2, 1) or not im.data:
                raise EngineError(f"{self.path}: the image struct does not have the layout of pjreddie's "
                                  "darknet 61c9d02e; use the build from 'make darknet'")
        finally:
            self.lib.free_image(im)

    def use_gpu(self, index: int | None) -> None:
        """Select a GPU: GPU builds must run on one (``None`` means GPU 0); CPU builds ignore it.

        A GPU build run on the CPU gives wrong detections: its CPU region layer skips the
        logistic and softmax activations (upstream compiles them only without ``GPU``).
        """
        gpu_index = ctypes.c_int.in_dll(self.lib, "gpu_index")
        if not self.gpu:
            gpu_index.value = -1
            return
        index = 0 if index is None else int(index)
        if index < 0:
            raise EngineError(f"{self.path} is a GPU build, whose CPU path computes wrong detections; "
                              "give a GPU index (--gpu 0) or use a CPU build ('make darknet')")
        gpu_index.value = int(index)
        self.lib.cuda_set_device(int(index))

    def load(self, cfg: str | os.PathLike, weights: str | os.PathLike) -> "Network":
        for path in (cfg, weights):
            if not Path(path).is_file():  # darknet would exit(0) and take the process with it
                raise EngineError(f"{path} does not exist")
        ptr = self.lib.load_network(str(cfg).encode(), str(weights).encode(), 0)
        if not ptr:
            raise EngineError(f"darknet could not load {cfg} with {weights}")
        return Network(self, ptr)


class Network:
    """A loaded network; call :meth:`close` (or use ``with``) to free it."""

    def __init__(self, lib: LibDarknet, ptr: int):
        self._lib = lib
        self.ptr = ctypes.c_void_p(ptr)
        self.width = lib.lib.network_width(self.ptr)
        self.height = lib.lib.network_height(self.ptr)

    def predict(self, batch: np.ndarray, outputs: int) -> np.ndarray:
        """Forward a (B, 3, h, w) float32 batch; returns a copy of the (B, outputs) output.

        ``B`` must be the batch the network was loaded with (darknet does not check).
        """
        if self.ptr is None:
            raise EngineError("the network was closed")
        data = np.ascontiguousarray(batch, dtype=np.float32)
        out = self._lib.lib.network_predict(self.ptr, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return np.ctypeslib.as_array(out, shape=(len(data) * outputs,)).reshape(len(data), outputs).copy()

    def region_boxes(self, classes: int, thresh: float = 0.0
                     ) -> list[tuple[float, tuple[float, float, float, float], list[float]]]:
        """Darknet's own decoding of batch item 0 after :meth:`predict`: (objectness, box, probs).

        The region layer leaves ``detection.classes`` at 0, so the caller says how many.
        """
        num = ctypes.c_int(0)
        dets = self._lib.lib.get_network_boxes(self.ptr, self.width, self.height, thresh, 0.5, None, 1,
                                               ctypes.byref(num))
        try:
            out = []
            for i in range(num.value):
                d = dets[i]
                out.append((d.objectness, (d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h),
                            [d.prob[k] for k in range(classes)]))
            return out
        finally:
            self._lib.lib.free_detections(dets, num)

    def close(self) -> None:
        if self.ptr is not None:
            self._lib.lib.free_network(self.ptr)
            self.ptr = None

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NetworkDetector:
    """libdarknet in *this* process, batched; the ``Detector`` protocol.

    Used inside worker processes (which are the crash barrier); the network is loaded
    once with the batch written into a copy of its cfg, since ``set_batch_network`` does
    not reallocate.
    """

    name = "darknet"

    def __init__(self, lib_path, cfg_path, weights_path, spec, *, batch: int = INFERENCE_BATCH, gpu: int | None = None):
        import tempfile
        from spidarknet.engine.cfg import DarknetCfg
        if batch == 2:
            batch = 3  # get_network_boxes averages flipped pairs when batch == 2
        self.batch = batch
        self.spec = spec
        cfg = DarknetCfg.load(cfg_path)
        cfg.net.options.update(batch=str(batch), subdivisions="1")
        self._tmp = tempfile.TemporaryDirectory(prefix="spidarknet-net-")
        run_cfg = Path(self._tmp.name) / "detect.cfg"
        cfg.save(run_cfg)
        self.lib = LibDarknet(lib_path)
        self.lib.use_gpu(gpu)
        self.net = self.lib.load(run_cfg, weights_path)

    def detect(self, images: np.ndarray):
        from spidarknet.engine.detector import Detections, decode_region
        parts = []
        for start in range(0, len(images), self.batch):
            part = images[start:start + self.batch]
            n = len(part)
            batch = np.zeros((self.batch, 3) + part.shape[1:3], dtype=np.float32)
            batch[:n] = part.transpose(0, 3, 1, 2)
            batch *= 1.0 / 255.0
            parts.append(decode_region(self.net.predict(batch, self.spec.outputs)[:n], self.spec))
        return Detections.concat(parts)

    def close(self) -> None:
        if getattr(self, "net", None) is not None:
            self.net.close()
            self.net = None
        if getattr(self, "_tmp", None) is not None:
            self._tmp.cleanup()
            self._tmp = None
