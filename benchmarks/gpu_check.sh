#!/usr/bin/env bash
# The GPU checks and the GPU benchmark in one script, for a machine with a CUDA device:
#   1. the CUDA tests (tests/test_gpu.py);
#   2. `scdefr run` end to end on a real dataset, twice with the same seed: time, ARI, peak GPU
#      memory, and whether the second run repeats the first one's clusters;
#   3. the scaling sweep on the GPU (benchmarks/scaling.py: simulated cells, `--n-clusters auto`).
# Simulated counts are written in the background from the start, in one slice per core
# (`scdefr simulate --parts`): the simulation is CPU work that would otherwise keep the GPU idle.
# Every stage logs into OUTDIR; OUTDIR/progress.log says which stage is running, and
# OUTDIR/scaling.csv receives the sweep's rows.
#
#   benchmarks/gpu_check.sh OUTDIR DATASET.h5ad [SIZE ...]      (sizes default to 20000 100000)
#
# DEVICE=cpu runs stages 2 and 3 on the CPU instead (a same-machine baseline, or a dry run).
# RUN_ARGS adds options to every sweep run, e.g. RUN_ARGS='--compression none' for 1M cells.
# SIMULATE_ARGS go to `scdefr simulate` (default: --compression none).
# REAL_RUNS=0 skips stage 2 (default: 2 runs). DROP_STEP_FILES=1 deletes each step's h5ad once the
# next step has read it: at 1M cells x 2,000 genes each file holds 11 GB.
# For a machine lent by the call (a run that may outlast one call): start this script detached
# (setsid) and collect its logs with benchmarks/gpu_collect.sh, in this call and the next. 1M cells
# run so, with the wheels of benchmarks/gpu_wheels.sh installed in /tmp/site:
#   setsid nohup env REAL_RUNS=0 DROP_STEP_FILES=1 RUN_ARGS='--compression none' \
#       benchmarks/gpu_check.sh /tmp/g DATASET 1000000 >/tmp/g.out 2>&1 </dev/null &
#   benchmarks/gpu_collect.sh /tmp/g 545 "$OUT"          (the next call: the last line alone)
set -uo pipefail
if [ $# -lt 2 ]; then
    echo "usage: benchmarks/gpu_check.sh OUTDIR DATASET.h5ad [SIZE ...]" >&2
    exit 2
fi
if [ ! -f "$2" ]; then
    echo "gpu_check.sh: error: dataset $2 not found" >&2
    exit 2
fi
out=$(realpath -m "$1")
dataset=$(realpath "$2")
shift 2
if [ $# -gt 0 ]; then sizes=("$@"); else sizes=(20000 100000); fi
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
threads=$(nproc)
device=${DEVICE:-cuda}
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out/scaling"
log() { echo "$(date +%T) $*" | tee -a "$out/progress.log"; }
# Deletes a sample's input once its qc step is done, and each step's h5ad once the next one is.
drop_step_files() {
    for log_file in "$1"/sim*.run.log; do
        [ -f "$log_file" ] || continue
        sample=$(basename "$log_file" .run.log)
        grep -q "qc done in" "$log_file" && rm -f "$1/$sample.h5ad"
        grep -q "graph done in" "$log_file" && rm -f "$1/$sample/qc/"*.h5ad
        grep -q "train done in" "$log_file" && rm -f "$1/$sample/graph/"*.h5ad
    done
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.csv" || exit 1
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 1 >"$out/gpu_usage.csv" &
monitor=$!
trap 'kill $(jobs -p) 2>/dev/null' EXIT
tag="gpu_$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -cd '[:alnum:]')_$device"
(cd "$repo/benchmarks" && "$python" scaling.py --sizes "${sizes[@]}" --commands simulate --workdir "$out/scaling" \
    --threads "$threads" --simulate-args "--parts $threads ${SIMULATE_ARGS:---compression none}") >"$out/simulate.log" 2>&1 &
simulating=$!

log "CUDA tests"
timeout 300 "$python" -m pytest -q -p no:cacheprovider "$repo/tests/test_gpu.py" >"$out/tests.log" 2>&1
log "CUDA tests: exit $?"

runs=(first second)
for run in "${runs[@]:0:${REAL_RUNS:-2}}"; do
    log "$(basename "$dataset"), $run run"
    "$python" -m scdefr run --input "$dataset" --outdir "$out/real" --sample "$run" --n-clusters auto \
        --label-key cell_type --seed 0 --threads "$threads" --device "$device" >"$out/real_$run.log" 2>&1
    status=$?
    log "$(basename "$dataset"), $run run: exit $status"
done
[ "${REAL_RUNS:-2}" -ge 2 ] && "$python" - "$out/real" <<'EOF' 2>&1 | tee -a "$out/progress.log"
import json, sys
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.metrics import adjusted_rand_score
real = Path(sys.argv[1])
runs = {run: pd.read_csv(real / run / "export" / f"{run}.clusters.csv", index_col=0) for run in ("first", "second")}
z = {run: pd.read_csv(real / run / "export" / f"{run}.embedding.csv", index_col=0).to_numpy() for run in runs}
metrics = {run: json.load(open(real / run / "export" / f"{run}.metrics.json")) for run in runs}
print("same seed twice: " + ", ".join(f"{run} run K = {m['n_clusters']}, ARI {m['ari']:.3f}" for run, m in metrics.items())
      + f"; the two clusterings agree at ARI {adjusted_rand_score(runs['first']['cluster'], runs['second']['cluster']):.4f}"
      + f"; largest embedding difference {np.abs(z['first'] - z['second']).max():.2e}")
EOF

wait $simulating || log "simulation failed: see simulate.log"
log "scaling sweep: ${sizes[*]} cells ($tag)"
if [ "${DROP_STEP_FILES:-0}" = 1 ]; then while sleep 5; do drop_step_files "$out/scaling"; done & fi
(cd "$repo/benchmarks" && "$python" scaling.py --sizes "${sizes[@]}" --threads "$threads" --commands run \
    --train-args "--device $device ${RUN_ARGS:-}" --n-clusters auto --tag "$tag" --workdir "$out/scaling") >"$out/scaling.log" 2>&1
log "scaling sweep: exit $?"
if [ "${DROP_STEP_FILES:-0}" = 1 ]; then drop_step_files "$out/scaling"; fi
cp "$repo/benchmarks/results/scaling.csv" "$out/scaling.csv"
log "done"
