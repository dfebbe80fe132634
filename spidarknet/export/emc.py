"""Selected frames as Dragonfly EMC input: sparse ``photons.emc``, ``detector.h5``, a blacklist.

``photons.emc`` — Dragonfly's sparse binary photon file, as its readers define it
(duaneloh/Dragonfly ``src/dataset.c`` ``parse_dataset``; the ``dragonfly-spi`` package's
``src/emcfile.c`` and ``emcfile.pyx`` ``EMCReader``).  All numbers are little-endian 32-bit
signed integers::

    header   1024 bytes: num_data, num_pix, frame type (0 = sparse), then zeros
    ones     num_data values: pixels with exactly one photon, per frame
    multi    num_data values: pixels with two or more photons, per frame
    place_ones   sum(ones) pixel indices, frame after frame
    place_multi  sum(multi) pixel indices, frame after frame
    count_multi  sum(multi) photon counts, matching place_multi

A pixel index is ``row * width + column`` of the full detector frame, so ``num_pix`` is
``rows * columns`` and a frame's photons are ``np.bincount`` of its indices.

``detector.h5`` — Dragonfly's HDF5 detector (read by ``parse_h5detector`` in
``src/detector.c`` and by ``dragonfly.Detector``): per pixel, in the same order, ``qx, qy,
qz`` (float64, voxel units), ``corr`` (solid angle × polarisation), ``mask`` (uint8: 0 good,
1 good but left out of orientation search, 2 bad); scalars ``detd`` (detector distance in
pixel units) and ``ewald_rad`` (Ewald-sphere radius in voxels).  Built as Dragonfly's
``utils/make_detector.py`` builds it: with the pixel's position ``(x, y)`` relative to the
beam and ``L = sqrt(x² + y² + detd²)``, ``q = ewald_rad · (x/L, y/L, detd/L − 1)`` and for
x-polarised light ``corr = detd/L³ · (1 − x²/L²)``.  Positions come from the frames'
geometry in SI units: ``x = (column − centre_x) · x_pixel_size``, ``y = (row − centre_y) ·
y_pixel_size``, all divided by ``x_pixel_size`` (Dragonfly's length unit is one pixel);
``ewald_rad`` defaults to ``detd`` as in Dragonfly's ``read_config.get_detector_config``.

Reduced detectors (``binning``, ``q_max_inv_nm``; :class:`PixelReduction`): EMC on full
pnCCD frames is far too costly on a CPU, so frames can be summed over ``B × B`` pixels and
cropped to the binned pixels whose ``|q|`` lies below ``q_max``.  The photons file then
counts the kept binned pixels only (pixel ``t`` of ``photons.emc`` is ``keep[t]``, a flat
index ``row * columns + column`` of the binned frame), and ``detector.h5`` describes exactly
those pixels (its ``pixel_index`` dataset is ``keep``; attributes ``binning``,
``frame_shape`` of the binned frame, ``q_max_inv_nm``).  A binned pixel is usable when all
its ``B × B`` pixels are; its centre is the centre of its pixels, so the beam centre in
binned pixels is ``(c − (B − 1) / 2) / B``; its size is ``B`` pixel sizes.

``blacklist.dat`` — one ``0`` or ``1`` per line (Dragonfly's ``blacklist_file``, read by
``gen_blacklist`` in ``src/dataset.c``), one line per frame of the hit list in the order of
``frames.csv``; 1 = excluded (not selected).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spidarknet.core.errors import ConfigError, InputError, OutputError
from spidarknet.core.outputs import staged_dir
from spidarknet.core.scattering import pixel_q_inv_m
from spidarknet.export.interchange import frame_file
from spidarknet.frames.euxfel import ID_COLUMNS, EuXFELRun, recorded_run_options, sources_of_keys
from spidarknet.frames.source import Geometry, GeometryOverrides, group_keys, open_h5, reading
from spidarknet.hits import HitList

HEADER_BYTES = 1024
SPARSE = 0
INT32_MAX = np.iinfo(np.int32).max
POLARIZATIONS = ("x", "y", "none")


# -- the photons file ----------------------------------------------------------------------------

class EmcWriter:
    """Stream frames into a sparse ``photons.emc``.

    The counts per frame precede all indices in the file, so the index arrays go to three
    scratch files beside ``path`` while frames arrive and are appended after the header on
    :meth:`close`; memory stays flat whatever the number of frames.
    """

    def __init__(self, path: str | os.PathLike, num_pix: int):
        if not 0 < num_pix <= INT32_MAX:
            raise OutputError(f"a frame of {num_pix} pixels does not fit Dragonfly's 32-bit pixel index")
        self.path = Path(path)
        self.num_pix = int(num_pix)
        self.ones: list[int] = []
        self.multi: list[int] = []
        self.photons = 0
        self._parts = [self.path.with_name(f".{self.path.name}.{part}") for part in ("po", "pm", "cm")]
        self._handles = [open(p, "wb") for p in self._parts]

    @property
    def num_data(self) -> int:
        return len(self.ones)

    def write_frame(self, photons: np.ndarray) -> None:
        """Append one frame: non-negative integer photon counts, ``num_pix`` of them."""
        flat = np.asarray(photons).ravel()
        if flat.size != self.num_pix:
            raise ValueError(f"frame of {flat.size} pixels, the file has {self.num_pix}")
        place_ones = np.flatnonzero(flat == 1).astype("<i4")
        place_multi = np.flatnonzero(flat > 1).astype("<i4")
        count_multi = flat[place_multi].astype("<i4")
        for handle, array in zip(self._handles, (place_ones, place_multi, count_multi)):
            array.tofile(handle)
        self.ones.append(len(place_ones))
        self.multi.append(len(place_multi))
        self.photons += len(place_ones) + int(count_multi.sum(dtype=np.int64))

    def close(self) -> None:
        """Write the header and counts, then the index arrays; remove the scratch files."""
        for handle in self._handles:
            handle.close()
        header = np.zeros(HEADER_BYTES // 4, dtype="<i4")
        header[:3] = (self.num_data, self.num_pix, SPARSE)
        with open(self.path, "wb") as out:
            header.tofile(out)
            np.asarray(self.ones, dtype="<i4").tofile(out)
            np.asarray(self.multi, dtype="<i4").tofile(out)
            for part in self._parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        self.discard_parts()

    def discard_parts(self) -> None:
        for handle in self._handles:
            handle.close()
        for part in self._parts:
            part.unlink(missing_ok=True)


def to_photons(data: np.ndarray, valid: np.ndarray, adu_per_photon: float | None = None) -> np.ndarray:
    """Integer photons per pixel: ``data / adu_per_photon`` rounded to the nearest integer
    (halves to even), 0 where ``valid`` is False, where the value is negative or not finite."""
    values = np.asarray(data, dtype=np.float64)
    if adu_per_photon is not None:
        values = values / adu_per_photon
    photons = np.rint(values)
    keep = valid & np.isfinite(photons) & (photons > 0)
    photons = np.where(keep, photons, 0.0)
    if photons.size and photons.max() > INT32_MAX:
        raise InputError(f"a pixel holds {photons.max():.3g} photons, more than Dragonfly's 32-bit counts "
                         "take; is --adu-per-photon right?")
    return photons.astype(np.int32)


# -- the detector file ---------------------------------------------------------------------------

@dataclass
class DragonflyDetector:
    """Per-pixel arrays of a Dragonfly detector file, in photons-file pixel order."""

    qx: np.ndarray
    qy: np.ndarray
    qz: np.ndarray
    corr: np.ndarray
    mask: np.ndarray       # uint8: 0 good, 2 bad
    detd: float            # detector distance in pixel units (of x_pixel_size)
    ewald_rad: float       # voxels
    attrs: dict = field(default_factory=dict)
    pixel_index: np.ndarray | None = None   # flat index in the (binned) frame of each pixel

    def write(self, path: str | os.PathLike) -> None:
        import h5py
        with h5py.File(path, "w") as f:
            for name in ("qx", "qy", "qz", "corr"):
                f.create_dataset(name, data=getattr(self, name).astype(np.float64))
            f.create_dataset("mask", data=self.mask.astype(np.uint8))
            if self.pixel_index is not None:
                f.create_dataset("pixel_index", data=self.pixel_index.astype(np.int64))
            f["detd"] = float(self.detd)
            f["ewald_rad"] = float(self.ewald_rad)
            for key, value in self.attrs.items():
                f.attrs[key] = value


def dragonfly_detector(frame_shape: tuple[int, int], geometry: Geometry, usable: np.ndarray | None = None,
                       *, ewald_rad: float | None = None, polarization: str = "x",
                       keep: np.ndarray | None = None) -> DragonflyDetector:
    """The Dragonfly detector of frames of ``frame_shape`` with ``geometry`` (SI units).

    ``usable`` (bool, ``frame_shape``, True = good) becomes mask 0, the rest mask 2.
    ``ewald_rad`` in voxels defaults to the distance in pixels (one voxel per pixel at the
    detector centre).  ``polarization`` is the beam's: ``x`` (horizontal, XFELs), ``y`` or
    ``none`` (unpolarised average).  ``keep`` (flat pixel indices, ascending) restricts the
    file to those pixels, in that order (see :class:`PixelReduction`).
    """
    if geometry.distance_m is None or geometry.pixel_size_m is None:
        raise InputError("a Dragonfly detector file needs the detector distance and pixel size; the files "
                         "do not say them: give --distance and --pixel-size (metres)")
    if polarization not in POLARIZATIONS:
        raise InputError(f"polarization {polarization!r}: use one of {', '.join(POLARIZATIONS)}")
    rows, cols = frame_shape
    px, py = geometry.pixel_size_m
    cx, cy = geometry.centre_px
    detd = geometry.distance_m / px
    radius = detd if ewald_rad is None else float(ewald_rad)
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"the Ewald radius must be a positive number of voxels, got {ewald_rad}")
    row, col = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64),
                           indexing="ij")
    x = (col - cx).ravel()                      # in units of x_pixel_size, Dragonfly's length unit
    y = ((row - cy) * (py / px)).ravel()
    length = np.sqrt(x * x + y * y + detd * detd)
    qx, qy, qz = radius * x / length, radius * y / length, radius * (detd / length - 1.0)
    solid = detd / length ** 3
    if polarization == "x":
        corr = solid * (1.0 - (x / length) ** 2)
    elif polarization == "y":
        corr = solid * (1.0 - (y / length) ** 2)
    else:
        corr = solid * (1.0 - (x * x + y * y) / (2.0 * length * length))
    mask = np.zeros(rows * cols, dtype=np.uint8)
    if usable is not None:
        mask[~np.asarray(usable, dtype=bool).ravel()] = 2
    if keep is not None:
        keep = np.asarray(keep, dtype=np.int64)
        qx, qy, qz, corr, mask = qx[keep], qy[keep], qz[keep], corr[keep], mask[keep]
    attrs = {"distance_m": geometry.distance_m, "x_pixel_size_m": px, "y_pixel_size_m": py,
             "centre_x_px": cx, "centre_y_px": cy, "polarization": polarization,
             "frame_shape": [int(rows), int(cols)],
             "pixel_order": "row * columns + column of the source frames",
             "written_by": "spidarknet export-emc"}
    if geometry.wavelength_m is not None:
        attrs["wavelength_m"] = geometry.wavelength_m
    return DragonflyDetector(qx, qy, qz, corr, mask, detd, radius, attrs,
                             pixel_index=None if keep is None else keep)


# -- reducing the detector: binning and a q crop ---------------------------------------------------

@dataclass
class PixelReduction:
    """Source frames summed over ``binning × binning`` pixels, then only the binned pixels
    with ``|q| < q_max_inv_nm`` kept (all of them when it is ``None``).

    ``pixel_map`` gives, per source pixel (flat, ``row * columns + column``), its pixel in
    the photons file or -1 (cropped, or in the rows/columns that do not fill a bin).
    """

    frame_shape: tuple[int, int]          # source frames
    binning: int
    q_max_inv_nm: float | None
    binned_shape: tuple[int, int]
    geometry: Geometry                    # of the binned frames (SI units, binned pixels)
    usable: np.ndarray                    # bool, binned_shape: all B x B source pixels usable
    keep: np.ndarray                      # int64, flat indices of the binned frame kept, ascending
    pixel_map: np.ndarray                 # int64, per source pixel

    def __post_init__(self):
        self._sources = np.flatnonzero(self.pixel_map >= 0)
        self._targets = self.pixel_map[self._sources]

    @property
    def num_pix(self) -> int:
        return int(len(self.keep))

    @property
    def trivial(self) -> bool:
        return self.binning == 1 and self.q_max_inv_nm is None

    def apply(self, photons: np.ndarray) -> np.ndarray:
        """Photons of one source frame (any shape, ``frame_shape`` pixels) -> the kept pixels."""
        flat = np.asarray(photons).ravel()
        return np.bincount(self._targets, weights=flat[self._sources],
                           minlength=self.num_pix).astype(np.int64)

    def apply_sparse(self, index: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """A sparse source frame (flat pixel indices, photons there) -> the kept pixels."""
        target = self.pixel_map[index]
        inside = target >= 0
        return np.bincount(target[inside], weights=counts[inside], minlength=self.num_pix).astype(np.int64)

    def describe(self) -> dict:
        return {"binning": self.binning, "q_max_inv_nm": self.q_max_inv_nm,
                "source_frame_shape": list(self.frame_shape), "binned_shape": list(self.binned_shape),
                "num_pix": self.num_pix}


def pixel_q_inv_nm(shape: tuple[int, int], geometry: Geometry) -> np.ndarray:
    """|q| (nm⁻¹, ``4π sin θ / λ``) at the centre of every pixel of frames of ``shape``."""
    if geometry.distance_m is None or geometry.pixel_size_m is None or geometry.wavelength_m is None:
        raise InputError("q per pixel needs the detector distance, pixel size and wavelength; the files "
                         "do not say them all: give --distance, --pixel-size (metres) and the wavelength")
    return pixel_q_inv_m(shape, geometry.centre_px, geometry.pixel_size_m, geometry.distance_m,
                         geometry.wavelength_m) * 1e-9


def make_reduction(frame_shape: tuple[int, int], geometry: Geometry, usable: np.ndarray | None = None,
                   *, binning: int = 1, q_max_inv_nm: float | None = None) -> PixelReduction:
    """The :class:`PixelReduction` of frames of ``frame_shape`` and ``geometry`` (SI units)."""
    binning = int(binning)
    if binning < 1:
        raise ConfigError(f"--binning must be a whole number >= 1, got {binning}")
    if q_max_inv_nm is not None and not q_max_inv_nm > 0:
        raise ConfigError(f"--q-max must be positive (nm⁻¹), got {q_max_inv_nm}")
    rows, cols = (int(v) for v in frame_shape)
    brows, bcols = rows // binning, cols // binning
    if brows < 1 or bcols < 1:
        raise InputError(f"--binning {binning} is larger than the {rows} x {cols} frames")
    if usable is None:
        usable = np.ones((rows, cols), dtype=bool)
    usable = np.asarray(usable, dtype=bool)
    binned_usable = usable[:brows * binning, :bcols * binning].reshape(
        brows, binning, bcols, binning).all(axis=(1, 3))
    geo = geometry
    if binning > 1:
        from dataclasses import replace
        shift = (binning - 1) / 2.0
        geo = replace(geometry, centre_px=((geometry.centre_px[0] - shift) / binning,
                                           (geometry.centre_px[1] - shift) / binning),
                      pixel_size_m=None if geometry.pixel_size_m is None else
                      (geometry.pixel_size_m[0] * binning, geometry.pixel_size_m[1] * binning))
    if q_max_inv_nm is None:
        keep = np.arange(brows * bcols, dtype=np.int64)
    else:
        keep = np.flatnonzero(pixel_q_inv_nm((brows, bcols), geo).ravel() < q_max_inv_nm).astype(np.int64)
        if len(keep) == 0:
            raise InputError(f"no pixel lies below --q-max {q_max_inv_nm:g} nm⁻¹; raise it")
    slot = np.full(brows * bcols, -1, dtype=np.int64)
    slot[keep] = np.arange(len(keep))
    row, col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    inside = (row < brows * binning) & (col < bcols * binning)
    binned = np.where(inside, (row // binning) * bcols + col // binning, 0)
    pixel_map = np.where(inside, slot[binned], -1).ravel()
    return PixelReduction((rows, cols), binning, None if q_max_inv_nm is None else float(q_max_inv_nm),
                          (brows, bcols), geo, binned_usable, keep, pixel_map)


def reduced_detector(reduction: PixelReduction, *, ewald_rad: float | None = None,
                     polarization: str = "x") -> DragonflyDetector:
    """The Dragonfly detector of the kept pixels of ``reduction``."""
    det = dragonfly_detector(reduction.binned_shape, reduction.geometry, reduction.usable,
                             ewald_rad=ewald_rad, polarization=polarization,
                             keep=None if reduction.q_max_inv_nm is None else reduction.keep)
    det.attrs.update({"binning": reduction.binning, "source_frame_shape": list(reduction.frame_shape)})
    if reduction.q_max_inv_nm is not None:
        det.attrs["q_max_inv_nm"] = reduction.q_max_inv_nm
        det.attrs["pixel_order"] = "pixel_index: row * columns + column of the binned frames"
    elif reduction.binning > 1:
        det.attrs["pixel_order"] = "row * columns + column of the binned frames"
    return det


# -- reading a photons file back ---------------------------------------------------------------------

class EmcReader:
    """Frames of a sparse ``photons.emc`` (the format above), read lazily from a memory map."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            header = np.fromfile(self.path, dtype="<i4", count=HEADER_BYTES // 4)
        except OSError as exc:
            raise InputError(f"cannot read the photons file {self.path}: {exc}") from None
        if header.size < 3 or header[2] != SPARSE:
            raise InputError(f"{self.path} is not a sparse Dragonfly photons file (header {header[:3]})")
        self.num_data, self.num_pix = int(header[0]), int(header[1])
        body = np.memmap(self.path, dtype="<i4", mode="r", offset=HEADER_BYTES)
        n = self.num_data
        self.ones = np.array(body[:n], dtype=np.int64)
        self.multi = np.array(body[n:2 * n], dtype=np.int64)
        n1, nm = int(self.ones.sum()), int(self.multi.sum())
        if body.size != 2 * n + n1 + 2 * nm:
            raise InputError(f"{self.path} is truncated or corrupt: its length disagrees with its counts; "
                             "export it again")
        self._place_ones = body[2 * n:2 * n + n1]
        self._place_multi = body[2 * n + n1:2 * n + n1 + nm]
        self._count_multi = body[2 * n + n1 + nm:]
        self._o = np.concatenate([[0], np.cumsum(self.ones)])
        self._m = np.concatenate([[0], np.cumsum(self.multi)])

    def __len__(self) -> int:
        return self.num_data

    def sparse(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat pixel indices, photons there) of frame ``d``."""
        ones = np.asarray(self._place_ones[self._o[d]:self._o[d + 1]], dtype=np.int64)
        multi = np.asarray(self._place_multi[self._m[d]:self._m[d + 1]], dtype=np.int64)
        counts = np.asarray(self._count_multi[self._m[d]:self._m[d + 1]], dtype=np.int64)
        return np.concatenate([ones, multi]), np.concatenate([np.ones(len(ones), dtype=np.int64), counts])

    def dense(self, d: int) -> np.ndarray:
        index, counts = self.sparse(d)
        frame = np.zeros(self.num_pix, dtype=np.int64)
        np.add.at(frame, index, counts)
        return frame

    def powder(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Photons per pixel summed over frames ``rows`` (default all), float64 ``num_pix``."""
        total = np.zeros(self.num_pix, dtype=np.float64)
        for d in (range(self.num_data) if rows is None else rows):
            index, counts = self.sparse(int(d))
            total += np.bincount(index, weights=counts, minlength=self.num_pix)
        return total


def reduce_photons(reader: EmcReader, reduction: PixelReduction, path: str | os.PathLike,
                   rows: np.ndarray | None = None, on_frames: Callable[[int], None] | None = None) -> EmcWriter:
    """Write frames ``rows`` (default all) of ``reader`` through ``reduction`` into a new
    photons file ``path``; returns the closed writer (its counts)."""
    if reader.num_pix != reduction.frame_shape[0] * reduction.frame_shape[1]:
        raise InputError(f"{reader.path} has {reader.num_pix} pixels per frame, the detector "
                         f"{reduction.frame_shape[0]} x {reduction.frame_shape[1]}")
    writer = EmcWriter(path, reduction.num_pix)
    try:
        for d in (range(reader.num_data) if rows is None else rows):
            writer.write_frame(reduction.apply_sparse(*reader.sparse(int(d))))
            if on_frames is not None:
                on_frames(1)
        writer.close()
    except BaseException:
        writer.discard_parts()
        raise
    return writer


@dataclass
class ExportFolder:
    """An ``export-emc`` folder read back: what its photons file and detector describe."""

    path: Path
    meta: dict                    # export.json ({} when absent)
    num_data: int                 # frames in photons.emc
    num_pix: int                  # pixels per frame in photons.emc
    frame_shape: tuple[int, int]  # of the frames the pixels come from (binned frames if binned)
    geometry: Geometry            # of those frames
    usable: np.ndarray | None     # bool frame_shape; None when the pixels are a q crop
    binning: int
    q_max_inv_nm: float | None
    ewald_rad: float
    polarization: str

    @property
    def cropped(self) -> bool:
        return self.q_max_inv_nm is not None

    @property
    def photons(self) -> Path:
        return self.path / "photons.emc"

    @property
    def detector(self) -> Path:
        return self.path / "detector.h5"


def read_export(folder: str | os.PathLike) -> ExportFolder:
    """Read the photons file's header, ``detector.h5`` and ``export.json`` of ``folder``."""
    import h5py
    folder = Path(folder)
    for name in ("photons.emc", "detector.h5"):
        if not (folder / name).is_file():
            raise InputError(f"{folder} holds no {name}: give an 'spidarknet export-emc' folder or a hit list")
    meta = {}
    if (folder / "export.json").is_file():
        try:
            meta = json.loads((folder / "export.json").read_text())
        except ValueError as exc:
            raise InputError(f"{folder}/export.json is not valid JSON ({exc}); export the frames again") from None
    header = np.fromfile(folder / "photons.emc", dtype="<i4", count=3)
    if header.size < 3:
        raise InputError(f"{folder}/photons.emc is empty or truncated; export the frames again")
    with open_h5(str(folder / "detector.h5")) as f, reading(folder / "detector.h5", "the detector file",
                                                             "export the frames again"):
        attrs = dict(f.attrs)
        num_pix = int(f["qx"].shape[0])
        mask = f["mask"][()]
        ewald_rad = float(f["ewald_rad"][()])
    needed = ("distance_m", "x_pixel_size_m", "y_pixel_size_m", "centre_x_px", "centre_y_px")
    missing = [k for k in needed if k not in attrs]
    if missing:
        raise InputError(f"{folder}/detector.h5 lacks the geometry attributes {', '.join(missing)} that "
                         "'spidarknet export-emc' writes; export the frames with it")
    shape = attrs.get("frame_shape", meta.get("photons_frame_shape", meta.get("frame_shape")))
    if shape is None:
        raise InputError(f"{folder} does not say the frame shape (detector.h5 attribute frame_shape or "
                         "export.json); export the frames again with 'spidarknet export-emc'")
    shape = tuple(int(v) for v in shape)
    geometry = Geometry((float(attrs["centre_x_px"]), float(attrs["centre_y_px"])), float(attrs["distance_m"]),
                        (float(attrs["x_pixel_size_m"]), float(attrs["y_pixel_size_m"])),
                        float(attrs["wavelength_m"]) if "wavelength_m" in attrs else None)
    q_max = float(attrs["q_max_inv_nm"]) if "q_max_inv_nm" in attrs else None
    if int(header[1]) != num_pix:
        raise InputError(f"{folder}: photons.emc has {int(header[1])} pixels per frame, detector.h5 "
                         f"{num_pix}; they do not belong together")
    if q_max is None and num_pix != shape[0] * shape[1]:
        raise InputError(f"{folder}/detector.h5 has {num_pix} pixels, frames of {shape[0]} x {shape[1]}")
    usable = None if q_max is not None else (mask.reshape(shape) == 0)
    polarization = attrs.get("polarization", "x")
    if isinstance(polarization, bytes):
        polarization = polarization.decode()
    return ExportFolder(folder, meta, int(header[0]), num_pix, shape, geometry, usable,
                        int(attrs.get("binning", 1)), q_max, ewald_rad, str(polarization))


# -- the export ------------------------------------------------------------------------------------

@dataclass
class EmcExport:
    """What :func:`export_emc` wrote."""

    out: Path
    n_frames_total: int      # frames of the hit list (= lines of blacklist.dat)
    n_selected: int
    n_written: int           # frames in photons.emc
    num_pix: int
    mean_photons: float
    all_frames: bool

    def line(self) -> str:
        what = "all frames" if self.all_frames else "selected frames"
        return (f"{self.n_written} {what} ({self.n_selected} of {self.n_frames_total} selected) -> "
                f"{self.out}/photons.emc, {self.num_pix} pixels, {self.mean_photons:.1f} photons/frame")


def _geometry_key(info) -> tuple:
    g = info.geometry
    return (info.frame_shape, round(g.centre_px[0], 3), round(g.centre_px[1], 3),
            None if g.distance_m is None else round(g.distance_m, 9),
            None if g.pixel_size_m is None else tuple(round(v, 12) for v in g.pixel_size_m))


def _one_detector(infos: list) -> tuple:
    """The first file's info and the pixels usable in every file, once all agree on the
    frame shape and geometry (Dragonfly takes one detector per photons file)."""
    shapes = {info.frame_shape for info in infos}
    if len(shapes) > 1:
        raise InputError(f"the frames have different shapes {sorted(shapes)}; Dragonfly takes one detector "
                         "per photons file: export each detector's frames separately")
    if len({_geometry_key(info) for info in infos}) > 1:
        raise InputError("the files of the hit list disagree on the geometry (beam centre, distance or "
                         "pixel size); export files of one geometry at a time, or give --centre, "
                         "--distance and --pixel-size")
    first = infos[0]
    usable = np.ones(first.frame_shape, dtype=bool)
    for info in infos:
        if info.mask_shared is not None:
            usable &= info.mask_shared
    return first, usable


def _detector_for(first, usable: np.ndarray, binning: int, q_max_inv_nm, ewald_rad, polarization: str) -> tuple:
    """(reduction or None, Dragonfly detector, pixels per frame) of the frames as written."""
    reduction = make_reduction(first.frame_shape, first.geometry, usable, binning=binning,
                               q_max_inv_nm=q_max_inv_nm)
    if reduction.trivial:
        detector = dragonfly_detector(first.frame_shape, first.geometry, usable, ewald_rad=ewald_rad,
                                      polarization=polarization)
        return None, detector, first.frame_shape[0] * first.frame_shape[1]
    return reduction, reduced_detector(reduction, ewald_rad=ewald_rad, polarization=polarization), reduction.num_pix


def _write_photons(path: Path, sources: list, hits: HitList, expected, usable: np.ndarray,
                   reduction, num_pix: int, adu_per_photon, chunk_frames: int, on_frames) -> tuple:
    """Every selected frame into ``photons.emc``, in ``expected`` (hit-list rows) order;
    returns the writer and each row's place in the file (-1: not written).  Frames of runs
    arrive in photons (the run reader converts them)."""
    emc_row = np.full(len(hits), -1, dtype=np.int64)
    writer = EmcWriter(path, num_pix)
    try:
        for source in sources:
            adu = None if isinstance(source, EuXFELRun) else adu_per_photon
            for chunk in source.chunks(chunk_frames):
                for k, index in enumerate(chunk.indices):
                    row = next(expected)
                    key = hits.keys[row]
                    if (frame_file(key), int(key.index)) != (chunk.info.path, int(index)):
                        raise RuntimeError("frames arrived out of the expected order")
                    valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[k]
                    emc_row[row] = writer.num_data
                    photons = to_photons(chunk.data[k], valid & usable, adu)
                    writer.write_frame(photons if reduction is None else reduction.apply(photons))
                if on_frames is not None:
                    on_frames(len(chunk))
        writer.close()
    except BaseException:
        writer.discard_parts()
        raise
    return writer, emc_row


def _write_tables(stage: Path, hits: HitList, flags: np.ndarray, order: list, emc_row: np.ndarray,
                  dataset_of: dict) -> None:
    """``blacklist.dat`` and ``frames.csv``: one line per frame of the hit list, in ``order``
    (with the trainId, pulseId and cellId of European XFEL frames)."""
    with open(stage / "blacklist.dat", "w") as handle:
        handle.writelines("0\n" if flags[r] else "1\n" for r in order)
    ids = [name for name in ID_COLUMNS[:3] if name in hits.columns]
    with open(stage / "frames.csv", "w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["emc_row", "file", "dataset", "index", "score", "selected", *ids])
        for r in order:
            key = hits.keys[r]
            table.writerow([int(emc_row[r]), frame_file(key), dataset_of[(frame_file(key), key.dataset)],
                            key.index, f"{hits.scores[r]:.6f}", int(flags[r]),
                            *(_whole(hits.columns[name][r]) for name in ids)])


def _whole(value) -> str:
    """A train, pulse or cell number as written (empty where it is not known)."""
    return f"{int(value)}" if np.isfinite(value) else ""


def _run_options(hits: HitList, geometry: GeometryOverrides | None, mask, adu_per_photon, use_file_mask: bool):
    """How the hit list's European XFEL runs are read (None: it names none): as detect read them
    (the geometry, modules and photon conversion its summary records), ``--adu-per-photon`` and
    ``--distance`` in place of what it records; the run reader then converts to photons."""
    if not any(os.path.isdir(path) for path in {frame_file(key) for key in hits.keys}):
        return None
    g = geometry or GeometryOverrides()
    if g.centre_px is not None or g.pixel_size_m is not None or mask is not None:
        raise ConfigError("--centre, --pixel-size and --mask are for CXI/HDF5 files; the hit list names a European "
                          "XFEL run, assembled with the geometry detect used (its hit list records it)")
    return recorded_run_options(hits.meta, adu_per_photon=adu_per_photon, distance_m=g.distance_m,
                                use_file_mask=None if use_file_mask else False)


def _blacklist_note(all_frames: bool) -> str:
    if all_frames:
        return "blacklist.dat lines up with photons.emc: give it to Dragonfly as blacklist_file"
    return ("blacklist.dat covers every frame of the hit list (frames.csv order), while photons.emc holds "
            "only the selected ones: do not give it to Dragonfly with this photons.emc (export with "
            "--all-frames for that)")


def _summary(result: EmcExport, hits: HitList, hit_list_name: str, frame_shape: tuple, reduction,
             detector, *, binning: int, q_max_inv_nm, adu_per_photon, polarization: str) -> dict:
    """What ``export.json`` records: counts, settings and the matching Dragonfly config entries."""
    all_frames = result.all_frames
    return {
        "hit_list": hit_list_name, "threshold": hits.threshold if math.isfinite(hits.threshold) else None,
        "frames_in_hit_list": len(hits), "selected": result.n_selected,
        "frames_in_photons_emc": result.n_written, "all_frames": all_frames,
        "num_pix": result.num_pix, "frame_shape": list(frame_shape),
        "binning": binning, "q_max_inv_nm": q_max_inv_nm,
        "photons_frame_shape": list(frame_shape if reduction is None else reduction.binned_shape),
        "mean_photons_per_frame": result.mean_photons, "adu_per_photon": adu_per_photon,
        "detd_px": detector.detd, "ewald_rad_vox": detector.ewald_rad, "polarization": polarization,
        "masked_pixels": int(np.count_nonzero(detector.mask)), "blacklist": _blacklist_note(all_frames),
        "dragonfly_config": {"in_photons_file": "photons.emc", "in_detector_file": "detector.h5",
                             **({"blacklist_file": "blacklist.dat"} if all_frames else {})},
    }


def export_emc(hits: HitList, flags: np.ndarray, out: str | os.PathLike, *,
               adu_per_photon: float | None = None, all_frames: bool = False,
               geometry: GeometryOverrides | None = None, mask: str | None = None,
               mask_invert: bool = False, use_file_mask: bool = True,
               ewald_rad: float | None = None, polarization: str = "x",
               binning: int = 1, q_max_inv_nm: float | None = None,
               force: bool = False, chunk_frames: int = 8, hit_list_name: str = "",
               on_frames: Callable[[int], None] | None = None) -> EmcExport:
    """Write ``photons.emc``, ``detector.h5``, ``blacklist.dat``, ``frames.csv`` and
    ``export.json`` into the new folder ``out`` (built under a temporary name).

    ``photons.emc`` holds the selected frames, or every frame of the hit list with
    ``all_frames`` (then ``blacklist.dat`` lines up with it for Dragonfly's
    ``blacklist_file``).  ``frames.csv`` maps each hit-list frame to its row in
    ``photons.emc`` (-1 when not written).  ``binning`` and ``q_max_inv_nm`` reduce the
    detector (:class:`PixelReduction`): photons are summed over ``binning × binning`` pixels
    and only binned pixels below ``q_max_inv_nm`` are written.
    """
    flags = np.asarray(flags, dtype=bool)
    if adu_per_photon is not None and not adu_per_photon > 0:
        raise ConfigError("--adu-per-photon must be positive")
    if len(hits) == 0:
        raise InputError("the hit list holds no frames")
    wanted = np.ones(len(hits), dtype=bool) if all_frames else flags
    if not wanted.any():
        raise InputError(f"the hit list selects none of its {len(hits)} frames, so there is nothing to "
                         "export; lower the threshold ('spidarknet select --threshold') or use --all-frames")
    # every file opened once, checked (files exist, indices in range) before any reading
    runs = _run_options(hits, geometry, mask, adu_per_photon, use_file_mask)
    sources = sources_of_keys(hits.keys, runs, geometry=geometry, mask=mask, mask_invert=mask_invert,
                              use_file_mask=use_file_mask)
    # what export.json records: the runs' conversion where the frames are runs' (the run reader
    # converts them; CXI files of the same list keep the conversion given for them)
    recorded_adu = adu_per_photon if runs is None else runs.adu_per_photon
    # The order of frames everywhere: datasets, then files, in order of first appearance,
    # indices ascending within a file -- the order FrameSource reads them in.
    groups = group_keys(hits.keys)
    order = [row for files in groups.values() for rows in files.values()
             for row in sorted(rows, key=lambda r: hits.keys[r].index)]
    dataset_of = {(info.path, written): info.dataset
                  for written, source in zip(groups, sources) for info in source.files}
    sources = [source.select({path: [hits.keys[r].index for r in rows if wanted[r]]
                              for path, rows in files.items()})
               for source, files in zip(sources, groups.values())]
    first, usable = _one_detector([info for s in sources for info in s.files])
    reduction, detector, num_pix = _detector_for(first, usable, binning, q_max_inv_nm, ewald_rad, polarization)
    with staged_dir(out, force) as stage:
        writer, emc_row = _write_photons(stage / "photons.emc", sources, hits, iter([r for r in order if wanted[r]]),
                                         usable, reduction, num_pix, adu_per_photon, chunk_frames, on_frames)
        detector.write(stage / "detector.h5")
        _write_tables(stage, hits, flags, order, emc_row, dataset_of)
        mean = writer.photons / writer.num_data
        result = EmcExport(Path(out), len(hits), int(flags.sum()), writer.num_data, num_pix, mean, all_frames)
        summary = _summary(result, hits, hit_list_name, first.frame_shape, reduction, detector,
                           binning=binning, q_max_inv_nm=q_max_inv_nm, adu_per_photon=recorded_adu,
                           polarization=polarization)
        with open(stage / "export.json", "w") as handle:
            json.dump(summary, handle, indent=2, default=float)
            handle.write("\n")
    return result

