"""European XFEL AGIPD runs as frames: the modules placed by EXtra-geom into one image.

A run is a folder of HDF5 files in the facility's layout (``RunDirectory``), one sequence of
files per detector module; corrected AGIPD data sits at the source
``SPB_DET_AGIPD1M-1/CORR/{N}CH0:output`` (older runs: ``SPB_DET_AGIPD1M-1/DET/{N}CH0:xtdf``),
keys ``image.data`` (float32, 512 × 128 per module and frame), ``image.mask`` (uint32
bad-pixel bits, 0 = good), ``image.trainId``, ``image.pulseId``, ``image.cellId``.

**How the multi-module detector becomes the network's image.**  The preprocessing
(:mod:`spidarknet.preprocess`) works on a flat frame of square pixels with a beam centre, a
distance and a wavelength: the crop in q, the beam stop in q, the binning, the sphere fit
all follow from those.  So a run is read as *assembled* frames: EXtra-geom's
``position_modules`` places every module pixel (200 µm) on one grid, once per geometry, and
the frames are gathered into that grid with the gaps between modules and tiles masked (as the
pnCCD's gap is).  The beam centre is where the geometry's origin (x = y = 0, the beam) falls
on the grid.  One preprocessing pipeline then serves CXI files and runs alike; the price is
the rounding of each tile's corner to whole pixels (at most half a pixel, 100 µm).

**Only what the model needs is read.**  The reader is given the crop the preprocessing asks
for (a square in assembled pixels around the beam); only the modules with a pixel inside it
are opened, and of each only the rows and columns inside it (with the built-in model at
0.705 m and 6 keV, 4 of the 16 modules).

A frame's key is (run folder, ``SPB_DET_AGIPD1M-1/CORR``, frame number in the run: trains in
order, each train's pulses in order).  Each chunk also carries the frames' ``trainId``,
``pulseId``, ``cellId`` and the number of selected modules missing from their train
(``missing_modules``): a train missing modules is scored with their pixels masked.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from spidarknet.core.defaults import READ_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.frames.source import (EV_J, LIGHT_M_S, PLANCK_J_S, FileInfo, FrameChunk, FrameSource, Geometry,
                                      Roi, _clip_roi, _DirectReader, _inflate, group_keys, open_h5)

log = logging.getLogger(__name__)

DETECTOR = "SPB_DET_AGIPD1M-1"
N_MODULES = 16
MODULE_SHAPE = (512, 128)      # slow scan (rows), fast scan (columns) of one module
TILE_ROWS = 64                 # a module's tiles (placed each as a whole): 8 of 64 rows
CORRECTED = "{detector}/CORR/{module}CH0:output"
LEGACY = "{detector}/DET/{module}CH0:xtdf"
#: quadrant positions (x, y) in mm of EXtra-geom's examples for SPB's AGIPD 1M
DEFAULT_QUAD_POSITIONS_MM = ((-525.0, 625.0), (-550.0, -10.0), (520.0, -160.0), (542.5, 475.0))
#: the frame metadata every chunk carries and every hit-list row of a run gets
ID_COLUMNS = ("trainId", "pulseId", "cellId", "missing_modules")
#: the truth the AGIPD simulator writes beside a run (not ``.h5``: EXtra-data reads those)
TRUTH_FILE = "spidarknet-truth.hdf5"
_PROPOSAL_RUN = re.compile(r"^p?(\d+)[/:]r?(\d+)$")


def is_run_folder(path: str) -> bool:
    """True for a folder holding HDF5 files (a European XFEL run folder)."""
    return os.path.isdir(path) and any(name.endswith(".h5") for name in os.listdir(path))


def values_file(path: str) -> str:
    """Where per-frame values (labels, truth) of a frame file lie: the file itself, or for a run
    folder the truth file the AGIPD simulator writes in it (:data:`TRUTH_FILE`)."""
    return os.path.join(path, TRUTH_FILE) if os.path.isdir(path) else path


def is_run_input(text: str) -> bool:
    """A run folder, or ``PROPOSAL/RUN`` (``p2304/r107``, ``2304:107``) that is no file."""
    return is_run_folder(text) or (not os.path.exists(text) and bool(_PROPOSAL_RUN.match(text)))


def source_from_spec(spec: dict, opened: "EuXFELRun | None" = None) -> FrameSource:
    """The source :meth:`FrameSource.spec` describes, a file's or a run's (in another process);
    ``opened``: runs opened already (:func:`open_early`), used where they are the spec's."""
    if spec.get("kind") == "euxfel":
        return EuXFELRun.from_spec(spec, opened)
    return FrameSource.from_spec(spec)


def open_early(runs: dict | None) -> "EuXFELRun | None":
    """The runs ``runs`` names (:func:`~spidarknet.frames.options.run_inputs`), opened by a
    worker while the parent opens them too (geometry, layout, trains: ~0.2 s of CPU that
    would otherwise wait for the parent's); None without runs, or where they do not open
    (the parent's opening says why)."""
    if runs is None:
        return None
    try:
        return EuXFELRun(runs["inputs"], RunOptions.from_dict(runs["options"]), data=runs["data"])
    except Exception as exc:   # whatever it is, the parent meets it too and reports it
        log.debug("the runs %s did not open early (%s): opened from the parent's description", runs["inputs"], exc)
        return None


def recorded_run_options(meta: dict, **overrides) -> "RunOptions":
    """How ``detect`` read the runs of a hit list (its summary's ``run_options``), with
    ``overrides`` that are not None; a list that does not record them (made by the Python
    face, or before they were recorded): the defaults, so the geometry is the run's own
    ``.geom`` and the data are read as stored."""
    values = dict(meta.get("run_options") or {})
    values.update({name: value for name, value in overrides.items() if value is not None})
    values["frames"] = None  # the hit list's keys say which frames
    return RunOptions.from_dict(values)


def sources_of_keys(keys: Sequence, runs: "RunOptions | None", what: str = "hit list",
                    **options) -> list[FrameSource]:
    """:meth:`FrameSource.from_keys` with European XFEL runs: the frames ``keys`` name, one source
    per dataset as written, in order of first appearance; run folders opened with ``runs``
    (:func:`recorded_run_options`; None: refused as ``from_keys`` refuses them), files with
    ``options``."""
    keys = list(keys)
    groups = group_keys(keys)
    if runs is None or not any(os.path.isdir(f) for rows in groups.values() for f in rows):
        return FrameSource.from_keys(keys, what, **options)
    sources = []
    for rows in groups.values():
        if any(os.path.isdir(f) for f in rows):
            sources.append(_runs_of_keys(keys, rows, runs, what))
        else:
            sources += FrameSource.from_keys([keys[p] for ps in rows.values() for p in ps], what, **options)
    return sources


def _runs_of_keys(keys: Sequence, rows: dict, options: "RunOptions", what: str) -> "EuXFELRun":
    """The run frames that ``keys`` name at ``rows`` (run folder -> positions in ``keys``, as
    :func:`~spidarknet.frames.source.group_keys` gives them), opened with ``options``: the runs in
    the order given, the frames ascending."""
    gone = [f for f in rows if not os.path.isdir(f)]
    if gone:
        raise InputError(f"the {what} names {gone[0]} beside the European XFEL run {next(iter(rows))}, and it is "
                         "no run folder (moved, or deleted?)")
    source = EuXFELRun(list(rows), options)
    wanted = {}
    for info in source.files:
        idx = np.unique(np.asarray([keys[p].index for p in rows[info.path]], dtype=np.int64))
        outside = idx[(idx < 0) | (idx >= info.n_frames)]
        if len(outside):
            raise InputError(f"the run {info.path} has {info.n_frames} frames, the {what} names frame "
                             f"{int(outside[0])}; is it the run the list was made from?")
        wanted[info.path] = idx
    return source.select(wanted)


def resolve_run(spec: str, data: str = "proc") -> str:
    """The folder of a run: ``spec`` itself, or for ``p2304/r107`` (proposal/run, as
    ``open_run`` takes them) ``<proposal folder>/<data>/r0107`` found as EXtra-data finds it
    (its data root, ``EXTRA_DATA_DATA_ROOT``)."""
    if os.path.isdir(spec):
        return os.path.abspath(spec)
    match = _PROPOSAL_RUN.match(spec)
    if not match:
        raise InputError(f"{spec} is not a run folder")
    from extra_data.read_machinery import find_proposal
    proposal, run = int(match.group(1)), int(match.group(2))
    try:
        folder = find_proposal(f"p{proposal:06d}")
    except Exception as exc:  # EXtra-data raises a bare Exception when the proposal is not there
        raise InputError(f"proposal {proposal} not found ({exc}); give the run folder instead") from None
    path = os.path.join(folder, data, f"r{run:04d}")
    if not os.path.isdir(path):
        raise InputError(f"run {run} of proposal {proposal} has no {data} folder {path}")
    return path


def _extra_geom():
    try:
        import extra_geom
    except ImportError:
        raise ConfigError("European XFEL runs need EXtra-geom and EXtra-data: pip install 'spidarknet[euxfel]' "
                          "(or pip install extra-data extra-geom)") from None
    return extra_geom


def read_geom_file(path: str) -> tuple[object, float | None, float | None]:
    """An AGIPD 1M geometry from a CrystFEL ``.geom`` file, with its ``clen`` (m) and
    ``photon_energy`` (eV) where it gives them as numbers (None otherwise)."""
    AGIPD_1MGeometry = _extra_geom().AGIPD_1MGeometry
    if not os.path.isfile(path):
        raise InputError(f"geometry file {path} does not exist")
    try:
        geometry = AGIPD_1MGeometry.from_crystfel_geom(path)
    except Exception as exc:  # cfel_fmt and EXtra-geom raise many kinds on a bad file
        raise InputError(f"cannot read the CrystFEL geometry {path} as AGIPD 1M ({type(exc).__name__}: "
                         f"{exc}); is it the detector's .geom file?") from None
    values = {}
    with open(path) as handle:
        for line in handle:
            name, sep, value = line.split(";")[0].partition("=")
            if sep and name.strip() in ("clen", "photon_energy"):
                try:
                    values[name.strip()] = float(value.strip())
                except ValueError:  # a path into the data: not known here
                    pass
    return geometry, values.get("clen"), values.get("photon_energy")


@dataclass
class AgipdLayout:
    """Where each module pixel lands in the assembled image (EXtra-geom's assembly).

    ``index`` (rows, columns): the flat module-pixel number ``module * 65536 + ss * 128 + fs``
    at each assembled pixel, -1 in gaps; ``centre_px`` (x, y): the beam (the geometry's
    origin) in assembled pixel-index coordinates."""

    index: np.ndarray
    centre_px: tuple[float, float]
    pixel_size_m: float

    @classmethod
    def from_geometry(cls, geometry) -> "AgipdLayout":
        flat = np.arange(N_MODULES * MODULE_SHAPE[0] * MODULE_SHAPE[1], dtype=np.float64)
        assembled, _ = geometry.position_modules(flat.reshape((N_MODULES,) + MODULE_SHAPE))
        index = np.where(np.isnan(assembled), -1, assembled).astype(np.int64)
        # the beam: fit column = a x + b and row = c y + d over the placed pixels (x, y in
        # metres), each tile's corner rounded to whole pixels by the assembly
        placed = np.flatnonzero(index.ravel() >= 0)[::97]
        rows, cols = np.divmod(placed, index.shape[1])
        xyz = geometry.get_pixel_positions().reshape(-1, 3)[index.ravel()[placed]]
        cx = np.polyfit(xyz[:, 0], cols, 1)[1]
        cy = np.polyfit(xyz[:, 1], rows, 1)[1]
        return cls(index=index, centre_px=(float(cx), float(cy)), pixel_size_m=float(geometry.pixel_size))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.index.shape)

    def gap_mask(self) -> np.ndarray:
        """True where an assembled pixel is a module pixel."""
        return self.index >= 0

    def module_parts(self, region: Roi, modules: Sequence[int]) -> list["ModulePart"]:
        """The pixels of ``modules`` inside ``region`` (assembled rows r0:r1, columns c0:c1):
        per module the rectangle of its rows and columns to read and where they go."""
        r0, r1, c0, c1 = region
        sub = self.index[r0:r1, c0:c1]
        parts = []
        for m in modules:
            lo, hi = m * MODULE_SHAPE[0] * MODULE_SHAPE[1], (m + 1) * MODULE_SHAPE[0] * MODULE_SHAPE[1]
            rows, cols = np.nonzero((sub >= lo) & (sub < hi))
            if len(rows) == 0:
                continue
            ss, fs = np.divmod(sub[rows, cols] - lo, MODULE_SHAPE[1])
            box = (int(ss.min()), int(ss.max()) + 1, int(fs.min()), int(fs.max()) + 1)
            part = ModulePart(m, box, rows, cols, ss - box[0], fs - box[2])
            part.tiles = _tiles(part, ss // TILE_ROWS)
            parts.append(part)
        return parts


@dataclass
class ModulePart:
    """One module's share of a region: its rows ``ss0:ss1`` and columns ``fs0:fs1`` to read,
    and for each pixel used its place in the region and in what was read."""

    module: int
    box: tuple[int, int, int, int]
    rows: np.ndarray
    cols: np.ndarray
    ss: np.ndarray
    fs: np.ndarray
    tiles: list | None = None     # the same as rectangles (:func:`_tiles`), where it is


@dataclass
class ModuleIndex:
    """Where one module's frames lie: per train of the run, the file, first row and count."""

    source: str
    files: list = field(default_factory=list)       # file paths
    file_of: np.ndarray | None = None                 # per train: index into files (-1: absent)
    first: np.ndarray | None = None
    count: np.ndarray | None = None


@dataclass(frozen=True)
class RunOptions:
    """How a run is read (JSON-able: it travels to worker processes and MPI ranks)."""

    detector: str = DETECTOR
    modules: tuple | None = None              # module numbers to use; None: all 16
    geom: str | None = None                   # CrystFEL .geom file
    quad_positions: tuple | None = None       # 4 (x, y) in mm
    distance_m: float | None = None
    wavelength_m: float | None = None
    adu_per_photon: float | None = None       # photons = round(value / adu_per_photon)
    use_file_mask: bool = True
    frames: tuple | None = None               # (start, stop, step) over the run's frames

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunOptions":
        values = dict(values)
        for name in ("modules", "quad_positions", "frames"):
            if values.get(name) is not None:
                values[name] = tuple(tuple(v) if isinstance(v, list) else v for v in values[name])
        return cls(**values)


def _check_options(options: RunOptions) -> None:
    if options.modules is not None:
        bad = [m for m in options.modules if not 0 <= int(m) < N_MODULES]
        if bad or not options.modules:
            raise ConfigError(f"--modules {options.modules}: give module numbers 0-{N_MODULES - 1}")
    if options.adu_per_photon is not None and not options.adu_per_photon > 0:
        raise ConfigError(f"--adu-per-photon must be positive, not {options.adu_per_photon}")
    if options.geom is not None and options.quad_positions is not None:
        raise ConfigError("give the geometry as --geom FILE or as --quad-positions, not both")
    if options.quad_positions is not None and len(options.quad_positions) != 4:
        raise ConfigError("--quad-positions takes 8 numbers: x y (mm) of each of the 4 quadrants")


def _geometry(options: RunOptions, folder: str):
    """(EXtra-geom geometry, distance m, wavelength m, where they came from)."""
    AGIPD_1MGeometry = _extra_geom().AGIPD_1MGeometry
    distance = wavelength = None
    if options.geom is not None:
        geometry, clen, energy_ev = read_geom_file(options.geom)
        where = options.geom
        distance = clen
        wavelength = None if energy_ev is None else PLANCK_J_S * LIGHT_M_S / (energy_ev * EV_J)
    else:
        quads = options.quad_positions
        found = sorted(name for name in os.listdir(folder) if name.endswith(".geom"))
        if quads is None and len(found) == 1:  # a run written with its geometry (the simulator does)
            return _geometry(dataclasses.replace(options, geom=os.path.join(folder, found[0])), folder)
        if quads is None:
            raise InputError(f"{folder}: where are the AGIPD modules? give the CrystFEL geometry with --geom FILE "
                             "or the quadrant positions with --quad-positions X1 Y1 ... X4 Y4 (mm)")
        geometry = AGIPD_1MGeometry.from_quad_positions(quad_pos=[tuple(q) for q in quads])
        where = "quadrant positions"
    distance = options.distance_m if options.distance_m is not None else distance
    wavelength = options.wavelength_m if options.wavelength_m is not None else wavelength
    return geometry, distance, wavelength, where


def _index_module(folder: str, options: RunOptions, module: int):
    """The :class:`ModuleIndex` of one module (its corrected name first, then the legacy one),
    or None when the run lacks it."""
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.endswith(".h5") and re.search(rf"AGIPD{module:02d}-S\d+\.h5$", f))
    for pattern in (CORRECTED, LEGACY):
        source = pattern.format(detector=options.detector, module=module)
        entries = []
        for path in files:
            with open_h5(path) as handle:
                group = f"INDEX/{source}/image"
                if f"INSTRUMENT/{source}/image/data" not in handle or group not in handle:
                    continue
                _check_corrected(handle, source, path)
                tids = np.asarray(handle["INDEX/trainId"][()], dtype=np.uint64)
                first = np.asarray(handle[f"{group}/first"][()], dtype=np.int64)
                count = np.asarray(handle[f"{group}/count"][()], dtype=np.int64)
                n = min(len(tids), len(first), len(count))
                entries.append((path, tids[:n], first[:n], count[:n]))
        if entries:
            return ModuleIndex(source=source, files=[e[0] for e in entries]), entries
    return None, []


def _check_corrected(handle, source: str, path: str) -> None:
    ds = handle[f"INSTRUMENT/{source}/image/data"]
    if ds.ndim != 3 or tuple(ds.shape[1:]) != MODULE_SHAPE:
        raise InputError(f"{path}: {source} image.data has frames of {tuple(ds.shape[1:])}, not the "
                         f"{MODULE_SHAPE[0]}x{MODULE_SHAPE[1]} of corrected AGIPD data; raw (uncorrected) runs "
                         "cannot be scored: give the run's proc folder")


class EuXFELRun(FrameSource):
    """The frames of European XFEL AGIPD runs (folders or ``p2304/r107``), assembled.

    A :class:`FrameSource` in everything the pipeline uses: one :class:`FileInfo` per run
    (its ``path`` the run folder, its ``dataset`` the detector's source prefix, its
    ``frame_shape`` the assembled image, ``mask_shared`` the gaps), chunks of assembled
    frames with ``ids`` (:data:`ID_COLUMNS`).
    """

    def __init__(self, runs: Sequence[str], options: RunOptions | None = None, *, data: str = "proc"):
        options = options or RunOptions()
        _check_options(options)
        self.options = options
        self.paths = [resolve_run(r, data) for r in runs]
        self._spec = {"kind": "euxfel", "inputs": list(self.paths), "options": options.to_dict()}
        self.files: list[FileInfo] = []
        # the facility's corrections flag their bad pixels (image.mask): none looked for here
        self.bad_pixels: dict[str, np.ndarray] = {}
        self._runs: dict[str, _RunIndex] = {}
        for path in self.paths:
            self._open(path)
        log.debug("opened %d run%s:\n%s", len(self.files), "s" if len(self.files) > 1 else "", self.describe())

    def _open(self, path: str) -> None:
        geometry, distance, wavelength, where = _geometry(self.options, path)
        layout = AgipdLayout.from_geometry(geometry)
        run = _RunIndex.build(path, self.options)
        geo = Geometry(centre_px=layout.centre_px, distance_m=distance,
                       pixel_size_m=(layout.pixel_size_m, layout.pixel_size_m), wavelength_m=wavelength)
        indices = np.arange(run.n_frames, dtype=np.int64)
        if self.options.frames is not None:
            indices = indices[slice(*self.options.frames)]
            if len(indices) == 0:
                raise InputError(f"--frames selects no frame of {path}, which has {run.n_frames}")
        run.layout = layout
        run.where = where
        self._runs[path] = run
        self.files.append(FileInfo(path=path, dataset=f"{self.options.detector}/{run.kind}", n_frames=run.n_frames,
                                   frame_shape=layout.shape, dtype=np.dtype(np.float32), geometry=geo,
                                   mask_shared=layout.gap_mask(), indices=indices))

    def describe(self) -> str:
        lines = []
        for info in self.files:
            run = self._runs[info.path]
            lines.append(f"  {info.path}: {info.n_frames} frames in {len(run.train_ids)} trains at "
                         f"{info.dataset} ({len(info.indices)} selected), modules {run.modules_text()}, "
                         f"placed by {run.where} into {info.frame_shape[0]}x{info.frame_shape[1]}, "
                         f"{info.geometry.describe()}")
        return "\n".join(lines)

    def recorded(self) -> dict:
        """The options as a hit list records them (:func:`recorded_run_options` reads them back):
        the geometry file by its absolute path, no frame range."""
        values = self.options.to_dict()
        if values["geom"] is not None:
            values["geom"] = os.path.abspath(values["geom"])
        values.pop("frames")
        return values

    @classmethod
    def from_spec(cls, spec: dict, opened: "EuXFELRun | None" = None) -> "EuXFELRun":
        """The runs of ``spec`` (:meth:`spec`) with its selection; ``opened``: these runs opened
        already with the same options (:func:`open_early`), else they are opened here."""
        described = {k: v for k, v in spec.items() if k not in ("indices", "bad_pixels")}
        same = opened is not None and opened._spec == described
        source = opened if same else cls(spec["inputs"], RunOptions.from_dict(spec["options"]))
        return source.select({p: np.asarray(v, dtype=np.int64) for p, v in spec["indices"].items()})

    def shards(self, n: int) -> list[dict[str, np.ndarray]]:
        """The selected frames in ``n`` parts of whole trains (MPI ranks and ``--shard`` get trains)."""
        parts: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        pieces = []
        for info in self.files:
            run = self._runs[info.path]
            train_of = run.train_of(info.indices)
            breaks = np.flatnonzero(np.diff(train_of) != 0) + 1
            pieces += [(info.path, block) for block in np.split(info.indices, breaks) if len(block)]
        sizes = np.array([len(b) for _, b in pieces], dtype=np.int64)
        ends = np.cumsum(sizes)
        total = ends[-1] if len(ends) else 0
        for (path, block), end, size in zip(pieces, ends, sizes):
            k = min(n - 1, int((end - size / 2.0) * n // max(total, 1)))
            parts[k][path] = np.concatenate([parts[k].get(path, np.zeros(0, np.int64)), block])
        return parts

    def ids(self, info: FileInfo, indices: np.ndarray) -> dict[str, np.ndarray]:
        """trainId, pulseId, cellId and missing modules of frames ``indices`` of a run."""
        return self._runs[info.path].ids(indices)

    def chunks(self, chunk_frames: int = READ_CHUNK_FRAMES,
               roi: Callable[[FileInfo], Roi | None] | Roi | None = None) -> Iterator[FrameChunk]:
        for info in self.files:
            if len(info.indices) == 0:
                continue
            region = _clip_roi(roi(info) if callable(roi) else roi, info.frame_shape)
            yield from self._runs[info.path].read(info, region, chunk_frames)


@dataclass
class _RunIndex:
    """One run's frames: trains, frames per train, each module's place in the files."""

    path: str
    options: RunOptions
    kind: str                       # CORR or DET
    train_ids: np.ndarray
    first_frame: np.ndarray         # per train: its first frame number in the run
    frames_in: np.ndarray           # per train: frames
    modules: dict                   # module -> ModuleIndex
    present: np.ndarray             # (trains, modules used) bool: the module has the train's frames
    pulse_id: np.ndarray            # per frame
    cell_id: np.ndarray
    layout: AgipdLayout | None = None
    where: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.frames_in.sum())

    def modules_text(self) -> str:
        used = sorted(self.modules)
        missing = int(np.count_nonzero(~self.present))
        return (",".join(str(m) for m in used) + f" ({self.modules[used[0]].source.split('/')[1]} names)"
                + (f"; {missing} module-trains missing" if missing else ""))

    @classmethod
    def build(cls, path: str, options: RunOptions) -> "_RunIndex":
        wanted = range(N_MODULES) if options.modules is None else sorted(set(int(m) for m in options.modules))
        found = {}
        for m in wanted:
            index, entries = _index_module(path, options, m)
            if index is not None:
                found[m] = (index, entries)
        if not found:
            raise InputError(f"{path} holds no AGIPD module of {options.detector} (neither "
                             f"{CORRECTED.format(detector=options.detector, module='N')} nor "
                             f"{LEGACY.format(detector=options.detector, module='N')}); is it an AGIPD run? "
                             "another detector name goes with --detector-name; CXI/HDF5 files in a folder are given as "
                             f"{path}/*.h5")
        tids = np.unique(np.concatenate([t[c > 0] for _, entries in found.values() for _, t, _, c in entries]))
        tids = tids[tids > 0]
        modules, counts = {}, np.zeros((len(tids), len(found)), dtype=np.int64)
        for k, (m, (index, entries)) in enumerate(sorted(found.items())):
            index.file_of = np.full(len(tids), -1, dtype=np.int64)
            index.first = np.zeros(len(tids), dtype=np.int64)
            index.count = np.zeros(len(tids), dtype=np.int64)
            for f, (_, t, first, count) in enumerate(entries):
                keep = (count > 0) & (t > 0)
                pos = np.searchsorted(tids, t[keep])
                index.file_of[pos], index.first[pos], index.count[pos] = f, first[keep], count[keep]
            counts[:, k] = index.count
            modules[m] = index
        frames_in = counts.max(axis=1)
        present = counts == frames_in[:, None]
        kind = next(iter(modules.values())).source.split("/")[1]
        first_frame = np.concatenate([[0], np.cumsum(frames_in)[:-1]]).astype(np.int64)
        run = cls(path, options, kind, tids, first_frame, frames_in, modules, present,
                  np.zeros(0, np.uint64), np.zeros(0, np.uint16))
        run.pulse_id, run.cell_id = run._read_ids()
        return run

    def _read_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """pulseId and cellId of every frame, from the first module that has its train."""
        pulse = np.zeros(self.n_frames, dtype=np.uint64)
        cell = np.zeros(self.n_frames, dtype=np.uint16)
        done = np.zeros(len(self.train_ids), dtype=bool)
        for k, (m, index) in enumerate(sorted(self.modules.items())):
            todo = self.present[:, k] & ~done & (self.frames_in > 0)
            for f, path in enumerate(index.files):
                trains = np.flatnonzero(todo & (index.file_of == f))
                if len(trains) == 0:
                    continue
                with open_h5(path) as handle:
                    p_all = np.asarray(handle[f"INSTRUMENT/{index.source}/image/pulseId"][()]).ravel()
                    c_all = np.asarray(handle[f"INSTRUMENT/{index.source}/image/cellId"][()]).ravel()
                for t in trains:
                    a, n, b = index.first[t], self.frames_in[t], self.first_frame[t]
                    pulse[b:b + n], cell[b:b + n] = p_all[a:a + n], c_all[a:a + n]
            done |= todo
        return pulse, cell

    def train_of(self, indices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first_frame, indices, side="right") - 1

    def ids(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        trains = self.train_of(indices)
        return {"trainId": self.train_ids[trains].astype(np.float64),
                "pulseId": self.pulse_id[indices].astype(np.float64),
                "cellId": self.cell_id[indices].astype(np.float64),
                "missing_modules": np.count_nonzero(~self.present[trains], axis=1).astype(np.float64)}

    def read(self, info: FileInfo, region: Roi, chunk_frames: int) -> Iterator[FrameChunk]:
        r0, r1, c0, c1 = region
        order = sorted(self.modules)
        parts = self.layout.module_parts(region, order)
        base_valid = info.mask_shared[r0:r1, c0:c1]
        trains_all = self.train_of(info.indices)
        shared = None
        log.debug("%s: region rows %d:%d, columns %d:%d lies on modules %s", os.path.basename(self.path),
                  r0, r1, c0, c1, ",".join(str(p.module) for p in parts) or "none")
        opened = _OpenModules(self.options.use_file_mask)
        try:
            for start, stop in _train_chunks(trains_all, chunk_frames):
                indices, trains = info.indices[start:stop], trains_all[start:stop]
                t0 = time.perf_counter()
                data = np.zeros((len(indices), r1 - r0, c1 - c0), dtype=np.float32)
                valid = np.zeros(data.shape, dtype=bool)
                for part in parts:
                    k = order.index(part.module)
                    self._read_part(part, indices, trains, self.present[trains, k], data, valid, opened)
                valid &= base_valid
                valid &= np.isfinite(data)
                if self.options.adu_per_photon is not None:
                    data /= self.options.adu_per_photon
                    np.rint(data, out=data)
                np.maximum(data, 0.0, out=data)  # corrected data scatter around 0 where no photon fell
                valid = _shared_valid(valid, shared)
                shared = valid if valid.ndim == 2 else shared
                log.debug("read %s frames %d:%d (%d, %d modules) in %.3f s", os.path.basename(self.path),
                          int(indices[0]), int(indices[-1]) + 1, len(indices), len(parts), time.perf_counter() - t0)
                chunk = FrameChunk(info=info, indices=indices, data=data, valid=valid, origin=(r0, c0))
                chunk.ids = self.ids(indices)
                yield chunk
        finally:
            opened.close()

    def _read_part(self, part: ModulePart, indices, trains, present, data, valid, opened: "_OpenModules") -> None:
        """Fill one module's pixels of ``data`` and ``valid`` for the frames whose train has it."""
        index = self.modules[part.module]
        rows_in_file = index.first[trains] + (indices - self.first_frame[trains])
        use = np.flatnonzero(present)
        for f, path in enumerate(index.files):
            here = use[index.file_of[trains[use]] == f]
            if len(here) == 0:
                continue
            ds, mask_ds, readers = opened.get(path, index.source)
            for a, b in _contiguous(rows_in_file[here]):
                frames = here[a:b]
                lo, hi = int(rows_in_file[frames[0]]), int(rows_in_file[frames[-1]]) + 1
                try:
                    block = _read_block(ds, readers[0], lo, hi, part.box)
                    good = _read_block(mask_ds, readers[1], lo, hi, part.box) == 0 if mask_ds is not None else None
                except (OSError, ValueError) as exc:
                    raise InputError(f"cannot read frames {lo}:{hi} of {path} ({index.source}): {exc}") from None
                _place(part, frames, block, good, data, valid)


class _OpenModules:
    """The module files a read has open, one per module source (the sequence file it reads
    now), kept open from chunk to chunk: a file opened afresh for every chunk read HDF5's
    chunk index from disk again (up to 0.4 ms to look up each frame's chunk), with the
    file's data and mask datasets and their readers."""

    def __init__(self, use_file_mask: bool):
        self.use_file_mask = use_file_mask
        self.files: dict[str, tuple] = {}   # module source -> (path, handle, data, mask, readers)

    def get(self, path: str, source: str) -> tuple:
        """(data dataset, mask dataset or None, [data reader, mask reader]) of ``source`` in ``path``."""
        if source in self.files and self.files[source][0] != path:
            self._close(self.files.pop(source))
        if source not in self.files:
            handle, readers = open_h5(path), []
            try:
                ds = handle[f"INSTRUMENT/{source}/image/data"]
                mask_ds = handle.get(f"INSTRUMENT/{source}/image/mask") if self.use_file_mask else None
                readers.append(_DirectReader.open(ds, path))
                readers.append((_DirectReader.open(mask_ds, path) or _MaskChunks.open(mask_ds))
                               if mask_ds is not None else None)
            except BaseException:
                for reader in readers:   # a data reader opened before the mask's failed
                    if reader is not None:
                        reader.close()
                handle.close()
                raise
            self.files[source] = (path, handle, ds, mask_ds, readers)
        return self.files[source][2:]

    @staticmethod
    def _close(entry: tuple) -> None:
        for reader in entry[4]:
            if reader is not None:
                reader.close()
        entry[1].close()

    def close(self) -> None:
        for entry in self.files.values():
            self._close(entry)
        self.files = {}


def _read_block(ds, direct: "_DirectReader | _MaskChunks | None", lo: int, hi: int, box: tuple) -> np.ndarray:
    """Frames lo:hi of a module dataset, rows and columns of ``box``: straight from the file's
    bytes where its frames are stored uncompressed (as :class:`_DirectReader` can), from
    :class:`_MaskChunks` for a deflated mask, else by h5py."""
    s0, s1, f0, f1 = box
    out = np.empty((hi - lo, s1 - s0, f1 - f0), dtype=ds.dtype)
    if direct is None or not direct.read(lo, hi, box, out):
        ds.read_direct(out, np.s_[lo:hi, s0:s1, f0:f1])
    return out


class _MaskChunks:
    """A deflated bad-pixel mask read chunk by chunk, each chunk's stored bytes looked up
    before they are inflated.

    A mask is the same from train to train (a static bad-pixel map, or one per memory cell),
    so its chunks, compressed alike, repeat byte for byte: inflating each of them again (an
    AGIPD module's 32-frame chunk is 8 MiB of uint32) cost a quarter of the time of scoring
    a run.  A chunk's stored bytes name its contents exactly, so a chunk whose bytes were
    inflated before is taken from :data:`_INFLATED`.  Datasets with other filters, or chunks
    that do not hold whole frames, are left to h5py."""

    def __init__(self, ds):
        self.ds = ds
        self.chunk_frames = ds.chunks[0]
        self.chunk_shape = tuple(ds.chunks)

    @classmethod
    def open(cls, ds) -> "_MaskChunks | None":
        try:
            plist = ds.id.get_create_plist()
            if (ds.chunks is None or tuple(ds.chunks[1:]) != tuple(ds.shape[1:]) or not ds.dtype.isnative
                    or plist.get_nfilters() != 1 or plist.get_filter(0)[0] != _H5Z_FILTER_DEFLATE):
                return None
            return cls(ds)
        except (AttributeError, OSError, ValueError, KeyError):
            return None

    def read(self, start: int, stop: int, box: tuple, out: np.ndarray) -> bool:
        """Fill ``out`` with frames start:stop, rows and columns of ``box``; False to fall back."""
        s0, s1, f0, f1 = box
        n = self.chunk_frames
        for first in range(start - start % n, stop, n):
            frames = self._chunk(first)
            if frames is None:
                return False
            a, b = max(start, first), min(stop, first + n)
            out[a - start:b - start] = frames[a - first:b - first, s0:s1, f0:f1]
        return True

    def _chunk(self, first: int) -> np.ndarray | None:
        """The frames of the chunk that starts at frame ``first``, inflated once per content."""
        coord = (first,) + (0,) * (self.ds.ndim - 1)
        try:
            stored = self.ds.id.get_chunk_info_by_coord(coord)
            if stored.byte_offset is None or not stored.size:   # never written: h5py gives the fill value
                return None
            filter_mask, raw = self.ds.id.read_direct_chunk(coord)
        except (OSError, ValueError, KeyError):
            return None
        if filter_mask:
            return None
        key = (self.ds.dtype.str, tuple(self.chunk_shape), raw)
        frames = _INFLATED.take(key)
        if frames is None:
            try:
                frames = np.frombuffer(_inflate.decompress(raw), dtype=self.ds.dtype)
            except (zlib.error, _inflate.error):
                return None
            if frames.size != np.prod(self.chunk_shape):
                return None
            frames = frames.reshape(self.chunk_shape)
        _INFLATED.keep(key, frames)
        return frames

    def close(self) -> None:
        pass


#: HDF5's deflate (gzip) filter
_H5Z_FILTER_DEFLATE = 1
#: at most this many bytes of inflated mask chunks are kept: one chunk of 32 frames of each of
#: AGIPD's 16 modules (8 MiB each), and some
_INFLATED_BYTES = 160 << 20


class _Inflated:
    """Inflated mask chunks (:class:`_MaskChunks`) by dtype, chunk shape and stored bytes, the
    most recently used last, at most :data:`_INFLATED_BYTES` of them; one lock, since the
    labelling page reads frames from several threads."""

    def __init__(self) -> None:
        self._chunks: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            frames = self._chunks.pop(key, None)
            if frames is not None:
                self._bytes -= frames.nbytes
            return frames

    def keep(self, key: tuple, frames: np.ndarray) -> None:
        with self._lock:
            old = self._chunks.pop(key, None)
            self._bytes += frames.nbytes - (0 if old is None else old.nbytes)
            self._chunks[key] = frames
            while self._bytes > _INFLATED_BYTES and len(self._chunks) > 1:
                self._bytes -= self._chunks.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._bytes = 0


_INFLATED = _Inflated()


def _tiles(part: ModulePart, tile: np.ndarray) -> list[tuple] | None:
    """``part`` as rectangles, one per module tile (``tile``: each pixel's), that are strided
    views both of the region and of the rows and columns read (a tile is placed whole, turned
    by quarter turns or mirrored): (region rows, region columns, read rows, read columns,
    transposed), slices; None where some tile is not such a rectangle (pixels placed one by one)."""
    tiles = []
    for t in np.unique(tile):
        at = tile == t
        rows, cols, ss, fs = part.rows[at], part.cols[at], part.ss[at], part.fs[at]
        r0, c0 = int(rows.min()), int(cols.min())
        h, w = int(rows.max()) + 1 - r0, int(cols.max()) + 1 - c0
        if h * w != len(rows):
            return None
        grid_ss, grid_fs = np.empty((h, w), np.int64), np.empty((h, w), np.int64)
        grid_ss[rows - r0, cols - c0], grid_fs[rows - r0, cols - c0] = ss, fs
        s0, f0 = int(grid_ss[0, 0]), int(grid_fs[0, 0])
        for turned in (False, True):
            s_count, f_count = (w, h) if turned else (h, w)
            s_step = _step(grid_ss, turned)
            f_step = _step(grid_fs, not turned)
            s_line = s0 + s_step * np.arange(s_count)
            f_line = f0 + f_step * np.arange(f_count)
            want_ss = s_line[None, :] if turned else s_line[:, None]
            want_fs = f_line[:, None] if turned else f_line[None, :]
            if abs(s_step) == 1 and abs(f_step) == 1 and (grid_ss == want_ss).all() and (grid_fs == want_fs).all():
                tiles.append((slice(r0, r0 + h), slice(c0, c0 + w), _stepped(s0, s_count, s_step),
                              _stepped(f0, f_count, f_step), turned))
                break
        else:
            return None
    return tiles


def _step(grid: np.ndarray, across: bool) -> int:
    """The step of ``grid`` from its first column to its second (``across``), else from its
    first row to its second; 1 where it has one."""
    if across:
        return int(grid[0, 1] - grid[0, 0]) if grid.shape[1] > 1 else 1
    return int(grid[1, 0] - grid[0, 0]) if grid.shape[0] > 1 else 1


def _stepped(start: int, count: int, step: int) -> slice:
    """``count`` indices from ``start`` by ``step`` (1 or -1) as a slice."""
    stop = start + count * step
    return slice(start, stop if stop >= 0 else None, step)


def _place(part: ModulePart, frames: np.ndarray, block: np.ndarray, good: np.ndarray | None, data, valid) -> None:
    """One module's pixels of ``block`` (and of its good-pixel mask) into the region's frames:
    tile by tile where its tiles are rectangles (:func:`_tiles`), else by flat indices along the
    pixels (several times faster than fancy indexing on two axes)."""
    n, width = len(frames), data.shape[2]
    rows = (slice(int(frames[0]), int(frames[-1]) + 1) if frames[-1] - frames[0] == n - 1
            else frames)  # consecutive frames, as they nearly always are: a view
    if part.tiles is not None:
        for region_rows, region_cols, read_rows, read_cols, turned in part.tiles:
            values = block[:, read_rows, read_cols]
            data[rows, region_rows, region_cols] = values.transpose(0, 2, 1) if turned else values
            if good is None:
                valid[rows, region_rows, region_cols] = True
            else:
                fine = good[:, read_rows, read_cols]
                valid[rows, region_rows, region_cols] = fine.transpose(0, 2, 1) if turned else fine
        return
    dst = part.rows * width + part.cols
    src = part.ss * block.shape[2] + part.fs
    flat_data, flat_valid = data.reshape(len(data), -1), valid.reshape(len(valid), -1)
    if isinstance(rows, slice):
        flat_data[rows][:, dst] = block.reshape(n, -1)[:, src]
        flat_valid[rows][:, dst] = True if good is None else good.reshape(n, -1)[:, src]
    else:
        flat_data[rows[:, None], dst[None, :]] = block.reshape(n, -1)[:, src]
        flat_valid[rows[:, None], dst[None, :]] = True if good is None else good.reshape(n, -1)[:, src]


def _shared_valid(valid: np.ndarray, last: np.ndarray | None) -> np.ndarray:
    """``valid`` (n, h, w) as one (h, w) mask when its frames agree (a static bad-pixel mask, no
    train missing modules): the very ``last`` object when equal to it, so that what later stages
    work out per mask (the fit's pixel sets, the prefilter's areas) is worked out once."""
    if len(valid) == 0 or (valid != valid[:1]).any():
        return valid
    one = valid[0]
    return last if last is not None and last.ndim == 2 and np.array_equal(last, one) else one


def _train_chunks(trains: np.ndarray, limit: int) -> Iterator[tuple[int, int]]:
    """(start, stop) positions of chunks of at most ``limit`` frames, never two trains in one:
    a chunk is the same window of frames whatever the rest of the selection (shards, MPI ranks)."""
    breaks = np.concatenate([[0], np.flatnonzero(np.diff(trains) != 0) + 1, [len(trains)]])
    for a, b in zip(breaks[:-1], breaks[1:]):
        for start in range(int(a), int(b), limit):
            yield start, min(start + limit, int(b))


def _contiguous(values: np.ndarray) -> Iterator[tuple[int, int]]:
    """(a, b) position ranges of ``values`` in which each value is the previous plus one."""
    if len(values) == 0:
        return
    breaks = np.concatenate([[0], np.flatnonzero(np.diff(values) != 1) + 1, [len(values)]])
    for a, b in zip(breaks[:-1], breaks[1:]):
        yield int(a), int(b)
