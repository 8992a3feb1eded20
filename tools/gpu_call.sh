#!/usr/bin/env bash
# One call on a lent GPU machine (docs/DEVELOPING.md, "Running on a lent GPU machine"): install the
# jsonargparse wheels carried in .whl/, then run each argument as one step, time-boxed, with its output
# in $OUT/stepN.log; the results files the steps wrote (benchmarks/results/*.json) come back in
# $OUT/results/. From the repository root:
#
#   tools/gpu_call.sh 'python3 benchmarks/training.py fit -- --config configs/mnist_fast.yaml' \
#                     'python3 -m pytest -q tests/test_graphs.py'
#
# STEP_LIMIT (seconds, default 200) bounds each step: timeout kills the step's whole process group (DDP
# ranks and torchrun's workers too), so a hung step leaves the later ones their time. TAIL: log lines
# printed per step (default 5).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-call}
mkdir -p "$OUT/results"
touch "$OUT/.started"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 2
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
step=0
for command in "$@"; do
    step=$((step + 1))
    started=$SECONDS
    timeout -k 10 "${STEP_LIMIT:-200}" bash -c "$command" >"$OUT/step$step.log" 2>&1
    echo "== step $step: exit $?, $((SECONDS - started)) s: $command"
    tail -n "${TAIL:-5}" "$OUT/step$step.log"
done
find benchmarks/results -name '*.json' -newer "$OUT/.started" -exec cp {} "$OUT/results/" \;
rm -f "$OUT/.started"
