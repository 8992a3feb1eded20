"""The network alone: shapes, finiteness and gradients, with random input and no data."""

from __future__ import annotations

import pytest
import torch

from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.training.module import LeNet
from tests.helpers import quiet_trainer


@pytest.mark.parametrize(("in_channels", "num_classes", "batch"), [(1, 10, 4), (3, 7, 1)])
def test_forward_shape_and_gradients(in_channels: int, num_classes: int, batch: int) -> None:
    torch.manual_seed(0)
    model = LeNet(in_channels=in_channels, num_classes=num_classes)
    logits = model(torch.randn(batch, in_channels, 32, 32))
    assert logits.shape == (batch, num_classes)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_layers_follow_lenet() -> None:
    model = LeNet()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (5, 5)), (16, (5, 5))]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(400, 120), (120, 84), (84, 10)]
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_hyperparameters_saved_as_plain_types() -> None:
    model = LeNet(lr=1e-3, lr_schedule="onecycle")
    assert dict(model.hparams) == {
        "in_channels": 1,
        "num_classes": 10,
        "lr": 1e-3,
        "lr_schedule": "onecycle",
        "weight_decay": 0.0,
        "compile": False,
        "channels_last": None,
        "cuda_graph": False,
        "outlier_weight": 0.5,
    }


def test_channels_last_gives_same_logits() -> None:
    torch.manual_seed(0)
    plain, nhwc = LeNet(), LeNet(channels_last=True)
    nhwc.load_state_dict(plain.state_dict())
    nhwc.configure_model()
    assert nhwc.network.features[3].weight.is_contiguous(memory_format=torch.channels_last)  # NHWC indeed
    images = torch.randn(8, 1, 32, 32)
    torch.testing.assert_close(plain(images), nhwc(images))


@pytest.mark.parametrize(("setting", "expected"), [(None, True), (False, False), (True, True)])
def test_channels_last_by_default_on_cpu(setting: bool | None, expected: bool) -> None:
    # oneDNN's NHWC convolutions make a CPU step ~10 % faster; on a GPU the default stays NCHW.
    model = LeNet(channels_last=setting)
    quiet_trainer(max_steps=1, limit_val_batches=0).fit(model, MNISTDataModule(batch_size=32))
    weight = model.network.features[3].weight  # (16, 6, 5, 5): the two formats differ (with 1 channel they coincide)
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected
    assert weight.is_contiguous() is not expected
