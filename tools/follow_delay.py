"""How long from a frame written to its row in a followed hit list (``detect --follow``).

A writer process copies the frames of a CXI file into a new file opened for HDF5 SWMR, at a
fixed rate, and records when each frame was flushed; ``detect --follow`` (with the options
given after ``--``) classifies the file as it grows; this process watches the hit list and
records when each frame's row appears.  Prints (and writes as JSON) the median, 90th
percentile and largest delay, and the frames per second the follower kept up with.

    python tools/follow_delay.py SOURCE.cxi --frames 200 --rate 30 --out delay.json -- --size-range 60 75
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

WRITER = """
import sys, time, h5py
src, dst, n, rate, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
with h5py.File(src, "r") as f, h5py.File(dst, "w", libver="latest") as out:
    for name in ("entry_1/instrument_1/detector_1", "entry_1/instrument_1/source_1"):
        group = out.require_group(name)
        for key in f[name]:
            if key != "data" and not isinstance(f[name][key], h5py.Group):
                f.copy(f[name][key], group, key)
    frames = f["entry_1/instrument_1/detector_1/data"]
    shape = frames.shape[1:]
    data = out["entry_1/instrument_1/detector_1"].create_dataset(
        "data", shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape), dtype=frames.dtype)
    out["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    out.swmr_mode = True
    with open(log, "w") as times:
        start = time.time()
        for i in range(n):
            time.sleep(max(0.0, start + i / rate - time.time()))
            data.resize((i + 1, *shape))
            data[i] = frames[i % frames.shape[0]]
            data.flush()
            times.write(f"{i} {time.time()}\\n")
            times.flush()
"""


def rows_seen(path: str, seen: dict) -> None:
    """Record the time each new row of the hit list is first seen."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()[1:]
    except FileNotFoundError:
        return
    now = time.time()
    for line in lines:
        parts = line.split(",")
        if len(parts) > 3 and parts[2].isdigit():
            seen.setdefault(int(parts[2]), now)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a CXI file whose frames are written again")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rate", type=float, default=30.0, help="frames written per second")
    parser.add_argument("--out", help="JSON with the figures")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.detect_options = extra  # after --: more options of detect --follow
    work = tempfile.mkdtemp(prefix="follow-delay-")
    live, hits, log = (os.path.join(work, name) for name in ("live.cxi", "hits.csv", "written.txt"))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, args.source, live, str(args.frames), str(args.rate), log])
    while not os.path.exists(log):
        time.sleep(0.01)
    follower = subprocess.Popen([sys.executable, "-m", "spidarknet", "detect", live, "--out", hits, "--follow",
                                 "--idle", "3", "--quiet", *args.detect_options])
    seen: dict = {}
    while follower.poll() is None:
        rows_seen(hits, seen)
        time.sleep(0.005)
    rows_seen(hits, seen)
    writer.wait()
    written = dict(np.loadtxt(log, ndmin=2).tolist())
    delay = np.array([seen[i] - written[i] for i in sorted(seen) if i in written])
    figures = {"frames": args.frames, "rate_per_s": args.rate, "rows": len(seen),
               "median_delay_s": float(np.median(delay)), "p90_delay_s": float(np.percentile(delay, 90)),
               "max_delay_s": float(delay.max()), "detect_options": args.detect_options,
               "follower_exit": follower.returncode}
    print(json.dumps(figures, indent=1))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(figures, handle, indent=1)
    return 0 if follower.returncode == 0 and len(seen) == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
