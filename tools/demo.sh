#!/usr/bin/env bash
# The main job end to end on data spidarknet makes itself (CPU, a few minutes):
# simulate -> export-dataset -> train -> detect on held-out frames -> figures.
# Usage: tools/demo.sh [DEMO_DIR]   (default: demo/, replaced on every run)
set -euo pipefail
PYTHON=${PYTHON:-python3}
DIR=${1:-demo}
sk() { "$PYTHON" -m spidarknet "$@"; }

rm -rf "$DIR" && mkdir -p "$DIR"
echo "== 1/5 simulate: a training run and a held-out run (pnCCD, 1.7 keV, 125 mm)"
sk simulate "$DIR/train.cxi" --count 800 --seed 1
sk simulate "$DIR/heldout.cxi" --count 400 --seed 2
echo "== 2/5 export-dataset: images, labels, lists and a quarter-width tiny YOLOv2 at 128x128"
sk export-dataset "$DIR/train.cxi" --labels-dataset /truth/label --out "$DIR/ds" \
   --net yolov2-tiny-spi --width-scale 0.25 --max-batches 500
echo "== 3/5 train with darknet (patched CPU build, OpenMP)"
sk train "$DIR/ds"
WEIGHTS="$DIR/ds/backup/yolov2-tiny-spi_final.weights"
echo "== 4/5 detect on the held-out run"
sk detect "$DIR/heldout.cxi" --weights "$WEIGHTS" --out "$DIR/hits.csv" --write-cxi "$DIR/selected.cxi"
echo "== 5/5 how good is the selection? (truth from the simulator)"
if sk evaluate --help >/dev/null 2>&1; then
  sk evaluate "$DIR/hits.csv" --truth-dataset /truth/label --out "$DIR/evaluation.json"
else
  "$PYTHON" - "$DIR" <<'PY'
import sys, h5py
from spidarknet.hits import read_hits
from spidarknet import metrics
d = sys.argv[1]
hits = read_hits(f"{d}/hits.csv")
truth = h5py.File(f"{d}/heldout.cxi")["/truth/label"][()]
labels = truth[[k.index for k in hits.keys]]
c = metrics.confusion(hits.scores, labels, hits.threshold)
print(f"held-out: precision {c.precision:.3f}, recall {c.recall:.3f}, F1 {c.f1:.3f}, "
      f"ROC AUC {metrics.roc_auc(hits.scores, labels):.3f} ({len(hits)} frames, {int(labels.sum())} single hits)")
PY
fi
echo "outputs in $DIR/: hits.csv, hits.json, selected.cxi, ds/ (data set, weights, model card, train.log)"
