"""Copying selected frames, with their geometry and mask, into a new CXI file (compressed with
:data:`~spidarknet.core.defaults.FRAME_COMPRESSION`, which h5py reads without plugins)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from spidarknet.core.defaults import FRAME_COMPRESSION
from spidarknet.core.errors import InputError
from spidarknet.core.outputs import atomic_path
from spidarknet.frames.source import FrameSource
from spidarknet.hits import HitList
from spidarknet.simulate.writer import compression_options


def write_selected_cxi(hits: HitList, source: FrameSource, out: str | Path, *, force: bool = False,
                       chunk_frames: int = 16, on_frames: Callable[[int], None] | None = None) -> int:
    """Write the frames of ``hits`` that are hits into ``out``; returns how many."""
    import h5py
    source = source.select_keys(hits.selected_keys())
    infos = [f for f in source.files if len(f.indices)]
    shapes = {f.frame_shape for f in infos}
    if len(shapes) > 1:
        raise InputError(f"the selected frames have different shapes {sorted(shapes)}; write one CXI per detector")
    score_of = {(k.file, k.index): s for k, s in zip(hits.keys, hits.scores)}
    n = len(source)
    with atomic_path(out, force, "CXI file") as tmp:
        with h5py.File(tmp, "w") as f:
            f["cxi_version"] = 150
            det = f.create_group("entry_1/instrument_1/detector_1")
            src = f.create_group("entry_1/instrument_1/source_1")
            if not infos:
                shape, dtype = (0, 0), np.uint16
            else:
                shape, dtype = infos[0].frame_shape, infos[0].dtype
                g = infos[0].geometry
                if g.distance_m is not None:
                    det["distance"] = g.distance_m
                if g.pixel_size_m is not None:
                    det["x_pixel_size"], det["y_pixel_size"] = g.pixel_size_m
                    cx, cy = g.centre_px
                    det["corner_position"] = np.array([-(cx + 0.5) * g.pixel_size_m[0],
                                                       -(cy + 0.5) * g.pixel_size_m[1], g.distance_m or 0.0])
                if g.wavelength_m is not None:
                    src["wavelength"] = g.wavelength_m
                    src["energy"] = g.photon_energy_J
                if infos[0].mask_shared is not None:
                    det["mask_shared"] = (~infos[0].mask_shared).astype(np.uint32)
            data = det.create_dataset("data", shape=(n,) + tuple(shape), dtype=dtype,
                                      chunks=(1,) + tuple(shape) if n else None,
                                      **(compression_options(FRAME_COMPRESSION) if n else {}))
            data.attrs["axes"] = "experiment_identifier:y:x"
            f["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
            prov = f.create_group("spidarknet")
            prov.attrs["description"] = "frames selected by spidarknet detect; one entry per frame"
            _copy_frames(source, chunk_frames, data, det, prov, score_of, on_frames)
    return n


def _copy_frames(source: FrameSource, chunk_frames: int, data, det, prov, score_of: dict,
                 on_frames: Callable[[int], None] | None) -> None:
    """The frames into ``data``, where they came from and their scores into ``prov``; frames with a
    mask of their own (European XFEL runs: bad pixels, NaN, missing modules) get ``detector_1/mask``
    (1 = invalid), and their trainId, pulseId, cellId go into ``prov``."""
    import h5py
    files, datasets, indices, scores, ids = [], [], [], [], {}
    row, mask = 0, None
    for chunk in source.chunks(chunk_frames):
        data[row:row + len(chunk)] = chunk.data
        if chunk.valid.ndim == 3 or chunk.ids is not None:  # a run's frames: their own bad pixels
            if mask is None:
                mask = det.create_dataset("mask", shape=data.shape, dtype=np.uint32, chunks=(1,) + data.shape[1:],
                                          compression="gzip", compression_opts=1)
            mask[row:row + len(chunk)] = np.broadcast_to(~chunk.valid, chunk.data.shape).astype(np.uint32)
        row += len(chunk)
        for name, values in (chunk.ids or {}).items():
            ids.setdefault(name, []).append(values)
        for index in chunk.indices:
            files.append(chunk.info.path)
            datasets.append(chunk.info.dataset)
            indices.append(int(index))
            scores.append(score_of[(chunk.info.path, int(index))])
        if on_frames is not None:
            on_frames(len(chunk))
    string = h5py.string_dtype()
    prov.create_dataset("source_file", data=np.array(files, dtype=object), dtype=string)
    prov.create_dataset("source_dataset", data=np.array(datasets, dtype=object), dtype=string)
    prov.create_dataset("source_index", data=np.asarray(indices, dtype=np.int64))
    prov.create_dataset("score", data=np.asarray(scores, dtype=np.float32))
    for name, parts in ids.items():
        prov.create_dataset(name, data=np.concatenate(parts).astype(np.int64))
