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
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spidarknet.errors import InputError, OutputError
from spidarknet.frames import FrameSource, Geometry, GeometryOverrides
from spidarknet.hits import HitList
from spidarknet.interchange import frame_file, inspect_datasets
from spidarknet.outputs import staged_dir

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

    def write(self, path: str | os.PathLike) -> None:
        import h5py
        with h5py.File(path, "w") as f:
            for name in ("qx", "qy", "qz", "corr"):
                f.create_dataset(name, data=getattr(self, name).astype(np.float64))
            f.create_dataset("mask", data=self.mask.astype(np.uint8))
            f["detd"] = float(self.detd)
            f["ewald_rad"] = float(self.ewald_rad)
            for key, value in self.attrs.items():
                f.attrs[key] = value


def dragonfly_detector(frame_shape: tuple[int, int], geometry: Geometry, usable: np.ndarray | None = None,
                       *, ewald_rad: float | None = None, polarization: str = "x") -> DragonflyDetector:
    """The Dragonfly detector of frames of ``frame_shape`` with ``geometry`` (SI units).

    ``usable`` (bool, ``frame_shape``, True = good) becomes mask 0, the rest mask 2.
    ``ewald_rad`` in voxels defaults to the distance in pixels (one voxel per pixel at the
    detector centre).  ``polarization`` is the beam's: ``x`` (horizontal, XFELs), ``y`` or
    ``none`` (unpolarised average).
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
    attrs = {"distance_m": geometry.distance_m, "x_pixel_size_m": px, "y_pixel_size_m": py,
             "centre_x_px": cx, "centre_y_px": cy, "polarization": polarization,
             "pixel_order": "row * columns + column of the source frames",
             "written_by": "spidarknet export-emc"}
    if geometry.wavelength_m is not None:
        attrs["wavelength_m"] = geometry.wavelength_m
    return DragonflyDetector(qx, qy, qz, corr, mask, detd, radius, attrs)


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


def export_emc(hits: HitList, flags: np.ndarray, out: str | os.PathLike, *,
               adu_per_photon: float | None = None, all_frames: bool = False,
               geometry: GeometryOverrides | None = None, mask: str | None = None,
               mask_invert: bool = False, use_file_mask: bool = True,
               ewald_rad: float | None = None, polarization: str = "x",
               force: bool = False, chunk_frames: int = 8, hit_list_name: str = "",
               on_frames: Callable[[int], None] | None = None) -> EmcExport:
    """Write ``photons.emc``, ``detector.h5``, ``blacklist.dat``, ``frames.csv`` and
    ``export.json`` into the new folder ``out`` (built under a temporary name).

    ``photons.emc`` holds the selected frames, or every frame of the hit list with
    ``all_frames`` (then ``blacklist.dat`` lines up with it for Dragonfly's
    ``blacklist_file``).  ``frames.csv`` maps each hit-list frame to its row in
    ``photons.emc`` (-1 when not written).
    """
    flags = np.asarray(flags, dtype=bool)
    if adu_per_photon is not None and not adu_per_photon > 0:
        raise InputError("--adu-per-photon must be positive")
    if len(hits) == 0:
        raise InputError("the hit list holds no frames")
    wanted = np.ones(len(hits), dtype=bool) if all_frames else flags
    if not wanted.any():
        raise InputError(f"the hit list selects none of its {len(hits)} frames, so there is nothing to "
                         "export; lower the threshold ('spidarknet select --threshold') or use --all-frames")
    infos = inspect_datasets(hits.keys)          # files exist, indices in range: before any reading

    # The order of frames everywhere: datasets, then files, in order of first appearance,
    # indices ascending within a file -- the order FrameSource reads them in.
    groups: "OrderedDict[str, OrderedDict[str, list[int]]]" = OrderedDict()
    for (file, dataset) in infos:
        groups.setdefault(dataset, OrderedDict())[file] = []
    for row, key in enumerate(hits.keys):
        groups[key.dataset][frame_file(key)].append(row)
    order = [row for files in groups.values() for rows in files.values()
             for row in sorted(rows, key=lambda r: hits.keys[r].index)]

    sources = []
    for dataset, files in groups.items():
        source = FrameSource(list(files), dataset=dataset or None, geometry=geometry, mask=mask,
                             mask_invert=mask_invert, use_file_mask=use_file_mask)
        source.select({info.path: np.array([hits.keys[r].index for r in files[info.path] if wanted[r]],
                                           dtype=np.int64) for info in source.files})
        sources.append(source)
    all_infos = [info for s in sources for info in s.files]
    shapes = {info.frame_shape for info in all_infos}
    if len(shapes) > 1:
        raise InputError(f"the frames have different shapes {sorted(shapes)}; Dragonfly takes one detector "
                         "per photons file: export each detector's frames separately")
    geometries = {_geometry_key(info) for info in all_infos}
    if len(geometries) > 1:
        raise InputError("the files of the hit list disagree on the geometry (beam centre, distance or "
                         "pixel size); export files of one geometry at a time, or give --centre, "
                         "--distance and --pixel-size")
    first = all_infos[0]
    usable = np.ones(first.frame_shape, dtype=bool)
    for info in all_infos:
        if info.mask_shared is not None:
            usable &= info.mask_shared
    detector = dragonfly_detector(first.frame_shape, first.geometry, usable, ewald_rad=ewald_rad,
                                  polarization=polarization)
    num_pix = first.frame_shape[0] * first.frame_shape[1]

    emc_row = np.full(len(hits), -1, dtype=np.int64)
    expected = iter([r for r in order if wanted[r]])
    with staged_dir(out, force) as stage:
        writer = EmcWriter(stage / "photons.emc", num_pix)
        try:
            for source in sources:
                for chunk in source.chunks(chunk_frames):
                    for k, index in enumerate(chunk.indices):
                        row = next(expected)
                        key = hits.keys[row]
                        if (frame_file(key), int(key.index)) != (chunk.info.path, int(index)):
                            raise RuntimeError("frames arrived out of the expected order")
                        valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[k]
                        emc_row[row] = writer.num_data
                        writer.write_frame(to_photons(chunk.data[k], valid & usable, adu_per_photon))
                    if on_frames is not None:
                        on_frames(len(chunk))
            writer.close()
        except BaseException:
            writer.discard_parts()
            raise
        detector.write(stage / "detector.h5")
        with open(stage / "blacklist.dat", "w") as handle:
            handle.writelines("0\n" if flags[r] else "1\n" for r in order)
        with open(stage / "frames.csv", "w", newline="") as handle:
            table = csv.writer(handle)
            table.writerow(["emc_row", "file", "dataset", "index", "score", "selected"])
            for r in order:
                key = hits.keys[r]
                table.writerow([int(emc_row[r]), frame_file(key), infos[(frame_file(key), key.dataset)].dataset,
                                key.index, f"{hits.scores[r]:.6f}", int(flags[r])])
        mean = writer.photons / writer.num_data
        result = EmcExport(Path(out), len(hits), int(flags.sum()), writer.num_data, num_pix, mean, all_frames)
        summary = {
            "hit_list": hit_list_name, "threshold": hits.threshold if math.isfinite(hits.threshold) else None,
            "frames_in_hit_list": len(hits), "selected": result.n_selected,
            "frames_in_photons_emc": result.n_written, "all_frames": all_frames,
            "num_pix": num_pix, "frame_shape": list(first.frame_shape),
            "mean_photons_per_frame": mean, "adu_per_photon": adu_per_photon,
            "detd_px": detector.detd, "ewald_rad_vox": detector.ewald_rad, "polarization": polarization,
            "masked_pixels": int(np.count_nonzero(detector.mask)),
            "blacklist": ("blacklist.dat lines up with photons.emc: give it to Dragonfly as blacklist_file"
                          if all_frames else
                          "blacklist.dat covers every frame of the hit list (frames.csv order), while "
                          "photons.emc holds only the selected ones: do not give it to Dragonfly with this "
                          "photons.emc (export with --all-frames for that)"),
            "dragonfly_config": {"in_photons_file": "photons.emc", "in_detector_file": "detector.h5",
                                 **({"blacklist_file": "blacklist.dat"} if all_frames else {})},
        }
        with open(stage / "export.json", "w") as handle:
            json.dump(summary, handle, indent=2, default=float)
            handle.write("\n")
    return result

