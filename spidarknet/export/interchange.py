"""Handing a selection to the field's other tools: CrystFEL/OM event lists and CXI score sidecars.

Event list (``export-hits --lst``), as CrystFEL's ``list_events`` writes it and
``indexamajig -i`` reads it: one frame per line, the file's absolute path, one space, and
the event ID ``//INDEX`` — the frame's position along the dataset dimension that the
geometry file marks as the placeholder (``dim0 = %``).  CrystFEL cuts the line at that
space, so a path with white space cannot be listed.

Score sidecars (``export-hits --cxi-scores DIR``): one CXI file per input file and frame
dataset, ``DIR/<input stem>-scores.cxi``, written beside and never into the raw data::

    /cxi_version                                   150
    /entry_1/instrument_1/detector_1/data          external link to the frames (file, dataset)
    /entry_1/instrument_1/detector_1/score         (N,) float32, one per frame of that dataset;
                                                   NaN where the hit list has no score
                                                   (or marks the frame no-valid-pixels);
                                                   attr headings = ["spidarknet_score"]
    /entry_1/instrument_1/detector_1/tags          (N,) uint8, 1 = selected single hit;
                                                   attr headings = ["single_hit"]
    /entry_1/data_1/data                           soft link to detector_1/data
    /spidarknet/scored                             (N,) uint8, 1 = the hit list scored the frame
    /spidarknet (attrs)                            source_file, source_dataset, hit_list, threshold

This follows the CXI specification (cxidb/CXI ``cxi_file_format.tex``, Detector class):
``score`` and ``tags`` hang under the detector whose frames they describe, the frame axis is
the fastest one, a single score or tag collapses to one dimension, each carries a
``headings`` attribute naming its columns, and tags are 8-bit 0/1 values.  Because the
arrays align with one detector's frame axis, each input file gets its own sidecar; row
``i`` of ``score`` is frame ``i`` of the linked dataset.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.core.outputs import atomic_path, staged_dir
from spidarknet.frames.source import FrameKey, FrameSource, group_keys
from spidarknet.hits import HitList

SCORE_HEADING = "spidarknet_score"
TAG_HEADING = "single_hit"
DETECTOR = "entry_1/instrument_1/detector_1"


def frame_file(key: FrameKey) -> str:
    """The absolute path of a key's file (a relative one is taken from the working folder)."""
    return os.path.abspath(key.file)


@dataclass
class DatasetInfo:
    """One frame dataset that a hit list names: where it is and how many frames it has."""

    file: str          # absolute path
    dataset: str       # path inside the file (resolved when the hit list left it empty)
    n_frames: int


def inspect_datasets(keys: Sequence[FrameKey]) -> "OrderedDict[tuple[str, str], DatasetInfo]":
    """Every (file, dataset as written) the keys name, in order of appearance, checked as
    :meth:`FrameSource.from_keys` checks them (a file gone, a dataset missing or a frame
    beyond the end is an :class:`InputError`); masks are not read."""
    sources = FrameSource.from_keys(keys, use_file_mask=False)
    found = {(info.path, written): DatasetInfo(info.path, info.dataset, info.n_frames)
             for written, source in zip(group_keys(keys), sources) for info in source.files}
    groups = dict.fromkeys((frame_file(key), key.dataset) for key in keys)
    return OrderedDict((group, found[group]) for group in groups)


# -- CrystFEL / OM event list --------------------------------------------------------------------

def event_line(file: str, index: int) -> str:
    """One line of a CrystFEL event list: ``/abs/path/run.cxi //17``."""
    return f"{file} //{int(index)}"


def write_event_list(hits: HitList, flags: np.ndarray, out: str | os.PathLike, *,
                     force: bool = False, checked: bool = False) -> int:
    """Write the selected frames as a CrystFEL/OM event list; returns how many lines.
    ``checked``: the caller has checked the selected frames (:func:`inspect_datasets`)."""
    keys = [k for k, f in zip(hits.keys, flags) if f]
    if not checked:
        inspect_datasets(keys)
    for key in keys:
        path = frame_file(key)
        if any(c.isspace() for c in path):
            raise InputError(f"{path} contains white space, which CrystFEL takes as the end of the "
                             "file name in a list; rename the file or link it from a path without spaces")
    with atomic_path(out, force, "event list") as tmp:
        with open(tmp, "w") as handle:
            for key in keys:
                handle.write(event_line(frame_file(key), key.index) + "\n")
    return len(keys)


# -- CXI score / tag sidecars ----------------------------------------------------------------------

@dataclass
class Sidecar:
    path: Path            # the sidecar as finally placed
    source: DatasetInfo
    n_scored: int
    n_tagged: int


def sidecar_names(infos: Iterable[DatasetInfo]) -> list[str]:
    """``<stem>-scores.cxi`` per dataset; repeated stems get ``-2``, ``-3``... in order."""
    names, used = [], set()
    for info in infos:
        stem = Path(info.file).stem
        name, n = f"{stem}-scores.cxi", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}-scores.cxi"
        used.add(name)
        names.append(name)
    return names


def write_score_sidecars(hits: HitList, flags: np.ndarray, out_dir: str | os.PathLike, *,
                         force: bool = False, hit_list_name: str = "",
                         infos: "OrderedDict[tuple[str, str], DatasetInfo] | None" = None) -> list[Sidecar]:
    """One CXI sidecar per (file, dataset) of the hit list in folder ``out_dir`` (see module doc);
    ``infos``: :func:`inspect_datasets` of all the hit list's frames, when the caller has it."""
    import h5py

    infos = inspect_datasets(hits.keys) if infos is None else infos
    rows: dict[tuple[str, str], list[int]] = {k: [] for k in infos}
    for row, key in enumerate(hits.keys):
        rows[(frame_file(key), key.dataset)].append(row)
    names = sidecar_names(infos.values())
    final = Path(out_dir)
    written = []
    with staged_dir(final, force) as stage:
        for (group, info), name in zip(infos.items(), names):
            index = np.array([hits.keys[r].index for r in rows[group]], dtype=np.int64)
            score = np.full(info.n_frames, np.nan, dtype=np.float32)
            tags = np.zeros(info.n_frames, dtype=np.uint8)
            scored = np.zeros(info.n_frames, dtype=np.uint8)
            score[index] = np.where(hits.unusable[rows[group]], np.nan, hits.scores[rows[group]])  # not judged
            tags[index] = flags[rows[group]]
            scored[index] = ~hits.unusable[rows[group]]  # no valid pixel: never judged
            with h5py.File(stage / name, "w") as f:
                f["cxi_version"] = 150
                det = f.create_group(DETECTOR)
                det["data"] = h5py.ExternalLink(info.file, info.dataset)
                s = det.create_dataset("score", data=score)
                s.attrs["headings"] = np.array([SCORE_HEADING], dtype=h5py.string_dtype())
                s.attrs["description"] = ("best detection's class-weighted objectness per frame "
                                          "(spidarknet detect); NaN = not scored")
                t = det.create_dataset("tags", data=tags)
                t.attrs["headings"] = np.array([TAG_HEADING], dtype=h5py.string_dtype())
                t.attrs["description"] = "1 = selected as a single-particle hit by the hit list"
                f.create_group("entry_1/data_1")["data"] = h5py.SoftLink(f"/{DETECTOR}/data")
                prov = f.create_group("spidarknet")
                prov.attrs["source_file"] = info.file
                prov.attrs["source_dataset"] = info.dataset
                prov.attrs["hit_list"] = hit_list_name
                prov.attrs["threshold"] = float(hits.threshold)
                prov.attrs["description"] = ("scores of the frames of source_file:source_dataset; "
                                             "row i is frame i, linked at /entry_1/data_1/data")
                prov.create_dataset("scored", data=scored)
            written.append(Sidecar(final / name, info, int(len(index)), int(tags.sum())))
    return written
