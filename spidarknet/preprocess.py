"""The one preprocessing pipeline, shared by dataset export and detection.

Steps, in order, for each frame (all vectorised over a chunk):

1. **photons** - divide by ``adu_per_photon`` when the data are in detector units;
2. **mask** - pixels excluded by the mask, NaN or negative values are set to 0 (the
   NaN/negative ones are counted so that the caller can warn);
3. **crop** - a square around the beam centre (padded with zeros where it leaves the
   detector; :attr:`Processed.padded` says so, and ``valid_pixels`` counts the usable
   pixels per frame): ``crop`` detector pixels on a side, or, with ``q_max_inv_nm``, the
   square reaching that scattering vector q along the detector axes, worked out from each
   file's own distance, pixel size and wavelength (see below);
4. **bin** - the crop is summed into ``size`` × ``size`` bins (photons per bin) by an
   area-average resize times the bin area, so non-integer factors, and crops of fewer
   pixels than ``size`` (each pixel's photons shared by the bins it covers), work too;
5. **scale** - ``linear`` (photons / vmax), ``log`` (log1p(photons) / log1p(vmax)) or
   ``sqrt`` (sqrt(photons / vmax): Poisson noise has the same spread at every level), then
   clipped to [0, 1]; ``vmax`` is fixed (photons per bin) or, when ``None``, the
   ``vmax_percentile`` of each frame's bins but at least ``vmax_floor``;
6. **8-bit image** - ``grey`` replicated to 3 channels (darknet trains on 3 channels) or
   an OpenCV colour map (``viridis``, ``jet``, ...), returned in RGB order.

**Crop in q.**  With ``q_max_inv_nm`` (and ``crop=None``) the half-width of the crop is
the distance on the detector at which ``|q| = 4π/λ · sin(θ/2)`` reaches ``q_max_inv_nm``,
with ``tan θ = r / D`` (flat detector normal to the beam): ``r = D tan(2 asin(q λ / 4π))``,
divided by the pixel size and rounded to whole pixels.  On a flat detector the image is
then linear in ``tan θ``, so a file at another distance or with other (e.g. binned)
pixels gives the image of the same q range on the same grid, up to that rounding; at
another wavelength the q at the image's centre and edges agree and the q between them
differ by less than a percent at the angles of SPI (θ < 0.1 rad).  A bin holds the photons
of the same solid angle whatever the pixels, so photon counts per bin, and the per-frame
full scale, do not change with binning or distance (a pattern spread over 2.25 times the
pixels at 1.5 times the distance keeps its photons per bin).  On the pnCCD of the 2018
PR772 run (1.7 keV, 125 mm, 75 µm pixels) :data:`DEFAULT_Q_MAX_INV_NM` gives the 256-pixel
crop of the pixel defaults, binned 2 × 2 into 128 bins: the very same images.

**Beam stop in q.**  ``q_min_inv_nm`` zeroes (and excludes like masked pixels) every pixel
nearer the beam than that q.  ``export-dataset`` sets it, with a crop in q, to the q of the
training files' usable pixel nearest the beam (their beam stop or central hole, rounded
down), so on those files it removes nothing, and on a file whose hole is smaller in q
(farther from the sample, or another photon energy) it removes what training never showed:
the brightest low-q photons, which would otherwise set the per-frame full scale and dim
the rest of the pattern (measured on the simulator at 1.5 times the distance: held-out
ROC AUC 0.74 without it, 0.97 with it, 0.90 on the training geometry).

**Fewer pixels than bins.**  When a file's pixels are coarser than the image's bins (a
4 × 4-binned pnCCD at 125 mm has 64 pixels across the default crop of 128 bins), each
pixel's whole photons are shared at random among the bins it covers (multinomially, equal
shares), its fractional rest evenly.  That is the Poisson statistics a detector with the
finer pixels would have recorded if the intensity were flat within each coarse pixel, so
the image looks like the ones the model was trained on, photon dots rather than smooth
blocks (the network, trained on dots, scores even shares lower: measured held-out ROC AUC
0.77 even, 0.85 shared, 0.88 for the original frames' own 2 × 2 blocks shared the same way,
0.90 as recorded).  The draws are seeded by the frame's own photons, so a frame gives the
same image every time, in any chunk, shard or order.

A file that cannot give the images a model was trained on is refused
(:meth:`Preprocessing.for_file`): no distance, pixel size or wavelength, or pixels so coarse
that one covers more than :data:`MAX_UPSAMPLING` image pixels (a 4 × 4-binned pnCCD frame
at 125 mm covers 2 bins of the default, the limit).  A detector that ends before
``q_max_inv_nm`` is not refused: the crop is padded with zeros beyond its pixels, so the
outer q band it lacks is treated like a masked region (a gap, a dead half, which training
shows), and its frames are marked ``padded`` in the hit list.  On the built-in model the
scores of frames cut to 80 % of its q range stay close to the whole frames' (see
``tests/test_geometry_independence.py``).

The settings are a :class:`Preprocessing` dataclass saved as JSON beside every exported
data set and every model, so detection repeats exactly the steps used in training.
Settings without ``q_max_inv_nm`` are written as before (format 1, no such key), so
files of either age load and behave the same.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import os
import zlib
from dataclasses import dataclass, field

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.outputs import write_json
from spidarknet.core.scattering import q_from_radius_inv_m, radius_for_q_m
from spidarknet.frames.source import FileInfo, FrameChunk, Geometry, Roi

log = logging.getLogger(__name__)

SCALES = ("linear", "log", "sqrt")
COLORMAPS = ("grey", "viridis", "jet", "inferno", "magma", "plasma", "hot", "turbo", "parula")
#: 2 once ``q_max_inv_nm`` is set; settings without it are still written as format 1
FORMAT_VERSION = 2
#: the pixel default: side of the crop, detector pixels
DEFAULT_CROP = 256
#: the q default of new data sets (nm⁻¹): on the pnCCD at 1.7 keV, 125 mm, 75 µm the
#: half-width of 128 pixels is q = 0.6602 nm⁻¹, and 0.66 rounds to that same 256-pixel crop
DEFAULT_Q_MAX_INV_NM = 0.66
#: the coarsest file pixel a q-based crop accepts, in image pixels (bins) per file pixel
MAX_UPSAMPLING = 2.0
#: room for rounding the crop to whole pixels in the checks of a file's geometry
_SLACK = 0.01
#: the new settings: written only when set, so that older files stay format 1
_NEW_KEYS = ("q_max_inv_nm", "q_min_inv_nm")


@dataclass
class Preprocessing:
    """Settings of the preprocessing pipeline (see the module docstring for the steps)."""

    size: int = 128                     # side of the output image = network input, pixels
    crop: int | None = DEFAULT_CROP     # side of the square cut around the beam centre, detector
                                        # pixels; None with q_max_inv_nm
    q_max_inv_nm: float | None = None   # half-width of the crop in q (nm⁻¹) instead of crop: the
                                        # crop and binning follow each file's geometry
    q_min_inv_nm: float | None = None   # pixels nearer the beam than this q (nm⁻¹) are zeroed, as
                                        # masked: the training files' beam stop
    adu_per_photon: float | None = None  # None: the data are already photon counts
    centre_px: tuple[float, float] | None = None  # (x, y) beam centre; None: from the geometry
    scale: str = "log"                  # log | linear | sqrt (log: the science benchmark's choice)
    vmax: float | None = None           # photons per bin shown as full scale; None: per frame
    vmax_percentile: float = 99.5       # per-frame full scale when vmax is None ...
    vmax_floor: float = 5.0             # ... but never below this many photons per bin
    colormap: str = "grey"              # grey or an OpenCV colour map name
    version: int = field(default=FORMAT_VERSION, compare=False)  # of the file read; written as needed

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ConfigError(f"image size {self.size!r} must be an integer of at least 8")
        if self.q_max_inv_nm is not None:
            if self.crop is not None:
                raise ConfigError(f"give the crop in detector pixels (crop {self.crop}) or in q "
                                  f"(q_max_inv_nm {self.q_max_inv_nm}), not both: set the other to None")
            if (isinstance(self.q_max_inv_nm, bool) or not isinstance(self.q_max_inv_nm, (int, float))
                    or not math.isfinite(self.q_max_inv_nm) or not self.q_max_inv_nm > 0):
                raise ConfigError(f"q_max_inv_nm {self.q_max_inv_nm!r} must be a positive number (nm⁻¹)")
            self.q_max_inv_nm = float(self.q_max_inv_nm)
        elif self.crop is None:
            raise ConfigError("give the crop in detector pixels (crop) or in q (q_max_inv_nm)")
        elif not isinstance(self.crop, int) or self.crop < self.size // 8 or self.crop < 2:
            raise ConfigError(f"crop {self.crop!r} must be an integer of at least 2 pixels")
        if self.q_min_inv_nm is not None:
            if (isinstance(self.q_min_inv_nm, bool) or not isinstance(self.q_min_inv_nm, (int, float))
                    or not math.isfinite(self.q_min_inv_nm) or not self.q_min_inv_nm > 0):
                raise ConfigError(f"q_min_inv_nm {self.q_min_inv_nm!r} must be a positive number (nm⁻¹)")
            if self.q_max_inv_nm is not None and not self.q_min_inv_nm < self.q_max_inv_nm:
                raise ConfigError(f"q_min_inv_nm {self.q_min_inv_nm} must be below q_max_inv_nm "
                                  f"{self.q_max_inv_nm}: it would blank the whole image")
            self.q_min_inv_nm = float(self.q_min_inv_nm)
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
        values = dataclasses.asdict(self)
        for key in _NEW_KEYS:  # unset: exactly what spidarknet wrote before q existed
            if values[key] is None:
                del values[key]
        values["version"] = FORMAT_VERSION if any(k in values for k in _NEW_KEYS) else 1
        return values

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

    def for_file(self, info: FileInfo) -> "Preprocessing":
        """These settings in the detector pixels of ``info``'s file: ``self`` when the crop
        is given in pixels; with ``q_max_inv_nm`` a copy whose ``crop`` follows from the
        file's geometry.  Raises :class:`InputError` saying what to do when the file cannot
        give these images (see the module docstring)."""
        s = self
        if self.q_max_inv_nm is not None:
            half = q_crop_half_width_px(info, self.q_max_inv_nm, self.size, self.centre_for(info))
            s = dataclasses.replace(self, crop=max(2, int(round(2.0 * half))), q_max_inv_nm=None)
        if self.q_min_inv_nm is not None:
            hole_radius_px(info, self.q_min_inv_nm)  # checks the geometry
        return s

    def check_files(self, files) -> None:
        """Raise :class:`InputError` unless every file can give these images (:meth:`for_file`)."""
        for info in files:
            self.for_file(info)

    def crop_box(self, info: FileInfo) -> Roi:
        """Rows r0:r1 and columns c0:c1 of the crop in full-frame pixels (may leave the frame)."""
        s = self.for_file(info)
        cx, cy = s.centre_for(info)
        c0 = int(math.floor(cx + 0.5 - s.crop / 2.0))
        r0 = int(math.floor(cy + 0.5 - s.crop / 2.0))
        return r0, r0 + s.crop, c0, c0 + s.crop

    @property
    def bin_factor(self) -> float:
        """Detector pixels per output pixel along one axis (pixel settings: see :meth:`for_file`)."""
        if self.crop is None:
            raise ConfigError("a crop in q has a bin factor per file: ask for_file(info).bin_factor")
        return self.crop / self.size


def q_at_px(geometry: Geometry, r_px: float) -> float:
    """|q| (inverse metres) at ``r_px`` pixels from the beam along a detector axis."""
    return float(q_from_radius_inv_m(r_px * geometry.pixel_size_m[0], geometry.distance_m, geometry.wavelength_m))


def _describe(geometry: Geometry) -> str:
    return (f"{geometry.pixel_size_m[0] * 1e6:.4g} µm pixels at {geometry.distance_m * 1e3:.4g} mm, "
            f"λ {geometry.wavelength_m * 1e9:.4g} nm")


def _px_at_q(info: FileInfo, q_inv_nm: float, asked: str) -> float:
    """Pixels from the beam to ``|q| = q_inv_nm`` along a detector axis, after checking that
    the file has the geometry (square pixels) it takes; ``asked`` names the setting."""
    g = info.geometry
    missing = [name for name, value in (("detector distance (--distance M)", g.distance_m),
                                        ("pixel size (--pixel-size M)", g.pixel_size_m),
                                        ("wavelength (--energy-ev EV or --wavelength M)", g.wavelength_m))
               if value is None]
    if missing:
        raise InputError(f"{info.path}: {asked} needs the file's geometry, and it lacks the "
                         + ", ".join(missing) + ": give them on the command line (SI units), or "
                         "export a data set with --crop PIXELS to preprocess in detector pixels")
    px, py = g.pixel_size_m
    if abs(px - py) > 1e-3 * max(px, py):
        raise InputError(f"{info.path}: {asked} needs square pixels, the file has {px * 1e6:.4g} × "
                         f"{py * 1e6:.4g} µm; give --pixel-size M if they are square, or use --crop PIXELS")
    try:
        return radius_for_q_m(q_inv_nm * 1e9, g.distance_m, g.wavelength_m) / px
    except ConfigError:
        raise InputError(f"{info.path}: q {q_inv_nm:g} nm⁻¹ is scattered at 2θ ≥ 90° at "
                         f"λ {g.wavelength_m * 1e9:.4g} nm and never reaches a flat detector; "
                         "use a smaller --q-max") from None


def hole_radius_px(info: FileInfo, q_min_inv_nm: float) -> float:
    """Pixels from the beam within which ``q_min_inv_nm`` blanks ``info``'s frames (checked)."""
    return _px_at_q(info, q_min_inv_nm, f"the beam stop in q (q_min_inv_nm {q_min_inv_nm:g} nm⁻¹)")


def masked_centre_q_inv_nm(files) -> float | None:
    """The q (nm⁻¹) of the usable pixel nearest the beam, the smallest over ``files``,
    rounded down to 1e-4: a ``q_min_inv_nm`` that blanks only pixels their masks already
    exclude.  None where it would blank nothing (no shared mask, no masked centre, no
    geometry)."""
    found = []
    for info in files:
        g = info.geometry
        if info.mask_shared is None or None in (g.distance_m, g.pixel_size_m, g.wavelength_m):
            return None
        rows, cols = np.nonzero(info.mask_shared)
        if len(rows) == 0:
            continue
        cx, cy = g.centre_px
        found.append(q_at_px(g, float(np.sqrt(((cols - cx) ** 2 + (rows - cy) ** 2).min()))) * 1e-9)
    q = math.floor(min(found) * 1e4) / 1e4 if found else 0.0
    return q if q > 0 else None


def q_crop_half_width_px(info: FileInfo, q_max_inv_nm: float, size: int,
                         centre_px: tuple[float, float] | None = None) -> float:
    """Pixels from the beam centre to ``|q| = q_max_inv_nm`` along a detector axis of
    ``info``'s file, checked: raises :class:`InputError` naming the numbers and what to do
    when the file has no geometry or pixels too coarse for ``size`` bins.  A detector that
    ends before that q is no reason to refuse: the crop is padded there, and what it lacks
    counts as masked (:func:`detector_reach_q_inv_nm` says how far it reaches)."""
    g = info.geometry
    asked = f"the crop in q (q_max_inv_nm {q_max_inv_nm:g} nm⁻¹ over {size} bins)"
    half = _px_at_q(info, q_max_inv_nm, asked)
    upsampling = size / (2.0 * half)
    if upsampling > MAX_UPSAMPLING * (1.0 + _SLACK):
        step = 2.0 * q_max_inv_nm / size
        largest = int(MAX_UPSAMPLING * (1.0 + _SLACK) * 2.0 * half) // 32 * 32  # network sizes: 32 k
        smaller = f"a smaller --size (at most {largest}) or " if largest >= 32 else ""
        raise InputError(
            f"{info.path}: its pixels are too coarse for {asked}: {_describe(g)} sample q in steps of "
            f"{step * upsampling:.4g} nm⁻¹ near the beam, {upsampling:.2f} times the {step:.4g} nm⁻¹ of one "
            f"image pixel (the crop would be {2 * half:.1f} pixels); more than {MAX_UPSAMPLING:g} times "
            "cannot be made up by resampling. Use frames binned less or recorded farther from the sample, "
            f"or a model exported with {smaller}a larger --q-max")
    return half


def detector_reach_q_inv_nm(info: FileInfo, centre_px: tuple[float, float] | None = None) -> float:
    """The largest |q| (nm⁻¹) whose square crop around the beam still lies on ``info``'s
    pixels: the nearer of the two edges reached along x and along y, each measured to the
    farther side of the beam (a crop beyond it is padded, as masked pixels are)."""
    g = info.geometry
    cx, cy = centre_px if centre_px is not None else g.centre_px
    h, w = info.frame_shape
    reach = min(max(cx + 0.5, w - 0.5 - cx), max(cy + 0.5, h - 0.5 - cy))
    return q_at_px(g, reach) * 1e-9


@dataclass
class Processed:
    """The output of :meth:`Preprocessor.process` for one chunk."""

    images: np.ndarray      # (n, size, size, 3) uint8, RGB
    photons: np.ndarray     # (n, size, size) float32, photons per bin
    crop_origin: tuple[int, int]  # (row, column) of the crop's corner in the full frame
    n_bad_values: int       # NaN or negative pixels that were masked
    settings: Preprocessing | None = None  # the settings in this file's pixels (crop, bin_factor)
    valid_pixels: np.ndarray | None = None  # (n,) usable detector pixels in each frame's crop
    padded: bool = False    # the crop reaches beyond the frame's pixels (zeros stand in for them)
    frame_shape: tuple[int, int] | None = None  # (rows, columns) of the full frame


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


def share_photons(pixels: np.ndarray, m: int) -> np.ndarray:
    """(n, h, w) photons per pixel -> (n, h m, w m): each pixel's whole photons shared at
    random among its m x m sub-pixels (each photon to one of them, equally likely), its
    fractional rest evenly; every pixel keeps its sum.  Each frame's draws are seeded by its
    own values, so the same frame gives the same result in any chunk or order."""
    n, h, w = pixels.shape
    whole = np.floor(pixels)
    rest = pixels - whole
    counts = whole.astype(np.int64).reshape(n, -1)
    cells = m * m
    out = np.empty((n, h, m, w, m), dtype=np.float32)
    for k in range(n):
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(pixels[k]).tobytes()))
        photon_pixel = np.repeat(np.arange(h * w), counts[k])  # work in photons: SPI frames are sparse
        drawn = np.bincount(photon_pixel * cells + rng.integers(0, cells, size=len(photon_pixel)),
                            minlength=h * w * cells).reshape(h, w, m, m)
        out[k] = drawn.transpose(0, 2, 1, 3)
    if rest.any():  # not photon counts (ADU converted, say)
        out += (rest / (m * m)).astype(np.float32)[:, :, None, :, None]
    return out.reshape(n, h * m, w * m)


class Preprocessor:
    """Applies one :class:`Preprocessing` to frame chunks."""

    def __init__(self, settings: Preprocessing):
        self.settings = settings
        self._lut = _colormap_lut(settings.colormap)
        self._crop = np.zeros((0, 0, 0), dtype=np.float32)
        self._plans: dict = {}     # (geometry, frame shape) -> (settings in its pixels, hole radius)
        self._hole = (None, None, None)  # the last chunk mask seen, its key, and it without the hole

    def _plan(self, info: FileInfo) -> tuple[Preprocessing, float | None]:
        key = (info.geometry, info.frame_shape)
        if key not in self._plans:
            s = self.settings.for_file(info)
            hole = hole_radius_px(info, s.q_min_inv_nm) if s.q_min_inv_nm is not None else None
            self._plans[key] = (s, hole)
            r0, r1, c0, c1 = s.crop_box(info)
            log.debug("preprocessing plan for %s (%dx%d, %s): crop %d px (rows %d:%d, columns %d:%d)%s -> "
                      "%dx%d, %.3g detector pixels per bin, %s, %s%s", os.path.basename(info.path),
                      *info.frame_shape, info.geometry.describe(), s.crop, r0, r1, c0, c1,
                      f" = q ≤ {self.settings.q_max_inv_nm:g} nm⁻¹" if self.settings.q_max_inv_nm else "",
                      s.size, s.size, s.crop / s.size, s.scale, s.colormap,
                      f", beam stop blanked within {hole:.1f} px (q < {s.q_min_inv_nm:g} nm⁻¹)" if hole else "")
            self._warn_short_reach(info)
            if s.crop < s.size:
                log.warning("%s: its pixels are coarser than the image's bins (%d pixels over %d bins, their "
                            "photons shared at random): single hits score lower than on frames as fine as "
                            "the model's; a model trained on frames like these does better",
                            info.path, s.crop, s.size)
        return self._plans[key]

    def _warn_short_reach(self, info: FileInfo) -> None:
        """A warning, once per geometry, where the detector ends before the model's q range."""
        q_max = self.settings.q_max_inv_nm
        if q_max is None:
            return
        reach = detector_reach_q_inv_nm(info, self.settings.centre_for(info))
        if reach < q_max * (1.0 - _SLACK):
            log.warning("%s: the detector reaches q %.3g nm⁻¹ of the model's %.3g nm⁻¹ (%s): the outer band is "
                        "treated as masked, its frames marked padded", info.path, reach, q_max,
                        info.geometry.describe())

    def for_file(self, info: FileInfo) -> Preprocessing:
        """The settings in ``info``'s detector pixels (:meth:`Preprocessing.for_file`), once per geometry."""
        return self._plan(info)[0]

    def roi(self, info: FileInfo) -> Roi:
        """The region to read from a file: the crop box (clipped by the reader); checks
        that the file's geometry fits the settings before anything is read."""
        return self.for_file(info).crop_box(info)

    def _without_hole(self, chunk: FrameChunk, s: Preprocessing, radius_px: float) -> np.ndarray:
        """``chunk.valid`` less the pixels nearer the beam than ``radius_px`` (the same
        object for every chunk of a file, as ``chunk.valid`` is)."""
        key = (chunk.origin, chunk.data.shape[1:], s.centre_for(chunk.info), radius_px)
        seen, seen_key, without = self._hole
        if seen is not chunk.valid or seen_key != key:
            cx, cy = key[2]
            rows = chunk.origin[0] + np.arange(chunk.data.shape[1]) - cy
            cols = chunk.origin[1] + np.arange(chunk.data.shape[2]) - cx
            inside = rows[:, None] ** 2 + cols[None, :] ** 2 < radius_px ** 2
            without = chunk.valid & ~inside
            self._hole = (chunk.valid, key, without)
        return without

    def process(self, chunk: FrameChunk) -> Processed:
        """The images of a chunk.  With ``q_min_inv_nm`` the pixels it blanks count as
        masked from here on: ``chunk.valid`` is replaced by the mask without them, so that
        later stages (the prefilter's valid area) see the pixels preprocessing used."""
        s, hole = self._plan(chunk.info)
        if hole is not None:
            chunk.valid = self._without_hole(chunk, s, hole)
        n = len(chunk)
        r0, r1, c0, c1 = s.crop_box(chunk.info)
        # place the (clipped) data that was read into a zero-padded crop; the buffer is
        # reused from chunk to chunk (fresh memory costs page faults on every chunk)
        if len(self._crop) < n or self._crop.shape[1:] != (s.crop, s.crop):
            self._crop = np.zeros((max(n, len(self._crop)), s.crop, s.crop), dtype=np.float32)
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
        if usable.ndim == 3:
            valid_pixels = np.count_nonzero(usable.reshape(n, -1), axis=1)
        else:
            valid_pixels = np.full(n, np.count_nonzero(usable), dtype=np.int64)
        rows, cols = chunk.info.frame_shape
        padded = r0 < 0 or c0 < 0 or r1 > rows or c1 > cols
        photons = self._bin(crop, s)
        images = self._to_images(photons)
        return Processed(images=images, photons=photons, crop_origin=(r0, c0), n_bad_values=n_bad,
                         settings=s, valid_pixels=valid_pixels, padded=padded,
                         frame_shape=(rows, cols))

    @staticmethod
    def _bin(crop: np.ndarray, s: Preprocessing) -> np.ndarray:
        side = s.crop
        if side < s.size:  # fewer pixels than bins: share each pixel's photons among m x m
            m = -(-s.size // side)
            crop, side = share_photons(crop, m), side * m
            if side == s.size:
                return crop
        if side == s.size:
            return crop.copy()  # the crop buffer is reused by the next chunk
        f = side // s.size
        if f * s.size == side:
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
        area = (side / s.size) ** 2
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
