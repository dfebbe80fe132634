"""The one preprocessing pipeline, shared by dataset export and detection.

Steps, in order, for each frame (all vectorised over a chunk):

1. **photons** - divide by ``adu_per_photon`` when the data are in detector units;
2. **mask** - pixels excluded by the mask, NaN or negative values are set to 0 (the
   NaN/negative ones are counted so that the caller can warn);
3. **crop** - a ``crop`` × ``crop`` square around the beam centre (padded with zeros
   where it leaves the detector);
4. **bin** - the crop is summed into ``size`` × ``size`` bins (photons per bin) by an
   area-average resize times the bin area, so non-integer factors work too;
5. **scale** - ``linear`` (photons / vmax), ``log`` (log1p(photons) / log1p(vmax)) or
   ``sqrt`` (sqrt(photons / vmax): Poisson noise has the same spread at every level), then
   clipped to [0, 1]; ``vmax`` is fixed (photons per bin) or, when ``None``, the
   ``vmax_percentile`` of each frame's bins but at least ``vmax_floor``;
6. **8-bit image** - ``grey`` replicated to 3 channels (darknet trains on 3 channels) or
   an OpenCV colour map (``viridis``, ``jet``, ...), returned in RGB order.

The settings are a :class:`Preprocessing` dataclass saved as JSON beside every exported
data set and every model, so detection repeats exactly the steps used in training.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from spidarknet.errors import ConfigError
from spidarknet.frames import FileInfo, FrameChunk, Roi
from spidarknet.outputs import write_json

SCALES = ("linear", "log", "sqrt")
COLORMAPS = ("grey", "viridis", "jet", "inferno", "magma", "plasma", "hot", "turbo", "parula")
FORMAT_VERSION = 1


@dataclass
class Preprocessing:
    """Settings of the preprocessing pipeline (see the module docstring for the steps)."""

    size: int = 128                     # side of the output image = network input, pixels
    crop: int = 256                     # side of the square cut around the beam centre, detector pixels
    adu_per_photon: float | None = None  # None: the data are already photon counts
    centre_px: tuple[float, float] | None = None  # (x, y) beam centre; None: from the geometry
    scale: str = "linear"               # linear | log | sqrt
    vmax: float | None = None           # photons per bin shown as full scale; None: per frame
    vmax_percentile: float = 99.5       # per-frame full scale when vmax is None ...
    vmax_floor: float = 5.0             # ... but never below this many photons per bin
    colormap: str = "grey"              # grey or an OpenCV colour map name
    version: int = field(default=FORMAT_VERSION)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ConfigError(f"image size {self.size!r} must be an integer of at least 8")
        if not isinstance(self.crop, int) or self.crop < self.size // 8 or self.crop < 2:
            raise ConfigError(f"crop {self.crop!r} must be an integer of at least 2 pixels")
        if self.adu_per_photon is not None and not self.adu_per_photon > 0:
            raise ConfigError(f"adu_per_photon must be positive, not {self.adu_per_photon}")
        if self.scale not in SCALES:
            raise ConfigError(f"scale {self.scale!r} is not one of {', '.join(SCALES)}" + _hint(self.scale, SCALES))
        if self.vmax is not None and not self.vmax > 0:
            raise ConfigError(f"vmax must be positive, not {self.vmax}")
        if not 0 < self.vmax_percentile <= 100:
            raise ConfigError(f"vmax_percentile {self.vmax_percentile} must be in (0, 100]")
        if not self.vmax_floor > 0:
            raise ConfigError(f"vmax_floor must be positive, not {self.vmax_floor}")
        if self.colormap not in COLORMAPS:
            raise ConfigError(f"colour map {self.colormap!r} is not one of {', '.join(COLORMAPS)}"
                              + _hint(self.colormap, COLORMAPS))
        if self.centre_px is not None:
            self.centre_px = (float(self.centre_px[0]), float(self.centre_px[1]))

    # -- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "settings") -> "Preprocessing":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(f"{source}: unknown preprocessing setting {unknown[0]!r}"
                              + _hint(unknown[0], known))
        values = dict(values)
        if values.get("version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ConfigError(f"{source} was written by a newer spidarknet (format {values['version']}); "
                              "upgrade spidarknet")
        if values.get("centre_px") is not None:
            values["centre_px"] = tuple(values["centre_px"])
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        write_json(self.to_dict(), path, True, "preprocessing settings")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Preprocessing":
        try:
            with open(path) as handle:
                values = json.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"preprocessing settings {path} do not exist") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read preprocessing settings {path}: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} does not hold preprocessing settings")
        return cls.from_dict(values, str(path))

    # -- geometry of the crop ------------------------------------------------------------
    def centre_for(self, info: FileInfo) -> tuple[float, float]:
        return self.centre_px if self.centre_px is not None else info.geometry.centre_px

    def crop_box(self, info: FileInfo) -> Roi:
        """Rows r0:r1 and columns c0:c1 of the crop in full-frame pixels (may leave the frame)."""
        cx, cy = self.centre_for(info)
        c0 = int(math.floor(cx + 0.5 - self.crop / 2.0))
        r0 = int(math.floor(cy + 0.5 - self.crop / 2.0))
        return r0, r0 + self.crop, c0, c0 + self.crop

    @property
    def bin_factor(self) -> float:
        """Detector pixels per output pixel along one axis."""
        return self.crop / self.size


@dataclass
class Processed:
    """The output of :meth:`Preprocessor.process` for one chunk."""

    images: np.ndarray      # (n, size, size, 3) uint8, RGB
    photons: np.ndarray     # (n, size, size) float32, photons per bin
    crop_origin: tuple[int, int]  # (row, column) of the crop's corner in the full frame
    n_bad_values: int       # NaN or negative pixels that were masked


def _hint(value, options) -> str:
    close = difflib.get_close_matches(str(value), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _colormap_lut(name: str) -> np.ndarray | None:
    """A (256, 3) RGB lookup table for an OpenCV colour map, or None for grey."""
    if name == "grey":
        return None
    import cv2
    code = getattr(cv2, f"COLORMAP_{name.upper()}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, code).reshape(256, 3)
    return np.ascontiguousarray(bgr[:, ::-1])


class Preprocessor:
    """Applies one :class:`Preprocessing` to frame chunks."""

    def __init__(self, settings: Preprocessing):
        self.settings = settings
        self._lut = _colormap_lut(settings.colormap)
        self._crop = np.zeros((0, settings.crop, settings.crop), dtype=np.float32)

    def roi(self, info: FileInfo) -> Roi:
        """The region to read from a file: the crop box (clipped by the reader)."""
        return self.settings.crop_box(info)

    def process(self, chunk: FrameChunk) -> Processed:
        s = self.settings
        n = len(chunk)
        r0, r1, c0, c1 = s.crop_box(chunk.info)
        # place the (clipped) data that was read into a zero-padded crop; the buffer is
        # reused from chunk to chunk (fresh memory costs page faults on every chunk)
        if len(self._crop) < n:
            self._crop = np.zeros((n, s.crop, s.crop), dtype=np.float32)
        crop = self._crop[:n]
        dr, dc = chunk.origin[0] - r0, chunk.origin[1] - c0
        h, w = chunk.data.shape[1:]
        if dr < 0 or dc < 0 or dr + h > s.crop or dc + w > s.crop:
            # the chunk holds more than the crop (read without an ROI): cut it
            rr0, cc0 = max(0, -dr), max(0, -dc)
            rr1, cc1 = min(h, s.crop - dr), min(w, s.crop - dc)
            data = chunk.data[:, rr0:rr1, cc0:cc1]
            valid = chunk.valid[..., rr0:rr1, cc0:cc1]
            dr, dc = dr + rr0, dc + cc0
        else:
            data, valid = chunk.data, chunk.valid
        if (dr, dc, data.shape[1], data.shape[2]) != (0, 0, s.crop, s.crop):
            crop[...] = 0.0  # the crop leaves the detector: pad
        target = crop[:, dr:dr + data.shape[1], dc:dc + data.shape[2]]
        np.copyto(target, data, casting="unsafe")
        if s.adu_per_photon is not None:
            target /= s.adu_per_photon
        n_bad = 0
        if data.dtype.kind == "f" or data.dtype.kind == "i":
            bad = ~np.isfinite(target) | (target < 0)
            n_bad = int(np.count_nonzero(bad & valid))
            usable = valid & ~bad
        else:
            usable = valid
        np.copyto(target, 0.0, where=~usable)
        photons = self._bin(crop)
        images = self._to_images(photons)
        return Processed(images=images, photons=photons, crop_origin=(r0, c0), n_bad_values=n_bad)

    def _bin(self, crop: np.ndarray) -> np.ndarray:
        s = self.settings
        if s.crop == s.size:
            return crop.copy()  # the crop buffer is reused by the next chunk
        f = s.crop // s.size
        if f * s.size == s.crop:
            if f > 4:
                return crop.reshape(len(crop), s.size, f, s.size, f).sum(axis=(2, 4), dtype=np.float32)
            # a sum of f*f strided views: several times faster than a reduction over
            # the interleaved axes of a reshape
            out = crop[:, 0::f, 0::f].copy()
            for i in range(f):
                for j in range(f):
                    if i or j:
                        out += crop[:, i::f, j::f]
            return out
        import cv2
        area = (s.crop / s.size) ** 2
        out = np.empty((len(crop), s.size, s.size), dtype=np.float32)
        for i, frame in enumerate(crop):
            out[i] = cv2.resize(frame, (s.size, s.size), interpolation=cv2.INTER_AREA) * area
        return out

    def full_scale(self, photons: np.ndarray) -> np.ndarray:
        """Photons per bin mapped to 255, per frame (shape (n,))."""
        s = self.settings
        if s.vmax is not None:
            return np.full(len(photons), s.vmax, dtype=np.float32)
        flat = photons.reshape(len(photons), -1)
        # np.percentile's linear interpolation, from a partition at the two order statistics
        k = s.vmax_percentile / 100.0 * (flat.shape[1] - 1)
        lo, hi = int(np.floor(k)), int(np.ceil(k))
        part = np.partition(flat, (lo, hi) if hi != lo else lo, axis=1)
        low, high = part[:, lo].astype(np.float64), part[:, hi].astype(np.float64)
        vmax = (low + (high - low) * (k - lo)).astype(np.float32)
        return np.maximum(vmax, s.vmax_floor)

    def _to_images(self, photons: np.ndarray) -> np.ndarray:
        s = self.settings
        vmax = self.full_scale(photons)[:, None, None]
        if s.scale == "log":
            scaled = np.log1p(photons)
            scaled /= np.log1p(vmax)
        elif s.scale == "sqrt":
            scaled = np.sqrt(photons / vmax)
        else:
            scaled = photons / vmax
        np.clip(scaled, 0.0, 1.0, out=scaled)
        scaled *= 255.0
        scaled += 0.5
        grey = scaled.astype(np.uint8)
        if self._lut is None:
            return np.repeat(grey[..., None], 3, axis=-1)
        return self._lut[grey]


def pattern_extent(photons: np.ndarray, centre_xy: tuple[float, float], fraction: float = 0.95) -> np.ndarray:
    """Radius (in output pixels) around ``centre_xy`` holding ``fraction`` of each frame's signal.

    The background per bin is taken as the mean of the bins beyond 90 % of the half
    width (the corners); what exceeds it is the pattern's signal.  Frames with no
    signal get radius 0.
    """
    n, h, w = photons.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - centre_xy[0], yy - centre_xy[1]).ravel()
    order = np.argsort(r, kind="stable")
    r_sorted = r[order]
    outer = r > 0.9 * min(h, w) / 2.0
    flat = photons.reshape(n, -1)
    background = flat[:, outer].mean(axis=1, keepdims=True) if outer.any() else 0.0
    signal = np.clip(flat - background, 0.0, None)[:, order]
    cumulative = np.cumsum(signal, axis=1)
    total = cumulative[:, -1]
    radius = np.zeros(n, dtype=np.float32)
    has = total > 0
    if has.any():
        idx = np.argmax(cumulative[has] >= fraction * total[has, None], axis=1)
        radius[has] = r_sorted[idx]
    return radius
