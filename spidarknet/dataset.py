"""Writing a Darknet training data set from labelled frames.

Layout of an exported folder (all paths inside are relative, so darknet runs with the
folder as its working directory and the folder can be moved)::

    images/NNN_IIIIIII.png  3-channel 8-bit images (file number, frame index)
    labels/NNN_IIIIIII.txt  "0 cx cy w h" for a single hit, empty for a negative
    train.txt valid.txt     image lists
    obj.names               the class name: single
    obj.data                classes, train, valid, names, backup for darknet
    <net>.cfg               the network, generated from a template
    preprocess.json         the preprocessing settings (detection repeats them)
    frames.csv              image -> file, dataset, index, label, subset, box
    export.json             counts and settings of this export
    backup/                 where darknet writes weights during training

Darknet finds a label by replacing the first ``images`` (or ``JPEGImages`` or ``raw``)
in the image path with ``labels`` and the extension with ``.txt``; relative paths from
the folder keep that replacement safe wherever the folder lives.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.keys import FileResolver
from spidarknet.core.labels import positive_labels
from spidarknet.core.selection import group_entries, read_selection
from spidarknet.frames.source import FileInfo, FrameChunk, FrameSource, describe_datasets, open_h5, reading
from spidarknet.frames.euxfel import values_file
from spidarknet.preprocess import Preprocessor, Processed, pattern_extent

log = logging.getLogger(__name__)

CLASS_NAMES = ("single",)
NEGATIVE, POSITIVE, UNUSED = 0, 1, -1
TRAIN, VALID = "train", "valid"


# -- labels --------------------------------------------------------------------------------

def labels_from_dataset(source: FrameSource, dataset: str) -> dict[str, np.ndarray]:
    """Per-file int8 labels (1 single, 0 not) from a per-frame dataset in each file."""
    labels = {}
    for info in source.files:
        with open_h5(values_file(info.path)) as handle:
            if dataset not in handle:
                raise InputError(f"{info.path} has no label dataset {dataset} "
                                 f"({describe_datasets(handle, ndim=1)})")
            with reading(info.path, f"the label dataset {dataset}"):
                values = np.asarray(handle[dataset][()])
        if values.ndim != 1 or len(values) != info.n_frames:
            raise InputError(f"label dataset {dataset} in {info.path} has shape {values.shape}; "
                             f"expected ({info.n_frames},), one label per frame")
        labels[info.path] = positive_labels(values, f"label dataset {dataset} in {info.path}").astype(np.int8)
    return labels


def labels_from_selections(source: FrameSource, positives: list[str],
                           negatives: list[str]) -> dict[str, np.ndarray]:
    """Labels from selection CSVs: listed positives are 1; listed negatives 0.

    Without negative lists every other frame is a negative; with them, frames in
    neither list are left out.  A frame listed as both is an error.
    """
    resolver = FileResolver([f.path for f in source.files])
    n_frames = {f.path: f.n_frames for f in source.files}
    fill = UNUSED if negatives else NEGATIVE
    labels = {path: np.full(n, fill, dtype=np.int8) for path, n in n_frames.items()}
    for name in negatives:
        for path, idx in group_entries(read_selection(name), resolver, n_frames, name).items():
            labels[path][idx] = NEGATIVE
    for name in positives:
        for path, idx in group_entries(read_selection(name), resolver, n_frames, name).items():
            if negatives:
                clash = idx[labels[path][idx] == NEGATIVE]
                if len(clash):
                    raise InputError(f"{len(clash)} frames are listed as both positive and negative, "
                                     f"e.g. {os.path.basename(path)}:{clash[0]}")
            labels[path][idx] = POSITIVE
    return labels


# -- train / valid split -------------------------------------------------------------------

def split_subsets(source: FrameSource, labels: dict[str, np.ndarray], *, valid_fraction: float,
                  seed: int, valid_files: set[str] | None = None) -> dict[str, np.ndarray]:
    """Per-file arrays of "train"/"valid"/"" for the selected, labelled frames.

    By file when ``valid_files`` is given (those files validate, the rest train);
    otherwise random with ``seed``, stratified so both subsets keep the class balance.
    """
    subsets = {f.path: np.full(f.n_frames, "", dtype=object) for f in source.files}
    pool = {POSITIVE: [], NEGATIVE: []}
    for info in source.files:
        lab = labels[info.path]
        for i in info.indices:
            if lab[i] == UNUSED:
                continue
            if valid_files is not None:
                subsets[info.path][i] = VALID if info.path in valid_files else TRAIN
            else:
                pool[int(lab[i])].append((info.path, int(i)))
    if valid_files is None:
        if not 0 <= valid_fraction < 1:
            raise ConfigError(f"--valid-fraction {valid_fraction} must be in [0, 1)")
        rng = np.random.default_rng(seed)
        for members in pool.values():
            order = rng.permutation(len(members))
            n_valid = int(round(valid_fraction * len(members)))
            for rank, j in enumerate(order):
                path, i = members[j]
                subsets[path][i] = VALID if rank < n_valid else TRAIN
    return subsets


# -- the writer ----------------------------------------------------------------------------

def used_frames(source: FrameSource, labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The selected frame indices of each file that carry a label (not :data:`UNUSED`), by path."""
    return {f.path: f.indices[labels[f.path][f.indices] != UNUSED] for f in source.files}


def check_trainable(labels: dict[str, np.ndarray], subsets: dict[str, np.ndarray],
                    used: dict[str, np.ndarray]) -> None:
    """Refuse a set darknet cannot learn from: no positives, no negatives or nothing to train on."""
    def count(values: dict[str, np.ndarray], wanted) -> int:
        return sum(int(np.count_nonzero(values[p][i] == wanted)) for p, i in used.items())

    if count(labels, POSITIVE) == 0:
        raise InputError("no single-hit (positive) frames among the selected frames: "
                         "the network cannot learn from negatives alone; check the labels and --frames")
    if count(labels, NEGATIVE) == 0:
        raise InputError("no negative frames among the selected frames: the network needs examples of "
                         "what is not a single hit; add --negatives or check the labels")
    if count(subsets, TRAIN) == 0:
        raise InputError("every frame went to validation; lower --valid-fraction or train on other files")


def write_frames(writer: "DarknetDatasetWriter", source: FrameSource, pre: Preprocessor,
                 labels: dict[str, np.ndarray], subsets: dict[str, np.ndarray], *, chunk_frames: int,
                 orientations: int, on_chunk: Callable[[int], None] | None = None) -> int:
    """Preprocess every frame of ``source`` and hand it to ``writer`` with its label, subset
    and (for a single hit) its box; returns the number of NaN or negative pixel values masked."""
    n_bad = 0
    for chunk in source.chunks(chunk_frames, roi=pre.roi):
        processed = pre.process(chunk)
        n_bad += processed.n_bad_values
        _write_chunk(writer, chunk, processed, labels[chunk.info.path], subsets[chunk.info.path],
                     pre.settings.size, orientations)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return n_bad


def image_centre(chunk: FrameChunk, processed: Processed) -> tuple[float, float]:
    """The beam centre (x, y) in the network image's pixels, counted from the image's corner."""
    in_pixels = processed.settings  # the crop in this file's pixels
    cx, cy = in_pixels.centre_for(chunk.info)
    r0, c0 = processed.crop_origin
    f = in_pixels.bin_factor
    return ((cx - c0 + 0.5) / f, (cy - r0 + 0.5) / f)


def _write_chunk(writer: "DarknetDatasetWriter", chunk: FrameChunk, processed: Processed,
                 file_labels: np.ndarray, file_subsets: np.ndarray, size: int, orientations: int) -> None:
    """One chunk's images to ``writer``; a single hit's box covers its pattern's visible extent."""
    centre_img = image_centre(chunk, processed)
    lab = file_labels[chunk.indices]
    radius = np.zeros(len(chunk), dtype=np.float32)
    if (lab == POSITIVE).any():
        radius = pattern_extent(processed.photons, (centre_img[0] - 0.5, centre_img[1] - 0.5))
    for j, index in enumerate(chunk.indices):
        box = box_for(centre_img, radius[j], size) if lab[j] == POSITIVE else None
        writer.add(chunk.info, int(index), processed.images[j], int(lab[j]),
                   file_subsets[index], box, orientations)


@dataclass
class ExportCounts:
    train_pos: int = 0
    train_neg: int = 0
    valid_pos: int = 0
    valid_neg: int = 0

    def add(self, subset: str, label: int) -> None:
        name = f"{subset}_{'pos' if label == POSITIVE else 'neg'}"
        setattr(self, name, getattr(self, name) + 1)

    @property
    def total(self) -> int:
        return self.train_pos + self.train_neg + self.valid_pos + self.valid_neg


@dataclass
class DarknetDatasetWriter:
    """Writes images, labels and the list files into a (staging) folder."""

    root: Path
    counts: ExportCounts = field(default_factory=ExportCounts)

    def __post_init__(self):
        self.root = Path(self.root)
        for sub in ("images", "labels", "backup"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lists = {TRAIN: open(self.root / "train.txt", "w"), VALID: open(self.root / "valid.txt", "w")}
        self._frames = open(self.root / "frames.csv", "w", newline="")
        self._frames_csv = csv.writer(self._frames)
        self._frames_csv.writerow(["image", "file", "dataset", "index", "label", "subset",
                                   "cx", "cy", "w", "h"])
        self._file_numbers: dict[str, int] = {}
        self._started = time.perf_counter()

    def image_name(self, info: FileInfo, index: int) -> str:
        number = self._file_numbers.setdefault(info.path, len(self._file_numbers))
        return f"{number:03d}_{index:07d}"

    def add(self, info: FileInfo, index: int, image: np.ndarray, label: int, subset: str,
            box: tuple[float, float, float, float] | None, orientations: int = 1) -> None:
        """One frame: ``image`` (size, size, 3) RGB uint8; ``box`` normalised (cx, cy, w, h).

        ``orientations`` > 1 also writes the frame turned by 90°, 180°, ... and mirrored (the
        first ``orientations`` of :data:`ORIENTATIONS`) into the training list: a particle's
        orientation is random, so every turn of a pattern is as likely as the pattern itself.
        Validation frames are written once, as they are."""
        stem = self.image_name(info, index)
        copies = ORIENTATIONS[:orientations] if subset == TRAIN else ORIENTATIONS[:1]
        for turns, mirror in copies:
            suffix = f"_r{turns}{'m' if mirror else ''}" if (turns or mirror) else ""
            turned = orient_box(box, turns, mirror) if label == POSITIVE else None
            self._write(f"{stem}{suffix}", orient_image(image, turns, mirror), label, subset, turned,
                        (info.path, info.dataset, index))
        self.counts.add(subset, label)

    def _write(self, stem: str, image: np.ndarray, label: int, subset: str, box, key) -> None:
        import cv2
        rel_image = f"images/{stem}.png"
        if not cv2.imwrite(str(self.root / rel_image), np.ascontiguousarray(image[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise InputError(f"OpenCV could not write {self.root / rel_image}")
        with open(self.root / "labels" / f"{stem}.txt", "w") as handle:
            if label == POSITIVE:
                handle.write("0 %.6f %.6f %.6f %.6f\n" % box)
        self._lists[subset].write(rel_image + "\n")
        cells = [f"{v:.6f}" for v in box] if label == POSITIVE else ["", "", "", ""]
        self._frames_csv.writerow([rel_image, *key, label, subset] + cells)

    def close(self) -> None:
        for handle in (*self._lists.values(), self._frames):
            handle.close()
        c = self.counts
        log.info("wrote %d frames as images and labels in %.2f s: train %d single / %d not, valid %d / %d",
                 c.total, time.perf_counter() - self._started, c.train_pos, c.train_neg, c.valid_pos,
                 c.valid_neg)

    def write_definitions(self, cfg, cfg_name: str) -> Path:
        """obj.names, obj.data and the network cfg; returns the cfg's path."""
        (self.root / "obj.names").write_text("\n".join(CLASS_NAMES) + "\n")
        (self.root / "obj.data").write_text(
            f"classes = {len(CLASS_NAMES)}\ntrain = train.txt\nvalid = valid.txt\n"
            "names = obj.names\nbackup = backup\n")
        cfg_path = self.root / f"{cfg_name}.cfg"
        cfg.save(cfg_path)
        log.debug("wrote obj.names, obj.data and %s", cfg_path.name)
        return cfg_path

    def write_summary(self, values: dict) -> None:
        with open(self.root / "export.json", "w") as handle:
            json.dump(values, handle, indent=2)
            handle.write("\n")


#: (quarter turns counter-clockwise, mirrored left-right first) of the eight symmetries of a
#: square image, in the order ``--orientations N`` takes them
ORIENTATIONS = ((0, False), (1, False), (2, False), (3, False),
                (0, True), (1, True), (2, True), (3, True))


def orient_image(image: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """``image`` (rows, columns, ...) mirrored left-right if ``mirror``, then turned
    ``turns`` quarter turns counter-clockwise."""
    out = image[:, ::-1] if mirror else image
    return np.rot90(out, turns, axes=(0, 1))


def orient_box(box: tuple[float, float, float, float], turns: int, mirror: bool):
    """The normalised box (cx, cy, w, h) of :func:`orient_image`'s output."""
    cx, cy, w, h = box
    if mirror:
        cx = 1.0 - cx
    for _ in range(turns % 4):  # a counter-clockwise quarter turn: (x, y) -> (y, 1 - x)
        cx, cy, w, h = cy, 1.0 - cx, h, w
    return (cx, cy, w, h)


def box_for(centre_xy: tuple[float, float], radius: float, size: int,
            min_fraction: float = 0.1) -> tuple[float, float, float, float]:
    """A normalised YOLO box (cx, cy, w, h): the square of half-side ``radius`` around the
    centre, at least ``min_fraction`` of the image wide, clipped to the image."""
    half = max(float(radius), min_fraction * size / 2.0)
    x0, x1 = max(0.0, centre_xy[0] - half), min(float(size), centre_xy[0] + half)
    y0, y1 = max(0.0, centre_xy[1] - half), min(float(size), centre_xy[1] + half)
    if x1 <= x0 or y1 <= y0:
        raise InputError("the beam centre lies outside the cropped image; check --centre")
    return ((x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size)
