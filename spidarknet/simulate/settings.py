"""The simulator's settings: one table of typed, commented defaults (today's behaviour).

:class:`SimulationSettings` gathers everything that shapes a simulated data set apart from
the seed, the frame count and the kind fractions.  Its defaults reproduce the simulator's
fixed behaviour bit for bit (the same seed gives the same frames, truth and mask).  Build
variations with :meth:`SimulationSettings.with_options` (a typo in a name gets the nearest
valid one suggested) and record them with :meth:`SimulationSettings.to_attrs`.

Units: SI (metres, joules, photons per m²), sizes of particles in nm, pixel quantities in
*detector* pixels, i.e. before ``binning``: ``binning`` only changes how the frames are
written (B x B detector pixels summed into one), not what is measured.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from spidarknet.core.defaults import LABEL_RANGE_NM
from spidarknet.core.errors import ConfigError
from spidarknet.simulate.detector import PNCCD, PnCCD
from spidarknet.simulate.physics import ELEMENTARY_CHARGE_C

#: what --particle-shape may name
PARTICLE_SHAPES = ("mixed", "sphere", "icosahedron")
#: the largest detector diagonal (pixels) the renderer's radial look-up table covers
MAX_DIAGONAL_PX = 2040
#: the ``simulate`` option that sets each setting (and the run's count and chunk), for messages
OPTIONS = {"photons": "--photons", "mean_fluence_photons_per_m2": "--fluence", "fluence_sigma": "--fluence-sigma",
           "background_photons_per_pixel": "--background", "centre_jitter_px": "--centre-jitter",
           "size_range_nm": "--size-range", "label_range_nm": "--label-range",
           "off_size_fraction": "--off-size-fraction", "particle_shape": "--particle-shape",
           "separation_diameters": "--separation", "distance_m": "--distance", "pixel_size_m": "--pixel-size",
           "photon_energy_J": "--energy-ev", "shape": "--shape", "binning": "--binning",
           "half_detector": "--half-detector", "like": "--like", "count": "--count",
           "chunk_frames": "--chunk-frames",
           # the measured-like detector (simulate --measured-like)
           "adu_per_photon": "--adu-per-photon", "read_noise_adu": "--read-noise",
           "common_mode_adu": "--common-mode", "column_offset_adu": "--column-offsets",
           "common_mode_residual_adu": "--common-mode-residual", "photon_threshold": "--photon-threshold",
           "gain_sigma": "--gain-sigma", "hot_pixels": "--hot-pixels", "dead_pixels": "--dead-pixels",
           "bad_pixels_masked": "--bad-pixels-masked", "saturation_adu": "--saturation",
           "beamline_photons": "--beamline-photons", "ring_photons": "--ring-photons", "ring_q_inv_nm": "--ring-q",
           "ring_width_inv_nm": "--ring-width", "ring_sigma": "--ring-sigma", "centre_drift_px": "--centre-drift",
           "centre_drift_frames": "--centre-drift-frames"}


def option_name(setting: str) -> str:
    """A setting as messages name it: the option that sets it, followed by the setting's own
    name where that differs (``--size-range (size_range_nm)``), for callers of the library."""
    option = OPTIONS.get(setting)
    if option is None:
        return setting
    return option if option == "--" + setting.replace("_", "-") else f"{option} ({setting})"


@dataclass(frozen=True)
class SimulationSettings:
    """Everything that shapes the simulated frames (see the module notes for the units).

    ``photons`` (if set) replaces ``mean_fluence_photons_per_m2``: the mean fluence is then
    calibrated so that the median labelled single hit puts ``photons`` photons on the valid
    pixels (its signal, without the background).  ``mask`` (CXI bits, the shape of the
    *written* frames) replaces the built pnCCD mask (gap, beam stop, bad pixels); ``like``
    names the file it and the geometry were copied from (:mod:`spidarknet.simulate.like`).
    """

    #: median photons of a labelled single hit on the valid pixels (None: use the fluence)
    photons: float | None = None
    #: mean fluence at the particle (photons/m²): a 70 nm sphere puts ≈ 3,000 photons on
    #: the pnCCD outside the beam stop
    mean_fluence_photons_per_m2: float = 1.0e22
    #: σ of the log-normal shot-to-shot fluence factor (mean 1)
    fluence_sigma: float = 0.4
    #: uniform background, expected photons per detector pixel
    background_photons_per_pixel: float = 0.002
    #: σ of the per-frame beam-centre offset in x and in y (detector pixels)
    centre_jitter_px: float = 1.5
    #: diameters of the sample's particles (nm): singles and the members of multiples
    size_range_nm: tuple = (55.0, 80.0)
    #: diameters (nm, inclusive) of a single particle that count as a positive
    label_range_nm: tuple = LABEL_RANGE_NM
    #: share of singles drawn outside the label range (None: as the uniform draw over
    #: ``size_range_nm`` falls, 40 % with the defaults)
    off_size_fraction: float | None = None
    #: shape of the sample's particles (singles and the members of multiples): "mixed"
    #: (sphere or randomly oriented icosahedron, half and half), "sphere" or "icosahedron"
    particle_shape: str = "mixed"
    #: centre distance of neighbours in a multiple, in mean diameters of the pair
    separation_diameters: tuple = (1.0, 3.0)
    #: detector distance from the interaction point (m)
    distance_m: float = PNCCD.distance_m
    #: detector pixel size (m), before binning
    pixel_size_m: float = PNCCD.pixel_size_m
    #: photon energy (J); 1.7 keV
    photon_energy_J: float = PNCCD.photon_energy_J
    #: detector shape (rows, columns) before binning: two halves of rows // 2 with a gap
    shape: tuple = PNCCD.shape
    #: nominal beam centre (x, y) in detector pixel-index coordinates (None: the middle)
    centre_xy: tuple | None = None
    #: B: write frames of B x B summed detector pixels (pixel size x B, mask OR-ed)
    binning: int = 1
    #: the second half of the rows is dead (masked, zero), as in the 2018 PR772 run
    half_detector: bool = False
    #: a mask to use instead of the built one (uint32 CXI bits, the written shape)
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: the CXI file geometry, mask and photon level were copied from ("" if none)
    like: str = ""
    # -- a measured-like detector and beamline (spidarknet.simulate.measured); all off by
    # default: frames are then ideal photon counts.  MEASURED_LIKE turns on a realistic mix.
    #: ADU of one photon in the readout chain (0: no readout chain, ideal photon counts)
    adu_per_photon: float = 0.0
    #: σ of the read noise of each pixel in each frame (ADU)
    read_noise_adu: float = 0.0
    #: σ of the per-frame common-mode offset of each row of a readout block (ADU)
    common_mode_adu: float = 0.0
    #: σ of the per-frame offset of each column of a detector half (ADU)
    column_offset_adu: float = 0.0
    #: σ of the error the facility's common-mode correction leaves on each row of a block (ADU)
    common_mode_residual_adu: float = 0.0
    #: a pixel counts one photon once its corrected signal reaches this share of a photon
    photon_threshold: float = 0.5
    #: relative σ of the per-pixel gain (the correction assumes a flat gain)
    gain_sigma: float = 0.0
    #: pixels lit in every frame (a dark signal of 2-50 photons' worth)
    hot_pixels: int = 0
    #: pixels without response (read noise only)
    dead_pixels: int = 0
    #: share of the hot and dead pixels the mask flags (the rest stay unmasked, as in real data)
    bad_pixels_masked: float = 0.5
    #: ADC full scale (ADU): raw values clip here, flagged 0x2 in a per-frame mask (0: none)
    saturation_adu: float = 0.0
    #: mean photons per frame of beamline scatter about the beam, falling as q⁻⁴
    beamline_photons: float = 0.0
    #: mean photons per frame of the injector's gas and water, a diffuse ring in q
    ring_photons: float = 0.0
    #: the ring's centre (nm⁻¹, |q| = 4π sin θ / λ) and σ in q (nm⁻¹)
    ring_q_inv_nm: float = 0.45
    ring_width_inv_nm: float = 0.15
    #: σ of the ring's log-normal shot-to-shot strength (mean 1)
    ring_sigma: float = 0.7
    #: amplitude (detector pixels) and period (frames) of the beam centre's slow drift
    centre_drift_px: float = 0.0
    centre_drift_frames: float = 2000.0

    # -- building ------------------------------------------------------------------------
    def with_options(self, **options) -> "SimulationSettings":
        """A copy with ``options`` (field names) changed, checked; ``None`` leaves a field
        as it is.  An unknown name raises :class:`ConfigError` naming the nearest field."""
        names = [f.name for f in dataclasses.fields(self)]
        changes = {}
        for name, value in options.items():
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown simulation setting {name!r}{hint}; "
                                  f"settings are {', '.join(names)}")
            if value is not None:
                changes[name] = value
        return dataclasses.replace(self, **changes).checked() if changes else self.checked()

    def checked(self) -> "SimulationSettings":
        """These settings with numbers normalised (floats, tuples); raise
        :class:`ConfigError` naming the option to fix when a value cannot work."""
        s = self
        out = {}
        for name in ("mean_fluence_photons_per_m2", "distance_m", "pixel_size_m",
                     "photon_energy_J"):
            out[name] = _positive(name, getattr(s, name))
        if s.photons is not None:
            out["photons"] = _positive("photons", s.photons)
        for name in ("fluence_sigma", "background_photons_per_pixel", "centre_jitter_px"):
            out[name] = _non_negative(name, getattr(s, name))
        for name in ("size_range_nm", "label_range_nm", "separation_diameters"):
            out[name] = _range(name, getattr(s, name))
        off_size = _checked_sizes(out["size_range_nm"], out["label_range_nm"], out["separation_diameters"],
                                  s.off_size_fraction, s.photons)
        if off_size is not None:
            out["off_size_fraction"] = off_size
        if s.particle_shape not in PARTICLE_SHAPES:
            raise ConfigError(f"{option_name('particle_shape')} must be one of "
                              f"{', '.join(PARTICLE_SHAPES)}, got {s.particle_shape!r}")
        shape = out["shape"] = _checked_shape(s.shape)
        b = out["binning"] = _checked_binning(s.binning, shape)
        if s.centre_xy is not None:
            out["centre_xy"] = _checked_centre(s.centre_xy, shape)
        if s.mask is not None:
            out["mask"] = _checked_mask(s.mask, (shape[0] // b, shape[1] // b))
        out["half_detector"] = bool(s.half_detector)
        out["like"] = str(s.like)
        out.update(_checked_effects(s))
        return dataclasses.replace(s, **out)

    @property
    def has_detector_effects(self) -> bool:
        """Whether any measured-like effect (readout chain, stray light, drift) is on."""
        return (self.adu_per_photon > 0 or self.beamline_photons > 0 or self.ring_photons > 0
                or self.centre_drift_px > 0)

    # -- derived -------------------------------------------------------------------------
    @property
    def photon_energy_eV(self) -> float:
        return self.photon_energy_J / ELEMENTARY_CHARGE_C

    @property
    def detector(self) -> PnCCD:
        """The detector (before binning) these settings describe; :data:`PNCCD` itself
        when the geometry is the default one."""
        return PnCCD.scaled(shape=tuple(self.shape), pixel_size_m=self.pixel_size_m,
                            distance_m=self.distance_m, photon_energy_J=self.photon_energy_J,
                            centre_xy=self.centre_xy)

    @property
    def written(self) -> PnCCD:
        """The geometry of the frames as written: the detector binned ``binning`` times."""
        return self.detector.binned(self.binning)

    def to_dict(self) -> dict:
        """JSON-ready values (the mask is left out: it is the file's mask dataset)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "mask":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["photon_energy_eV"] = self.photon_energy_eV
        out["mask_from_like"] = self.mask is not None
        return out

    def to_attrs(self) -> dict:
        """HDF5 attributes recording every setting (``None`` is written as NaN, tuples as
        arrays) plus the whole table as JSON under ``settings_json``."""
        attrs = {}
        for name, value in self.to_dict().items():
            if value is None:
                value = float("nan")
            attrs[name] = np.asarray(value) if isinstance(value, list) else value
        attrs["settings_json"] = json.dumps(self.to_dict(), sort_keys=True)
        return attrs




#: what the readout chain's settings are called on the command line
_READOUT_OPTIONS = {"read_noise_adu": "--read-noise", "common_mode_adu": "--common-mode",
                    "column_offset_adu": "--column-offsets",
                    "common_mode_residual_adu": "--common-mode-residual",
                    "gain_sigma": "--gain-sigma", "hot_pixels": "--hot-pixels",
                    "dead_pixels": "--dead-pixels", "saturation_adu": "--saturation"}


def _checked_effects(s: "SimulationSettings") -> dict:
    """The measured-like settings normalised; a readout setting without ``adu_per_photon``,
    a share outside 0-1 or a count that is not whole raises :class:`ConfigError`."""
    out = {}
    for name in ("adu_per_photon", "read_noise_adu", "common_mode_adu", "column_offset_adu",
                 "common_mode_residual_adu", "gain_sigma", "saturation_adu", "beamline_photons",
                 "ring_photons", "ring_sigma", "centre_drift_px"):
        out[name] = _non_negative(name, getattr(s, name))
    for name in ("ring_q_inv_nm", "ring_width_inv_nm", "centre_drift_frames"):
        out[name] = _positive(name, getattr(s, name))
    for name in ("hot_pixels", "dead_pixels"):
        value = getattr(s, name)
        if isinstance(value, bool) or _number(name, value) != int(value) or value < 0:
            raise ConfigError(f"{option_name(name)} must be a whole number ≥ 0, got {value!r}")
        out[name] = int(value)
    for name in ("photon_threshold", "bad_pixels_masked"):
        out[name] = _non_negative(name, getattr(s, name))
        if out[name] > 1:
            raise ConfigError(f"{option_name(name)} is a share, 0 to 1; got {out[name]:g}")
    if out["photon_threshold"] == 0:
        raise ConfigError("photon_threshold (--photon-threshold) must be > 0: at 0 every pixel "
                          "would count a photon")
    if out["adu_per_photon"] == 0:
        given = [option for name, option in _READOUT_OPTIONS.items() if out[name] > 0]
        if given:
            raise ConfigError(f"{', '.join(given)} act on the readout chain: give "
                              "--adu-per-photon ADU too (e.g. 100), or --measured-like")
    elif out["saturation_adu"] and out["saturation_adu"] < out["adu_per_photon"]:
        raise ConfigError(f"--saturation {out['saturation_adu']:g} ADU is less than one photon "
                          f"({out['adu_per_photon']:g} ADU)")
    return out


def _checked_sizes(size_range: tuple[float, float], label_range: tuple[float, float],
                   separation: tuple[float, float], off_size_fraction, photons) -> float | None:
    """Check that the particle sizes, the label window and the share of off-size singles fit
    together; returns the off-size share as a float (None when not given)."""
    if separation[0] < 1.0:
        raise ConfigError(f"{option_name('separation_diameters')} must start at ≥ 1 diameter: "
                          "closer particles would overlap")
    size_lo, size_hi = size_range
    label_lo, label_hi = label_range
    inside = (max(size_lo, label_lo), min(size_hi, label_hi))
    f = None
    if off_size_fraction is not None:
        f = _non_negative("off_size_fraction", off_size_fraction)
        if f > 1.0:
            raise ConfigError(f"{option_name('off_size_fraction')} is a share, 0 to 1; got {f}")
        if f > 0 and not (size_lo < label_lo or size_hi > label_hi):
            raise ConfigError(f"--off-size-fraction {f} needs sizes outside the label range "
                              f"{label_lo:g}-{label_hi:g} nm: widen --size-range "
                              f"(now {size_lo:g}-{size_hi:g})")
        if f < 1 and inside[0] > inside[1]:
            raise ConfigError(f"--size-range {size_lo:g}-{size_hi:g} nm and --label-range "
                              f"{label_lo:g}-{label_hi:g} nm do not overlap: no single "
                              "could be labelled; make them overlap or use --off-size-fraction 1")
    if photons is not None and inside[0] > inside[1]:
        raise ConfigError("--photons is the level of a labelled single, but --size-range and "
                          "--label-range do not overlap; make them overlap or give no --photons")
    return f


def _checked_shape(given) -> tuple[int, int]:
    """The detector shape (rows, columns) as two whole numbers ≥ 8 the renderer can draw."""
    shape = given
    try:
        shape = (int(shape[0]), int(shape[1]))
        ok = len(given) == 2 and all(float(a) == b for a, b in zip(given, shape))
    except (TypeError, ValueError, IndexError):
        ok = False
    if not ok or min(shape) < 8:
        raise ConfigError(f"{option_name('shape')} ROWS COLS must be two whole numbers ≥ 8, got {given!r}")
    if math.hypot(*shape) > MAX_DIAGONAL_PX:
        raise ConfigError(f"shape {shape} is too large for the renderer (diagonal ≤ "
                          f"{MAX_DIAGONAL_PX} px); use fewer, larger pixels (--pixel-size)")
    return shape


def _checked_binning(b, shape: tuple[int, int]) -> int:
    """The binning factor: a whole number ≥ 1 that divides the detector shape."""
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ConfigError(f"{option_name('binning')} must be a whole number ≥ 1, got {b!r}")
    if shape[0] % b or shape[1] % b:
        raise ConfigError(f"--binning {b} does not divide the detector shape {shape}; "
                          f"choose a shape that is a multiple of {b}")
    return int(b)


def _checked_centre(centre_xy, shape: tuple[int, int]) -> tuple[float, float]:
    """The beam centre (x, y) in detector pixels, on the detector."""
    cx, cy = (float(v) for v in centre_xy)
    if not (-0.5 <= cx <= shape[1] - 0.5 and -0.5 <= cy <= shape[0] - 0.5):
        raise ConfigError(f"beam centre ({cx:g}, {cy:g}) lies outside the {shape} detector; "
                          "the simulator needs the beam on the detector")
    return (cx, cy)


def _checked_mask(mask, written: tuple[int, int]) -> np.ndarray:
    """The mask as uint32 CXI bits of the written (binned) frame shape."""
    mask = np.asarray(mask)
    if mask.shape != written or mask.dtype.kind not in "uib":
        raise ConfigError(f"mask must be integer CXI bits of the written shape {written}, "
                          f"got {mask.dtype} {mask.shape}")
    return mask.astype(np.uint32)

DEFAULT_SETTINGS = SimulationSettings()



def _number(name: str, value) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{option_name(name)} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option_name(name)} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{option_name(name)} must be a finite number, got {value!r}")
    return out


def _positive(name: str, value) -> float:
    out = _number(name, value)
    if out <= 0:
        raise ConfigError(f"{option_name(name)} must be > 0, got {value!r}")
    return out


def _non_negative(name: str, value) -> float:
    out = _number(name, value)
    if out < 0:
        raise ConfigError(f"{option_name(name)} must be ≥ 0, got {value!r}")
    return out


def _range(name: str, value) -> tuple:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ConfigError(f"{option_name(name)} must be two numbers LO HI, got {value!r}") from None
    lo, hi = _positive(name, lo), _positive(name, hi)
    if lo > hi:
        raise ConfigError(f"{option_name(name)} must be LO ≤ HI, got {lo:g} {hi:g}")
    return (lo, hi)


#: the measured-like mix (``simulate --measured-like``): a pnCCD read out as a facility
#: corrects it (100 ADU per photon), a few % gain spread, hot, dead and saturating pixels,
#: beamline and injector scatter, a drifting beam (see :mod:`spidarknet.simulate.measured`)
MEASURED_LIKE = {
    "adu_per_photon": 100.0,          # ADU per 1.7 keV photon
    "read_noise_adu": 10.0,           # 0.1 photon
    "common_mode_adu": 40.0,          # row offsets per block, 0.4 photon: clear stripes
    "column_offset_adu": 10.0,
    "common_mode_residual_adu": 8.0,  # what the correction leaves per row and block
    "photon_threshold": 0.6,
    "gain_sigma": 0.03,
    "hot_pixels": 40,
    "dead_pixels": 400,
    "bad_pixels_masked": 0.5,
    "saturation_adu": 16383.0,        # 14-bit ADC: about 160 photons
    "beamline_photons": 300.0,
    "ring_photons": 300.0,
    "ring_sigma": 0.7,
    "centre_drift_px": 6.0,
    "centre_drift_frames": 2000.0,
}
MEASURED_LIKE_SETTINGS = DEFAULT_SETTINGS.with_options(**MEASURED_LIKE)
