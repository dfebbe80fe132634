#!/usr/bin/env bash
# The main job end to end on data spidarknet makes itself (CPU, a few minutes):
# simulate -> export-dataset -> train -> detect on held-out frames -> sizes -> evaluate -> report.
# Usage: tools/demo.sh [DEMO_DIR]   (default: demo/, replaced on every run)
set -euo pipefail
PYTHON=${PYTHON:-python3}
DIR=${1:-demo}
sk() { "$PYTHON" -m spidarknet "$@"; }

rm -rf "$DIR" && mkdir -p "$DIR"
echo "== the demo writes into $DIR/ (replaced on every run; about 65 MB)"
echo "== 1/6 simulate: a training run and a held-out run (pnCCD, 1.7 keV, 125 mm)"
sk simulate "$DIR/train.cxi" --count 800 --seed 1
sk simulate "$DIR/heldout.cxi" --count 400 --seed 2
echo "== 2/6 export-dataset: images, labels, lists and a quarter-width tiny YOLOv2 at 128x128"
sk export-dataset "$DIR/train.cxi" --labels-dataset /truth/label --out "$DIR/ds" \
   --net yolov2-tiny-spi --width-scale 0.25 --max-batches 500
echo "== 3/6 train with darknet (patched CPU build, OpenMP)"
sk train "$DIR/ds"
WEIGHTS="$DIR/ds/backup/yolov2-tiny-spi_final.weights"
echo "== 4/6 detect on the held-out run (one process per core)"
sk detect "$DIR/heldout.cxi" --weights "$WEIGHTS" --out "$DIR/hits.csv" --write-cxi "$DIR/selected.cxi"
echo "== 5/6 sizes of the hits, and a selection kept to 60-75 nm as in the seed's training sets"
sk size "$DIR/heldout.cxi" --hits "$DIR/hits.csv" --out "$DIR/sizes.csv"
sk select "$DIR/hits.csv" --size-range 60 75 --sizes "$DIR/sizes.csv" --out "$DIR/hits-60-75nm.csv"
echo "== 6/6 how good is the selection? (truth from the simulator) and the report"
sk evaluate "$DIR/hits.csv" --truth-dataset /truth/label --out "$DIR/evaluation.json"
sk evaluate "$DIR/hits-60-75nm.csv" --truth-dataset /truth/label --out "$DIR/evaluation-60-75nm.json"
sk report --hits "$DIR/hits-60-75nm.csv" --truth-dataset /truth/label --sizes "$DIR/sizes.csv" --out "$DIR/report"
"$PYTHON" - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
for name, label in (("evaluation.json", "CNN score alone"), ("evaluation-60-75nm.json", "score + 60-75 nm size window")):
    e = json.load(open(f"{d}/{name}"))["at_threshold"]
    print(f"{label:<30} precision {e['precision']:.3f}  recall {e['recall']:.3f}  F1 {e['f1']:.3f}")
PY
echo "report: $DIR/report/index.html   (hit lists, sizes, selected.cxi, the data set and weights are in $DIR/)"
echo "disk: $(du -sh "$DIR" | cut -f1) in $DIR/"
