"""A training step's forward, loss and backward captured once as a CUDA graph, then replayed per batch.

LeNet's step is ~50 small kernels launched one by one from Python: at any batch size a datacentre GPU
finishes them faster than Python can launch them. Replayed as one graph they cost one launch, and the step costs
what Lightning's loop and the optimizer cost around it (docs/benchmarks.md).

The optimizer stays outside the graph, so Lightning's automatic optimization (learning-rate schedulers,
gradient clipping, step counting, checkpoints) works unchanged: after a replay the parameters' ``.grad``
hold the batch's gradients, as after an eager ``backward()``.

Under Lightning's DDP the graph holds DDP's own gradient all-reduce too: the captured backward runs
DDP's reducer hooks, so the graph records their kernels (gradients into DDP's bucket, NCCL all-reduce,
result back), and a replay averages the gradients over the ranks as an eager DDP backward would. This
is PyTorch's documented "whole-network capture" with DDP (CUDA semantics notes): DDP built on a side
stream (Lightning's DDPStrategy does that for this reason), at least 11 eager DDP iterations before the
capture (DDP times iterations 1-10 with CUDA events, which must not land in a graph), NCCL ≥ 2.9.6.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from lenet_cli._lightning import attached_trainer, ddp_comm_hook
from lenet_cli.errors import LenetError

Step = Callable[[Tensor, Tensor], tuple[Tensor, ...]]

# DDP records CUDA timing events in its iterations 1-10 and every 100th (DDP_RUNTIME_LOGGING_SAMPLE_RATE):
# capturing in iteration 12 keeps them out of the graph.
DDP_WARMUP_STEPS = 11


def blocker(trainer: Trainer, compiled: bool) -> str | None:
    """Why a training step cannot be graphed with this trainer (None when it can)."""
    if trainer.world_size > 1:
        ddp = trainer.strategy.model
        if not isinstance(ddp, DistributedDataParallel):
            return f"strategy {type(trainer.strategy).__name__}: only DDP's gradient all-reduce is captured"
        if ddp.find_unused_parameters and not ddp.static_graph:
            return "find_unused_parameters: DDP searches each step's autograd graph, a replay has none"
        if ddp_comm_hook(trainer) is not None:
            return "ddp_comm_hook: only DDP's built-in all-reduce is captured"
    if trainer.accumulate_grad_batches != 1:
        return "accumulate_grad_batches needs gradients summed over batches; a replay overwrites them"
    if trainer.precision not in ("32-true", "32"):
        return f"precision {trainer.precision!r}: only 32-true is captured"
    if compiled:
        return "compile: torch.compile and a hand-captured graph do not mix"
    return None


class GraphedStep:
    """Runs ``step(images, labels)`` and ``backward()`` of its first output, replayed from a CUDA graph.

    The first ``warmup_steps`` calls return None: the caller trains those batches eagerly, which also
    initialises cuDNN/cuBLAS and the optimizer state before the capture. The next call captures; later
    calls replay. A batch of another shape or dtype (e.g. a last, smaller batch) returns None too.

    Args:
        step: Computes the outputs from static input tensors; its first output is the loss.
        parameters: The parameters whose gradients the backward writes.
        warmup_steps: Eager calls before the capture.
        ddp: The DDP module the parameters are trained under; the captured backward then includes its
            gradient all-reduce. A failed capture raises LenetError (ranks must not diverge) instead of going eager.
    """

    def __init__(
        self,
        step: Step,
        parameters: Sequence[Tensor],
        warmup_steps: int = 2,
        ddp: DistributedDataParallel | None = None,
    ) -> None:
        self.step = step
        self.parameters = list(parameters)
        self.warmup_steps = max(warmup_steps, DDP_WARMUP_STEPS) if ddp is not None else warmup_steps
        self.ddp = ddp
        self.side_warmup_steps = 3  # forward/backward only, gradients dropped: the training is unchanged
        self.calls = 0
        self.captures = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, ...] | None:
        self.calls += 1
        if self.failed:
            return None
        if self.graph is None:
            if self.calls <= self.warmup_steps:
                return None
            try:
                self._capture(images, labels)
            except RuntimeError as error:  # a CUDA capture error: train on, eagerly
                if self.ddp is not None:  # the other ranks may have captured: going eager would hang them
                    reason = str(error).splitlines()[0]
                    raise LenetError(
                        f"cuda_graph: capturing the DDP step failed ({reason}); train with --model.cuda_graph false"
                    ) from error
                self.failed = True
                for parameter in self.parameters:
                    parameter.grad = None
                rank_zero_warn(f"cuda_graph: the capture failed, training eagerly ({str(error).splitlines()[0]})")
                return None
        elif not (_same_layout(images, self.images) and _same_layout(labels, self.labels)):
            return None
        else:
            self.images.copy_(images)
            self.labels.copy_(labels)
        assert self.graph is not None  # captured above
        self.graph.replay()
        # The replay writes into these tensors. Set them again in case someone dropped them since
        # (``zero_grad(set_to_none=True)``): the optimizer would otherwise skip every parameter.
        for parameter, gradient in zip(self.parameters, self.gradients, strict=True):
            parameter.grad = gradient
        return self.outputs

    def release(self) -> None:
        """Frees the graph; later calls run eagerly. Under DDP it must happen before the process group is
        destroyed: NCCL's communicator teardown waits for the graphs holding its all-reduce, so a graph
        still alive then hangs the process at exit."""
        if self.graph is not None:
            self.graph.reset()
            self.graph = None
            self.failed = True  # no second capture
            torch.cuda.synchronize()

    def _capture(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images.clone(), labels.clone()
        # PyTorch's recipe: run the step on a side stream before capturing it, so that nothing it
        # sets up lazily happens on the default stream during the capture. The caller must not hold
        # on to an eager step's loss either: its autograd graph keeps the parameters' gradient-
        # accumulation nodes, bound to the default stream, and a capture reusing them fails ("would
        # make the legacy stream depend on a capturing blocking stream").
        if self.ddp is not None:
            # Lightning destroys the process group at exit (atexit); handlers run last-in first-out,
            # so this one frees the graph before that.
            atexit.register(_release, weakref.ref(self))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.side_warmup_steps):
                self.step(self.images, self.labels)[0].backward()
        torch.cuda.current_stream().wait_stream(side)
        # With no gradient to add to, backward writes fresh ones: each replay overwrites, never sums.
        for parameter in self.parameters:
            parameter.grad = None
        graph = torch.cuda.CUDAGraph()
        # Under DDP other threads use CUDA while we capture (NCCL's watchdog queries the events of earlier
        # all-reduces); in the default "global" mode their calls could invalidate the capture. NCCL's
        # CUDA-graph notes advise "thread_local" then: it restricts only this thread.
        mode = "thread_local" if self.ddp is not None else "global"
        with torch.cuda.graph(graph, capture_error_mode=mode):  # synchronises; captures on a side stream
            outputs = self.step(self.images, self.labels)
            if self.ddp is not None:
                # The warm-ups above ran outside DDP's forward, so its reducer ignored their backward
                # (local gradients only). Arm it for this one, as DDP's forward does after every eager
                # forward (``DistributedDataParallel._post_forward``): its hooks then all-reduce, captured.
                self.ddp.reducer.prepare_for_backward([])
            outputs[0].backward()
        self.outputs = tuple(output.detach() for output in outputs)
        self.gradients = [parameter.grad for parameter in self.parameters]
        self.graph = graph
        self.captures += 1


class GraphedTraining(LightningModule):
    """A LightningModule whose training step can be replayed from a CUDA graph (a :class:`GraphedStep`),
    and which applies the other hyperparameters of how a step runs: ``channels_last`` and ``compile``.

    A subclass implements :meth:`train_outputs` and calls :meth:`training_outputs` from its
    ``training_step``; the hooks below set the graph up at the start of training (when the
    hyperparameter ``cuda_graph`` is true, the device is CUDA and :func:`blocker` finds nothing against
    it), skip Lightning's ``zero_grad`` and ``backward`` after a replay (the replay did both), and free
    the graph at the end. Lightning calls ``optimizer_zero_grad`` *after* ``training_step`` and before
    ``backward``.
    """

    RUNTIME_OPTIONS = ("compile", "channels_last", "cuda_graph")  # how a step runs, not what it computes

    _graphed: GraphedStep | None = None
    _replayed = False  # the current training step came from a graph replay
    _channels_last = False  # set up by configure_model
    _compiled = False

    def configure_model(self) -> None:
        # Called by the trainer before the model moves to its device: the device is the strategy's.
        setting = self.hparams.get("channels_last")
        if setting is None:  # oneDNN runs NHWC convolutions ~10 % faster; on a GPU conversions cost more
            trainer = attached_trainer(self)
            setting = trainer is not None and trainer.strategy.root_device.type == "cpu"
        if setting and not self._channels_last:
            # The 4-D weights, and each convolution's input (a no-op after the first convolution). Not
            # a hook on this module: Lightning's DDP redirection calls it with the batch, as a step.
            self.to(memory_format=torch.channels_last)
            for module in self.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.register_forward_pre_hook(_input_channels_last)
            self._channels_last = True
        if self.hparams.get("compile") and not self._compiled:
            # forward only (not Module.compile, which would compile the steps Lightning redirects through
            # __call__ under DDP); the checkpoint's weight names stay the network's own.
            self.forward = torch.compile(self.forward)  # type: ignore[method-assign]
            self._compiled = True

    def train_outputs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The loss and any other outputs of a training batch, from static inputs (captured as they are)."""
        raise NotImplementedError

    def training_outputs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`train_outputs` of the batch, from a graph replay when there is one (backward included)."""
        outputs = self._graphed(images, labels) if self._graphed is not None else None
        self._replayed = outputs is not None
        if outputs is None:
            return self.train_outputs(images, labels)
        loss, sums = outputs
        return loss, sums

    def on_train_start(self) -> None:
        self._graphed = None
        if self.hparams.get("cuda_graph") and self.device.type == "cuda":
            reason = blocker(self.trainer, compiled=bool(self.hparams.get("compile")))
            if reason is None:
                parameters = [parameter for parameter in self.parameters() if parameter.requires_grad]
                ddp = self.trainer.strategy.model if self.trainer.world_size > 1 else None
                self._graphed = GraphedStep(self.train_outputs, parameters, ddp=ddp)  # type: ignore[arg-type]
            else:
                rank_zero_warn(f"cuda_graph is off for this run: {reason}.")

    def on_train_end(self) -> None:
        if self._graphed is not None:
            self._graphed.release()  # its memory, and under DDP NCCL's hold on the communicator

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        # A replay has just written the gradients; once captured, they live in the graph's memory, so
        # they are zeroed there, in place, never set to None.
        if not self._replayed:
            optimizer.zero_grad(set_to_none=self._graphed is None or self._graphed.graph is None)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        if not self._replayed:  # a replay did the backward
            super().backward(loss, *args, **kwargs)


def _input_channels_last(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def _release(step: weakref.ref[GraphedStep]) -> None:
    if (alive := step()) is not None:
        alive.release()


def _same_layout(tensor: Tensor, static: Tensor) -> bool:
    return tensor.shape == static.shape and tensor.dtype == static.dtype and tensor.device == static.device
