"""The datamodule and its batches: split sizes, normalisation, shuffling and per-rank shards."""

from __future__ import annotations

import pytest
import torch

from lenet_cli.data.mnist import MNISTDataModule, TensorBatches, to_model_input


@pytest.fixture(scope="module")
def datamodule() -> MNISTDataModule:
    module = MNISTDataModule()
    module.setup("fit")
    return module


def test_split_is_55000_5000_and_disjoint(datamodule: MNISTDataModule) -> None:
    train_images, _ = datamodule.model_inputs("train")
    val_images, _ = datamodule.model_inputs("val")
    test_images, test_labels = datamodule.model_inputs("test")
    assert train_images.shape == (55_000, 1, 32, 32)
    assert val_images.shape == (5_000, 1, 32, 32)
    assert test_images.shape == (10_000, 1, 32, 32) and test_labels[:3].tolist() == [7, 2, 1]
    # Same seed, same split; no validation image is also a training image.
    again = MNISTDataModule()
    again.setup("fit")
    assert torch.equal(again.raw["val"][0], datamodule.raw["val"][0])
    train_keys = {bytes(image.numpy()) for image in datamodule.raw["train"][0][:20_000]}
    assert not any(bytes(image.numpy()) in train_keys for image in datamodule.raw["val"][0][:500])


def test_normalised_like_the_tutorial(datamodule: MNISTDataModule) -> None:
    images, _ = datamodule.model_inputs("train")
    # The tutorial's constants are the 28×28 statistics; bilinear upsampling to 32×32 keeps the mean
    # and smooths the strokes a little (std ≈ 0.94), exactly as torchvision's Resize does.
    assert images.mean().item() == pytest.approx(0.0, abs=0.03)
    assert 0.9 < images.std().item() < 1.0


def test_pad_mode_keeps_pixels() -> None:
    digits = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    padded = to_model_input(digits, mode="pad")
    assert padded.shape == (3, 1, 32, 32)
    restored = (padded[:, 0, 2:30, 2:30] * 0.3081 + 0.1307) * 255
    torch.testing.assert_close(restored, digits.float(), atol=1e-3, rtol=0)
    assert torch.allclose(padded[:, 0, 0, :], torch.tensor(-0.1307 / 0.3081))


def test_training_batches_reshuffle_each_epoch() -> None:
    images, labels = torch.arange(100).float(), torch.arange(100)
    batches = TensorBatches(images, labels, batch_size=32, shuffle=True, drop_last=True, seed=3)
    first = torch.cat([i for _, _, i in batches])
    assert len(batches) == 3 and len(first) == 96
    batches.sampler.set_epoch(1)
    second = torch.cat([i for _, _, i in batches])
    assert not torch.equal(first, second)
    batches.sampler.set_epoch(0)
    assert torch.equal(first, torch.cat([i for _, _, i in batches]))


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("size", [10_000, 5_003])
def test_evaluation_shards_cover_every_sample_once(world_size: int, size: int) -> None:
    images, labels = torch.zeros(size), torch.arange(size)
    seen = []
    for rank in range(world_size):
        batches = TensorBatches(images, labels, batch_size=999, rank=rank, world_size=world_size)
        rank_indices = [indices for _, _, indices in batches]
        assert len(rank_indices) == len(batches)
        seen.append(torch.cat(rank_indices))
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(size))


@pytest.mark.parametrize("world_size", [2, 3])
def test_training_shards_are_equal_and_disjoint(world_size: int) -> None:
    images, labels = torch.zeros(1000), torch.arange(1000)

    def shard(rank: int) -> torch.Tensor:
        batches = TensorBatches(
            images, labels, 50, shuffle=True, drop_last=True, seed=1, rank=rank, world_size=world_size
        )
        return torch.cat([indices for _, _, indices in batches])

    shards = [shard(rank) for rank in range(world_size)]
    assert len({len(s) for s in shards}) == 1  # DDP all-reduce needs the same number of steps
    everything = torch.cat(shards)
    assert len(everything.unique()) == len(everything)
