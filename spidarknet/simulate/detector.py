"""The simulated pnCCD: geometry, mask and photon counting.

Geometry of the LCLS AMO pnCCD as used for the 2018 PR772 experiment: 1024 x 1024 pixels
of 75 µm, 125 mm from the interaction point, 1.7 keV photons.  The detector is stored as
two 512 x 1024 halves (rows 0-511 and 512-1023).  :meth:`PnCCD.scaled` makes a detector
of another shape, pixel size, distance or energy with the same layout (two halves, the gap
and the beam stop at their physical sizes); :meth:`PnCCD.binned`, :func:`bin_mask` and
:func:`bin_sum` describe the frames of B x B summed pixels.

Simplifications (documented, deliberate):

* The physical gap between the two halves is represented by a band of masked rows
  (:attr:`PnCCD.gap_rows`, CXI bit 0x200) inside a regular pixel grid; the pixel grid itself
  stays regular, so the pixel-to-q mapping has no jump at the gap.
* The central hole / beam stop is a disc of :attr:`PnCCD.beamstop_radius_px` pixels around
  the nominal beam centre (CXI bit 0x1), fixed while the beam centre jitters per shot.
* A few random dead/hot pixels (bit 0x1).  ``half_detector``: the second half (rows
  512-1023) is dead (bit 0x1), as only one half worked in the 2018 PR772 run.
* Binned frames: a written pixel carries the OR of its detector pixels' mask bits, so one
  bad pixel excludes the whole sum.
* Masked pixels read 0.  Counts are ideal photon counts (no gain, no read noise, no
  charge sharing), clipped to the uint16 range, unless the measured-like readout of
  :mod:`spidarknet.simulate.measured` is turned on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from spidarknet.simulate.physics import ELEMENTARY_CHARGE_C, wavelength_m as _wavelength_m

#: CXI pixel-mask bits
MASK_INVALID = 0x1
MASK_SATURATED = 0x2
MASK_GAP = 0x200

#: photon sampling: 4 x 4 blocks; frames with ≥ _SPLIT_LIMIT expected photons draw pixels
#: with λ ≥ _BRIGHT_PIXEL one by one
_BLOCK = 4
_SPLIT_LIMIT = 20_000
_BRIGHT_PIXEL = 0.05


@dataclass(frozen=True)
class PnCCD:
    """Geometry of the simulated pnCCD (SI units; pixel-index coordinates for the centre).

    ``centre_xy`` is the nominal beam position (x = column, y = row) in pixel-index
    coordinates, where pixel ``i``'s centre has coordinate ``i``: (511.5, 511.5) lies between
    the four central pixels.  ``gap_rows`` is the range of rows masked as the gap.
    """

    shape: tuple = (1024, 1024)
    pixel_size_m: float = 75e-6
    distance_m: float = 0.125
    photon_energy_J: float = 1700.0 * ELEMENTARY_CHARGE_C
    gap_rows: range = range(506, 518)
    centre_xy: tuple = (511.5, 511.5)
    beamstop_radius_px: float = 25.0
    half_rows: int = 512

    @property
    def wavelength_m(self) -> float:
        """λ = h c / E (m); ≈ 7.293e-10 m at 1.7 keV."""
        return _wavelength_m(self.photon_energy_J)

    @property
    def corner_position_m(self) -> tuple:
        """CXI ``corner_position`` (x, y, z) of the outer corner of pixel (0, 0), metres,
        with the beam (x = y = 0) at the nominal centre: ``cx = -corner_x/pixel - 0.5``."""
        cx, cy = self.centre_xy
        return (-(cx + 0.5) * self.pixel_size_m, -(cy + 0.5) * self.pixel_size_m, self.distance_m)

    @classmethod
    def scaled(cls, *, shape=(1024, 1024), pixel_size_m: float = 75e-6, distance_m: float = 0.125,
               photon_energy_J: float = 1700.0 * ELEMENTARY_CHARGE_C,
               centre_xy=None) -> "PnCCD":
        """A pnCCD-like detector of any shape and pixel size: two halves of ``rows // 2``
        rows, the gap (0.9 mm) and the beam stop (1.875 mm radius) kept at their physical
        sizes, the beam in the middle unless ``centre_xy`` says otherwise.  The default
        arguments give :data:`PNCCD` exactly."""
        rows, cols = int(shape[0]), int(shape[1])
        scale = _PNCCD_PIXEL_M / pixel_size_m
        n_gap = max(1, int(round(_PNCCD_GAP_ROWS * scale)))
        half = rows // 2
        centre = ((cols - 1) / 2.0, (rows - 1) / 2.0) if centre_xy is None else centre_xy
        return cls(shape=(rows, cols), pixel_size_m=float(pixel_size_m),
                   distance_m=float(distance_m), photon_energy_J=float(photon_energy_J),
                   gap_rows=range(half - n_gap // 2, half - n_gap // 2 + n_gap),
                   centre_xy=(float(centre[0]), float(centre[1])),
                   beamstop_radius_px=_PNCCD_BEAMSTOP_PX * scale, half_rows=half)

    def binned(self, binning: int) -> "PnCCD":
        """The geometry of frames of ``binning`` x ``binning`` summed pixels: the same
        detector plane, pixels ``binning`` times larger, the centre in the new pixel-index
        coordinates (``(c + 0.5) / binning - 0.5``)."""
        b = int(binning)
        if b == 1:
            return self
        rows, cols = self.shape
        cx, cy = self.centre_xy
        gap = self.gap_rows
        return PnCCD(shape=(rows // b, cols // b), pixel_size_m=self.pixel_size_m * b,
                     distance_m=self.distance_m, photon_energy_J=self.photon_energy_J,
                     gap_rows=range(gap.start // b, -(-gap.stop // b)),
                     centre_xy=((cx + 0.5) / b - 0.5, (cy + 0.5) / b - 0.5),
                     beamstop_radius_px=self.beamstop_radius_px / b, half_rows=self.half_rows // b)


#: the detector the simulator writes
PNCCD = PnCCD()
_PNCCD_PIXEL_M = PNCCD.pixel_size_m
_PNCCD_GAP_ROWS = len(PNCCD.gap_rows)
_PNCCD_BEAMSTOP_PX = PNCCD.beamstop_radius_px


def bin_mask(mask: np.ndarray, binning: int) -> np.ndarray:
    """The mask of ``binning`` x ``binning``-summed frames: each written pixel carries the
    OR of its detector pixels' CXI bits (one bad detector pixel excludes the sum)."""
    b = int(binning)
    if b == 1:
        return mask
    rows, cols = mask.shape
    blocks = mask.reshape(rows // b, b, cols // b, b)
    return np.bitwise_or.reduce(np.bitwise_or.reduce(blocks, axis=3), axis=1)


def unbin(image: np.ndarray, binning: int) -> np.ndarray:
    """Each written pixel repeated over its ``binning`` x ``binning`` detector pixels."""
    b = int(binning)
    if b == 1:
        return image
    return np.repeat(np.repeat(image, b, axis=0), b, axis=1)


def bin_sum(image: np.ndarray, binning: int) -> np.ndarray:
    """Sum of ``binning`` x ``binning`` blocks (float32), the written frame of a binned detector."""
    b = int(binning)
    if b == 1:
        return image
    rows, cols = image.shape
    out = cv2.resize(image, (cols // b, rows // b), interpolation=cv2.INTER_AREA)
    out *= np.float32(b * b)
    return out


def build_mask(geometry: PnCCD = PNCCD, *, half_detector: bool = False,
               rng: np.random.Generator | None = None, n_bad_pixels: int = 24) -> np.ndarray:
    """The shared pixel mask (uint32, CXI bits): gap rows 0x200; beam stop, random dead/hot
    pixels and (``half_detector``) the dead second half 0x1."""
    rows, cols = geometry.shape
    mask = np.zeros((rows, cols), dtype=np.uint32)
    mask[geometry.gap_rows.start:geometry.gap_rows.stop, :] |= MASK_GAP
    cx, cy = geometry.centre_xy
    yy, xx = np.ogrid[:rows, :cols]
    stop = (xx - cx) ** 2 + (yy - cy) ** 2 <= geometry.beamstop_radius_px ** 2
    mask[stop] |= MASK_INVALID
    if half_detector:
        mask[geometry.half_rows:, :] |= MASK_INVALID
    if rng is not None and n_bad_pixels > 0:
        flat = rng.choice(rows * cols, size=n_bad_pixels, replace=False)
        mask.ravel()[flat] |= MASK_INVALID
    return mask


def sample_photons(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon counts (uint16, clipped at 65535) for an expected-photon map λ.

    Exactly independent Poisson(λ_j) per pixel, drawn cheaply for sparse frames: the total
    N ~ Poisson(Σλ) is drawn and each photon is placed with probability λ_j / Σλ, first
    into a 4 x 4 block (by the block sums), then onto one of its 16 pixels.  In bright
    frames (Σλ ≥ 20,000) pixels with λ ≥ 0.05 are drawn one by one and only the dim rest
    this way.
    """
    expected = np.ascontiguousarray(expected, dtype=np.float32)
    rows, cols = expected.shape
    if rows % _BLOCK or cols % _BLOCK:
        return _sample_dense(expected, rng)
    block_shape = (cols // _BLOCK, rows // _BLOCK)
    blocks = cv2.resize(expected, block_shape, interpolation=cv2.INTER_AREA).ravel()
    total = float(blocks.sum(dtype=np.float64)) * _BLOCK * _BLOCK
    if total <= 0.0:
        return np.zeros(expected.shape, dtype=np.uint16)
    if total < _SPLIT_LIMIT:
        return _sample_sparse(expected, blocks, rng)
    flat = expected.ravel()
    bright = np.flatnonzero(flat >= _BRIGHT_PIXEL)
    dim = flat.copy()
    dim[bright] = 0.0
    dim = dim.reshape(rows, cols)
    dim_blocks = cv2.resize(dim, block_shape, interpolation=cv2.INTER_AREA).ravel()
    out = _sample_sparse(dim, dim_blocks, rng).ravel()
    counts = rng.poisson(flat[bright])
    np.minimum(counts, 65535, out=counts)
    out[bright] = counts
    return out.reshape(rows, cols)


def _sample_sparse(expected: np.ndarray, block_means: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Place N ~ Poisson(Σλ) photons: block by the block sums, then pixel in the block."""
    rows, cols = expected.shape
    b = _BLOCK
    cumulative = np.cumsum(block_means, dtype=np.float64)
    out = np.zeros(rows * cols, dtype=np.uint16)
    if cumulative[-1] <= 0:
        return out.reshape(rows, cols)
    n = int(rng.poisson(cumulative[-1] * b * b))
    block = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    np.minimum(block, block_means.size - 1, out=block)
    block_row, block_col = np.divmod(block, cols // b)
    inner = expected.reshape(rows // b, b, cols // b, b)[block_row, :, block_col, :]
    inner = np.cumsum(inner.reshape(n, b * b), axis=1, dtype=np.float64)
    u = rng.random(n) * inner[:, -1]
    sub = np.count_nonzero(inner <= u[:, None], axis=1)
    np.minimum(sub, b * b - 1, out=sub)
    sub_row, sub_col = np.divmod(sub, b)
    pixel = (block_row * b + sub_row) * cols + block_col * b + sub_col
    where, counts = np.unique(pixel, return_counts=True)
    out[where] = np.minimum(counts, 65535)
    return out.reshape(rows, cols)


def _sample_dense(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    counts = rng.poisson(expected)
    np.minimum(counts, 65535, out=counts)
    return counts.astype(np.uint16)
