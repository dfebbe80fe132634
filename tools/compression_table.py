"""Size and speed of the HDF5 filters h5py reads without plugins, on simulated frames.

Simulates frames once per kind of file (ideal photon counts, the simulator's default; and
``--measured-like`` frames: readout noise and common mode corrected and converted to photons,
bad pixels, stray light), keeps them in memory, then writes the frames
into one file per candidate (gzip levels 1, 4, 6, 9 and LZF, each with and without HDF5's
byte shuffle; one frame per chunk, as the simulator writes) and times writing the copy and
reading all its frames back, each the best of ``--repeats``.  Prints a Markdown table per kind
with the bytes per frame, the ratio to the uncompressed file, and the write and read times
per frame beside the uncompressed file's.

    python tools/compression_table.py --frames 48 --out build/compression.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import h5py
import numpy as np

from spidarknet.simulate import simulate_file
from spidarknet.simulate.settings import MEASURED_LIKE_SETTINGS

DATA = "/entry_1/instrument_1/detector_1/data"
#: name -> h5py create_dataset keywords
CANDIDATES = {"none": {}}
for _level in (1, 4, 6, 9):
    CANDIDATES[f"gzip-{_level}"] = {"compression": "gzip", "compression_opts": _level}
    CANDIDATES[f"shuffle-gzip-{_level}"] = {"shuffle": True, "compression": "gzip", "compression_opts": _level}
CANDIDATES["lzf"] = {"compression": "lzf"}
CANDIDATES["shuffle-lzf"] = {"shuffle": True, "compression": "lzf"}


def _write(frames: np.ndarray, path: str, options: dict) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        data = f.create_dataset(DATA, shape=frames.shape, dtype=frames.dtype,
                                chunks=(1, *frames.shape[1:]), **options)
        for i in range(len(frames)):
            data[i] = frames[i]
    return time.perf_counter() - t0


def _read(path: str) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        data = f[DATA]
        out = np.empty(data.shape[1:], dtype=data.dtype)
        for i in range(data.shape[0]):
            data.read_direct(out, np.s_[i])
    return time.perf_counter() - t0


def measure(frames: np.ndarray, folder: str, repeats: int) -> list[dict]:
    rows = []
    for name, options in CANDIDATES.items():
        path = os.path.join(folder, f"{name}.h5")
        write = min(_write(frames, path, options) for _ in range(repeats))
        read = min(_read(path) for _ in range(repeats))
        rows.append({"filter": name, "bytes_per_frame": os.path.getsize(path) / len(frames),
                     "write_ms_per_frame": 1e3 * write / len(frames), "read_ms_per_frame": 1e3 * read / len(frames)})
        os.unlink(path)
    base = rows[0]["bytes_per_frame"]
    for row in rows:
        row["ratio"] = base / row["bytes_per_frame"]
    return rows


def table(kind: str, rows: list[dict]) -> str:
    lines = [f"| {kind}: filter | MB per frame | ratio | write ms/frame | read ms/frame |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['filter']} | {r['bytes_per_frame'] / 1e6:.3f} | {r['ratio']:.1f} | "
                     f"{r['write_ms_per_frame']:.1f} | {r['read_ms_per_frame']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=71)
    parser.add_argument("--out", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind, settings in (("photon counts", None), ("measured-like", MEASURED_LIKE_SETTINGS)):
            source = os.path.join(folder, "source.cxi")
            simulate_file(source, args.frames, seed=args.seed, settings=settings)
            with h5py.File(source, "r") as f:
                frames = f[DATA][()]
            os.unlink(source)
            result[kind] = measure(frames, folder, args.repeats)
            print(table(kind, result[kind]) + "\n", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"frames": args.frames, "seed": args.seed, "repeats": args.repeats, "results": result},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
