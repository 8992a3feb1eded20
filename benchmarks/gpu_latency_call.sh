#!/usr/bin/env bash
# Issue #17 on a lent GPU machine, in one call: where its start-up seconds go beyond the import floor,
# and benchmarks/latency.py there. Run from the repository root, after installing the jsonargparse
# wheels (docs/DEVELOPING.md, "Running on a lent GPU machine"):
#
#     bash benchmarks/gpu_latency_call.sh "$OUT"
#
# Every step has its own time limit and the later, less important ones start only while time is left,
# so that a slow or hung step still leaves the others' results. Writes (at most 8 files, for $OUT):
# floor_packages.txt, startup_probe.json, latency.txt, latency.json, console.txt, fit_profile.txt, imports.txt.
set -u
OUT=${1:?give the folder for the results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STDERR=$(mktemp -d)

step() {  # step LIMIT NAME COMMAND...: run it with a time limit; say how long it took
    local limit=$1 name=$2 started=$SECONDS
    shift 2
    timeout "$limit" "$@"
    echo "== $name: exit $?, $((SECONDS - started)) s (script at ${SECONDS} s)"
}

# 1. The first import on a fresh machine reads everything from a cold disk; the second is the floor.
step 90 cold_import python3 -c "import time; t = time.perf_counter(); import torch, lightning.pytorch; print(f'cold import: {time.perf_counter() - t:.2f} s')"
step 60 floor_importtime sh -c 'python3 -X importtime -c "import torch, lightning.pytorch" 2> /tmp/floor_importtime.txt'
python3 - > "$OUT/floor_packages.txt" <<'EOF'
# What the floor imports, by top-level package: the import time of its own modules, and which module
# of another package imported it first (-X importtime lists a module's imports above it, indented).
rows = []
for line in open("/tmp/floor_importtime.txt"):
    if line.startswith("import time:") and "cumulative" not in line:
        own, _, name = line.removeprefix("import time:").split("|")
        rows.append((len(name) - len(name.lstrip()), name.strip(), int(own)))
own, importer = {}, {}
for index, (depth, name, micros) in enumerate(rows):
    package = name.split(".")[0]
    own[package] = own.get(package, 0) + micros
    if package in importer:
        continue
    chain, level = [], depth  # the modules this one was imported from, nearest first
    for j in range(index + 1, len(rows)):
        if rows[j][0] < level:
            chain.append(rows[j][1])
            level = rows[j][0]
    outside = [module for module in chain if module.split(".")[0] != package]
    importer[package] = " < ".join(outside[:3]) or "(the command)"
print(f"floor: {sum(own.values()) / 1e6:.2f} s of imports in all")
for package, micros in sorted(own.items(), key=lambda item: -item[1])[:25]:
    print(f"  {package:22s} {micros / 1e6:6.2f} s  first imported from {importer.get(package)}")
EOF
cat "$OUT/floor_packages.txt"

# 2. One process, step by step: imports, NVML, lenet's parser and classes, CUDA context, cuDNN, data.
step 120 startup_probe python3 - "$OUT/startup_probe.json" <<'EOF'
import json, sys, time
marks, last = {}, time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter(); marks[name] = round(now - last, 3); last = now
import torch; mark("import torch")
import lightning.pytorch; mark("import lightning.pytorch")
from lenet_cli.cli import LenetCLI; mark("import lenet_cli.cli")
available = torch.cuda.is_available(); count = torch.cuda.device_count(); mark("torch.cuda.is_available + device_count (NVML)")
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator
CUDAAccelerator.is_available(); MPSAccelerator.is_available(); XLAAccelerator.is_available(); mark("Lightning's accelerator probes")
cli = LenetCLI(run=False, args=["--config", "configs/mnist.yaml", "--trainer.logger=false"]); mark("LenetCLI(run=False): parse, model, data, Trainer")
torch.zeros(1, device="cuda"); torch.cuda.synchronize(); mark("CUDA context (first tensor on the GPU)")
name = torch.cuda.get_device_name(0); mark("get_device_name")
x = torch.randn(512, 1, 32, 32, device="cuda"); torch.nn.functional.conv2d(x, torch.randn(6, 1, 5, 5, device="cuda")); torch.cuda.synchronize(); mark("first cuDNN convolution")
cli.datamodule.setup("fit"); mark("MNIST: read, verify, split (CPU)")
from lenet_cli.data import to_model_input
to_model_input(cli.datamodule.raw["train"][0], device="cuda"); torch.cuda.synchronize(); mark("55 000 training images to 32x32 on the GPU")
json.dump({"gpu": name, "devices": count, "seconds": marks}, open(sys.argv[1], "w"), indent=2)
print(json.dumps(marks, indent=2))
EOF

# 3. The latency benchmark: every step beside the floor of its round; the whole fit of configs/mnist.yaml first.
step 240 latency python3 benchmarks/latency.py --accelerator auto --rounds 2 --budget 150 --timeout 120 \
    --steps fit,fit_first_step,test,predict_folder,predict_one,help \
    --json "$OUT/latency.json" --keep-stderr "$STDERR" > "$OUT/latency.txt"
cat "$OUT/latency.txt"
for file in "$STDERR"/*.stderr.txt; do echo "===== $(basename "$file")"; cat "$file"; done > "$OUT/console.txt"
echo "== Lightning warnings or tips on the GPU console (none expected):"
grep -nE '\.py:[0-9]+: |Warning|Tip|💡|deprecated|No seed|Seed set|available: |dirpath has changed|LOCAL_RANK|You are using' "$OUT/console.txt" | head -20

# 4. Where a fit's seconds before its first step go, by function (cProfile inflates Python-heavy parts).
if [ "$SECONDS" -lt 290 ]; then
    step 60 fit_profile env LENET_LATENCY_STOP=1 python3 -m cProfile -o /tmp/fit.prof -m lenet_cli fit --config configs/mnist.yaml \
        --trainer.max_epochs=1 --trainer.enable_progress_bar=false --trainer.callbacks+=benchmarks.latency_clock.Clock \
        --trainer.logger.init_args.save_dir=/tmp/profile_runs 2> /dev/null
    python3 -c "
import pstats
stats = pstats.Stats('/tmp/fit.prof')
stats.sort_stats('cumulative').print_stats(45)
stats.print_stats('lenet_cli|setup_environment|_log_device_info|_call_setup_hook|capture|accelerator', 25)
" > "$OUT/fit_profile.txt" 2>&1
    grep -E "lenet_cli/(cli|graphs|data)|setup_environment|_log_device_info|capture|instantiate_classes|_run_stage" "$OUT/fit_profile.txt" | head -25
fi

# 5. What lenet itself imports beyond the floor there.
if [ "$SECONDS" -lt 320 ]; then
    step 30 imports python3 benchmarks/latency.py --imports --import-commands "fit --help" > "$OUT/imports.txt"
    cat "$OUT/imports.txt"
fi
echo "== done at ${SECONDS} s"
