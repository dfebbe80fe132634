"""Checking a ``.weights`` file against a network cfg before darknet sees it.

Darknet's ``load_weights`` reads layer after layer without checking anything: weights
of another network load as garbage, a truncated file loads silently.  This module
computes the number of floats each layer of a cfg stores and compares it with the
file's size, so a mismatch becomes a clear error instead of meaningless scores.

File layout: int32 major, minor, revision; the count of images seen (uint64 when
``major*10 + minor >= 2``, else int32); then float32 parameters layer by layer.  A
convolution stores biases, then (with ``batch_normalize``) scales, rolling means and
variances, then its kernels.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from spidarknet.core.errors import ConfigError, EngineError
from spidarknet.engine.cfg import DarknetCfg


@dataclass(frozen=True)
class LayerShape:
    name: str
    floats: int          # parameters stored in a .weights file
    out_c: int
    out_h: int
    out_w: int


def layer_shapes(cfg: DarknetCfg) -> list[LayerShape]:
    """Output shape and stored parameter count of every layer, as darknet computes them."""
    w, h, c = cfg.input_size
    shapes: list[LayerShape] = []
    for index, layer in enumerate(cfg.layers):
        floats = 0
        if layer.name in ("convolutional", "conv"):
            filters = layer.get_int("filters")
            size = layer.get_int("size", 1)
            stride = layer.get_int("stride", 1)
            pad = size // 2 if layer.get_int("pad", 0) else layer.get_int("padding", 0)
            groups = layer.get_int("groups", 1)
            bn = layer.get_int("batch_normalize", 0)
            floats = filters + (3 * filters if bn else 0) + filters * (c // groups) * size * size
            h = (h + 2 * pad - size) // stride + 1
            w = (w + 2 * pad - size) // stride + 1
            c = filters
        elif layer.name in ("maxpool", "max"):
            size = layer.get_int("size", 1)
            stride = layer.get_int("stride", size)
            padding = layer.get_int("padding", size - 1)
            h = (h + padding - size) // stride + 1
            w = (w + padding - size) // stride + 1
        elif layer.name == "reorg":
            stride = layer.get_int("stride", 1)
            if layer.get_int("reverse", 0):
                h, w, c = h * stride, w * stride, c // (stride * stride)
            else:
                h, w, c = h // stride, w // stride, c * stride * stride
        elif layer.name == "route":
            parts = [int(v) for v in layer.get("layers", "").split(",") if v.strip()]
            if not parts:
                raise ConfigError(f"{cfg.source}: [route] layer {index} has no layers=")
            sources = [p + index if p < 0 else p for p in parts]
            if any(s < 0 or s >= index for s in sources):
                raise ConfigError(f"{cfg.source}: [route] layer {index} refers to layers {parts}")
            first = shapes[sources[0]]
            if any((shapes[s].out_h, shapes[s].out_w) != (first.out_h, first.out_w) for s in sources):
                raise ConfigError(f"{cfg.source}: [route] layer {index} joins layers of different sizes")
            h, w, c = first.out_h, first.out_w, sum(shapes[s].out_c for s in sources)
        elif layer.name in ("region", "avgpool", "softmax", "cost", "dropout"):
            pass
        else:
            raise ConfigError(f"{cfg.source}: layer {index} [{layer.name}] is not supported by spidarknet's "
                              "weights check")
        if h <= 0 or w <= 0:
            raise ConfigError(f"{cfg.source}: the input is too small for layer {index} [{layer.name}]")
        shapes.append(LayerShape(layer.name, floats, c, h, w))
    return shapes


def grid_size(cfg: DarknetCfg) -> int:
    """Side of the detection layer's output grid, as darknet computes the layer shapes."""
    index, _ = cfg.detection_layer()
    return layer_shapes(cfg)[index].out_w


def read_header(path: str | os.PathLike) -> tuple[tuple[int, int, int], int, int]:
    """((major, minor, revision), images seen, header bytes) of a weights file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(20)
    except FileNotFoundError:
        raise EngineError(f"weights file {path} does not exist") from None
    except OSError as exc:
        raise EngineError(f"cannot read weights {path}: {exc}") from None
    if len(head) < 16:
        raise EngineError(f"{path} is too short to be darknet weights ({len(head)} bytes)")
    major, minor, revision = struct.unpack("<3i", head[:12])
    if not (0 <= major < 100 and 0 <= minor < 100):
        raise EngineError(f"{path} does not look like darknet weights (header {major}.{minor}.{revision})")
    if major * 10 + minor >= 2:
        if len(head) < 20:
            raise EngineError(f"{path} is too short to be darknet weights")
        seen = struct.unpack("<Q", head[12:20])[0]
        return (major, minor, revision), seen, 20
    return (major, minor, revision), struct.unpack("<i", head[12:16])[0], 16


def check_weights(cfg: DarknetCfg, path: str | os.PathLike, *, partial: bool = False) -> int:
    """Raise unless ``path`` holds exactly the parameters of ``cfg``.

    With ``partial`` (pretrained feature extractors) the file may hold the first layers
    only, but must end on a layer boundary.  Returns the number of layers it fills.
    """
    _, _, header = read_header(path)
    size = os.path.getsize(path) - header
    if size % 4:
        raise EngineError(f"{path}: {size} bytes of parameters is not a whole number of floats; "
                          "the file is damaged or truncated")
    floats = size // 4
    shapes = layer_shapes(cfg)
    total = sum(s.floats for s in shapes)
    if floats == total:
        return len(shapes)
    if partial and floats < total:
        running = 0
        for filled, shape in enumerate(shapes):
            if running == floats:
                return filled
            running += shape.floats
    name = os.path.basename(str(cfg.source))
    if floats < total:
        raise EngineError(f"{path} holds {floats:,} parameters but {name} needs {total:,}: the weights "
                          "are truncated or belong to another network (cfg and weights must match)")
    raise EngineError(f"{path} holds {floats:,} parameters but {name} needs {total:,}: the weights belong to "
                      "another network (a different --net, --size-independent filter counts or classes)")


def write_random_weights(cfg: DarknetCfg, path: str | os.PathLike, seed: int = 0) -> None:
    """Untrained weights for ``cfg`` as darknet would initialise them (for benchmarks).

    Convolution kernels are scaled by sqrt(2 / fan-in), biases 0, batch-norm scales 1
    with running mean 0 and variance 1.  Scores from such weights mean nothing; their
    speed is that of trained ones.
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    parts = []
    channels = cfg.input_size[2]
    for layer, shape in zip(cfg.layers, layer_shapes(cfg)):
        if layer.name in ("convolutional", "conv"):
            filters, size = layer.get_int("filters"), layer.get_int("size", 1)
            fan_in = channels // layer.get_int("groups", 1) * size * size
            parts.append(np.zeros(filters))
            if layer.get_int("batch_normalize", 0):
                parts += [np.ones(filters), np.zeros(filters), np.ones(filters)]
            parts.append(rng.normal(0.0, (2.0 / fan_in) ** 0.5, filters * fan_in))
        channels = shape.out_c
    data = np.concatenate(parts).astype("<f4")
    with open(path, "wb") as handle:
        handle.write(struct.pack("<3iQ", 0, 2, 0, 0))
        handle.write(data.tobytes())
