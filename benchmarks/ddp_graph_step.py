"""DDP's training step with and without the CUDA graph, outside Lightning (one process per GPU).

    python -m torch.distributed.run --nproc_per_node 2 benchmarks/ddp_graph_step.py --batch-size 512

Separates what DDP itself costs a LeNet step from what Lightning's loop adds around it: the same
LeNet, fused Adam and `lenet_cli.graphs.GraphedStep` as `lenet fit`, in a bare loop. Per rank it prints
ms a step for: the module alone (eager, graphed) and under DDP (eager, graphed; DDP built on a side
stream with a static graph and gradients as bucket views, as configs/ddp.yaml and Lightning do), and
checks that a replayed step's gradients equal an eager DDP backward's on the same batch (the graph
must hold DDP's all-reduce, so they are the ranks' average and equal on every rank).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from lenet_cli.graphs import GraphedStep
from lenet_cli.model import LeNet


def timed(step: Callable[[int], None], steps: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=300)
    options = parser.parse_args()

    rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl")
    torch.manual_seed(0)
    model = LeNet().cuda()
    plain = copy.deepcopy(model)
    with torch.cuda.stream(torch.cuda.Stream()):  # as Lightning's DDPStrategy, for graph capture
        ddp = DistributedDataParallel(model, device_ids=[rank], static_graph=True, gradient_as_bucket_view=True)
    generator = torch.Generator(device="cuda").manual_seed(rank)  # each rank its own data
    batches = [
        (torch.randn(options.batch_size, 1, 32, 32, device="cuda", generator=generator),
         torch.randint(0, 10, (options.batch_size,), device="cuda", generator=generator))
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

    results = {}
    for name, network, module, ddp_module in (("plain", plain, plain, None), ("ddp", ddp, model, ddp)):
        eager = loop(network, module, None)
        timed(eager, 20)  # warm-up: cuDNN, the optimizer state
        results[f"{name} eager"] = timed(eager, options.steps)
        graphed = GraphedStep(module.train_outputs, list(module.parameters()), ddp=ddp_module)
        step = loop(network, module, graphed)
        timed(step, 40)  # warm-up and capture
        results[f"{name} graphed"] = timed(step, options.steps)
        if ddp_module is not None:
            images, labels = batches[0]
            graphed(images, labels)
            replayed = [parameter.grad.clone() for parameter in module.parameters()]
            model.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(images), labels).backward()
            error = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(replayed, (p.grad for p in module.parameters())))
            gathered = [torch.zeros_like(replayed[0]) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, replayed[0])
            results["replay vs eager DDP gradients, max relative difference"] = error
            results["replayed gradients equal on all ranks"] = all(torch.equal(g, gathered[0]) for g in gathered)
        graphed.release()  # before the process group goes: a live graph holding NCCL work hangs its teardown
    for name, value in results.items():
        shown = f"{value:.3f} ms a step" if name.endswith(("eager", "graphed")) else value
        print(f"rank {rank} {torch.cuda.get_device_name()}: batch {options.batch_size}, {name}: {shown}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
