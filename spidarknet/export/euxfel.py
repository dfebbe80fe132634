"""A hit list of European XFEL runs handed back to the facility's tools.

- :func:`write_hit_flags`: per-pulse flags and scores keyed by trainId and pulseId in an HDF5
  file of the facility's own layout (EXDF: ``INDEX``, ``INSTRUMENT``, ``METADATA``), as the
  facility's SPI hit finder writes its results: source ``<detector>/SPIDARKNET/HITS:output``
  (default), keys ``data.trainId``, ``data.pulseId``, ``data.cellId``, ``data.hitFlag``
  (uint8, 1 = selected), ``data.hitscore`` (float32, the network's score) and
  ``data.missingModules``; ``extra_data.H5File(path)`` reads it, and its trains line up with
  the run's (``select_trains``, ``train_id_coordinates``).
- :func:`write_vds_event_list`: a CrystFEL event list of the selected frames against the
  run's virtual CXI file (``extra-data-make-virtual-cxi RUN -o run.cxi``, what CrystFEL reads at
  European XFEL): each selected frame is found in that file by its trainId and pulseId
  (``/entry_1/trainId``, ``/entry_1/pulseId``), so the lines ``run.cxi //N`` are right whatever
  order the file keeps.

The CXI of the selected frames assembled with the geometry is ``detect --write-cxi``.
"""

from __future__ import annotations

import os

import numpy as np

from spidarknet.core.errors import InputError
from spidarknet.core.outputs import atomic_path
from spidarknet.hits import HitList

DEFAULT_SOURCE = "SPB_DET_AGIPD1M-1/SPIDARKNET/HITS:output"


def run_ids(hits: HitList) -> tuple[np.ndarray, np.ndarray]:
    """trainId and pulseId per row (uint64), or an :class:`InputError` for other hit lists."""
    if "trainId" not in hits.columns or "pulseId" not in hits.columns:
        raise InputError("the hit list has no trainId/pulseId columns: it was not made from a European XFEL run")
    return (np.asarray(hits.columns["trainId"], dtype=np.float64).astype(np.uint64),
            np.asarray(hits.columns["pulseId"], dtype=np.float64).astype(np.uint64))


def write_hit_flags(hits: HitList, flags: np.ndarray, out: str | os.PathLike, *, source: str = DEFAULT_SOURCE,
                    force: bool = False) -> int:
    """Write per-pulse ``hitFlag``/``hitscore`` of ``hits`` (one run) in the facility's layout;
    returns the number of trains."""
    import h5py
    trains, pulses = run_ids(hits)
    if len({k.file for k in hits.keys}) > 1:
        raise InputError("the hit list covers several runs: write one flag file per run (select its rows)")
    order = np.lexsort((pulses, trains))
    tids, first, count = np.unique(trains[order], return_index=True, return_counts=True)
    columns = {"trainId": trains[order], "pulseId": pulses[order],
               "cellId": _column(hits, "cellId", order, np.uint16),
               "hitFlag": np.asarray(flags, dtype=np.uint8)[order],
               "hitscore": np.asarray(hits.scores, dtype=np.float32)[order],
               "missingModules": _column(hits, "missing_modules", order, np.uint8)}
    with atomic_path(out, force, "hit flags") as tmp:
        with h5py.File(tmp, "w") as f:
            _write_exdf_index(f, source, tids, first, count)
            for key, values in columns.items():
                f[f"INSTRUMENT/{source}/data/{key}"] = values
    return len(tids)


def _column(hits: HitList, name: str, order: np.ndarray, dtype) -> np.ndarray:
    values = hits.columns.get(name)
    return np.zeros(len(order), dtype) if values is None else np.asarray(values)[order].astype(dtype)


def _write_exdf_index(f, source: str, tids: np.ndarray, first: np.ndarray, count: np.ndarray) -> None:
    """The EXDF (format 1.0) bookkeeping of one instrument source with a ``data`` group."""
    import h5py
    text = h5py.string_dtype()
    f["METADATA/dataFormatVersion"] = np.array(["1.0"], dtype=object).astype(text)
    f.create_dataset("METADATA/dataSources/dataSourceId", data=np.array([f"INSTRUMENT/{source}/data"], dtype=object),
                     dtype=text)
    f.create_dataset("METADATA/dataSources/root", data=np.array(["INSTRUMENT"], dtype=object), dtype=text)
    f.create_dataset("METADATA/dataSources/deviceId", data=np.array([f"{source}/data"], dtype=object), dtype=text)
    f["INDEX/trainId"] = tids.astype(np.uint64)
    f["INDEX/flag"] = np.ones(len(tids), dtype=np.int32)
    f["INDEX/timestamp"] = np.zeros(len(tids), dtype=np.uint64)
    f[f"INDEX/{source}/data/first"] = first.astype(np.uint64)
    f[f"INDEX/{source}/data/count"] = count.astype(np.uint64)


def write_vds_event_list(hits: HitList, flags: np.ndarray, out: str | os.PathLike, vds: str, *,
                         force: bool = False) -> int:
    """Lines ``/abs/run.cxi //N`` of the selected frames in the virtual CXI file ``vds``; returns how many."""
    from spidarknet.frames.source import open_h5
    trains, pulses = run_ids(hits)
    vds = os.path.abspath(vds)
    with open_h5(vds) as handle:
        if "entry_1/trainId" not in handle or "entry_1/pulseId" not in handle:
            raise InputError(f"{vds} has no /entry_1/trainId and /entry_1/pulseId: is it the run's virtual CXI "
                             "(extra-data-make-virtual-cxi RUN -o FILE.cxi)?")
        v_trains = np.asarray(handle["entry_1/trainId"][()], dtype=np.uint64).ravel()
        v_pulses = np.asarray(handle["entry_1/pulseId"][()], dtype=np.uint64).ravel()
    where = {(int(t), int(p)): i for i, (t, p) in enumerate(zip(v_trains, v_pulses))}
    chosen = np.flatnonzero(np.asarray(flags, dtype=bool))
    missing = [i for i in chosen if (int(trains[i]), int(pulses[i])) not in where]
    if missing:
        raise InputError(f"{len(missing)} selected frames are not in {vds} (first: trainId {int(trains[missing[0]])}, "
                         f"pulseId {int(pulses[missing[0]])}): is it the virtual CXI of the same run?")
    lines = sorted(where[(int(trains[i]), int(pulses[i]))] for i in chosen)
    with atomic_path(out, force, "event list") as tmp:
        with open(tmp, "w") as handle:
            handle.writelines(f"{vds} //{n}\n" for n in lines)
    return len(lines)
