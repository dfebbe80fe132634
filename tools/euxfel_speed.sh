#!/bin/sh
# Frames/s of detect on a simulated AGIPD run (whole process, warm cache) against the pnCCD
# CXI baseline of the same frame count in the same session; --mpi over trains against one
# process.  Run it under the heavy lock:
#   flock /work/heavy.lock sh tools/euxfel_speed.sh WORK_DIR [FRAMES]
# (writes WORK_DIR/r0002, an AGIPD run of FRAMES frames, 4.2 MB each, and WORK_DIR/pnccd.cxi)
set -e
WORK=${1:?give a work folder}
N=${2:-2112}
REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$REPO
SK="python -m spidarknet"
mkdir -p "$WORK"
cd "$WORK"
[ -d r0002 ] || $SK simulate r0002 --detector agipd1m --count "$N" --seed 11 --photons 3000 --quiet
[ -f pnccd.cxi ] || $SK simulate pnccd.cxi --count "$N" --seed 11 --photons 3000 --quiet
now() { python -c 'import time; print(time.perf_counter())'; }
timed() {  # label, command...: whole-process seconds and frames/s
    label=$1; shift
    t0=$(now); "$@" > "$label.out" 2> "$label.err"; t1=$(now)
    python -c "import sys; s=$t1-$t0; print(f'{sys.argv[1]:42s} {s:7.2f} s  {$N/s:7.0f} frames/s')" "$label"
}
# warm the page cache with one pass of each
$SK detect r0002 --adu-per-photon 6 --out warm-a.csv --force --quiet
$SK detect pnccd.cxi --out warm-p.csv --force --quiet
for rep in 1 2; do
    timed "agipd-detect-2procs-$rep" $SK detect r0002 --adu-per-photon 6 --out a.csv --force --quiet
    timed "pnccd-detect-2procs-$rep" $SK detect pnccd.cxi --out p.csv --force --quiet
done
timed agipd-detect-2procs-no-file-mask $SK detect r0002 --adu-per-photon 6 --out an.csv --force --quiet --no-file-mask
timed agipd-detect-1proc $SK detect r0002 --adu-per-photon 6 --out a1.csv --force --quiet --jobs 1
timed pnccd-detect-1proc $SK detect pnccd.cxi --out p1.csv --force --quiet --jobs 1
timed agipd-detect-size-window $SK detect r0002 --adu-per-photon 6 --out aw.csv --force --quiet --size-range 60 75
timed pnccd-detect-size-window $SK detect pnccd.cxi --out pw.csv --force --quiet --size-range 60 75
timed agipd-detect-mpi2 mpirun --allow-run-as-root --oversubscribe -n 2 python -m spidarknet detect r0002 \
    --adu-per-photon 6 --out am.csv --force --quiet --mpi
python - <<'PY'
import numpy as np
from spidarknet.hits import read_hits
a, b = read_hits("a1.csv"), read_hits("am.csv")
same = a.keys == b.keys and np.array_equal(a.scores, b.scores) and np.array_equal(a.hits, b.hits)
print(f"--mpi (2 ranks) hit list identical to one process: {same} ({len(a)} frames, {a.n_hits} hits)")
for name in ("a.csv", "a1.csv", "aw.csv", "p.csv", "pw.csv"):
    h = read_hits(name)
    print(f"{name}: {h.summary_line()}, detect's own timing {h.meta.get('timing', {}).get('frames_per_s')}")
PY
