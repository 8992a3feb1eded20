#!/usr/bin/env bash
# Issue #7's GPU checks and measurements in one call on a lent 2-GPU machine, each step time-boxed (a
# hung DDP run must not eat the call) with its log under $OUT. From the repository root, after the
# device prefix of docs/DEVELOPING.md:   bash benchmarks/ddp_gpu_call.sh
# About 9 minutes in all; drop steps to fit the call.
set -u
out=${OUT:-ddp-gpu-out}
mkdir -p "$out"
step() {
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "== $name: exit $?"
    tail -5 "$out/$name.log"
}
nvidia-smi --query-gpu=name --format=csv,noheader
# DDP's own step outside Lightning: module vs DDP, eager vs graphed, replayed gradients checked.
step graph_step 90 python -m torch.distributed.run --nproc_per_node 2 benchmarks/ddp_graph_step.py --batch-size 512
# Lightning's host time around a free step, 1 process vs 2 DDP ranks (NCCL).
step host_1 40 python benchmarks/ddp_host_overhead.py --devices 1 --accelerator gpu
step host_2 60 python benchmarks/ddp_host_overhead.py --devices 2 --accelerator gpu
# 2 vs 1 GPU, graphed and eager (each pair in one process tree, same host).
step scale_graph 200 python benchmarks/ddp_scaling.py --devices 2 --epochs 10 --batch-sizes 512,2048 \
    --repeats 2 --extra=--model.cuda_graph=true --json "$out/scale_graph.json"
step scale_eager 120 python benchmarks/ddp_scaling.py --devices 2 --epochs 10 --batch-sizes 512 \
    --extra=--model.cuda_graph=false --json "$out/scale_eager.json"
# torch.profiler over 30 graphed steps in the middle of an epoch, 1 GPU and each DDP rank.
fit=(python -m lenet_cli fit --config configs/ddp.yaml --trainer.max_epochs=4 --trainer.enable_progress_bar=false
     --trainer.callbacks+=benchmarks.step_profiler.StepProfiler --trainer.logger.init_args.save_dir="$out/runs")
LENET_PROFILE_STEPS=150:180 LENET_PROFILE_OUT="$out/profile_1" step profile_1 60 "${fit[@]}" --trainer.devices=1 --trainer.strategy=auto
LENET_PROFILE_STEPS=115:145 LENET_PROFILE_OUT="$out/profile_2" step profile_2 60 "${fit[@]}" --trainer.devices=2
# Correctness on NCCL: shards, exact test metrics, merged predictions, the config, the DDP graph.
step tests 200 env LENET_TEST_ACCELERATOR=gpu python -m pytest -q tests/test_ddp.py tests/test_graphs.py
