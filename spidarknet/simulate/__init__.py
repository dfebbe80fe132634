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

Public API: :func:`simulate_file`, :class:`SimulationSummary`, :data:`PNCCD`,
:func:`render_expected`, :func:`draw_scene`, :class:`FrameSimulator`.
"""

from __future__ import annotations

import difflib
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import cv2
import numpy as np

from spidarknet.errors import ConfigError
from spidarknet.simulate.detector import PNCCD, PnCCD, build_mask, radial_bins, sample_photons
from spidarknet.simulate.physics import (Cluster, Particle, Renderer, build_cluster,
                                         random_rotation)
from spidarknet.simulate.writer import COMPRESSIONS, CxiWriter, check_output_path

__all__ = ["simulate_file", "SimulationSummary", "PNCCD", "PnCCD", "render_expected",
           "draw_scene", "Scene", "FrameSimulator", "KINDS", "DEFAULT_FRACTIONS",
           "LABEL_RANGE_NM", "label_for"]

KINDS = ("single", "multiple", "empty", "aggregate", "droplet", "tiny")
DEFAULT_FRACTIONS = {"single": 0.35, "multiple": 0.15, "empty": 0.25,
                     "aggregate": 0.10, "droplet": 0.07, "tiny": 0.08}
#: diameters (nm, inclusive) of a single particle that count as a positive
LABEL_RANGE_NM = (60.0, 75.0)

#: mean fluence at the particle (photons/m², i.e. 1e10 per µm²): a 70 nm protein sphere
#: puts ≈ 3,000 photons on the pnCCD outside the beam stop (the central speckle behind the
#: beam stop holds ~20x more)
MEAN_FLUENCE_PHOTONS_PER_M2 = 1.0e22
#: σ of the log-normal shot-to-shot fluence factor (mean 1)
FLUENCE_SIGMA = 0.4
#: uniform background, expected photons per pixel
BACKGROUND_PHOTONS_PER_PIXEL = 0.002
#: σ of the per-frame beam-centre jitter (pixels)
CENTRE_JITTER_PX = 1.5
#: a pixel counts as "signal" for ``extent_px`` while the azimuthally averaged expected
#: signal exceeds this multiple of the background
EXTENT_BACKGROUND_FACTOR = 2.0

_SIZE_NM = {"single": (55.0, 80.0), "multiple": (55.0, 80.0), "aggregate": (150.0, 400.0),
            "droplet": (200.0, 600.0), "tiny": (10.0, 30.0)}
_AGGREGATE_SUB_NM = (50.0, 80.0)
_ICOSAHEDRON_PROBABILITY = 0.5


def label_for(kind: str, diameter_nm: float) -> int:
    """The truth label: 1 for one particle of 60-75 nm (inclusive), else 0."""
    lo, hi = LABEL_RANGE_NM
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


def _diameter_nm(rng: np.random.Generator, kind: str) -> float:
    lo, hi = _SIZE_NM[kind]
    return float(np.float32(rng.uniform(lo, hi)))  # the value stored is the value labelled


def _random_shape(rng: np.random.Generator) -> str:
    return "icosahedron" if rng.random() < _ICOSAHEDRON_PROBABILITY else "sphere"


def _particle(rng: np.random.Generator, shape: str, diameter_nm: float, position_m=(0.0, 0.0, 0.0),
              material: str = "protein") -> Particle:
    rotation = random_rotation(rng) if shape == "icosahedron" else None
    return Particle(shape=shape, diameter_m=diameter_nm * 1e-9, position_m=tuple(position_m),
                    rotation=rotation, material=material)


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _multiple(rng: np.random.Generator) -> list:
    n = 2 if rng.random() < 0.7 else 3
    diam = [_diameter_nm(rng, "multiple") for _ in range(n)]
    pos = [np.zeros(3)]
    for i in range(1, n):
        for _ in range(100):  # separation 1-3 diameters from a random earlier particle
            j = int(rng.integers(i))
            sep = rng.uniform(1.0, 3.0) * 0.5 * (diam[i] + diam[j]) * 1e-9
            p = pos[j] + sep * _unit_vector(rng)
            if all(np.linalg.norm(p - q) >= 0.5 * (diam[i] + diam[k]) * 1e-9
                   for k, q in enumerate(pos)):
                break
        pos.append(p)
    centroid = np.mean(pos, axis=0)
    return [_particle(rng, _random_shape(rng), d, p - centroid) for d, p in zip(diam, pos)]


def draw_scene(kind: str, rng: np.random.Generator, geometry: PnCCD = PNCCD) -> Scene:
    """Draw the content, beam centre and fluence of one frame of ``kind``."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    cx, cy = geometry.centre_xy
    centre = (float(np.float32(cx + CENTRE_JITTER_PX * rng.normal())),
              float(np.float32(cy + CENTRE_JITTER_PX * rng.normal())))
    fluence = MEAN_FLUENCE_PHOTONS_PER_M2 * math.exp(
        FLUENCE_SIGMA * rng.normal() - 0.5 * FLUENCE_SIGMA ** 2)
    if kind == "empty":
        particles, diameter, shape = [], float("nan"), ""
    elif kind in ("single", "tiny", "droplet"):
        diameter = _diameter_nm(rng, kind)
        shape = _random_shape(rng) if kind == "single" else "sphere"
        material = "water" if kind == "droplet" else "protein"
        particles = [_particle(rng, shape, diameter, material=material)]
    elif kind == "multiple":
        particles = _multiple(rng)
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
                 label=label_for(kind, diameter))


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
    symmetry and unused (rendering is deterministic).
    """
    del rng
    centre = geometry.centre_xy if centre_xy is None else centre_xy
    return _renderer(geometry).expected_photons(particles, centre, fluence_photons_per_m2)


class FrameSimulator:
    """Frames and truth, one after another, for one detector mask and one random stream.

    ``seed`` seeds two independent streams: one for the detector (its bad pixels), one for
    the frames, so the output is a deterministic function of (seed, kinds, settings).
    """

    def __init__(self, *, seed: int = 0, half_detector: bool = False,
                 geometry: PnCCD = PNCCD,
                 background_photons_per_pixel: float = BACKGROUND_PHOTONS_PER_PIXEL):
        detector_seq, frame_seq = np.random.SeedSequence(seed).spawn(2)
        self.geometry = geometry
        self.mask = build_mask(geometry, half_detector=half_detector,
                               rng=np.random.default_rng(detector_seq))
        self.rng = np.random.default_rng(frame_seq)
        self.renderer = _renderer(geometry)
        self.valid = (self.mask == 0).astype(np.float32)
        self.background_photons_per_pixel = float(background_photons_per_pixel)
        self._background = self.valid * np.float32(self.background_photons_per_pixel)
        self._bin_px = 2.0
        self._binning = 4
        self._bin_index, counts, _ = radial_bins(geometry, bin_px=self._bin_px,
                                                 binning=self._binning)
        self._bin_counts = np.maximum(counts, 1)

    def extent_px(self, signal: np.ndarray, centre_xy) -> float:
        """Radius (px) beyond which the azimuthally averaged expected signal stays below
        ``EXTENT_BACKGROUND_FACTOR`` × background; clipped so that the square of that
        half-width around the centre stays inside the frame."""
        rows, cols = signal.shape
        b = self._binning
        binned = cv2.resize(signal, (cols // b, rows // b), interpolation=cv2.INTER_AREA)
        profile = np.bincount(self._bin_index, weights=binned.ravel()) / self._bin_counts
        threshold = EXTENT_BACKGROUND_FACTOR * self.background_photons_per_pixel
        above = np.flatnonzero(profile > threshold)
        if above.size == 0:
            return 0.0
        extent = (above[-1] + 1) * self._bin_px
        cx, cy = centre_xy
        limit = min(cx + 0.5, cy + 0.5, cols - 0.5 - cx, rows - 0.5 - cy)
        return float(min(extent, limit))

    def frame(self, kind: str):
        """One frame of ``kind``: (uint16 photon counts, truth dict of scalars, Scene)."""
        scene = draw_scene(kind, self.rng, self.geometry)
        if scene.particles:
            signal = self.renderer.expected_photons(scene.particles, scene.centre_xy,
                                                    scene.fluence_photons_per_m2)
            extent = self.extent_px(signal, scene.centre_xy)
            signal *= self.valid
            signal += self._background
        else:
            signal, extent = self._background, 0.0
        counts = sample_photons(signal, self.rng)
        truth = {"label": scene.label, "kind": scene.kind.encode(),
                 "diameter_nm": scene.diameter_nm, "n_particles": scene.n_particles,
                 "shape": scene.shape.encode(), "centre_x_px": scene.centre_xy[0],
                 "centre_y_px": scene.centre_xy[1],
                 "photons": int(counts.sum(dtype=np.int64)), "extent_px": extent}
        return counts, truth, scene


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
                "n_single_label": self.n_single_label, "seconds": self.seconds}


def simulate_file(path, count: int, *, seed: int = 0, half_detector: bool = False,
                  compression: str | None = None, chunk_frames: int = 16,
                  fractions: Mapping[str, float] | None = None,
                  progress: Callable[[int], object] | None = None) -> SimulationSummary:
    """Write ``count`` simulated, labelled frames to the CXI file ``path``.

    Frames are generated and written ``chunk_frames`` at a time (memory stays flat), into a
    temporary file in the same folder that replaces ``path`` only when complete (an existing
    ``path`` is replaced: refusing to overwrite is the caller's job, see the CLI's
    ``--force``).  ``fractions`` overrides the share of each kind (a dict kind -> weight;
    kinds left out get none; weights are normalised).  ``progress``, if given, is called
    with the number of frames finished after each chunk.  The same ``seed`` and settings
    give identical files.
    """
    t0 = time.perf_counter()
    for name, value in (("count", count), ("chunk_frames", chunk_frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a whole number ≥ 1, got {value!r}")
    if compression is not None and compression not in COMPRESSIONS:
        raise ConfigError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)} or None")
    path = str(path)
    check_output_path(path)
    frac = _normalise_fractions(fractions)
    count = int(count)
    sim = FrameSimulator(seed=seed, half_detector=half_detector)
    kinds = allocate_kinds(count, frac, sim.rng)
    geometry = sim.geometry
    attrs = {"seed": int(seed), "half_detector": bool(half_detector),
             "fractions": ",".join(f"{k}={v:.6g}" for k, v in frac.items())}
    counts = {k: 0 for k in KINDS}
    n_label = 0
    buffer = np.empty((min(chunk_frames, count),) + tuple(geometry.shape), dtype=np.uint16)
    with CxiWriter(path, count, geometry, sim.mask, compression=compression, attrs=attrs) as writer:
        for start in range(0, count, chunk_frames):
            chunk = kinds[start:start + chunk_frames]
            rows = []
            for i, kind in enumerate(chunk):
                buffer[i], truth, _ = sim.frame(kind)
                rows.append(truth)
                counts[kind] += 1
                n_label += truth["label"]
            truth_arrays = {name: [r[name] for r in rows] for name in rows[0]}
            writer.write(buffer[:len(chunk)], truth_arrays)
            if progress is not None:
                progress(len(chunk))
    return SimulationSummary(path=path, count=count, counts=counts, n_single_label=n_label,
                             seconds=time.perf_counter() - t0)
