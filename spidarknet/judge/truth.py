"""0/1 truth for the frames of a hit list: a dataset in the frame files, or a CSV.

``--truth-dataset /truth/label`` reads one value per frame from each file the hit list
names; ``--truth labels.csv`` reads ``file,index,label`` rows (a header is optional).
Any non-zero label is a positive (a single hit).  The hit list and the truth must cover
the same frames; otherwise the error says how many are missing on each side, with
examples, unless the caller asks to keep only the frames both cover.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.keys import Canon, MatchKey, describe_keys
from spidarknet.core.labels import positive_labels
from spidarknet.core.selection import read_selection
from spidarknet.frames.euxfel import values_file
from spidarknet.frames.source import describe_datasets, open_h5, reading
from spidarknet.hits import HitList


@dataclass
class Truth:
    """Truth aligned with a hit list: ``labels[i]`` belongs to ``hits.keys[i]``."""

    hits: HitList          # the hit list, restricted to the frames with truth
    labels: np.ndarray     # bool, True = positive
    source: str            # where the truth came from, for people
    index: np.ndarray      # position of each frame in the hit list given
    dropped: int = 0       # hit-list frames left out (no truth; only with common_only)
    unscored: int = 0      # truth frames the hit list does not score (only with common_only)

    @property
    def n_pos(self) -> int:
        return int(np.count_nonzero(self.labels))


def truth_file(path: str) -> str:
    """Where the truth of a frame file lies: the file itself, or for a European XFEL run
    folder the truth file the AGIPD simulator writes in it."""
    return values_file(path)


def read_truth_dataset(hits: HitList, dataset: str) -> dict[MatchKey, bool]:
    """Labels of every frame of the files the hit list names, from ``dataset`` in each."""
    by_file: dict[str, list[int]] = defaultdict(list)
    for key in hits.keys:
        by_file[key.file].append(key.index)
    truth: dict[MatchKey, bool] = {}
    for path in by_file:
        if not os.path.exists(path):
            raise InputError(f"the frame file {path} named in the hit list does not exist; the "
                             f"truth dataset is read from it (or give --truth CSV)")
        with open_h5(truth_file(path)) as handle:
            if dataset not in handle:
                raise InputError(f"{path} has no truth dataset {dataset} "
                                 f"({describe_datasets(handle, 1, near=dataset)}); name the right one with "
                                 "--truth-dataset or give --truth labels.csv")
            ds = handle[dataset]
            if not hasattr(ds, "shape") or len(ds.shape) != 1:
                raise InputError(f"{dataset} in {path} must be a 1-D dataset of one label per frame, "
                                 f"found shape {getattr(ds, 'shape', '(a group)')}")
            with reading(path, f"the truth dataset {dataset}"):
                values = ds[()]
            labels = positive_labels(values, f"{dataset} in {path}")
        truth.update(((path, i), bool(v)) for i, v in enumerate(labels))
    return truth


def read_truth_csv(path: str) -> dict[MatchKey, bool]:
    """Labels from ``file,index,label`` rows (header optional; ``label`` 0/1)."""
    entries = read_selection(path, value_column="label")
    truth: dict[MatchKey, bool] = {}
    for number, entry in enumerate(entries, start=1):
        try:
            value = float(entry.value)
        except (TypeError, ValueError):
            raise InputError(f"{path}: row {number} ({entry.file},{entry.index}) has label "
                             f"{entry.value!r}; labels must be 0 or 1") from None
        truth[(entry.file, entry.index)] = bool(positive_labels([value], path)[0])
    return truth


def align_truth(hits: HitList, truth: dict[MatchKey, bool], source: str, *,
                common_only: bool = False) -> Truth:
    """Labels in the hit list's frame order; both sides must cover the same frames.

    ``truth`` maps (file name, index) to a label; names are matched to the hit list's
    files by real path or unique base name (:class:`~spidarknet.core.keys.Canon`).
    """
    canon = Canon([k.file for k in hits.keys] + [f for f, _ in truth])
    labelled = {canon(f, i): v for (f, i), v in truth.items()}
    wanted = [canon(k.file, k.index) for k in hits.keys]
    missing_truth = [m for m in wanted if m not in labelled]
    scored = set(wanted)
    unscored = [m for m in labelled if m not in scored]
    if (missing_truth or unscored) and not common_only:
        parts = []
        if missing_truth:
            parts.append(f"{len(missing_truth)} of the hit list's {len(wanted)} frames have no truth "
                         f"({describe_keys(missing_truth)})")
        if unscored:
            parts.append(f"{len(unscored)} of the {len(labelled)} frames with truth are not in the "
                         f"hit list ({describe_keys(unscored)})")
        raise InputError(f"the hit list and the truth ({source}) do not cover the same frames: "
                         + "; ".join(parts) + ". Check that both name the same files and frames, "
                         "or give --common-only to evaluate the frames both cover")
    keep = np.array([m in labelled for m in wanted], dtype=bool)
    if not keep.any():
        raise InputError(f"the hit list and the truth ({source}) have no frame in common; "
                         "do they name the same files?")
    labels = np.array([labelled[m] for m, k in zip(wanted, keep) if k], dtype=bool)
    index = np.flatnonzero(keep)
    subset = HitList([hits.keys[i] for i in index], hits.scores[index], hits.boxes[index],
                     hits.threshold, dict(hits.meta), status=hits.status[index])
    return Truth(hits=subset, labels=labels, source=source, index=index, dropped=int(len(wanted) - keep.sum()),
                 unscored=len(unscored))


def load_truth(hits: HitList, *, dataset: str | None = None, csv_path: str | None = None,
               common_only: bool = False, require_positive: bool = True) -> Truth:
    """Truth for ``hits`` from a dataset in the frame files or a CSV (exactly one of them)."""
    if (dataset is None) == (csv_path is None):
        raise ConfigError("give the truth as --truth-dataset PATH (in the frame files) or "
                          "--truth CSV (file,index,label), one of the two")
    if not len(hits):
        raise InputError("the hit list holds no frames")
    if dataset is not None:
        truth = align_truth(hits, read_truth_dataset(hits, dataset), f"dataset {dataset}",
                            common_only=common_only)
    else:
        truth = align_truth(hits, read_truth_csv(csv_path), csv_path, common_only=common_only)
    if require_positive and truth.n_pos == 0:
        raise InputError(f"the truth ({truth.source}) marks none of the {len(truth.labels)} frames as "
                         "a positive (label 1), so precision and recall are undefined; check the "
                         "truth: a single hit must have label 1")
    return truth
