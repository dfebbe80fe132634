"""Simulated European XFEL AGIPD 1M runs: the simulator's frames in the facility's layout.

The physics is the simulator's own (:class:`~spidarknet.simulate.FrameSimulator`: the same
kinds of shot, sizes, fluence jitter, Poisson photons and truth), rendered on the assembled
AGIPD image that EXtra-geom makes of the geometry (200 µm pixels, the gaps between modules and
tiles and the central hole masked), then cut back into the 16 modules of 512 × 128 pixels.
What the facility's corrected data add is added on top, per module pixel:

- the data are keV-like ADU: photons × ``adu_per_photon`` (the photon energy in keV by
  default) × a per-memory-cell gain error of each ASIC (64 × 64 pixels; σ ``gain_sigma``)
  plus Gaussian noise (σ ``noise_photons`` photons), as a gain calibration a few percent off
  leaves them: readers convert with ``--adu-per-photon`` (photons = round(x / ADU));
- ``bad_pixel_fraction`` of each module's pixels are flagged in ``image.mask`` (bit 0x1)
  and read NaN in ``image.data``, as the correction marks them;
- trains of ``cells`` frames (352 by default, as AGIPD's memory holds), ``pulseId`` and
  ``cellId`` counting the frames of a train.

The data are written uncompressed, as the facility's corrected files are, unless
``compression="gzip-1"``: float32 noise does not compress (its mantissas are random: deflate
alone keeps 93 % of the bytes), so the values are kept to :data:`DATA_QUANTUM_ADU` (1/64 ADU,
0.003 photons at 6 ADU per photon, far below the noise; a pixel within 1/128 ADU of a half
photon reads one photon apart, about one in a million) and written byte-shuffled, then
deflated at level 1, in chunks of :data:`COMPRESSED_CHUNK` (8 frames of one 64-row band of
ASICs, so that a reader of the central modules' rows decompresses little else): about 30 % of
the bytes.  HDF5's own filters: h5py and EXtra-data read them with no plugin.

The run folder holds one file per module (``CORR-R{run}-AGIPD{NN}-S00000.h5``, written with
EXtra-data's own mock-run writer, then filled), the geometry as ``agipd1m.geom`` (CrystFEL,
with ``clen`` and ``photon_energy``, so that readers need no geometry option), and the truth
as ``spidarknet-truth.hdf5`` (``/truth/*`` one value per frame of the run, in its order, with
``trainId`` and ``pulseId``; not ``.h5``, which EXtra-data would take for a run file).  The
folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping

import h5py
import numpy as np

from spidarknet.core.errors import ConfigError, OutputError
from spidarknet.frames.euxfel import (DEFAULT_QUAD_POSITIONS_MM, DETECTOR, MODULE_SHAPE, N_MODULES, TRUTH_FILE,
                                      AgipdLayout)
from spidarknet.simulate import DEFAULT_SETTINGS, FrameSimulator, allocate_kinds, _normalise_fractions
from spidarknet.simulate.physics import ELEMENTARY_CHARGE_C
from spidarknet.simulate.settings import SimulationSettings

#: the geometry of the AGIPD regime: 6 keV, 0.705 m (the built-in model's q range then lies on
#: 4 modules around the central hole)
AGIPD_ENERGY_EV = 6000.0
AGIPD_DISTANCE_M = 0.705
GEOM_FILE = "agipd1m.geom"
#: compressions of the module data (None: uncompressed, as the facility writes them)
AGIPD_COMPRESSIONS = ("gzip-1",)
#: the step compressed data are held to, ADU (see the module notes)
DATA_QUANTUM_ADU = 1.0 / 64.0
#: the chunks of compressed module data and masks: frames, rows, columns
COMPRESSED_CHUNK = (8, 64, 128)
MASK_GAP = 0x200
MASK_BAD = 0x1
_ASIC = 64


@dataclass(frozen=True)
class AgipdRunSettings:
    """What the facility's layout adds to the simulator's frames (see the module notes)."""

    cells: int = 352                   # frames per train
    run_number: int = 1
    adu_per_photon: float | None = None  # None: the photon energy in keV
    gain_sigma: float = 0.02
    noise_photons: float = 0.05
    bad_pixel_fraction: float = 0.002
    legacy_names: bool = False         # SPB_DET_AGIPD1M-1/DET/{N}CH0:xtdf instead of CORR/...:output
    modules: tuple = tuple(range(N_MODULES))  # the modules written (the others are missing)
    first_train: int = 10000
    compression: str | None = None     # None: uncompressed; "gzip-1" (see the module notes)

    def checked(self) -> "AgipdRunSettings":
        if not (isinstance(self.cells, int) and 1 <= self.cells <= 352):
            raise ConfigError(f"--cells {self.cells}: AGIPD trains hold 1 to 352 frames")
        if self.adu_per_photon is not None and not self.adu_per_photon > 0:
            raise ConfigError("--adu-per-photon must be positive")
        if not self.modules or any(not 0 <= int(m) < N_MODULES for m in self.modules):
            raise ConfigError(f"--modules {self.modules}: give module numbers 0-{N_MODULES - 1}")
        if self.compression not in (None, *AGIPD_COMPRESSIONS):
            raise ConfigError(f"--compression {self.compression}: an AGIPD run is written uncompressed (none) or "
                              f"{', '.join(AGIPD_COMPRESSIONS)}")
        for name in ("gain_sigma", "noise_photons", "bad_pixel_fraction"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must not be negative")
        return self


def agipd_settings(settings: SimulationSettings | None = None, layout: AgipdLayout | None = None,
                   **options) -> tuple[SimulationSettings, AgipdLayout]:
    """The simulator's settings on the assembled AGIPD image: its shape, 200 µm pixels, the
    beam at the geometry's origin, the gaps masked; 6 keV and 0.705 m unless ``options`` say."""
    from extra_geom import AGIPD_1MGeometry
    if layout is None:
        layout = AgipdLayout.from_geometry(AGIPD_1MGeometry.from_quad_positions(
            quad_pos=[tuple(q) for q in DEFAULT_QUAD_POSITIONS_MM]))
    mask = np.where(layout.gap_mask(), 0, MASK_GAP).astype(np.uint32)
    base = dict(shape=layout.shape, pixel_size_m=layout.pixel_size_m, centre_xy=layout.centre_px, mask=mask,
                distance_m=AGIPD_DISTANCE_M, photon_energy_J=AGIPD_ENERGY_EV * ELEMENTARY_CHARGE_C)
    base.update({k: v for k, v in options.items() if v is not None})
    if base.get("binning") not in (None, 1) or base.get("half_detector"):
        raise ConfigError("--binning and --half-detector describe a pnCCD; they do not apply to --detector agipd1m")
    return (DEFAULT_SETTINGS if settings is None else settings).with_options(**base), layout


@dataclass
class AgipdRunSummary:
    path: str
    count: int
    trains: int
    counts: dict
    n_single_label: int
    seconds: float

    def line(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        return (f"wrote {self.path}: {self.count} frames in {self.trains} trains of 16 AGIPD modules ({kinds}; "
                f"{self.n_single_label} labelled single) in {self.seconds:.1f} s")


def simulate_agipd_run(out_dir: str, count: int, *, seed: int = 0, run: AgipdRunSettings | None = None,
                       settings: SimulationSettings | None = None, fractions: Mapping[str, float] | None = None,
                       chunk_frames: int = 32, progress: Callable[[int], object] | None = None,
                       **options) -> AgipdRunSummary:
    """Write ``count`` labelled frames as an AGIPD run folder ``out_dir`` (see the module notes;
    ``options`` are simulation settings, as :func:`~spidarknet.simulate.simulate_file` takes)."""
    t0 = time.perf_counter()
    run = (run or AgipdRunSettings()).checked()
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ConfigError(f"--count must be a whole number ≥ 1, got {count!r}")
    out_dir = os.path.abspath(str(out_dir))
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {out_dir}: the folder {parent} does not exist")
    full, layout = agipd_settings(settings, **options)
    sim = FrameSimulator(seed=seed, settings=full)
    kinds = allocate_kinds(int(count), _normalise_fractions(fractions), sim.rng)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        writer = _RunWriter(tmp, layout, run, int(count), full, np.random.default_rng([seed, 7]))
        counts, n_label = writer.fill(sim, kinds, chunk_frames, progress)
        writer.write_truth_attrs(seed, full)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return AgipdRunSummary(out_dir, int(count), writer.n_trains, counts, n_label, time.perf_counter() - t0)


def module_pixels(layout: AgipdLayout) -> np.ndarray:
    """For each module pixel (flat, 16 × 512 × 128) the assembled pixel it was placed on."""
    placed = layout.index.ravel()
    source_of = np.zeros(N_MODULES * MODULE_SHAPE[0] * MODULE_SHAPE[1], dtype=np.int64)
    source_of[placed[placed >= 0]] = np.flatnonzero(placed >= 0)
    return source_of


def to_modules(frames: np.ndarray, layout: AgipdLayout) -> np.ndarray:
    """Assembled frames (n, rows, columns) cut into the modules: (n, 16, 512, 128) float32."""
    n = len(frames)
    return frames.reshape(n, -1)[:, module_pixels(layout)].astype(np.float32).reshape(
        (n, N_MODULES) + MODULE_SHAPE)


class _RunWriter:
    """The module files of one run, their per-cell gains and bad pixels, and the truth file."""

    def __init__(self, folder: str, layout: AgipdLayout, run: AgipdRunSettings, count: int,
                 settings: SimulationSettings, rng: np.random.Generator):
        from extra_data.tests.mockdata import write_file
        from extra_data.tests.mockdata.detectors import AGIPDModule
        self.folder, self.layout, self.run, self.count = folder, layout, run, count
        self.n_trains = math.ceil(count / run.cells)
        per_train = np.full(self.n_trains, run.cells, dtype=np.uint64)
        per_train[-1] = count - run.cells * (self.n_trains - 1)
        energy_kev = settings.photon_energy_J / ELEMENTARY_CHARGE_C / 1000.0
        self.adu = run.adu_per_photon if run.adu_per_photon is not None else energy_kev
        self.paths = []
        for m in sorted(set(int(m) for m in run.modules)):
            path = os.path.join(folder, f"CORR-R{run.run_number:04d}-AGIPD{m:02d}-S00000.h5")
            name = f"{DETECTOR}/DET/{m}CH0" if run.legacy_names else f"{DETECTOR}/CORR/{m}CH0"
            module = AGIPDModule(name, raw=False, frames_per_train=per_train,
                                 **({} if run.legacy_names else {"channel_name": "output"}))
            write_file(path, [module], self.n_trains, firsttrain=run.first_train, chunksize=32,
                       format_version="1.2")
            self.paths.append((m, path, f"{name}:{'xtdf' if run.legacy_names else 'output'}"))
        self.rng = rng
        self.gain = 1.0 + run.gain_sigma * rng.standard_normal((run.cells, N_MODULES, 8, 2)).astype(np.float32)
        pixels = N_MODULES * MODULE_SHAPE[0] * MODULE_SHAPE[1]
        self.bad = (rng.random(pixels) < run.bad_pixel_fraction).reshape((N_MODULES,) + MODULE_SHAPE)
        self.source_of = module_pixels(layout)
        self.train_ids = run.first_train + np.arange(count) // run.cells
        self.cells = np.arange(count) % run.cells

    def modules_of(self, frames: np.ndarray, first: int) -> np.ndarray:
        """(n, 16, 512, 128) float32 keV-like ADU of assembled photon counts ``frames``."""
        n = len(frames)
        photons = frames.reshape(n, -1)[:, self.source_of].astype(np.float32)
        photons = photons.reshape((n, N_MODULES) + MODULE_SHAPE)
        if self.run.noise_photons > 0:
            photons += self.run.noise_photons * self.rng.standard_normal(photons.shape, dtype=np.float32)
        gain = self.gain[self.cells[first:first + n]]                       # (n, 16, 8, 2)
        gain = np.repeat(np.repeat(gain, _ASIC, axis=2), _ASIC, axis=3)      # (n, 16, 512, 128)
        data = photons * gain * np.float32(self.adu)
        if self.run.compression is not None:  # mantissa bits below the quantum compress away
            np.rint(data / np.float32(DATA_QUANTUM_ADU), out=data)
            data *= np.float32(DATA_QUANTUM_ADU)
        data[:, self.bad] = np.nan
        return data

    def fill(self, sim: FrameSimulator, kinds, chunk_frames: int, progress) -> tuple[dict, int]:
        counts: dict = {}
        truth_rows = []
        handles = [h5py.File(path, "r+") for _, path, _ in self.paths]
        try:
            for (m, _, source), handle in zip(self.paths, handles):
                self._write_mask(handle, f"INSTRUMENT/{source}/image/mask", m)
                if self.run.compression is not None:
                    self._compressed(handle, f"INSTRUMENT/{source}/image/data", np.float32, shuffle=True)
            for start in range(0, self.count, chunk_frames):
                chunk = kinds[start:start + chunk_frames]
                frames = np.empty((len(chunk),) + tuple(self.layout.shape), dtype=np.uint16)
                for i, kind in enumerate(chunk):
                    frames[i], truth, _ = sim.frame(kind)
                    truth_rows.append(truth)
                    counts[kind] = counts.get(kind, 0) + 1
                data = self.modules_of(frames, start)
                for (m, _, source), handle in zip(self.paths, handles):
                    handle[f"INSTRUMENT/{source}/image/data"][start:start + len(chunk)] = data[:, m]
                if progress is not None:
                    progress(len(chunk))
        finally:
            for handle in handles:
                handle.close()
        self._write_truth(truth_rows)
        return counts, int(sum(r["label"] for r in truth_rows))

    def _compressed(self, handle, name: str, dtype, shuffle: bool = False):
        """A new dataset ``name`` of every frame of a module, deflated at level 1: chunks of 32
        whole module frames, or :data:`COMPRESSED_CHUNK` when the run is written compressed."""
        del handle[name]
        chunks = ((min(COMPRESSED_CHUNK[0], self.count),) + COMPRESSED_CHUNK[1:] if self.run.compression
                  else (min(32, self.count),) + MODULE_SHAPE)
        return handle.create_dataset(name, shape=(self.count,) + MODULE_SHAPE, dtype=dtype, chunks=chunks,
                                     shuffle=shuffle, compression="gzip", compression_opts=1)

    def _write_mask(self, handle, name: str, module: int) -> None:
        """The bad pixels' bits in every frame (compressed: the same bits frame after frame)."""
        ds = self._compressed(handle, name, np.uint32)
        mask = np.where(self.bad[module], MASK_BAD, 0).astype(np.uint32)
        for start in range(0, self.count, 32):
            n = min(32, self.count - start)
            ds[start:start + n] = np.broadcast_to(mask, (n,) + MODULE_SHAPE)

    def _write_truth(self, rows: list) -> None:
        with h5py.File(os.path.join(self.folder, TRUTH_FILE), "w") as handle:
            for name in rows[0]:
                handle[f"truth/{name}"] = np.asarray([r[name] for r in rows])
            handle["truth/trainId"] = self.train_ids.astype(np.uint64)
            handle["truth/pulseId"] = self.cells.astype(np.uint64)

    def write_truth_attrs(self, seed: int, settings: SimulationSettings) -> None:
        from extra_geom import AGIPD_1MGeometry
        with h5py.File(os.path.join(self.folder, TRUTH_FILE), "a") as handle:
            attrs = handle["truth"].attrs
            attrs.update(settings.to_attrs())
            attrs.update({"seed": int(seed), "cells": self.run.cells, "adu_per_photon": self.adu,
                          "compression": self.run.compression or "none",
                          "valid_pixels": int(np.count_nonzero(self.layout.gap_mask())),
                          "gain_sigma": self.run.gain_sigma, "noise_photons": self.run.noise_photons,
                          "detector": "agipd1m", "label_rule": "single=1: one particle, "
                          f"{settings.label_range_nm[0]:g}-{settings.label_range_nm[1]:g} nm"})
        geometry = AGIPD_1MGeometry.from_quad_positions(quad_pos=[tuple(q) for q in DEFAULT_QUAD_POSITIONS_MM])
        geometry.write_crystfel_geom(os.path.join(self.folder, GEOM_FILE), clen=settings.distance_m,
                                     photon_energy=settings.photon_energy_J / ELEMENTARY_CHARGE_C,
                                     adu_per_ev=self.adu / (settings.photon_energy_J / ELEMENTARY_CHARGE_C))
