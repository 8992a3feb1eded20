"""The CUDA-graph training step (lenet_cli.graphs): same training as eager, and when it stays off.

The GPU tests run on a CUDA machine only (docs/DEVELOPING.md says how they were run on the lent GPUs);
on the CPU the option must leave training exactly as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.nn.parallel import DistributedDataParallel

from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.errors import LenetError
from lenet_cli.training.cuda_graph import DDP_WARMUP_STEPS, GraphedStep, blocker
from lenet_cli.training.module import LeNet
from tests.helpers import quiet_trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def fit(cuda_graph: bool, accelerator: str, steps: int = 12, epochs: int = 2) -> tuple[LeNet, dict[str, float]]:
    seed_everything(0)
    model = LeNet(lr=2e-3, lr_schedule="onecycle", cuda_graph=cuda_graph)
    trainer = quiet_trainer(accelerator=accelerator, max_epochs=epochs, limit_train_batches=steps, limit_val_batches=2)
    trainer.fit(model, MNISTDataModule(batch_size=128))
    return model, {name: float(value) for name, value in trainer.callback_metrics.items()}


@pytest.fixture
def ddp_modules() -> Iterator[Callable[..., DistributedDataParallel]]:
    """Real DDP modules on the CPU: a one-process gloo group is enough to build them (closed after the test)."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    yield lambda **kwargs: DistributedDataParallel(LeNet(), **kwargs)
    torch.distributed.destroy_process_group()


def trainer_with(world_size: int = 1, model: object = None, comm_hook: object = None, **settings: object) -> Trainer:
    strategy = SimpleNamespace(model=model, _ddp_comm_hook=comm_hook)
    fields = {"world_size": world_size, "accumulate_grad_batches": 1, "precision": "32-true", "strategy": strategy}
    return SimpleNamespace(**{**fields, **settings})  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"accumulate_grad_batches": 4}, "accumulate_grad_batches"),
        ({"precision": "bf16-mixed"}, "precision 'bf16-mixed'"),
    ],
)
def test_blocker_names_the_reason(settings: dict, reason: str) -> None:
    found = blocker(trainer_with(**settings), compiled=False)
    assert found is not None and reason in found
    found = blocker(trainer_with(), compiled=True)
    assert found is not None and "compile" in found


def test_blocker_lets_a_plain_single_device_run_through() -> None:
    assert blocker(trainer_with(), compiled=False) is None


def test_blocker_under_several_processes(ddp_modules: Callable[..., DistributedDataParallel]) -> None:
    # DDP's own all-reduce is captured with the step; other strategies' and DDP's dynamic modes are not.
    def reason(model: object, comm_hook: object = None) -> str | None:
        return blocker(trainer_with(2, model, comm_hook), compiled=False)

    assert reason(ddp_modules()) is None
    assert reason(ddp_modules(static_graph=True, gradient_as_bucket_view=True)) is None
    assert "strategy" in reason(LeNet())
    assert "find_unused_parameters" in reason(ddp_modules(find_unused_parameters=True))
    assert "ddp_comm_hook" in reason(ddp_modules(), comm_hook=print)


def test_graphed_step_waits_for_ddps_timed_iterations(ddp_modules: Callable[..., DistributedDataParallel]) -> None:
    ddp = ddp_modules()
    assert GraphedStep(ddp.module.train_outputs, list(ddp.parameters()), ddp=ddp).warmup_steps == DDP_WARMUP_STEPS
    assert GraphedStep(ddp.module.train_outputs, list(ddp.parameters())).warmup_steps == 2


def test_option_changes_nothing_on_cpu() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed, graphed_metrics = fit(True, "cpu")
    assert not [w for w in caught if "cuda_graph" in str(w.message)]
    eager, eager_metrics = fit(False, "cpu")
    assert graphed._graphed is None
    for (name, a), b in zip(graphed.state_dict().items(), eager.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert graphed_metrics == eager_metrics


def test_train_metrics_are_exact_epoch_means() -> None:
    # Training sums loss and correct predictions per step and logs them once an epoch. A zero learning
    # rate keeps the weights as they were, so the epoch's means can be recomputed afterwards.
    seed_everything(0)
    frozen = LeNet(lr=0.0)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=0)
    data = MNISTDataModule(batch_size=128)
    trainer.fit(frozen, data)
    losses, correct, count = [], 0, 0
    frozen.eval()
    with torch.no_grad():
        for step, (images, labels, _) in enumerate(data.train_dataloader()):
            if step == 5:
                break
            logits = frozen(images)
            losses.append(torch.nn.functional.cross_entropy(logits, labels).item() * len(labels))
            correct += int((logits.argmax(1) == labels).sum())
            count += len(labels)
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(sum(losses) / count, rel=1e-5)
    assert trainer.callback_metrics["train/acc"].item() == pytest.approx(correct / count, abs=1e-6)


@cuda
def test_graphed_training_matches_eager_on_gpu() -> None:
    seed_everything(0)
    initial = LeNet().state_dict()  # what fit() starts from: the same seed, the same draws
    graphed, graphed_metrics = fit(True, "gpu")
    eager, eager_metrics = fit(False, "gpu")
    assert graphed._graphed is not None and graphed._graphed.captures == 1
    assert graphed._graphed.graph is None  # released at the end of training
    assert graphed._graphed.calls == 24  # 2 epochs × 12 steps: 2 eager, 1 capture, 21 replays
    # Not bit-equal: cuBLAS/cuDNN may pick other kernels under capture. The two runs must end where
    # each other ended, far closer than either moved from the start.
    for name, start in initial.items():
        a, b = graphed.state_dict()[name].cpu(), eager.state_dict()[name].cpu()
        assert (a - b).norm() <= 1e-3 * (b - start).norm(), name
    for name in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert graphed_metrics[name] == pytest.approx(eager_metrics[name], rel=1e-3), name


@cuda
def test_replay_restores_dropped_gradients_and_skips_other_shapes() -> None:
    torch.manual_seed(0)
    model = LeNet().cuda()
    step = GraphedStep(model.train_outputs, list(model.parameters()), warmup_steps=0)
    images, labels = torch.randn(64, 1, 32, 32, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    loss, _ = step(images, labels)
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    again, _ = step(images, labels)
    assert again.item() == pytest.approx(loss.item())
    for parameter, gradient in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient)  # overwritten, not summed, and not lost
    assert step(images[:10], labels[:10]) is None  # a smaller batch runs eagerly


def test_failed_capture_warns_once_and_trains_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    def capture_error(self: GraphedStep, images: torch.Tensor, labels: torch.Tensor) -> None:
        for parameter in self.parameters:  # a capture that got as far as the backward
            parameter.grad = torch.zeros_like(parameter)
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(GraphedStep, "_capture", capture_error)
    model = LeNet()
    step = GraphedStep(model.train_outputs, list(model.parameters()), warmup_steps=1)
    images, labels = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    assert step(images, labels) is None  # warm-up: eager
    with pytest.warns(UserWarning, match="cuda_graph: the capture failed, training eagerly"):
        assert step(images, labels) is None
    assert step.failed and all(parameter.grad is None for parameter in model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert step(images, labels) is None  # no second attempt, no second warning


def test_failed_capture_under_ddp_raises(
    monkeypatch: pytest.MonkeyPatch, ddp_modules: Callable[..., DistributedDataParallel]
) -> None:
    # The other ranks may have captured their all-reduce: training on eagerly here would hang them.
    def capture_error(self: GraphedStep, images: torch.Tensor, labels: torch.Tensor) -> None:
        raise RuntimeError("capture")

    monkeypatch.setattr(GraphedStep, "_capture", capture_error)
    ddp = ddp_modules()
    step = GraphedStep(ddp.module.train_outputs, list(ddp.parameters()), ddp=ddp)
    step.calls = step.warmup_steps
    message = r"capturing the DDP step failed \(capture\); train with --model.cuda_graph false"
    with pytest.raises(LenetError, match=message):
        step(torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,)))
