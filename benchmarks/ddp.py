"""Lightning's DDP on LeNet: N GPUs vs 1, DDP's own step, Lightning's host time, all in one call.

    python benchmarks/ddp.py scaling --devices 2 --epochs 10 --batch-sizes 512 --repeats 2
    python benchmarks/ddp.py graph-step --devices 2 --batch-size 512
    python benchmarks/ddp.py host --devices 2 --accelerator gpu
    python benchmarks/ddp.py all                                  # a lent 2-GPU machine's whole call

- ``scaling``: training throughput of ``lenet fit --config configs/ddp.yaml`` on N GPUs against 1 at
  the same per-GPU batch, each in its own process tree, timed by ``benchmarks.timing.FitTimer``:
  "train" (the training batches of every epoch after the first: what the speed-up is of), the whole
  fit's, each rank's median step by CUDA events and what an epoch's first steps cost.
- ``graph-step``: LeNet's step outside Lightning, one process per device (started with torchrun):
  the module alone and under DDP (built on a side stream with a static graph and gradients as bucket
  views, as configs/ddp.yaml and Lightning do), eager and, on CUDA, replayed from
  ``lenet_cli.graphs.GraphedStep``; ms a step, and whether a replayed step's gradients equal an eager
  DDP backward's on the same batch (the graph must hold DDP's all-reduce).
- ``host``: Lightning's own host time a step when the step costs nothing (as a replay: backward and
  zero_grad skipped), 1 process vs DDP, with lenet's throttle of Lightning's per-step SIGTERM
  broadcast (lenet_cli.distributed); µs a step per rank after the first 100 steps.
- ``all``: every DDP check and measurement above on a 2-GPU machine, plus torch.profiler on 1 GPU and
  2 and the DDP tests, each step time-boxed (a hung DDP run must not eat the call) with its log under
  ``$OUT`` (default ``runs/ddp-out``); about 9 minutes. ``--dry-run`` lists the steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: `benchmarks.timing` importable

import argparse
import contextlib
import copy
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.nn.parallel import DistributedDataParallel

from benchmarks.timing import ROOT, child_environment, run_step
from lenet_cli.training.cuda_graph import GraphedStep
from lenet_cli.training.distributed import throttle_sigterm_broadcast
from lenet_cli.training.module import LeNet

# ---------------------------------------------------------------------------------------------------
# scaling: N GPUs vs 1 under lenet fit


def timed_fit(devices: int, batch_size: int, options: argparse.Namespace, workdir: Path, extra: list[str]) -> dict:
    output = workdir / f"timer-{devices}-{batch_size}.json"
    strategy = [] if devices > 1 else ["--trainer.strategy=auto"]  # several: configs/ddp.yaml's DDP
    command = [
        sys.executable, "-m", "lenet_cli", "fit", "--config", str(ROOT / "configs" / "ddp.yaml"),
        f"--trainer.accelerator={options.accelerator}", f"--trainer.devices={devices}", *strategy,
        f"--data.batch_size={batch_size}", f"--trainer.max_epochs={options.epochs}", f"--model.lr={options.lr}",
        "--trainer.enable_progress_bar=false", "--seed_everything=0",
        f"--trainer.logger.init_args.save_dir={workdir / 'runs'}", *extra,
        "--trainer.callbacks+=benchmarks.timing.FitTimer", f"--trainer.callbacks.output={output}",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env=child_environment(), capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"lenet fit failed ({devices} devices, batch {batch_size}):\n{result.stderr[-3000:]}")
    numbers = json.loads(output.read_text())
    other = output.with_name(f"{output.stem}.rank1{output.suffix}")  # the second rank's own clock
    numbers["rank1_step_ms_median"] = json.loads(other.read_text())["step_ms_median"] if other.exists() else None
    return numbers


def scaling(options: argparse.Namespace) -> None:
    results = []
    n = options.devices
    with tempfile.TemporaryDirectory(prefix="lenet-ddp-") as folder:
        for batch_size in [int(b) for b in options.batch_sizes.split(",")] * options.repeats:
            one = timed_fit(1, batch_size, options, Path(folder), options.extra.split())
            many = timed_fit(n, batch_size, options, Path(folder), options.extra.split() + options.ddp_args.split())
            results.append(
                {
                    "batch_size_per_device": batch_size,
                    "one": one,
                    "many": many,
                    "speedup": many["train_images_per_second"] / one["train_images_per_second"],
                    "fit_speedup": many["fit_images_per_second"] / one["fit_images_per_second"],
                }
            )
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{one['device']}; {n} vs 1 devices; ms: train ms a step, median step (CUDA events), epoch start")
    columns = ["batch/dev", "img/s 1", f"img/s {n}", "speed-up", "fit s-up", "ms 1", f"ms {n}"]
    columns += ["median 1", f"median {n}", "(rank 1)", "start 1", f"start {n}", "val acc 1", f"val acc {n}"]
    print("".join(f"{column:>11}" for column in columns))
    for r in results:
        one, many = r["one"], r["many"]
        values = [
            r["batch_size_per_device"], f"{one['train_images_per_second']:.0f}",
            f"{many['train_images_per_second']:.0f}",
            f"{r['speedup']:.2f}×", f"{r['fit_speedup']:.2f}×", f"{one['train_ms_per_step']:.2f}",
            f"{many['train_ms_per_step']:.2f}", f"{one['step_ms_median']:.3f}", f"{many['step_ms_median']:.3f}",
            f"{many['rank1_step_ms_median'] or float('nan'):.3f}", f"{one['epoch_start_ms']:.2f}",
            f"{many['epoch_start_ms']:.2f}", f"{one['val_acc']:.4f}", f"{many['val_acc']:.4f}",
        ]  # fmt: skip
        print("".join(f"{value:>11}" for value in values))
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------
# graph-step: DDP's step without Lightning


def timed(step: Callable[[int], None], steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1e3 * (time.perf_counter() - start) / steps


def graph_step_rank(options: argparse.Namespace) -> None:
    rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available() and options.accelerator == "gpu"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    torch.manual_seed(0)
    model = LeNet().to(device)
    plain = copy.deepcopy(model)
    # Lightning's DDPStrategy builds DDP on a side stream, which a later graph capture needs.
    with torch.cuda.stream(torch.cuda.Stream()) if cuda else contextlib.nullcontext():
        ddp = DistributedDataParallel(
            model, device_ids=[rank] if cuda else None, static_graph=True, gradient_as_bucket_view=True
        )
    generator = torch.Generator(device=device).manual_seed(rank)  # each rank its own data
    batches = [
        (torch.randn(options.batch_size, 1, 32, 32, device=device, generator=generator),
         torch.randint(0, 10, (options.batch_size,), device=device, generator=generator))
        for _ in range(4)
    ]  # fmt: skip

    def loop(network: torch.nn.Module, module: LeNet, graphed: GraphedStep | None) -> Callable[[int], None]:
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True)

        def step(i: int) -> None:
            images, labels = batches[i % len(batches)]
            if graphed is None or graphed(images, labels) is None:  # eager (also the graph's warm-up)
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(network(images), labels).backward()
            optimizer.step()

        return step

    results: dict[str, Any] = {}
    for name, network, module, ddp_module in (("plain", plain, plain, None), ("ddp", ddp, model, ddp)):
        eager = loop(network, module, None)
        timed(eager, 20, device)  # warm-up: cuDNN, the optimizer state
        results[f"{name} eager"] = timed(eager, options.steps, device)
        if not cuda:
            continue  # CUDA graphs need CUDA
        graphed = GraphedStep(module.train_outputs, list(module.parameters()), ddp=ddp_module)
        step = loop(network, module, graphed)
        timed(step, 40, device)  # warm-up (DDP's first 11 iterations stay eager) and capture
        results[f"{name} graphed"] = timed(step, options.steps, device)
        if ddp_module is not None:
            images, labels = batches[0]
            graphed(images, labels)
            replayed = [parameter.grad.clone() for parameter in module.parameters() if parameter.grad is not None]
            model.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(images), labels).backward()
            eager_grads = [parameter.grad for parameter in module.parameters() if parameter.grad is not None]
            error = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(replayed, eager_grads, strict=True))
            gathered = [torch.zeros_like(replayed[0]) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, replayed[0])
            results["replay vs eager DDP gradients, max relative difference"] = error
            results["replayed gradients equal on all ranks"] = all(torch.equal(g, gathered[0]) for g in gathered)
        graphed.release()  # before the process group goes: a live graph holding NCCL work hangs its teardown
    where = torch.cuda.get_device_name(device) if cuda else "cpu"
    for name, value in results.items():
        shown = f"{value:.3f} ms a step" if name.endswith(("eager", "graphed")) else value
        print(f"rank {rank} {where}: batch {options.batch_size}, {name}: {shown}", flush=True)
    dist.destroy_process_group()


def graph_step(options: argparse.Namespace, argv: list[str]) -> None:
    if "LOCAL_RANK" in os.environ:  # a rank that torchrun started
        graph_step_rank(options)
        return
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={options.devices}"]
    subprocess.run([*command, str(Path(__file__).resolve()), *argv], env=child_environment(), check=True)


# ---------------------------------------------------------------------------------------------------
# host: Lightning's loop around a free step


class Replayed(LightningModule):
    """A step that returns a ready tensor and skips backward and zero_grad, as a CUDA-graph replay."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)  # DDP needs a parameter

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer.bias.detach().sum()

    def optimizer_zero_grad(self, *args: object) -> None:
        pass

    def backward(self, *args: object, **kwargs: object) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class StepClock(Callback):
    def __init__(self, skip: int = 100) -> None:
        self.skip, self.start = skip, 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        microseconds = 1e6 * (time.perf_counter() - self.start) / (trainer.global_step - self.skip)
        print(f"rank {trainer.global_rank} of {trainer.world_size}: {microseconds:.0f} µs a step", flush=True)


def host(options: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    trainer = Trainer(
        accelerator=options.accelerator, devices=options.devices, strategy="ddp" if options.devices > 1 else "auto",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
        callbacks=[StepClock()],
    )  # fmt: skip
    throttle_sigterm_broadcast(trainer)
    batches = [torch.zeros(1, 4)] * (options.steps * options.devices)  # each rank gets `steps` of them
    trainer.fit(Replayed(), torch.utils.data.DataLoader(batches, batch_size=None))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# all: one lent 2-GPU machine's call


def steps_of_a_call(out: Path) -> Iterator[tuple[str, float, list[str], dict[str, str] | None]]:
    me, python = str(Path(__file__).resolve()), sys.executable
    env = child_environment()
    yield "graph_step", 90, [python, me, "graph-step", "--devices=2", "--batch-size=512"], env
    yield "host_1", 40, [python, me, "host", "--devices=1", "--accelerator=gpu"], env
    yield "host_2", 60, [python, me, "host", "--devices=2", "--accelerator=gpu"], env
    scale = [python, me, "scaling", "--devices=2", "--epochs=10"]
    yield "scale_graph", 200, [*scale, "--batch-sizes=512,2048", "--repeats=2", "--extra=--model.cuda_graph=true",
                               f"--json={out / 'scale_graph.json'}"], env  # fmt: skip
    yield "scale_eager", 120, [*scale, "--batch-sizes=512", "--extra=--model.cuda_graph=false",
                               f"--json={out / 'scale_eager.json'}"], env  # fmt: skip
    profile = [python, str(ROOT / "benchmarks" / "profile_step.py"), "torch"]
    fit = ["--config", "configs/ddp.yaml", "--trainer.max_epochs=4", "--trainer.enable_progress_bar=false",
           f"--trainer.logger.init_args.save_dir={out / 'runs'}"]  # fmt: skip
    yield "profile_1", 60, [*profile, "--steps=150:180", f"--out={out / 'profile_1'}", "--", *fit,
                            "--trainer.devices=1", "--trainer.strategy=auto"], env  # fmt: skip
    yield "profile_2", 60, [*profile, "--steps=115:145", f"--out={out / 'profile_2'}", "--", *fit,
                            "--trainer.devices=2"], env  # fmt: skip
    tests = [python, "-m", "pytest", "-q", "tests/test_ddp.py", "tests/test_graphs.py"]
    yield "tests", 200, tests, {**env, "LENET_TEST_ACCELERATOR": "gpu"}


def all_steps(options: argparse.Namespace) -> None:
    out = Path(os.environ.get("OUT", "runs/ddp-out")).resolve()
    for name, limit, command, env in steps_of_a_call(out):
        if options.dry_run:
            print(f"{name} ({limit} s): {' '.join(command)}")
            continue
        out.mkdir(parents=True, exist_ok=True)
        run_step(name, limit, command, out, env)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    text = "N devices vs 1 under lenet fit --config configs/ddp.yaml"
    mode = modes.add_parser("scaling", help=text, description=text, allow_abbrev=False)
    mode.add_argument("--devices", type=int, default=2)
    mode.add_argument("--accelerator", default="gpu", help="gpu, or cpu for a smoke run on gloo")
    mode.add_argument("--batch-sizes", default="512,2048", help="per-device batch sizes, comma-separated")
    mode.add_argument("--epochs", type=int, default=4)
    mode.add_argument("--lr", type=float, default=0.005)
    mode.add_argument("--extra", default="", help="more lenet fit arguments, e.g. --model.cuda_graph=false")
    mode.add_argument("--ddp-args", default="", help="more lenet fit arguments for the multi-device runs only")
    mode.add_argument("--repeats", type=int, default=1, help="run each pair (1 device, N) this many times")
    mode.add_argument("--json", help="write all numbers here")
    text = "LeNet's step with and without DDP and the CUDA graph, no Lightning (torchrun)"
    mode = modes.add_parser("graph-step", help=text, description=text, allow_abbrev=False)
    mode.add_argument("--devices", type=int, default=2, help="processes torchrun starts")
    mode.add_argument("--accelerator", default="gpu", help="gpu (NCCL, with the graphs), or cpu (gloo, eager only)")
    mode.add_argument("--batch-size", type=int, default=512)
    mode.add_argument("--steps", type=int, default=300, help="timed steps of each loop")
    text = "Lightning's host time a step around a free step, 1 process vs DDP"
    mode = modes.add_parser("host", help=text, description=text, allow_abbrev=False)
    mode.add_argument("--devices", type=int, default=1)
    mode.add_argument("--accelerator", default="cpu")
    mode.add_argument("--steps", type=int, default=3000, help="steps of each rank")
    text = "every DDP check and measurement in one 2-GPU call, each step time-boxed, logs under $OUT"
    mode = modes.add_parser("all", help=text, description=text, allow_abbrev=False)
    mode.add_argument("--dry-run", action="store_true", help="list the steps and their time limits only")
    options = parser.parse_args(argv)

    if options.mode == "scaling":
        scaling(options)
    elif options.mode == "graph-step":
        graph_step(options, argv)
    elif options.mode == "host":
        host(options)
    else:
        all_steps(options)


if __name__ == "__main__":
    main()
