"""Simulation settings copied from a user's own CXI file (``simulate --like FILE.cxi``).

What is copied, through :class:`spidarknet.frames.source.FrameSource` (so any file the other
commands read will do):

* the frame shape, the detector distance, the pixel size (square pixels), the wavelength
  (as the photon energy) and the beam centre (from ``corner_position``, else the middle);
* the mask: the file's ``detector_1/mask_shared`` bits where it has them, else CXI bit 0x1
  for every pixel the file's masks exclude (a per-frame mask excludes a pixel masked in
  any frame read); no random bad pixels, gap or beam stop are added;
* the photon level, as ``photons`` (the median labelled single of the simulation), and the
  background per pixel, both measured by :func:`measure_photon_level` on the frames, which
  must be photon counts (give ``--photons`` and ``--background`` for frames in ADU).

The photon level of a run is the median, over its *hits*, of a frame's photons on the
valid pixels above the background.  The background per frame is the median sum of the
frames that are not hits; a frame is a hit when its sum exceeds that background by more
than 6 standard deviations of the empty frames (the larger of the Poisson σ and the spread
of the dimmest quarter of the frames).  This assumes that at least a quarter of the frames
are empty shots, true of any real run.  Multiples and clusters among the hits make the
level a little higher than that of the single hits alone.

Options given explicitly win over the copied values; ``binning`` B says that the file's
pixels are B x B detector pixels: the detector is then rendered at 1/B of the file's pixel
size and summed back to the file's pixels.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from spidarknet.core.errors import ConfigError
from spidarknet.simulate.detector import MASK_INVALID
from spidarknet.simulate.physics import PLANCK_J_S, SPEED_OF_LIGHT_M_S
from spidarknet.simulate.settings import DEFAULT_SETTINGS, SimulationSettings

#: at most this many frames (evenly spread over the file) are read for the photon level
LIKE_MAX_FRAMES = 2000
#: a hit stands this many standard deviations of the empty frames above the background
HIT_SIGMAS = 6.0
#: fewer hits than this and the level is not trusted
MIN_HITS = 5


@dataclass(frozen=True)
class PhotonLevel:
    """The photon level of a run of frames (see the module notes for how it is taken)."""

    frames_read: int
    n_valid_pixels: int
    background_photons_per_frame: float
    hit_threshold_photons: float
    n_hits: int
    median_hit_photons: float

    @property
    def background_photons_per_pixel(self) -> float:
        return self.background_photons_per_frame / max(self.n_valid_pixels, 1)

    def line(self) -> str:
        return (f"{self.n_hits} hits in {self.frames_read} frames, median "
                f"{self.median_hit_photons:,.0f} photons above a background of "
                f"{self.background_photons_per_pixel:.3g} photons/pixel")


@dataclass(frozen=True)
class Like:
    """Settings copied from ``path`` and the photon level measured there (None when
    ``photons`` and the background were both given)."""

    path: str
    settings: SimulationSettings
    level: PhotonLevel | None

    def line(self) -> str:
        """One line for people: what was taken from the file."""
        s = self.settings
        w = s.written
        rows, cols = w.shape
        text = (f"like {self.path}: {rows} x {cols} pixels of {w.pixel_size_m * 1e6:.4g} µm at "
                f"{s.distance_m * 1e3:.4g} mm, {s.photon_energy_eV:.5g} eV, centre "
                f"({w.centre_xy[0]:.2f}, {w.centre_xy[1]:.2f}), "
                f"{np.count_nonzero(s.mask == 0)} valid pixels")
        if self.level is not None:
            text += "; " + self.level.line()
        return text

    def to_attrs(self) -> dict:
        """What was measured, as HDF5 attributes (``like_*``)."""
        if self.level is None:
            return {}
        return {f"like_{k}": v for k, v in dataclasses.asdict(self.level).items()}


#: at most this many frames of a European XFEL run (each read whole: its 16 modules)
LIKE_MAX_RUN_FRAMES = 400


def _frame_source(path: str, dataset: str | None, max_frames: int, run_options: dict | None = None):
    """The file's frames, every k-th so that at most ``max_frames`` are read; a European XFEL
    run's (a folder) assembled, read with ``run_options`` (:class:`RunOptions` fields)."""
    from spidarknet.frames.euxfel import EuXFELRun, RunOptions, is_run_input
    from spidarknet.frames.source import FrameSource

    if is_run_input(str(path)):
        options = RunOptions(**(run_options or {}))
        n = len(EuXFELRun([str(path)], options))
        step = max(1, math.ceil(n / max(min(int(max_frames), LIKE_MAX_RUN_FRAMES), 1)))
        return EuXFELRun([str(path)], dataclasses.replace(options, frames=(0, None, step)))
    source = FrameSource([str(path)], dataset=dataset, bad_pixels=True)
    step = max(1, math.ceil(source.files[0].n_frames / max(int(max_frames), 1)))
    if step == 1:
        return source
    # the bad pixels of the whole file, found above, masked in the sample too
    return FrameSource([str(path)], dataset=dataset, frames=slice(0, None, step),
                       bad_pixels=source.bad_pixels)


def _valid_mask(source) -> np.ndarray:
    """True where the file's masks (shared and, over all frames, per frame) keep a pixel."""
    info = source.files[0]
    valid = np.ones(info.frame_shape, dtype=bool) if info.mask_shared is None else info.mask_shared.copy()
    if info.mask_dataset is not None:
        for chunk in source.chunks(32):
            per_frame = chunk.valid if chunk.valid.ndim == 3 else chunk.valid[None]
            valid &= np.all(per_frame, axis=0)
    return valid


def _mask_bits(path: str, source, valid: np.ndarray) -> np.ndarray:
    """The file's shared mask bits where they say what ``valid`` says, else 0x1 per bad pixel."""
    import h5py

    from spidarknet.frames.source import DETECTOR_GROUP

    if os.path.isdir(path):  # a European XFEL run: its gaps and bad pixels as invalid
        return np.where(valid, 0, MASK_INVALID).astype(np.uint32)
    with h5py.File(path, "r") as handle:
        raw = handle.get(f"{DETECTOR_GROUP}/mask_shared")
        if (raw is not None and raw.shape == valid.shape and raw.dtype.kind in "ui"
                and source.files[0].mask_dataset is None):
            bits = raw[()].astype(np.uint32)
            if np.array_equal(bits == 0, valid):
                return bits
    return np.where(valid, 0, MASK_INVALID).astype(np.uint32)


def measure_photon_level(path, *, dataset: str | None = None,
                         max_frames: int = LIKE_MAX_FRAMES) -> PhotonLevel:
    """The photon level of the frames of ``path``: background and median hit (module notes).

    Reads at most ``max_frames`` frames, evenly spread over the file, in chunks.
    """
    source = _frame_source(str(path), dataset, max_frames)
    return _photon_level(str(path), source, _valid_mask(source))


def _photon_level(path: str, source, valid: np.ndarray) -> PhotonLevel:
    sums = []
    for chunk in source.chunks(32):
        sums.append(np.sum(np.where(chunk.valid & valid, chunk.data, 0), axis=(1, 2), dtype=np.float64))
    sums = np.sort(np.concatenate(sums)) if sums else np.zeros(0)
    n_valid = int(np.count_nonzero(valid))
    if sums.size < 4 * MIN_HITS:
        raise ConfigError(f"{path} has {sums.size} frames, too few to tell hits from the "
                          "background; give --photons and --background yourself")
    p5, p10, p25 = np.percentile(sums, [5, 10, 25])
    spread = (p25 - p5) / 0.971  # normal quantiles 0.25 and 0.05 are 0.971 σ apart
    background = p10
    for _ in range(2):
        sigma = max(math.sqrt(max(background, 1.0)), spread)
        threshold = background + HIT_SIGMAS * sigma
        background = float(np.median(sums[sums <= threshold]))
    sigma = max(math.sqrt(max(background, 1.0)), spread)
    threshold = background + HIT_SIGMAS * sigma
    hits = sums[sums > threshold] - background
    if hits.size < MIN_HITS:
        raise ConfigError(f"only {hits.size} of the {sums.size} frames read from {path} stand out "
                          f"from the background ({background:,.0f} photons per frame): its photon "
                          "level cannot be measured; give --photons N yourself")
    return PhotonLevel(frames_read=int(sums.size), n_valid_pixels=n_valid,
                       background_photons_per_frame=background,
                       hit_threshold_photons=float(threshold), n_hits=int(hits.size),
                       median_hit_photons=float(np.median(hits)))


def settings_like(path, *, dataset: str | None = None,
                  settings: SimulationSettings | None = None,
                  max_frames: int = LIKE_MAX_FRAMES, run_options: dict | None = None, **options) -> Like:
    """Settings that make simulated frames look like those of ``path`` (module notes).

    ``settings`` (default :data:`DEFAULT_SETTINGS`) gives everything the file does not;
    ``options`` (field names of :class:`SimulationSettings`, ``None`` = not given) win over
    what the file says.  ``shape`` cannot be given: the file's mask fixes it.  ``path`` may be a
    European XFEL run folder: its assembled frames (geometry from its .geom file or ``run_options``,
    :class:`~spidarknet.frames.euxfel.RunOptions` fields such as ``geom`` and ``adu_per_photon``).
    """
    from spidarknet.frames.euxfel import is_run_input
    path = str(path)
    if not os.path.isfile(path) and not is_run_input(path):
        raise ConfigError(f"--like {path}: no such file; name a CXI file or a European XFEL run folder of yours")
    explicit = {k for k, v in options.items() if v is not None}
    if "shape" in explicit:
        raise ConfigError("--shape cannot be combined with --like: the frames take the shape "
                          f"of {path}, which its mask must fit")
    base = (DEFAULT_SETTINGS if settings is None else settings).with_options(**options)
    b = base.binning
    source = _frame_source(path, dataset, max_frames, run_options)
    info = source.files[0]
    g = info.geometry
    rows, cols = info.frame_shape
    copied = {"shape": (rows * b, cols * b), "like": os.path.abspath(path),
              "centre_xy": ((g.centre_px[0] + 0.5) * b - 0.5, (g.centre_px[1] + 0.5) * b - 0.5)}
    if "distance_m" not in explicit:
        if g.distance_m is None:
            raise ConfigError(f"{path} does not say its detector distance; give --distance M")
        copied["distance_m"] = g.distance_m
    if "pixel_size_m" not in explicit:
        if g.pixel_size_m is None:
            raise ConfigError(f"{path} does not say its pixel size; give --pixel-size M")
        px, py = g.pixel_size_m
        if not math.isclose(px, py, rel_tol=1e-6):
            raise ConfigError(f"{path} has pixels of {px:g} x {py:g} m; the simulator needs square "
                              "pixels: give --pixel-size M")
        copied["pixel_size_m"] = px / b
    if "photon_energy_J" not in explicit:
        if g.wavelength_m is None:
            raise ConfigError(f"{path} does not say its wavelength or photon energy; give --energy-ev EV")
        copied["photon_energy_J"] = PLANCK_J_S * SPEED_OF_LIGHT_M_S / g.wavelength_m
    valid = _valid_mask(source)
    copied["mask"] = _mask_bits(path, source, valid)
    level = None
    want_photons = not explicit & {"photons", "mean_fluence_photons_per_m2"}
    want_background = "background_photons_per_pixel" not in explicit
    if want_photons or want_background:
        level = _photon_level(path, source, valid)
        if want_photons:
            copied["photons"] = level.median_hit_photons
        if want_background:
            copied["background_photons_per_pixel"] = level.background_photons_per_pixel / (b * b)
    return Like(path=path, settings=dataclasses.replace(base, **copied).checked(), level=level)


__all__ = ["Like", "PhotonLevel", "measure_photon_level", "settings_like", "LIKE_MAX_FRAMES"]
