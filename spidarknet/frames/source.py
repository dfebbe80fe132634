"""Reading detector frames from CXI/HDF5 files, streamed in chunks.

A frame is identified by its :class:`FrameKey` (file, dataset path, index).  A
:class:`FrameSource` resolves input files (globs allowed), finds the frame dataset,
reads the geometry (SI units) and the mask, and yields :class:`FrameChunk` objects of at
most ``chunk_frames`` frames, optionally only a rectangular region of interest, so that
memory does not grow with the file size.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import glob
import hashlib
import logging
import zlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from spidarknet.core.defaults import READ_CHUNK_FRAMES
from spidarknet.core.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: where CXI files keep their frames, tried in this order when no dataset is named
DEFAULT_DATASETS = ("/entry_1/data_1/data", "/entry_1/instrument_1/detector_1/data")
DETECTOR_GROUP = "/entry_1/instrument_1/detector_1"
SOURCE_GROUP = "/entry_1/instrument_1/source_1"
PLANCK_J_S = 6.62607015e-34
LIGHT_M_S = 299792458.0
EV_J = 1.602176634e-19


@dataclass(frozen=True, order=True)
class FrameKey:
    """The identity of one frame: file path (as given, made absolute), dataset path, index."""

    file: str
    dataset: str
    index: int


@dataclass(frozen=True)
class Geometry:
    """Detector geometry in SI units.

    ``centre_px`` is the beam centre (x = column, y = row) in pixel-index coordinates:
    the centre of pixel ``(row j, column i)`` is at ``(i, j)``.  Fields that a file does
    not provide are ``None``; only the centre is needed for preprocessing, sizing needs
    the rest.
    """

    centre_px: tuple[float, float]
    distance_m: float | None = None
    pixel_size_m: tuple[float, float] | None = None   # (x, y)
    wavelength_m: float | None = None

    @property
    def photon_energy_J(self) -> float | None:
        if self.wavelength_m is None:
            return None
        return PLANCK_J_S * LIGHT_M_S / self.wavelength_m

    def describe(self) -> str:
        """``centre (511.5, 511.5) px, distance 0.125 m, pixels 75x75 µm, wavelength 0.729 nm``
        (``?`` for what is not known)."""
        pixels = (f"{self.pixel_size_m[0] * 1e6:.4g}x{self.pixel_size_m[1] * 1e6:.4g} µm"
                  if self.pixel_size_m is not None else "?")
        return (f"centre ({self.centre_px[0]:.1f}, {self.centre_px[1]:.1f}) px, distance "
                + (f"{self.distance_m:.4g} m" if self.distance_m is not None else "?")
                + f", pixels {pixels}, wavelength "
                + (f"{self.wavelength_m * 1e9:.4g} nm" if self.wavelength_m is not None else "?"))

    def require_scattering(self) -> None:
        """Raise unless distance, pixel size and wavelength are all known."""
        missing = [name for name, value in (("distance (--distance)", self.distance_m),
                                            ("pixel size (--pixel-size)", self.pixel_size_m),
                                            ("wavelength (--wavelength or --energy-ev)", self.wavelength_m))
                   if value is None]
        if missing:
            raise InputError("the geometry lacks " + ", ".join(missing) + ": give it on the command line")


@dataclass(frozen=True)
class GeometryOverrides:
    """Values given by the user that replace what the files say."""

    centre_px: tuple[float, float] | None = None
    distance_m: float | None = None
    pixel_size_m: float | None = None
    wavelength_m: float | None = None

    def apply(self, geometry: Geometry) -> Geometry:
        changes = {}
        if self.centre_px is not None:
            changes["centre_px"] = tuple(float(v) for v in self.centre_px)
        if self.distance_m is not None:
            changes["distance_m"] = float(self.distance_m)
        if self.pixel_size_m is not None:
            changes["pixel_size_m"] = (float(self.pixel_size_m), float(self.pixel_size_m))
        if self.wavelength_m is not None:
            changes["wavelength_m"] = float(self.wavelength_m)
        return replace(geometry, **changes) if changes else geometry


@dataclass
class FileInfo:
    """One input file after checking: its frame dataset, shape, geometry and mask."""

    path: str
    dataset: str
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    geometry: Geometry
    mask_shared: np.ndarray | None = None   # bool (H, W), True = pixel usable
    mask_dataset: str | None = None          # per-frame mask dataset (N, H, W), CXI bits
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def key(self, index: int) -> FrameKey:
        return FrameKey(self.path, self.dataset, int(index))


@dataclass
class FrameChunk:
    """Consecutive frames of one file, possibly only a region of interest.

    ``data`` is (n, h, w) in the file's dtype; ``valid`` is a bool (h, w) or (n, h, w)
    array, True where a pixel may be used; ``origin`` is the (row, column) of
    ``data[:, 0, 0]`` in the full frame; ``ids``, where the frames have facility
    identifiers (European XFEL runs: trainId, pulseId, cellId), one number array per name.
    """

    info: FileInfo
    indices: np.ndarray
    data: np.ndarray
    valid: np.ndarray
    origin: tuple[int, int] = (0, 0)
    ids: dict | None = None

    @property
    def keys(self) -> list[FrameKey]:
        return [self.info.key(i) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)


Roi = tuple[int, int, int, int]  # row0, row1, col0, col1 (half-open)


def parse_frame_range(text: str | None) -> slice | None:
    """``START:STOP[:STEP]`` (Python slice rules, negatives allowed) or a single index ``N``."""
    if text is None or text == "":
        return None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            i = int(parts[0])
            return slice(i, i + 1 if i != -1 else None)
        if len(parts) in (2, 3):
            values = [int(p) if p.strip() else None for p in parts]
            if len(values) == 3 and values[2] is not None and values[2] <= 0:
                raise ValueError
            return slice(*values)
    except ValueError:
        pass
    raise ConfigError(f"--frames {text!r} is not START:STOP[:STEP] (e.g. 0:1000 or 100:)")


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Absolute paths of the files matching ``patterns`` (globs), in order, without repeats."""
    if not patterns:
        raise InputError("no input files given")
    paths: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"no file matches {pattern!r}")
        else:
            if not os.path.exists(pattern):
                raise InputError(f"input file {pattern} does not exist")
            matches = [pattern]
        for match in matches:
            full = os.path.abspath(match)
            if os.path.isdir(full):
                raise InputError(f"{match} is a folder; give the HDF5/CXI files inside it (e.g. {match}/*.cxi)")
            if full not in paths:
                paths.append(full)
    return paths


def _h5py():
    import h5py
    try:
        import hdf5plugin  # noqa: F401  registers bitshuffle, Blosc, LZ4, Zstd... with h5py's HDF5
    except ImportError:    # built-in filters only; describe_missing_filter says what to install
        pass
    return h5py


def open_h5(path: str):
    """Open an HDF5 file read-only, turning h5py's errors into an :class:`InputError`."""
    h5py = _h5py()
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "already open for write" in str(exc):  # a writer holds it in SWMR mode: read alongside
            try:
                return h5py.File(path, "r", swmr=True)
            except OSError:
                pass
        raise InputError(f"{path} is not a readable HDF5/CXI file ({exc}); "
                         "is it complete? (a file still being written or truncated by a copy looks like this)") from None


#: what h5py and numpy raise on a malformed file: a member missing or of the wrong kind,
#: a dataset of the wrong shape or type, an attribute that is not a number
MALFORMED = (KeyError, ValueError, TypeError, IndexError, AttributeError)


@contextlib.contextmanager
def reading(path, what: str = "it", hint: str = "is it the file you meant, and complete?"):
    """A block that reads ``what`` from the file ``path``: h5py's and numpy's errors on a
    malformed file (:data:`MALFORMED`) become one :class:`InputError` naming the file.
    Only reading belongs in the block, so that a bug is never taken for a bad file."""
    try:
        yield
    except MALFORMED as exc:
        raise InputError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); {hint}") from exc


def list_datasets(handle, min_ndim: int = 0) -> list[tuple[str, tuple]]:
    """(path, shape) of every dataset in an open file with at least ``min_ndim`` dimensions."""
    h5py = _h5py()
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim >= min_ndim:
            found.append(("/" + name, obj.shape))
    handle.visititems(visit)
    return found


def describe_datasets(handle, ndim: int | None = None, near: str | None = None) -> str:
    """A short list of a file's datasets for error messages (only ``ndim``-D ones if given).

    ``near``, a path the file lacks: the most similar dataset is named first ("did you mean
    /truth/label?" for /truth/labels) and the list starts with those in the same groups."""
    found = sorted(list_datasets(handle), key=lambda item: -len(item[1]))
    if ndim is not None:
        found = [item for item in found if len(item[1]) == ndim] or found
    if not found:
        return "the file holds no datasets"
    hint = ""
    if near is not None:
        wanted = "/" + near.strip("/")
        found.sort(key=lambda item: _path_likeness(wanted, item[0]), reverse=True)
        close = difflib.get_close_matches(wanted, [p for p, _ in found], n=1)
        hint = f"did you mean {close[0]}? " if close else ""
    shown = ", ".join(f"{p} {s}" for p, s in found[:8])
    more = f" and {len(found) - 8} more" if len(found) > 8 else ""
    return f"{hint}datasets in the file: {shown}{more}"


def _path_likeness(wanted: str, path: str) -> tuple[int, float]:
    """How near ``path`` lies to ``wanted``: the groups they share, then the likeness of the names."""
    shared = 0
    for a, b in zip(wanted.split("/")[1:-1], path.split("/")[1:-1]):
        if a != b:
            break
        shared += 1
    return shared, difflib.SequenceMatcher(None, wanted, path).ratio()


def _resolve_group(handle, dataset_path: str) -> str | None:
    """The detector group a frame dataset belongs to, following CXI soft links."""
    h5py = _h5py()
    link = handle.get(dataset_path, getlink=True)
    target = dataset_path
    if isinstance(link, h5py.SoftLink):
        target = link.path
    parent = target.rsplit("/", 1)[0]
    if parent.rsplit("/", 1)[-1].startswith("detector") and parent in handle:
        return parent
    return DETECTOR_GROUP if DETECTOR_GROUP in handle else None


def _scalar(handle, path: str) -> float | None:
    if path not in handle:
        return None
    try:
        value = np.asarray(handle[path][()], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if value.size < 1 or not np.isfinite(value.flat[0]):
        return None
    return float(value.flat[0])


def read_geometry(handle, dataset_path: str, frame_shape: tuple[int, int]) -> Geometry:
    """Geometry from a CXI file; the centre from ``corner_position`` or the array centre."""
    h, w = frame_shape
    group = _resolve_group(handle, dataset_path)
    distance = px = py = None
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    if group is not None:
        distance = _scalar(handle, f"{group}/distance")
        px = _scalar(handle, f"{group}/x_pixel_size")
        py = _scalar(handle, f"{group}/y_pixel_size")
        corner_path = f"{group}/corner_position"
        if px and py and corner_path in handle:
            corner = np.asarray(handle[corner_path][()], dtype=np.float64).ravel()
            if corner.size >= 2 and np.all(np.isfinite(corner[:2])):
                # pixel i's centre sits at corner + (i + 0.5) * pixel; the beam is at 0
                centre = (-corner[0] / px - 0.5, -corner[1] / py - 0.5)
    wavelength = _scalar(handle, f"{SOURCE_GROUP}/wavelength")
    if wavelength is None:
        energy = _scalar(handle, f"{SOURCE_GROUP}/energy")
        if energy:
            wavelength = PLANCK_J_S * LIGHT_M_S / energy
    pixel = (px, py if py else px) if px else None
    return Geometry(centre_px=(float(centre[0]), float(centre[1])), distance_m=distance,
                    pixel_size_m=pixel, wavelength_m=wavelength)


def load_mask_file(spec: str, frame_shape: tuple[int, int], invert: bool = False) -> np.ndarray:
    """A mask from ``FILE.npy`` or ``FILE.h5[:DATASET]``; returns bool, True = usable.

    By CXI convention any non-zero value excludes a pixel; ``invert`` reads files in
    which non-zero means good (as Cheetah and CrystFEL masks do).
    """
    path, _, dataset = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    if not os.path.exists(path):
        raise InputError(f"mask file {path} does not exist")
    if path.endswith(".npy"):
        try:
            mask = np.load(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read mask {path}: {exc}") from None
    else:
        with open_h5(path) as handle:
            if not dataset:
                for candidate in (f"{DETECTOR_GROUP}/mask_shared", "/mask", "/data/data", "/data"):
                    if candidate in handle and isinstance(handle[candidate], _h5py().Dataset):
                        dataset = candidate
                        break
                else:
                    two_d = [p for p, s in list_datasets(handle) if len(s) == 2]
                    if len(two_d) != 1:
                        raise InputError(f"cannot tell which dataset of {path} is the mask; "
                                         f"name it as {path}:/path/to/mask ({describe_datasets(handle)})")
                    dataset = two_d[0]
            if dataset not in handle:
                raise InputError(f"mask dataset {dataset} not in {path} ({describe_datasets(handle)})")
            mask = handle[dataset][()]
    mask = np.asarray(mask)
    if mask.shape != tuple(frame_shape):
        raise InputError(f"mask {spec} has shape {mask.shape}, the frames are {tuple(frame_shape)}")
    bad = mask == 0 if invert else mask != 0
    return ~bad


class FrameSource:
    """Frames of several files, checked up front and streamed in chunks.

    Parameters
    ----------
    inputs : file paths or glob patterns
    dataset : frame dataset path; ``None`` tries the CXI locations
    frames : a slice applied to every file's frame axis (``--frames``)
    geometry : user overrides of what the files say
    mask : a separate mask file spec (see :func:`load_mask_file`)
    bad_pixels : find each file's hot and dead pixels in a sample of its frames and mask them
        (:mod:`spidarknet.frames.badpixels`); or, as a source rebuilt from its :meth:`spec`,
        the flat indices found before, per file path
    """

    def __init__(self, inputs: Sequence[str], *, dataset: str | None = None,
                 frames: slice | None = None, geometry: GeometryOverrides | None = None,
                 mask: str | None = None, mask_invert: bool = False, use_file_mask: bool = True,
                 bad_pixels: bool | dict = False):
        self.paths = expand_inputs(inputs)
        self.files: list[FileInfo] = []
        overrides = geometry or GeometryOverrides()
        self._spec = {"inputs": list(self.paths), "dataset": dataset,
                      "geometry": dataclasses.asdict(overrides), "mask": mask,
                      "mask_invert": mask_invert, "use_file_mask": use_file_mask}
        external_mask = None
        masks: dict[tuple, np.ndarray] = {}
        for path in self.paths:
            with open_h5(path) as handle:
                info = self._inspect(handle, path, dataset, overrides, use_file_mask)
            if mask is not None:
                if external_mask is None:
                    external_mask = load_mask_file(mask, info.frame_shape, mask_invert)
                if external_mask.shape != info.frame_shape:
                    raise InputError(f"mask {mask} has shape {external_mask.shape}, {path} has frames "
                                     f"of {info.frame_shape}")
                info.mask_shared = external_mask if info.mask_shared is None else info.mask_shared & external_mask
            if info.mask_shared is not None:
                # the files of a run share one mask: keep one copy (1 MB each for a pnCCD)
                digest = hashlib.sha1(np.packbits(info.mask_shared).tobytes()).hexdigest()
                info.mask_shared = masks.setdefault((digest, info.mask_shared.shape), info.mask_shared)
            all_indices = np.arange(info.n_frames, dtype=np.int64)
            info.indices = all_indices[frames] if frames is not None else all_indices
            if frames is not None and len(info.indices) == 0:
                raise InputError(f"--frames {frames.start}:{frames.stop} selects no frame of {path}, "
                                 f"which has {info.n_frames}")
            self.files.append(info)
        self.bad_pixels: dict[str, np.ndarray] = {}
        if bad_pixels:
            self.mask_bad_pixels(bad_pixels if isinstance(bad_pixels, dict) else None)
        if self.files:
            log.debug("opened %d file%s:\n%s", len(self.files), "s" if len(self.files) > 1 else "",
                      self.describe())

    @staticmethod
    def _inspect(handle, path: str, dataset: str | None, overrides: GeometryOverrides,
                 use_file_mask: bool) -> FileInfo:
        h5py = _h5py()
        if dataset is None:
            for candidate in DEFAULT_DATASETS:
                if candidate in handle:
                    dataset = candidate
                    break
            else:
                raise InputError(f"{path} has no frames at {' or '.join(DEFAULT_DATASETS)}; name the "
                                 f"dataset with --dataset ({describe_datasets(handle)})")
        elif dataset not in handle:
            raise InputError(f"{path} has no dataset {dataset} ({describe_datasets(handle, near=dataset)})")
        try:
            ds = handle[dataset]
        except (KeyError, ValueError, OSError) as exc:  # a dangling soft link, say
            raise InputError(f"cannot open {dataset} in {path}: {exc}") from None
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"{dataset} in {path} is a group, not a dataset ({describe_datasets(handle)})")
        if ds.ndim != 3:
            raise InputError(f"{dataset} in {path} has shape {ds.shape}; frames must be a 3-D stack "
                             "(frames, rows, columns)")
        if ds.dtype.kind not in "uif":
            raise InputError(f"{dataset} in {path} holds {ds.dtype}, not numbers")
        from spidarknet.frames.filters import describe_missing_filter
        problem = describe_missing_filter(ds, what=f"the frames of {path} ({dataset})")
        if problem:
            raise InputError(problem)
        frame_shape = (int(ds.shape[1]), int(ds.shape[2]))
        geometry = overrides.apply(read_geometry(handle, dataset, frame_shape))
        mask_shared = None
        mask_dataset = None
        group = _resolve_group(handle, dataset)
        if use_file_mask and group is not None:
            shared = f"{group}/mask_shared"
            per_frame = f"{group}/mask"
            if shared in handle:
                m = _mask_dataset(handle, shared, path)
                if m.shape == frame_shape:
                    mask_shared = m[()] == 0
                else:
                    log.warning("%s in %s has shape %s, the frames %s: not used as the mask (give --mask "
                                "FILE, or --no-file-mask to silence this)", shared, path, m.shape, frame_shape)
            if per_frame in handle:
                m = _mask_dataset(handle, per_frame, path)
                if m.shape == frame_shape:
                    mask_shared = (m[()] == 0) if mask_shared is None else mask_shared & (m[()] == 0)
                elif m.shape == ds.shape:
                    mask_dataset = per_frame
                else:
                    raise InputError(f"{per_frame} in {path} has shape {m.shape}, frames are {ds.shape}")
        return FileInfo(path=path, dataset=dataset, n_frames=int(ds.shape[0]), frame_shape=frame_shape,
                        dtype=ds.dtype, geometry=geometry, mask_shared=mask_shared,
                        mask_dataset=mask_dataset)

    def __len__(self) -> int:
        return sum(len(f.indices) for f in self.files)

    def describe(self) -> str:
        """One line per file for the log: path, frames (and how many are selected, where not
        all), shape, type, geometry, mask."""
        def line(info: FileInfo) -> str:
            selected = f" ({len(info.indices)} selected)" if len(info.indices) != info.n_frames else ""
            mask = ("per-frame mask" if info.mask_dataset else "shared mask" if info.mask_shared is not None
                    else "no mask")
            return (f"  {info.path}: {info.n_frames} frames at {info.dataset}{selected}, {info.frame_shape[0]}x"
                    f"{info.frame_shape[1]} {info.dtype}, {info.geometry.describe()}, {mask}")
        return "\n".join(line(info) for info in self.files)

    def mask_bad_pixels(self, known: dict | None = None) -> None:
        """Mask each file's hot and dead pixels: ``known`` (flat indices per path) or found in
        a sample of its selected frames, said once per file where there are any (what
        ``bad_pixels`` does when the source is made: a caller may open first, then mask)."""
        from spidarknet.frames.badpixels import BadPixelCounter, sample_indices
        for info in self.files:
            if known is not None:
                flat = np.asarray(known.get(info.path, []), dtype=np.int64)
            else:
                counter = BadPixelCounter(info.frame_shape)
                sample = self.select({info.path: info.indices[sample_indices(len(info.indices))]})
                for chunk in sample.chunks():
                    counter.add(chunk.data, np.asarray(chunk.valid))
                found = counter.result()
                flat = np.concatenate([found.hot, found.dead])
                log.debug("%s: %s", info.path, found.describe())
                if len(found):
                    log.warning("%s: masked %s; --keep-bad-pixels keeps them",
                                os.path.basename(info.path), found.describe())
            self.bad_pixels[info.path] = flat
            if len(flat):
                usable = (np.ones(info.frame_shape, dtype=bool) if info.mask_shared is None
                          else info.mask_shared.copy())
                usable.ravel()[flat] = False
                info.mask_shared = usable

    def spec(self) -> dict:
        """JSON-able arguments that rebuild this source (in another process), with its selection
        and the bad pixels found (not looked for again)."""
        return dict(self._spec, indices={f.path: f.indices.tolist() for f in self.files},
                    bad_pixels={path: flat.tolist() for path, flat in self.bad_pixels.items()})

    @classmethod
    def from_spec(cls, spec: dict) -> "FrameSource":
        geometry = GeometryOverrides(**{k: (tuple(v) if isinstance(v, list) else v)
                                        for k, v in spec["geometry"].items()})
        source = cls(spec["inputs"], dataset=spec["dataset"], geometry=geometry, mask=spec["mask"],
                     mask_invert=spec["mask_invert"], use_file_mask=spec["use_file_mask"],
                     bad_pixels=spec.get("bad_pixels") or False)
        return source.select({p: np.asarray(v, dtype=np.int64) for p, v in spec["indices"].items()})

    @classmethod
    def from_keys(cls, keys: Sequence[FrameKey], what: str = "hit list", **options) -> list["FrameSource"]:
        """Frame sources holding exactly the frames ``keys`` name (as written in a hit list).

        One source per dataset path as written (an empty one: the CXI default), in order of
        first appearance, its files likewise (see :func:`group_keys`); ``options`` go to the
        constructor (geometry overrides, mask, ...).  Checked up front: a file that is gone,
        a dataset it lacks or a frame beyond its end is an :class:`InputError` naming it and
        ``what`` named it.
        """
        keys = list(keys)
        groups = group_keys(keys)
        runs = [f for files in groups.values() for f in files if os.path.isdir(f)]
        if runs:
            raise InputError(f"the {what} names the European XFEL run {runs[0]}: give the run as INPUT with its "
                             "options (--geom, --adu-per-photon, ...), e.g. size RUN --hits hits.csv; this command "
                             "reads CXI/HDF5 files only")
        missing = [f for f in dict.fromkeys(f for files in groups.values() for f in files)
                   if not os.path.isfile(f)]
        if missing:
            raise InputError(f"the frame file {missing[0]} named in the {what} does not exist"
                             + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else "")
                             + "; run from the folder the hit list was made in, or move the files back")
        sources = []
        for dataset, files in groups.items():
            source = cls(list(files), dataset=dataset or None, **options)
            wanted = {}
            for info in source.files:
                idx = np.unique(np.asarray([keys[p].index for p in files.get(info.path, [])], dtype=np.int64))
                outside = idx[(idx < 0) | (idx >= info.n_frames)]
                if len(outside):
                    raise InputError(f"{info.path} has {info.n_frames} frames at {info.dataset}, the {what} "
                                     f"names frame {int(outside[0])}"
                                     + (f" and {len(outside) - 1} more beyond its end" if len(outside) > 1
                                        else "") + "; is it the file the list was made from?")
                wanted[info.path] = idx
            sources.append(source.select(wanted))
        return sources

    def shards(self, n: int) -> list[dict[str, np.ndarray]]:
        """The selected frames cut into ``n`` contiguous, nearly equal parts in key order."""
        sizes = np.array([len(f.indices) for f in self.files], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        bounds = np.linspace(0, starts[-1], n + 1).round().astype(np.int64)
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            part = {}
            for k, info in enumerate(self.files):
                lo, hi = max(a, starts[k]), min(b, starts[k + 1])
                if lo < hi:
                    part[info.path] = info.indices[lo - starts[k]:hi - starts[k]]
            parts.append(part)
        return parts

    def keys(self) -> Iterator[FrameKey]:
        for info in self.files:
            for i in info.indices:
                yield info.key(i)

    def select(self, wanted: dict[str, np.ndarray]) -> "FrameSource":
        """A new source of the given frame indices per file path (sorted, unique) among this
        one's; this source is left as it is (nothing is read again)."""
        return self._with(self.paths, [dataclasses.replace(info, indices=np.intersect1d(
            info.indices, np.asarray(wanted.get(info.path, []), dtype=np.int64))) for info in self.files])

    def any_frames(self, info: FileInfo, indices: np.ndarray) -> "FrameSource":
        """A new source of the frames ``indices`` (sorted, unique) of this source's file
        ``info``, whatever this one selects of it (a file-wide sample); nothing is read."""
        return self._with([info.path], [dataclasses.replace(info, indices=np.asarray(indices, dtype=np.int64))])

    def _with(self, paths: list[str], files: list[FileInfo]) -> "FrameSource":
        """A copy of this source (the same reader settings) of these paths and files."""
        new = copy.copy(self)
        new.paths = list(paths)
        new._spec = dict(self._spec)
        new.files = files
        return new

    def select_keys(self, keys: Iterable[FrameKey]) -> "FrameSource":
        """A new source of the frames ``keys`` name among this one's (a key's file by absolute
        path, its dataset as written or empty)."""
        wanted: dict[str, list[int]] = {}
        datasets = {info.path: info.dataset for info in self.files}
        for key in keys:
            path = os.path.abspath(key.file)
            if path in datasets and key.dataset in ("", datasets[path]):
                wanted.setdefault(path, []).append(int(key.index))
        return self.select(wanted)

    def chunks(self, chunk_frames: int = READ_CHUNK_FRAMES,
               roi: Callable[[FileInfo], Roi | None] | Roi | None = None) -> Iterator[FrameChunk]:
        """Yield the selected frames in chunks of consecutive indices, file by file.

        ``roi`` (rows ``r0:r1``, columns ``c0:c1``, clipped to the frame) restricts the
        read to a region; it may be a callable of the :class:`FileInfo`.
        """
        for info in self.files:
            if len(info.indices) == 0:
                continue
            region = roi(info) if callable(roi) else roi
            r0, r1, c0, c1 = _clip_roi(region, info.frame_shape)
            valid_shared = (info.mask_shared[r0:r1, c0:c1] if info.mask_shared is not None
                            else np.ones((r1 - r0, c1 - c0), dtype=bool))
            with open_h5(info.path) as handle:
                ds = handle[info.dataset]
                mask_ds = handle[info.mask_dataset] if info.mask_dataset else None
                direct = _DirectReader.open(ds, info.path) or _DeflateReader.open(ds)
                mask_reader = _DeflateReader.open(mask_ds, shuffled=True) if mask_ds is not None else None
                try:
                    yield from self._read_runs(info, ds, (mask_ds, mask_reader), direct, chunk_frames,
                                               (r0, r1, c0, c1), valid_shared)
                finally:
                    if direct is not None:
                        direct.close()

    @staticmethod
    def _read_runs(info, ds, masks, direct, chunk_frames, region, valid_shared) -> Iterator[FrameChunk]:
        """The chunks of ``info``'s frames; ``masks``: its per-frame mask dataset (or None) and
        a :class:`_DeflateReader` of it (or None)."""
        r0, r1, c0, c1 = region
        mask_ds, mask_reader = masks
        name = os.path.basename(info.path)
        for run in _runs(info.indices, chunk_frames):
            start, stop = int(run[0]), int(run[-1]) + 1
            t0 = time.perf_counter()
            try:
                data = np.empty((stop - start, r1 - r0, c1 - c0), dtype=ds.dtype)
                if direct is None or not direct.read(start, stop, (r0, r1, c0, c1), data):
                    ds.read_direct(data, np.s_[start:stop, r0:r1, c0:c1])
                valid = valid_shared
                if mask_ds is not None:
                    unmasked = np.empty(data.shape, dtype=bool)
                    if mask_reader is None or not mask_reader.zeros(start, stop, region, unmasked):
                        unmasked = mask_ds[start:stop, r0:r1, c0:c1] == 0
                    valid = valid_shared & unmasked
            except (OSError, *MALFORMED) as exc:
                raise InputError(f"cannot read frames {start}:{stop} of {info.path}: {exc} "
                                 "(file damaged, or compressed with a filter that is not installed?)"
                                 ) from None
            log.debug("read %s frames %d:%d (%d, rows %d:%d, columns %d:%d) in %.3f s", name, start, stop,
                      len(run), r0, r1, c0, c1, time.perf_counter() - t0)
            yield FrameChunk(info=info, indices=run, data=data, valid=valid, origin=(r0, c0))


def _mask_dataset(handle, name: str, path: str):
    """The mask dataset ``name`` of the open file ``path``: integer (or boolean) CXI bits."""
    h5py = _h5py()
    m = handle[name]
    if not isinstance(m, h5py.Dataset) or m.dtype.kind not in "uib":
        kind = m.dtype if isinstance(m, h5py.Dataset) else "a group"
        raise InputError(f"{name} in {path} holds {kind}, not integer CXI mask bits; fix the file, or "
                         "ignore its mask with --no-file-mask (and give --mask FILE)")
    return m


def group_keys(keys: Iterable[FrameKey]) -> dict[str, dict[str, list[int]]]:
    """Positions in ``keys`` per dataset path as written and per absolute file path, both in
    order of first appearance: the order of :meth:`FrameSource.from_keys`' sources and files,
    the order their frames are read in (indices ascending within a file)."""
    groups: dict[str, dict[str, list[int]]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key.dataset, {}).setdefault(os.path.abspath(key.file), []).append(position)
    return groups


class _DirectReader:
    """Region reads straight from the file's bytes for uncompressed frames.

    HDF5 copies a whole chunk to hand out part of it: for a 256×256 region of a
    1024×1024 frame stored one frame per chunk that is 16 times the bytes needed.
    Where the frames are stored uncompressed (contiguously, or one frame per chunk),
    their byte offsets are known (:class:`_ChunkOffsets`) and each frame's rows of the
    region are read with one ``preadv`` into a buffer kept from frame to frame (half the
    CPU of mapping each frame's pages; nothing of the file stays in the process's memory).
    Anything else (filters, other chunk shapes, virtual or external data, unallocated
    chunks) falls back to h5py.
    """

    def __init__(self, path: str, offsets: Callable[[int], int | None], frame_shape, dtype):
        self.file = open(path, "rb", buffering=0)
        self.size = os.fstat(self.file.fileno()).st_size
        self.offsets = offsets
        self.frame_shape = frame_shape
        self.dtype = dtype
        self.frame_bytes = int(np.prod(frame_shape)) * dtype.itemsize
        self._buffer = np.zeros(0, dtype=np.uint8)

    @classmethod
    def open(cls, ds, path: str) -> "_DirectReader | None":
        try:
            if not ds.dtype.isnative or ds.dtype.kind not in "uif" or ds.is_virtual:
                return None
            plist = ds.id.get_create_plist()
            if plist.get_nfilters() or plist.get_external_count():
                return None
            frame_shape = ds.shape[1:]
            if ds.chunks is None:
                base = ds.id.get_offset()
                if base is None:
                    return None
                nbytes = int(np.prod(frame_shape)) * ds.dtype.itemsize
                return cls(path, lambda i: base + i * nbytes, frame_shape, ds.dtype)
            if tuple(ds.chunks) != (1,) + tuple(frame_shape):
                return None
            return cls(path, _ChunkOffsets(ds), frame_shape, ds.dtype)
        except (AttributeError, OSError, ValueError, KeyError):
            return None

    def read(self, start: int, stop: int, roi: Roi, out: np.ndarray) -> bool:
        """Fill ``out`` with frames start:stop of region ``roi``; False to fall back."""
        r0, r1, c0, c1 = roi
        row_bytes = self.frame_shape[1] * self.dtype.itemsize
        nbytes = (r1 - r0) * row_bytes
        whole_rows = c0 == 0 and c1 == self.frame_shape[1] and out.flags.c_contiguous and out.dtype == self.dtype
        if not whole_rows and self._buffer.size < nbytes:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
        rows = None if whole_rows else self._buffer[:nbytes].view(self.dtype).reshape(r1 - r0, self.frame_shape[1])
        for k, i in enumerate(range(start, stop)):
            offset = self.offsets(i)
            if offset is None or offset + self.frame_bytes > self.size:
                return False
            target = out[k] if whole_rows else rows   # out[k]: C-ordered, its rows whole
            if _pread(self.file, memoryview(target).cast("B"), offset + r0 * row_bytes) != nbytes:
                return False
            if not whole_rows:
                out[k] = rows[:, c0:c1]
        return True

    def close(self) -> None:
        self.file.close()


def _pread(file, buffer: memoryview, offset: int) -> int:
    """Bytes of ``file`` from ``offset`` into ``buffer``; how many were read."""
    if hasattr(os, "preadv"):
        return os.preadv(file.fileno(), [buffer], offset)
    file.seek(offset)
    return file.readinto(buffer) or 0


class _ChunkOffsets:
    """The byte offsets in the file of a dataset's one-frame chunks, by frame.

    HDF5 looks a chunk up in its index in some 50 µs; its chunk iterator lists every chunk
    of a dataset in about 1 µs each.  The first few frames (a thirty-second of the dataset's)
    are looked up one by one (a fit reading a few frames again); past them the whole table
    is made at once (where this HDF5 has the iterator)."""

    def __init__(self, ds):
        self.ds = ds
        self.table: np.ndarray | None = None
        self.looked_up = 0
        self.iterable = hasattr(ds.id, "chunk_iter")

    def __call__(self, i: int) -> int | None:
        if self.table is None and self.iterable and self.looked_up * 32 >= self.ds.shape[0]:
            self.table = self._all()
        if self.table is not None:
            offset = int(self.table[i])
            return offset if offset >= 0 else None
        self.looked_up += 1
        info = self.ds.id.get_chunk_info_by_coord((i,) + (0,) * (self.ds.ndim - 1))
        return info.byte_offset if info.byte_offset is not None and info.size else None

    def _all(self) -> np.ndarray | None:
        """Every frame's chunk offset (-1: not written); None where the iterator fails."""
        table = np.full(self.ds.shape[0], -1, dtype=np.int64)

        def note(stored) -> None:
            if stored.byte_offset is not None and stored.size:
                table[stored.chunk_offset[0]] = stored.byte_offset
        try:
            self.ds.id.chunk_iter(note)
        except (AttributeError, NotImplementedError, OSError, RuntimeError, ValueError):
            self.iterable = False
            return None
        return table


#: HDF5's identifiers of its built-in deflate (gzip) and byte-shuffle filters
_H5Z_FILTER_DEFLATE = 1
_H5Z_FILTER_SHUFFLE = 2

try:  # ISA-L's inflate: the same bytes as zlib's at 2-3 times its speed (deflate streams of simulated frames)
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - isal is in install_requires; zlib reads the same
    _inflate = zlib


class _DeflateReader:
    """Region reads of frames stored one frame per chunk with deflate (gzip) alone, the
    simulator's default: each chunk's bytes as stored (``read_direct_chunk``), inflated by
    ISA-L (``isal``; ``zlib`` without it) only up to the region's last row.  HDF5's own
    filter inflates into a buffer it grows as it goes and copies the frame again to hand out
    a region: this costs about half as much CPU per frame (a 1024 × 1024 uint16 frame of the
    simulator: 1.5 → 0.77 ms; ISA-L's inflate about 0.3 ms), the bytes are the same.  Per-frame
    masks stored with the byte shuffle before deflate (measured-like files) are read for
    :meth:`zeros` alone: a value is 0 where each of its byte planes is.  A chunk stored with
    its filter skipped (a filter mask), one not written, or anything else falls back to h5py."""

    def __init__(self, ds, frame_shape, dtype, shuffled: bool = False):
        self.ds, self.frame_shape, self.dtype, self.shuffled = ds, tuple(frame_shape), dtype, shuffled

    @classmethod
    def open(cls, ds, shuffled: bool = False) -> "_DeflateReader | None":
        """A reader of ``ds``, or None where it is not stored so; ``shuffled``: take a byte
        shuffle before the deflate too (for :meth:`zeros`)."""
        try:
            frame_shape = ds.shape[1:]
            if (not ds.dtype.isnative or ds.dtype.kind not in "uif" or ds.is_virtual or len(frame_shape) != 2
                    or ds.chunks is None or tuple(ds.chunks) != (1,) + tuple(frame_shape)):
                return None
            plist = ds.id.get_create_plist()
            filters = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
            if plist.get_external_count():
                return None
            if filters == [_H5Z_FILTER_DEFLATE]:
                return cls(ds, frame_shape, ds.dtype)
            if shuffled and filters == [_H5Z_FILTER_SHUFFLE, _H5Z_FILTER_DEFLATE] and ds.dtype.itemsize > 1:
                return cls(ds, frame_shape, ds.dtype, shuffled=True)
            return None
        except (AttributeError, OSError, ValueError, KeyError):
            return None

    def read(self, start: int, stop: int, roi: Roi, out: np.ndarray) -> bool:
        """Fill ``out`` with frames start:stop of region ``roi``; False to fall back."""
        if self.shuffled:
            return False
        r0, r1, c0, c1 = roi
        width = self.frame_shape[1]
        for k, i in enumerate(range(start, stop)):
            raw = self._inflated(i, r1 * width * self.dtype.itemsize)   # the bytes up to the region's last row
            if raw is None:
                return False
            out[k] = np.frombuffer(raw, dtype=self.dtype).reshape(r1, width)[r0:r1, c0:c1]
        return True

    def zeros(self, start: int, stop: int, roi: Roi, out: np.ndarray) -> bool:
        """Fill ``out`` (bool) with whether each value of frames start:stop of region ``roi``
        is 0; False to fall back."""
        r0, r1, c0, c1 = roi
        rows, width = self.frame_shape
        size = self.dtype.itemsize
        for k, i in enumerate(range(start, stop)):
            if not self.shuffled:
                raw = self._inflated(i, r1 * width * size)
                if raw is None:
                    return False
                out[k] = np.frombuffer(raw, dtype=self.dtype).reshape(r1, width)[r0:r1, c0:c1] == 0
                continue
            # byte plane j holds byte j of every value: the last one is needed up to the region's last row
            raw = self._inflated(i, (size - 1) * rows * width + r1 * width)
            if raw is None:
                return False
            planes = np.frombuffer(raw, dtype=np.uint8)
            found = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
            for j in range(size):
                plane = planes[j * rows * width:j * rows * width + r1 * width].reshape(r1, width)
                found |= plane[r0:r1, c0:c1]
            np.equal(found, 0, out=out[k])
        return True

    def _inflated(self, i: int, wanted: int) -> bytes | None:
        """The first ``wanted`` bytes of frame ``i``'s chunk, inflated; None to fall back."""
        try:
            where = self.ds.id.get_chunk_info_by_coord((i, 0, 0))
            if where.byte_offset is None or not where.size:   # never written: h5py gives the fill value
                return None
            mask, stored = self.ds.id.read_direct_chunk((i, 0, 0))
            if mask:
                return None
            raw = _inflate.decompressobj().decompress(stored, wanted)
        except (OSError, KeyError, ValueError, zlib.error, _inflate.error):
            return None
        return raw if len(raw) == wanted else None

    def close(self) -> None:
        pass


def _clip_roi(region: Roi | None, shape: tuple[int, int]) -> Roi:
    h, w = shape
    if region is None:
        return 0, h, 0, w
    r0, r1, c0, c1 = (int(v) for v in region)
    r0, c0 = max(0, r0), max(0, c0)
    r1, c1 = min(h, r1), min(w, c1)
    if r1 <= r0 or c1 <= c0:
        raise InputError(f"the region of interest rows {region[0]}:{region[1]}, columns "
                         f"{region[2]}:{region[3]} lies outside the {h}x{w} frame; check the beam centre")
    return r0, r1, c0, c1


def _runs(indices: np.ndarray, limit: int) -> Iterator[np.ndarray]:
    """Split sorted indices into runs of consecutive values of at most ``limit``."""
    if len(indices) == 0:
        return
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    for run in np.split(indices, breaks):
        for start in range(0, len(run), limit):
            yield run[start:start + limit]
