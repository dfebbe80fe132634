"""Physics-based simulator of labelled single-particle-imaging (SPI) data, written as CXI.

Each frame shows one of six kinds of shot, drawn with the (default) fractions

=========== ======== ==============================================================
kind        fraction what is in the beam
=========== ======== ==============================================================
single      0.35     one particle, sphere or icosahedron (random orientation), 55-80 nm
multiple    0.15     2 or 3 such particles, 1-3 diameters apart, summed coherently
empty       0.25     nothing: background only
aggregate   0.10     a compact cluster of 50-80 nm spheres, 150-400 nm in size (*)
droplet     0.07     a water droplet, 200-600 nm (very bright)
tiny        0.08     one small particle, 10-30 nm (weak)
=========== ======== ==============================================================

(*) the diameter of the sphere with the aggregate's radius of gyration; its truth
``diameter_nm`` is, like for "multiple", the mean diameter of its particles.

The truth label is 1 only for "single" frames with 60 nm ≤ diameter ≤ 75 nm.  Diameters
of icosahedra are volume-equivalent sphere diameters.  Photon counts: Poisson noise on the
expected pattern (see :mod:`spidarknet.simulate.physics`) at a fluence with shot-to-shot
log-normal jitter (σ = 0.4, mean 1), plus a uniform Poisson background of 0.002
photons/pixel; masked pixels read 0 (see :mod:`spidarknet.simulate.detector`).  The beam
centre jitters per frame (σ = 1.5 px) around the nominal centre.  The output layout is
described in :mod:`spidarknet.simulate.writer`.

These numbers are the defaults of :class:`SimulationSettings`
(:mod:`spidarknet.simulate.settings`), which the keyword arguments of
:func:`simulate_file` and :class:`FrameSimulator` and the options of ``spidarknet
simulate`` change:

============================ ========================== ===============================
setting                      option                     default
============================ ========================== ===============================
photons                      ``--photons N``            unset: the mean fluence 1e22/m²
fluence_sigma                ``--fluence-sigma S``      0.4 (log-normal, mean 1)
background_photons_per_pixel ``--background B``         0.002 per detector pixel
centre_jitter_px             ``--centre-jitter PX``     1.5 (σ, detector pixels)
size_range_nm                ``--size-range LO HI``     55 80 (singles, multiples)
label_range_nm               ``--label-range LO HI``    60 75
off_size_fraction            ``--off-size-fraction F``  unset: uniform over the sizes
separation_diameters         ``--separation LO HI``     1 3 (multiples)
distance_m                   ``--distance M``           0.125
pixel_size_m                 ``--pixel-size M``         75e-6 (before binning)
photon_energy_J              ``--energy-ev EV``         1700 eV
shape                        ``--shape ROWS COLS``      1024 1024 (before binning)
binning                      ``--binning B``            1
half_detector                ``--half-detector``        off
mask, centre_xy, like        ``--like FILE.cxi``        the built pnCCD mask, centred
============================ ========================== ===============================

A measured-like detector and beamline (:mod:`spidarknet.simulate.measured`: readout in ADU
with read noise, common mode and its imperfect correction, photon conversion with a
threshold, gain spread, hot, dead and saturating pixels, beamline and injector scatter, a
drifting beam centre) is off by default; ``--measured-like`` (:data:`MEASURED_LIKE`) turns
on a realistic mix, and each of its settings has its own option (``--read-noise ADU``, ...).

``photons`` is the median photon count of a labelled single hit: the particle's signal
on the valid pixels, without the background.  It is realised by scaling the mean fluence,
calibrated once per file on the detector's own mask (see
:meth:`FrameSimulator.median_single_photons`).  A detector of another shape or pixel size
keeps the pnCCD's two halves, its 0.9 mm gap and 1.875 mm beam stop at their physical
sizes.  ``binning`` B renders the detector at its own pixels and writes B x B sums: the
fringes are integrated over the large pixel as a binned detector does, at the cost of the
unbinned render (sampling and writing get cheaper).  Every setting is recorded in the
attributes of ``/truth``.

Public API: :func:`simulate_file`, :class:`SimulationSettings`, :class:`SimulationSummary`,
:data:`PNCCD`, :func:`render_expected`, :func:`draw_scene`, :class:`FrameSimulator`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import time
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable, Mapping

import cv2
import numpy as np

from spidarknet.core.defaults import SIMULATE_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError
from spidarknet.core.radial import pixel_radius_px
from spidarknet.simulate.detector import (MASK_INVALID, MASK_SATURATED, PNCCD, PnCCD, bin_mask,
                                          bin_sum, build_mask, sample_photons, unbin)
from spidarknet.simulate.measured import MEASURED_TRUTH_FIELDS, DetectorEffects
from spidarknet.simulate.physics import (Cluster, Particle, Renderer, build_cluster,
                                         random_rotation)
from spidarknet.simulate.settings import (DEFAULT_SETTINGS, MEASURED_LIKE, MEASURED_LIKE_SETTINGS,
                                          SimulationSettings, option_name)
from spidarknet.simulate.writer import COMPRESSIONS, CxiWriter, check_output_path

__all__ = ["simulate_file", "SimulationSettings", "DEFAULT_SETTINGS", "MEASURED_LIKE",
           "MEASURED_LIKE_SETTINGS", "SimulationSummary",
           "PNCCD", "PnCCD", "render_expected", "draw_scene", "Scene", "FrameSimulator",
           "KINDS", "DEFAULT_FRACTIONS", "LABEL_RANGE_NM", "label_for"]

KINDS = ("single", "multiple", "empty", "aggregate", "droplet", "tiny")
DEFAULT_FRACTIONS = {"single": 0.35, "multiple": 0.15, "empty": 0.25,
                     "aggregate": 0.10, "droplet": 0.07, "tiny": 0.08}
#: the defaults of :class:`SimulationSettings`, under their historical names
LABEL_RANGE_NM = DEFAULT_SETTINGS.label_range_nm
MEAN_FLUENCE_PHOTONS_PER_M2 = DEFAULT_SETTINGS.mean_fluence_photons_per_m2
BACKGROUND_PHOTONS_PER_PIXEL = DEFAULT_SETTINGS.background_photons_per_pixel
#: a pixel counts as "signal" for ``extent_px`` while the azimuthally averaged expected
#: signal exceeds this multiple of the background
EXTENT_BACKGROUND_FACTOR = 2.0

_SIZE_NM = {"aggregate": (150.0, 400.0), "droplet": (200.0, 600.0), "tiny": (10.0, 30.0)}
_AGGREGATE_SUB_NM = (50.0, 80.0)
_ICOSAHEDRON_PROBABILITY = 0.5
#: the photon calibration: rendered singles, fluence quantiles, the design's own seed
_CALIBRATION_SAMPLES = 64
_CALIBRATION_QUANTILES = 64
_CALIBRATION_SEED = 20180101


def label_for(kind: str, diameter_nm: float, label_range_nm=LABEL_RANGE_NM) -> int:
    """The truth label: 1 for one particle with a diameter in ``label_range_nm``
    (inclusive; 60-75 nm by default), else 0."""
    lo, hi = label_range_nm
    return int(kind == "single" and lo <= diameter_nm <= hi)


@dataclass
class Scene:
    """What is in the beam for one frame (all the truth except the photon counts)."""

    kind: str
    particles: list
    centre_xy: tuple
    fluence_photons_per_m2: float
    diameter_nm: float
    shape: str
    label: int

    @property
    def n_particles(self) -> int:
        if self.particles and isinstance(self.particles[0], Cluster):
            return len(self.particles[0].diameters_m)
        return len(self.particles)


def _stored(value: float) -> float:
    return float(np.float32(value))  # the value stored is the value labelled


def _single_diameter_nm(rng: np.random.Generator, settings: SimulationSettings) -> float:
    """A single's diameter: uniform over the size range, or (``off_size_fraction`` F)
    outside the label range with probability F, else uniform inside it."""
    lo, hi = settings.size_range_nm
    f = settings.off_size_fraction
    if f is None:
        return _stored(rng.uniform(lo, hi))
    label_lo, label_hi = settings.label_range_nm
    if rng.random() < f:
        below = max(0.0, min(hi, label_lo) - lo)
        above = max(0.0, hi - max(lo, label_hi))
        u = rng.uniform(0.0, below + above)
        return _stored(lo + u if u < below else max(lo, label_hi) + (u - below))
    return _stored(rng.uniform(max(lo, label_lo), min(hi, label_hi)))


def _random_shape(rng: np.random.Generator, settings: SimulationSettings = DEFAULT_SETTINGS) -> str:
    drawn = "icosahedron" if rng.random() < _ICOSAHEDRON_PROBABILITY else "sphere"
    return drawn if settings.particle_shape == "mixed" else settings.particle_shape


def _particle(rng: np.random.Generator, shape: str, diameter_nm: float, position_m=(0.0, 0.0, 0.0),
              material: str = "protein") -> Particle:
    rotation = random_rotation(rng) if shape == "icosahedron" else None
    return Particle(shape=shape, diameter_m=diameter_nm * 1e-9, position_m=tuple(position_m),
                    rotation=rotation, material=material)


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _multiple(rng: np.random.Generator, settings: SimulationSettings) -> list:
    n = 2 if rng.random() < 0.7 else 3
    diam = [_stored(rng.uniform(*settings.size_range_nm)) for _ in range(n)]
    sep_lo, sep_hi = settings.separation_diameters
    pos = [np.zeros(3)]
    for i in range(1, n):
        for _ in range(100):  # separation from a random earlier particle, no overlaps
            j = int(rng.integers(i))
            sep = rng.uniform(sep_lo, sep_hi) * 0.5 * (diam[i] + diam[j]) * 1e-9
            p = pos[j] + sep * _unit_vector(rng)
            if all(np.linalg.norm(p - q) >= 0.5 * (diam[i] + diam[k]) * 1e-9
                   for k, q in enumerate(pos)):
                break
        pos.append(p)
    centroid = np.mean(pos, axis=0)
    return [_particle(rng, _random_shape(rng, settings), d, p - centroid) for d, p in zip(diam, pos)]


def draw_scene(kind: str, rng: np.random.Generator, geometry: PnCCD = PNCCD,
               settings: SimulationSettings = DEFAULT_SETTINGS) -> Scene:
    """Draw the content, beam centre (detector pixels) and fluence of one frame of ``kind``.

    ``settings.mean_fluence_photons_per_m2`` is used as it is: a ``photons`` target is
    turned into a fluence by :class:`FrameSimulator`.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    cx, cy = geometry.centre_xy
    jitter, sigma = settings.centre_jitter_px, settings.fluence_sigma
    centre = (_stored(cx + jitter * rng.normal()), _stored(cy + jitter * rng.normal()))
    fluence = settings.mean_fluence_photons_per_m2 * math.exp(
        sigma * rng.normal() - 0.5 * sigma ** 2)
    if kind == "empty":
        particles, diameter, shape = [], float("nan"), ""
    elif kind == "single":
        diameter = _single_diameter_nm(rng, settings)
        shape = _random_shape(rng, settings)
        particles = [_particle(rng, shape, diameter)]
    elif kind in ("tiny", "droplet"):
        diameter = _stored(rng.uniform(*_SIZE_NM[kind]))
        shape = "sphere"
        material = "water" if kind == "droplet" else "protein"
        particles = [_particle(rng, shape, diameter, material=material)]
    elif kind == "multiple":
        particles = _multiple(rng, settings)
        diameter = float(np.mean([p.diameter_m for p in particles]) * 1e9)
        shapes = {p.shape for p in particles}
        shape = shapes.pop() if len(shapes) == 1 else "mixed"
    else:  # aggregate
        size_nm = rng.uniform(*_SIZE_NM["aggregate"])
        sub = tuple(d * 1e-9 for d in _AGGREGATE_SUB_NM)
        cluster = build_cluster(size_nm * 1e-9, rng, sub)
        cluster.positions_m = cluster.positions_m @ random_rotation(rng).T
        particles = [cluster]
        diameter, shape = float(np.mean(cluster.diameters_m) * 1e9), "cluster"
    return Scene(kind=kind, particles=particles, centre_xy=centre,
                 fluence_photons_per_m2=fluence, diameter_nm=diameter, shape=shape,
                 label=label_for(kind, diameter, settings.label_range_nm))


@functools.lru_cache(maxsize=4)
def _renderer(geometry: PnCCD) -> Renderer:
    return Renderer(geometry.shape, geometry.pixel_size_m, geometry.distance_m,
                    geometry.wavelength_m, geometry.centre_xy)


def render_expected(particles: list, centre_xy=None, rng: np.random.Generator | None = None, *,
                    fluence_photons_per_m2: float = MEAN_FLUENCE_PHOTONS_PER_M2,
                    geometry: PnCCD = PNCCD) -> np.ndarray:
    """Noise-free expected photons per pixel (float32, ``geometry.shape``) of one frame.

    ``particles``: a list of :class:`~spidarknet.simulate.physics.Particle` (summed
    coherently) or a single :class:`~spidarknet.simulate.physics.Cluster`; ``centre_xy``:
    beam centre in pixel-index coordinates (default: the nominal centre).  Only the
    particles' signal: no background, no mask, no noise.  ``rng`` is accepted for API
    symmetry and unused (rendering is deterministic).  ``geometry``: any detector, e.g.
    ``SimulationSettings(distance_m=0.3).detector``.
    """
    del rng
    centre = geometry.centre_xy if centre_xy is None else centre_xy
    return _renderer(geometry).expected_photons(particles, centre, fluence_photons_per_m2)


class FrameSimulator:
    """Frames and truth, one after another, for one detector mask and one random stream.

    ``settings`` (default :data:`DEFAULT_SETTINGS`) with ``options`` (field names of
    :class:`SimulationSettings`, e.g. ``half_detector=True, photons=1500``) applied on
    top.  ``geometry`` replaces the detector the settings describe (a :class:`PnCCD`,
    before binning).  ``seed`` seeds two independent streams: one for the detector (its
    bad pixels), one for the frames, so the output is a deterministic function of (seed,
    kinds, settings).

    Attributes: ``settings`` (as used: with ``photons`` set, its mean fluence is the
    calibrated one), ``detector`` (the rendered geometry), ``geometry`` and ``mask`` (of
    the written frames, CXI bits).  Frames, truth centres and extents are in written pixels.
    """

    def __init__(self, *, seed: int = 0, settings: SimulationSettings | None = None,
                 geometry: PnCCD | None = None, **options):
        settings = (DEFAULT_SETTINGS if settings is None else settings).with_options(**options)
        # three independent streams: bad pixels, frames, measured-like effects (the third
        # is drawn from only with effects on, so the frames of a seed stay as they were)
        detector_seq, frame_seq, effects_seq = np.random.SeedSequence(seed).spawn(3)
        b = self.binning = settings.binning
        self.detector = settings.detector if geometry is None else geometry
        if self.detector.shape[0] % b or self.detector.shape[1] % b:
            raise ConfigError(f"--binning {b} does not divide the detector shape {self.detector.shape}")
        self.geometry = self.detector.binned(b)
        if settings.mask is None:
            mask = build_mask(self.detector, half_detector=settings.half_detector,
                              rng=np.random.default_rng(detector_seq))
            self.mask = bin_mask(mask, b)
        else:
            if settings.mask.shape != tuple(self.geometry.shape):
                raise ConfigError(f"the mask has shape {settings.mask.shape}, the frames are "
                                  f"{tuple(self.geometry.shape)}")
            self.mask = settings.mask.astype(np.uint32, copy=True)
            if settings.half_detector:
                self.mask[self.geometry.half_rows:, :] |= MASK_INVALID
        self.rng = np.random.default_rng(frame_seq)
        self.renderer = _renderer(self.detector)
        self.valid = unbin(self.mask == 0, b).astype(np.float32)  # detector pixels
        if settings.centre_xy is None:  # record where the beam is
            settings = dataclasses.replace(settings, centre_xy=tuple(self.detector.centre_xy))
        self.settings = settings
        self._log_median = None  # of a labelled single's photons per unit fluence, when asked
        if settings.photons is not None:
            per_fluence = self.median_single_photons(1.0)
            self.settings = dataclasses.replace(
                settings, mean_fluence_photons_per_m2=settings.photons / per_fluence)
        self.background_photons_per_pixel = float(settings.background_photons_per_pixel)
        self._background = (self.mask == 0).astype(np.float32) * np.float32(
            b * b * self.background_photons_per_pixel)
        self._bin_px = 2.0
        self._binning = 4
        # each binned pixel's ring about the nominal centre, once per simulator (extent_px sums
        # every frame's signal into these rings)
        rows, cols = self.detector.shape
        radius = pixel_radius_px((rows // self._binning, cols // self._binning), self.detector.centre_xy,
                                 binning=self._binning)
        self._ring = (radius / self._bin_px).astype(np.intp).ravel()
        self._ring_pixels = np.maximum(np.bincount(self._ring), 1)
        # measured-like effects flag some bad pixels in the written mask; photons still reach
        # them (the truth's photons count them, the mask and rendering stay the clean ones)
        self.effects = None
        if settings.has_detector_effects:
            self.effects = DetectorEffects(settings, self.geometry, b, self.mask, effects_seq)
        self._written_valid = self.mask == 0
        self._index = 0  # frames made so far (the beam centre drifts with it)

    def median_single_photons(self, mean_fluence_photons_per_m2: float | None = None) -> float:
        """Median signal photons on the valid pixels of a labelled single hit (no
        background, no noise) at this mean fluence (default: the settings').

        Estimated once per simulator, apart from the frame stream: 64 labelled singles of a
        stratified design (diameters across the labelled range, beam-centre offsets from
        the jitter's normal distribution, spheres and randomly oriented icosahedra in their
        proportion) are rendered on this detector's mask; the median is that of their
        photon counts mixed with the log-normal fluence factor (64 quantiles).  The jitter
        matters: the pattern's bright centre moves against the fixed beam stop.
        """
        if mean_fluence_photons_per_m2 is None:
            mean_fluence_photons_per_m2 = self.settings.mean_fluence_photons_per_m2
        if self._log_median is None:
            self._log_median = self._log_median_per_fluence()
        return float(mean_fluence_photons_per_m2 * math.exp(self._log_median))

    def _log_median_per_fluence(self) -> float:
        settings = self.settings
        lo = max(settings.size_range_nm[0], settings.label_range_nm[0])
        hi = min(settings.size_range_nm[1], settings.label_range_nm[1])
        n = _CALIBRATION_SAMPLES
        rng = np.random.default_rng(_CALIBRATION_SEED)

        def strata() -> np.ndarray:  # one value in each 1/n of (0, 1), shuffled
            return (rng.permutation(n) + rng.uniform(0.02, 0.98, n)) / n

        normal = NormalDist()
        diameters = lo + (hi - lo) * strata()
        offsets = np.array([[normal.inv_cdf(u) for u in strata()] for _ in range(2)])
        icosahedron = strata() < _ICOSAHEDRON_PROBABILITY
        cx, cy = self.detector.centre_xy
        jitter = settings.centre_jitter_px
        reference = MEAN_FLUENCE_PHOTONS_PER_M2  # render at a float32-friendly fluence
        totals = np.empty(n)
        for i in range(n):
            shape = "icosahedron" if icosahedron[i] else "sphere"
            particle = _particle(rng, shape, diameters[i])
            centre = (cx + jitter * offsets[0, i], cy + jitter * offsets[1, i])
            image = self.renderer.expected_photons([particle], centre, reference)
            totals[i] = np.sum(image * self.valid, dtype=np.float64) / reference
        if np.any(totals <= 0):
            raise ConfigError("a labelled single puts no photon on the valid pixels of this "
                              "detector (is everything masked?); --photons cannot be met")
        sigma = settings.fluence_sigma
        z = np.array([normal.inv_cdf((k + 0.5) / _CALIBRATION_QUANTILES)
                      for k in range(_CALIBRATION_QUANTILES)])
        values = np.log(totals)[:, None] + (sigma * z - 0.5 * sigma * sigma)[None, :]
        return float(np.median(values))

    def extent_px(self, signal: np.ndarray, centre_xy) -> float:
        """Radius (detector px) beyond which the azimuthally averaged expected signal stays
        below ``EXTENT_BACKGROUND_FACTOR`` × background; clipped so that the square of that
        half-width around the centre stays inside the frame."""
        rows, cols = signal.shape
        b = self._binning
        binned = cv2.resize(signal, (cols // b, rows // b), interpolation=cv2.INTER_AREA)
        profile = np.bincount(self._ring, weights=binned.ravel(), minlength=len(self._ring_pixels)) / self._ring_pixels
        threshold = EXTENT_BACKGROUND_FACTOR * self.background_photons_per_pixel
        above = np.flatnonzero(profile > threshold)
        if above.size == 0:
            return 0.0
        extent = (above[-1] + 1) * self._bin_px
        cx, cy = centre_xy
        limit = min(cx + 0.5, cy + 0.5, cols - 0.5 - cx, rows - 0.5 - cy)
        return float(min(extent, limit))

    def frame(self, kind: str):
        """One frame of ``kind``: (uint16 photon counts, truth dict of scalars, Scene).

        The Scene is in detector pixels; frame and truth are in written (binned) pixels.
        """
        counts, truth, scene, _ = self.frame_and_mask(kind)
        return counts, truth, scene

    def frame_and_mask(self, kind: str):
        """:meth:`frame` and the pixels saturated in it (bool, written pixels; None unless
        ``saturation_adu`` is set).  With measured-like effects the truth's ``photons`` stay
        those of the particle and the uniform background (the frame's sum before stray light
        and readout); ``stray_photons``, ``saturated_pixels`` and ``written_photons`` join it."""
        scene = draw_scene(kind, self.rng, self.detector, self.settings)
        if self.effects is not None:
            dx, dy = self.effects.drift_px(self._index)
            scene.centre_xy = (_stored(scene.centre_xy[0] + dx), _stored(scene.centre_xy[1] + dy))
        self._index += 1
        b = self.binning
        if scene.particles:
            signal = self.renderer.expected_photons(scene.particles, scene.centre_xy,
                                                    scene.fluence_photons_per_m2)
            extent = self.extent_px(signal, scene.centre_xy)
            signal *= self.valid
            signal = bin_sum(signal, b)
            signal += self._background
        else:
            signal, extent = self._background, 0.0
        counts = sample_photons(signal, self.rng)
        cx, cy = scene.centre_xy
        if b > 1:
            cx, cy, extent = (cx + 0.5) / b - 0.5, (cy + 0.5) / b - 0.5, extent / b
        truth = {"label": scene.label, "kind": scene.kind.encode(),
                 "diameter_nm": scene.diameter_nm, "n_particles": scene.n_particles,
                 "shape": scene.shape.encode(), "centre_x_px": cx, "centre_y_px": cy,
                 "photons": int(counts.sum(dtype=np.int64)), "extent_px": extent}
        saturated = None
        if self.effects is not None:
            factor = scene.fluence_photons_per_m2 / self.settings.mean_fluence_photons_per_m2
            counts, saturated, extras = self.effects.apply(counts, (cx, cy), factor, self._written_valid)
            truth.update(extras)
        return counts, truth, scene, saturated

def _normalise_fractions(fractions: Mapping[str, float] | None) -> dict:
    if fractions is None:
        return dict(DEFAULT_FRACTIONS)
    out = {}
    for kind, value in fractions.items():
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown kind {kind!r} in fractions{hint}; "
                              f"kinds are {', '.join(KINDS)}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"fraction of {kind!r} must be a number ≥ 0, got {value}")
        out[kind] = value
    total = sum(out.values())
    if total <= 0:
        raise ConfigError("the fractions add up to 0; give at least one kind a positive fraction")
    return {kind: out.get(kind, 0.0) / total for kind in KINDS}


def allocate_kinds(count: int, fractions: Mapping[str, float] | None,
                   rng: np.random.Generator) -> list:
    """Exactly ``round(count × fraction)`` frames per kind (largest remainder), shuffled."""
    frac = _normalise_fractions(fractions)
    raw = {k: count * f for k, f in frac.items()}
    n = {k: int(math.floor(v)) for k, v in raw.items()}
    rest = count - sum(n.values())
    for k in sorted(KINDS, key=lambda k: (n[k] - raw[k], KINDS.index(k)))[:rest]:
        n[k] += 1
    kinds = [k for k in KINDS for _ in range(n[k])]
    return [kinds[i] for i in rng.permutation(count)]


@dataclass
class SimulationSummary:
    """What :func:`simulate_file` wrote."""

    path: str
    count: int
    counts: dict = field(default_factory=dict)
    n_single_label: int = 0
    seconds: float = 0.0
    #: what ``like`` took from its file (one line), "" without ``like``
    like_line: str = ""

    @property
    def frames_per_s(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        """One-line summary for people."""
        kinds = ", ".join(f"{k} {n}" for k, n in self.counts.items() if n)
        return (f"wrote {self.path}: {self.count} frames ({kinds}), "
                f"{self.n_single_label} labelled single, {self.seconds:.1f} s")

    def to_dict(self) -> dict:
        return {"path": self.path, "count": self.count, "counts": dict(self.counts),
                "n_single_label": self.n_single_label, "seconds": self.seconds,
                "like_line": self.like_line}


def simulate_file(path, count: int, *, seed: int = 0, half_detector: bool | None = None,
                  compression: str | None = None, chunk_frames: int = SIMULATE_CHUNK_FRAMES,
                  fractions: Mapping[str, float] | None = None,
                  progress: Callable[[int], object] | None = None,
                  settings: SimulationSettings | None = None, like=None,
                  like_dataset: str | None = None, like_run_options: dict | None = None,
                  **options) -> SimulationSummary:
    """Write ``count`` simulated, labelled frames to the CXI file ``path``.

    Frames are generated and written ``chunk_frames`` at a time (memory stays flat), into a
    temporary file in the same folder that replaces ``path`` only when complete (an existing
    ``path`` is replaced: refusing to overwrite is the caller's job, see the CLI's
    ``--force``).  ``fractions`` overrides the share of each kind (a dict kind -> weight;
    kinds left out get none; weights are normalised).  ``progress``, if given, is called
    with the number of frames finished after each chunk.

    ``settings`` (default :data:`DEFAULT_SETTINGS`) and ``options`` on top of it (field
    names of :class:`SimulationSettings`: ``photons=1500, binning=4, distance_m=0.3``,
    ...; ``half_detector`` is one of them) shape the frames; all of them are recorded in
    the attributes of ``/truth``.  The same ``seed`` and settings give identical frames,
    truth and mask; the defaults give those of the simulator before it had settings.

    ``like`` (a CXI file; its frames at ``like_dataset`` or the CXI default) replaces the
    geometry, mask, frame shape, photon level and background by those of that file, see
    :func:`spidarknet.simulate.like.settings_like`; ``options`` given still win.
    """
    t0 = time.perf_counter()
    _check_run(count, chunk_frames, compression)
    settings, like_result = _resolved_settings(settings, like, like_dataset, half_detector, options,
                                               like_run_options)
    path = str(path)
    check_output_path(path)
    frac = _normalise_fractions(fractions)
    count = int(count)
    sim = FrameSimulator(seed=seed, settings=settings)
    kinds = allocate_kinds(count, frac, sim.rng)
    attrs = _truth_attrs(sim, seed, frac, like_result)
    effects = sim.effects is not None
    with CxiWriter(path, count, sim.geometry, sim.mask, compression=compression, attrs=attrs,
                   extra_truth=MEASURED_TRUTH_FIELDS if effects else None,
                   frame_masks=effects and sim.settings.saturation_adu > 0) as writer:
        counts, n_label = _write_frames(writer, sim, kinds, chunk_frames, progress)
    return SimulationSummary(path=path, count=count, counts=counts, n_single_label=n_label,
                             seconds=time.perf_counter() - t0,
                             like_line=like_result.line() if like_result else "")


def _check_run(count, chunk_frames, compression: str | None) -> None:
    """Refuse a frame count or chunk size that is not a whole number ≥ 1, or an unknown compression."""
    for name, value in (("count", count), ("chunk_frames", chunk_frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{option_name(name)} must be a whole number ≥ 1, got {value!r}")
    if compression is not None and compression not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)} or None")


def _resolved_settings(settings: SimulationSettings | None, like, like_dataset: str | None,
                       half_detector: bool | None, options: dict, run_options: dict | None = None):
    """The settings the frames are made with, and what ``like`` took from its file (None without it)."""
    if like is not None:
        from spidarknet.simulate.like import settings_like

        like_result = settings_like(like, dataset=like_dataset, settings=settings, run_options=run_options,
                                    half_detector=half_detector, **options)
        return like_result.settings, like_result
    settings = (DEFAULT_SETTINGS if settings is None else settings).with_options(
        half_detector=half_detector, **options)
    return settings, None


def _truth_attrs(sim: "FrameSimulator", seed: int, frac: dict, like_result) -> dict:
    """The attributes of ``/truth``: seed, mix, label rule and every setting."""
    label_lo, label_hi = sim.settings.label_range_nm
    attrs = {"seed": int(seed), "half_detector": sim.settings.half_detector,
             "fractions": ",".join(f"{k}={v:.6g}" for k, v in frac.items()),
             "label_rule": f"single=1: one particle, {label_lo:g}-{label_hi:g} nm"}
    attrs.update(sim.settings.to_attrs())
    if like_result is not None:
        attrs.update(like_result.to_attrs())
    return attrs


def _write_frames(writer: CxiWriter, sim: "FrameSimulator", kinds, chunk_frames: int,
                  progress: Callable[[int], object] | None) -> tuple[dict, int]:
    """Make the frames of ``kinds`` and write them ``chunk_frames`` at a time with their truth;
    returns the frames of each kind and the number labelled single."""
    count = len(kinds)
    counts = {k: 0 for k in KINDS}
    n_label = 0
    shape = (min(chunk_frames, count),) + tuple(sim.geometry.shape)
    buffer = np.empty(shape, dtype=np.uint16)
    masks = np.empty(shape, dtype=np.uint32) if writer.frame_masks else None
    for start in range(0, count, chunk_frames):
        chunk = kinds[start:start + chunk_frames]
        rows = []
        for i, kind in enumerate(chunk):
            buffer[i], truth, _, saturated = sim.frame_and_mask(kind)
            if masks is not None:  # the shared bits, and 0x2 where this frame saturated
                np.copyto(masks[i], sim.mask)
                masks[i][saturated] |= MASK_SATURATED
            rows.append(truth)
            counts[kind] += 1
            n_label += truth["label"]
        truth_arrays = {name: [r[name] for r in rows] for name in rows[0]}
        writer.write(buffer[:len(chunk)], truth_arrays,
                     None if masks is None else masks[:len(chunk)])
        if progress is not None:
            progress(len(chunk))
    return counts, n_label
