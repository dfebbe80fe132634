"""A measured-like pnCCD and beamline: what real frames have and ideal photon counts lack.

All of it is off by default (:data:`~spidarknet.simulate.settings.DEFAULT_SETTINGS`);
:data:`~spidarknet.simulate.settings.MEASURED_LIKE` turns on a realistic mix
(``simulate --measured-like``).  Each effect acts on the *written* pixels (with ``binning``
B, a written pixel is one readout channel; readout blocks are 128 detector columns wide, so
128 / B written ones).

Stray light (photons, Poisson, drawn apart from the particle's photons):

* **beamline scatter** around the beam: ``∝ (1 + (q / 0.1 nm⁻¹)²)⁻²``, flat inside the beam
  stop's q and falling as q⁻⁴ beyond it; its mean ``beamline_photons`` per frame on the valid
  pixels scales with the shot's fluence factor;
* **the injector's gas and water**: a diffuse ring, Gaussian in |q| about ``ring_q_inv_nm``
  (σ ``ring_width_inv_nm``), ``ring_photons`` per frame on average with a log-normal
  shot-to-shot strength (σ ``ring_sigma``, mean 1).  (Liquid water's own ring lies at
  ≈ 20 nm⁻¹, far beyond a pnCCD at 1.7 keV; this is the broad hump that gas and vapour
  leave inside the q range a detector of SPI sees.)

Both follow the true (drifting) beam centre.

The readout chain (``adu_per_photon`` > 0), per pixel and frame, in ADU::

    raw = photons · adu_per_photon · gain_pixel + hot_pixel_dark
          + common_mode[row, block] + column_offset[column, half] + read_noise
    raw = min(raw, saturation_adu)                 (flagged 0x2 in the per-frame mask)

* ``gain_pixel``: 1 + N(0, ``gain_sigma``) per pixel, fixed for the run; dead pixels 0;
* hot pixels: a dark signal of 2-50 photons' worth, the same in every frame;
* ``common_mode``: an offset N(0, ``common_mode_adu``) per frame for each row of each readout
  block (128 detector columns of one half), ``column_offset`` one of N(0,
  ``column_offset_adu``) per frame for each column of each half; read noise N(0,
  ``read_noise_adu``) per pixel;
* dead and hot pixels are flagged (CXI bit 0x1 in ``mask_shared``) with probability
  ``bad_pixels_masked``: the others are left in the data unmasked, as in real runs.

Then the facility's correction: each row of each block less its median, each column of each
half less its median, where the row estimate errs by N(0, ``common_mode_residual_adu``) (the
median cannot see an offset that varies along the line; it is biased where the pattern fills
a line), then ``photons = floor(raw / adu_per_photon + 1 - photon_threshold)`` clipped at 0:
a pixel counts one photon once its corrected signal reaches ``photon_threshold`` photons.
The correction assumes a flat gain.  Masked pixels then read 0 as before.

The beam centre drifts: ``centre_drift_px · sin(2π i / centre_drift_frames + φ)`` in x and in
y (random phases, detector pixels) at frame i, on top of the per-frame jitter; the file's
geometry keeps the nominal centre (as in a run whose centre moves unbeknownst), the truth
the true one.
"""

from __future__ import annotations

import math

import numpy as np

from spidarknet.core.scattering import pixel_q_inv_m
from spidarknet.simulate.detector import MASK_INVALID, PnCCD, sample_photons

#: detector columns per readout block (a pnCCD CAMEX chip reads 128 channels)
READOUT_BLOCK_COLUMNS = 128
#: hot pixels' dark signal, photons' worth (log-uniform between the two)
HOT_PIXEL_PHOTONS = (2.0, 50.0)
#: q (1/m) at which the beamline scatter turns from flat to q⁻⁴
BEAMLINE_KNEE_INV_M = 0.1e9

#: truth datasets written only with detector effects: name -> dtype
MEASURED_TRUTH_FIELDS = {"stray_photons": np.int32, "saturated_pixels": np.int32,
                         "written_photons": np.int64}


class DetectorEffects:
    """The measured-like effects of one run (see the module notes).

    ``geometry``: the written frames' (binned) geometry; ``binning``: detector pixels per
    written pixel along an axis; ``mask``: the written frames' CXI bits, to which the masked
    share of the bad pixels is added in place; ``seed``: a :class:`numpy.random.SeedSequence`
    of its own for the bad pixels, the drift's phases and every per-frame draw (noise, common
    mode, stray photons), so the frames made without effects stay as they were.
    """

    def __init__(self, settings, geometry: PnCCD, binning: int, mask: np.ndarray,
                 seed: np.random.SeedSequence):
        static_seq, frame_seq = seed.spawn(2)
        self.settings = s = settings
        self.geometry = geometry
        self.binning = int(binning)
        self.rng = np.random.default_rng(frame_seq)
        static = np.random.default_rng(static_seq)
        rows, cols = geometry.shape
        self.half_rows = max(1, min(rows, geometry.half_rows))
        width = max(1, READOUT_BLOCK_COLUMNS // self.binning)
        self.blocks = [(c, min(cols, c + width)) for c in range(0, cols, width)]
        self.phases = static.uniform(0.0, 2.0 * math.pi, 2)
        self.gain = self.hot_index = self.hot_adu = None
        if s.adu_per_photon > 0:
            self._bad_pixels(static, mask)

    def _bad_pixels(self, rng: np.random.Generator, mask: np.ndarray) -> None:
        """Gain map, hot and dead pixels; flag the masked share of the bad ones in ``mask``."""
        s = self.settings
        shape = self.geometry.shape
        gain = np.ones(shape, dtype=np.float32)
        if s.gain_sigma > 0:
            gain += (s.gain_sigma * rng.standard_normal(shape)).astype(np.float32)
            np.maximum(gain, 0.0, out=gain)
        good = np.flatnonzero(mask.ravel() == 0)
        n_hot, n_dead = int(s.hot_pixels), int(s.dead_pixels)
        chosen = rng.choice(good, size=min(good.size, n_hot + n_dead), replace=False)
        self.hot_index, dead = chosen[:n_hot], chosen[n_hot:]
        lo, hi = HOT_PIXEL_PHOTONS
        levels = np.exp(rng.uniform(math.log(lo), math.log(hi), self.hot_index.size))
        self.hot_adu = (levels * s.adu_per_photon).astype(np.float32)
        gain.ravel()[dead] = 0.0
        self.gain = gain * np.float32(s.adu_per_photon)
        flagged = chosen[rng.random(chosen.size) < s.bad_pixels_masked]
        mask.ravel()[flagged] |= MASK_INVALID
        self.dead_index = dead

    # -- the beam centre ------------------------------------------------------------------
    def drift_px(self, index: int) -> tuple[float, float]:
        """The slow drift (dx, dy) of the beam centre at frame ``index`` (detector pixels)."""
        s = self.settings
        if s.centre_drift_px <= 0:
            return (0.0, 0.0)
        angle = 2.0 * math.pi * index / s.centre_drift_frames
        return (s.centre_drift_px * math.sin(angle + self.phases[0]),
                s.centre_drift_px * math.sin(angle + self.phases[1]))

    # -- stray light ----------------------------------------------------------------------
    def stray_expected(self, centre_xy, fluence_factor: float, valid: np.ndarray) -> np.ndarray | None:
        """Expected stray photons per written pixel (float32) about the written-pixel beam
        centre ``centre_xy``, or None when there is none."""
        s = self.settings
        if s.beamline_photons <= 0 and s.ring_photons <= 0:
            return None
        g = self.geometry
        q = pixel_q_inv_m(g.shape, centre_xy, g.pixel_size_m, g.distance_m, g.wavelength_m)
        out = np.zeros(g.shape, dtype=np.float64)
        if s.beamline_photons > 0:
            profile = (1.0 + (q / BEAMLINE_KNEE_INV_M) ** 2) ** -2 * valid
            out += profile * (s.beamline_photons * fluence_factor / max(profile.sum(), 1e-300))
        if s.ring_photons > 0:
            strength = math.exp(s.ring_sigma * self.rng.normal() - 0.5 * s.ring_sigma ** 2)
            width = s.ring_width_inv_nm * 1e9
            profile = np.exp(-0.5 * ((q - s.ring_q_inv_nm * 1e9) / width) ** 2) * valid
            out += profile * (s.ring_photons * strength / max(profile.sum(), 1e-300))
        return out.astype(np.float32)

    def add_stray(self, counts: np.ndarray, centre_xy, fluence_factor: float,
                  valid: np.ndarray) -> int:
        """Add Poisson stray photons to ``counts`` (uint16, in place); returns how many."""
        expected = self.stray_expected(centre_xy, fluence_factor, valid)
        if expected is None:
            return 0
        stray = sample_photons(expected, self.rng)
        np.minimum(counts.astype(np.uint32) + stray, 65535, out=counts, casting="unsafe")
        return int(stray.sum(dtype=np.int64))

    # -- the readout chain ----------------------------------------------------------------
    def raw_adu(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The frame as the ADC gives it (float32 ADU, before any correction) and the map of
        saturated pixels (None without a full scale)."""
        s = self.settings
        rows, cols = counts.shape
        rng = self.rng
        adu = counts.astype(np.float32) * self.gain
        adu.ravel()[self.hot_index] += self.hot_adu
        if s.read_noise_adu > 0:
            adu += np.float32(s.read_noise_adu) * rng.standard_normal(counts.shape, dtype=np.float32)
        if s.common_mode_adu > 0:
            for c0, c1 in self.blocks:
                adu[:, c0:c1] += (s.common_mode_adu * rng.standard_normal((rows, 1))).astype(np.float32)
        if s.column_offset_adu > 0:
            for r0, r1 in self._halves(rows):
                adu[r0:r1] += (s.column_offset_adu * rng.standard_normal((1, cols))).astype(np.float32)
        saturated = None
        if s.saturation_adu > 0:
            saturated = adu >= np.float32(s.saturation_adu)
            np.minimum(adu, np.float32(s.saturation_adu), out=adu)
        return adu, saturated

    def _halves(self, rows: int) -> list[tuple[int, int]]:
        return [(0, self.half_rows), (self.half_rows, rows)] if self.half_rows < rows else [(0, rows)]

    def correct(self, adu: np.ndarray) -> np.ndarray:
        """The facility's correction of a raw frame (float32 ADU, changed in place): common
        mode of each row per block and of each column per half removed by medians (the row
        estimate off by the residual), then converted to photons (uint16) with the threshold."""
        s = self.settings
        rows = adu.shape[0]
        for c0, c1 in self.blocks:
            estimate = np.median(adu[:, c0:c1], axis=1, keepdims=True)
            if s.common_mode_residual_adu > 0:
                estimate += s.common_mode_residual_adu * self.rng.standard_normal((rows, 1))
            adu[:, c0:c1] -= estimate.astype(np.float32)
        if s.column_offset_adu > 0:
            for r0, r1 in self._halves(rows):
                adu[r0:r1] -= np.median(adu[r0:r1], axis=0, keepdims=True)
        photons = np.floor(adu / np.float32(s.adu_per_photon) + np.float32(1.0 - s.photon_threshold))
        np.clip(photons, 0, 65535, out=photons)
        return photons.astype(np.uint16)

    def apply(self, counts: np.ndarray, centre_xy, fluence_factor: float,
              valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """Stray light and the readout chain on one frame of photon counts (uint16, written
        pixels; ``valid`` bool): (frame as written, saturated pixels or None, truth extras)."""
        frame = counts.copy()
        stray = self.add_stray(frame, centre_xy, fluence_factor, valid)
        saturated = None
        if self.settings.adu_per_photon > 0:
            adu, saturated = self.raw_adu(frame)
            frame = self.correct(adu)
            frame *= valid
        n_saturated = 0 if saturated is None else int(np.count_nonzero(saturated & valid))
        extras = {"stray_photons": stray, "saturated_pixels": n_saturated,
                  "written_photons": int(frame.sum(dtype=np.int64))}
        return frame, saturated, extras
