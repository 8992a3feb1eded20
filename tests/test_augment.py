"""``--data.augment``: per-image random distortions of training batches on the training device."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lenet_cli.checkpoints import load
from lenet_cli.cli.main import main as run_cli
from lenet_cli.data import idx
from lenet_cli.data.augment import (
    Augmentation,
    _affine_grid,
    _dilate,
    _low_resolution_all,
    _low_resolution_chosen,
    epoch_generator,
)
from lenet_cli.data.mnist import MEAN, STD, MNISTDataModule, TensorBatches, to_model_input
from tests.helpers import CONFIGS, CPU, GraphRecord, callback_option, last_logged

NONE = Augmentation(rotation=0, scale=0, shift=0, shear=0, thickness=0, elastic=0)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """64 MNIST training digits as the model's 32×32 inputs, intensities 0 (background) to 1 (ink)."""
    return to_model_input(idx.load(None, allow_download=False)["train_images"][:64]).mul(STD).add(MEAN)


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(B, 2) rows and columns of each (B, 1, H, W) image's centre of mass."""
    weights = images[:, 0]
    rows = torch.arange(weights.shape[1], dtype=weights.dtype)[None, :, None]
    columns = torch.arange(weights.shape[2], dtype=weights.dtype)[None, None, :]
    mass = weights.sum(dim=(1, 2))
    return torch.stack(((weights * rows).sum(dim=(1, 2)) / mass, (weights * columns).sum(dim=(1, 2)) / mass), dim=1)


def generator(seed: int = 0, epoch: int = 0, rank: int = 0) -> torch.Generator:
    return epoch_generator(torch.device("cpu"), seed, epoch, rank)


def test_helpers_match_torch() -> None:
    images = torch.rand(5, 1, 32, 32)
    assert torch.equal(_dilate(images), F.max_pool2d(images, 3, stride=1, padding=1))
    matrix = torch.randn(5, 2, 3)
    torch.testing.assert_close(_affine_grid(matrix, 32, 32), F.affine_grid(matrix, [5, 1, 32, 32], align_corners=False))


def test_no_distortion_is_the_identity(digits: torch.Tensor) -> None:
    torch.testing.assert_close(NONE(digits, generator()), digits, atol=1e-5, rtol=0)
    # probability 0 distorts nothing, whatever the amounts
    torch.testing.assert_close(Augmentation(probability=0.0)(digits, generator()), digits, atol=1e-5, rtol=0)


def test_each_distortion_does_what_it_says(digits: torch.Tensor) -> None:
    ink = digits.sum(dim=(1, 2, 3))
    # Rotation about the centre: the ink and its centre of mass stay (MNIST centres the mass).
    rotated = Augmentation(rotation=15, scale=0, shift=0, shear=0, thickness=0)(digits, generator())
    assert not torch.allclose(rotated, digits, atol=0.05)
    torch.testing.assert_close(rotated.sum(dim=(1, 2, 3)), ink, rtol=0.05, atol=0)
    assert (centre_of_mass(rotated) - centre_of_mass(digits)).abs().max() < 1.0
    # Shifts move the centre of mass by at most the shift (2 px of the 28×28 digit = 2.3 px at 32×32).
    shifted = Augmentation(rotation=0, scale=0, shift=2, shear=0, thickness=0)(digits, generator())
    moved = (centre_of_mass(shifted) - centre_of_mass(digits)).abs()
    assert moved.max() <= 2 * 32 / 28 + 0.1 and moved.mean() > 0.3
    # Scaling by s scales the ink's area by about s².
    scaled = Augmentation(rotation=0, scale=0.2, shift=0, shear=0, thickness=0)(digits, generator())
    ratio = scaled.sum(dim=(1, 2, 3)) / ink
    assert ratio.min() > 0.8**2 * 0.9 and ratio.max() < 1.2**2 * 1.1 and ratio.std() > 0.05
    # Thickness: thicker strokes hold more ink, thinner less, nothing else moves.
    thick = Augmentation(rotation=0, scale=0, shift=0, shear=0, thickness=1, probability=1)(digits, generator())
    change = thick.sum(dim=(1, 2, 3)) / ink
    assert change.max() > 1.3 and change.min() < 0.8
    torch.testing.assert_close(centre_of_mass(thick), centre_of_mass(digits), atol=1.5, rtol=0)
    elastic = Augmentation(rotation=0, scale=0, shift=0, shear=0, thickness=0, elastic=2)(digits, generator())
    assert not torch.allclose(elastic, digits, atol=0.05)
    torch.testing.assert_close(elastic.sum(dim=(1, 2, 3)), ink, rtol=0.25, atol=0)


def test_low_resolution_blurs_detail_but_keeps_the_digit(digits: torch.Tensor) -> None:
    low = Augmentation(
        rotation=0, scale=0, shift=0, shear=0, thickness=0, low_resolution=1.0, low_resolution_sizes=(6, 6)
    )
    # Off by default: the other distortions alone.
    assert Augmentation().low_resolution == 0
    torch.testing.assert_close(
        dataclasses.replace(low, low_resolution=0.0)(digits, generator()), digits, atol=1e-5, rtol=0
    )
    # A one-pixel checkerboard has no detail left at a 6-pixel digit box (8×8 field): flat grey, stretched to ink.
    board = (torch.arange(32)[:, None] + torch.arange(32)[None, :]).remainder(2).float().expand(64, 1, 32, 32)
    assert low(board, generator())[:, :, 4:28, 4:28].std() < 0.05 < board.std() - 0.4
    # A digit keeps its place and full ink, and loses its sharp edges: fewer pixels fully on or off.
    shrunk = low(digits, generator())
    assert (centre_of_mass(shrunk) - centre_of_mass(digits)).abs().max() < 1.5
    torch.testing.assert_close(shrunk.amax(dim=(1, 2, 3)), torch.ones(len(digits)))
    grey = ((shrunk > 0.1) & (shrunk < 0.9)).float().mean() / ((digits > 0.1) & (digits < 0.9)).float().mean()
    assert grey > 1.5
    # The share drawn: half of the digits at 0.5, the others untouched.
    half = dataclasses.replace(low, low_resolution=0.5)(digits, generator())
    changed = (half - digits).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert 16 < int(changed.sum()) < 48
    torch.testing.assert_close(half[~changed], digits[~changed])


def test_low_resolution_is_the_same_on_either_path(digits: torch.Tensor) -> None:
    # The GPU's path (every size for the whole batch, no host sync) gives what the CPU's (by index) does.
    rng = torch.Generator().manual_seed(3)
    every = [8, 10, 11, 13, 14, 15, 17, 18, 20]  # the field sides of 6–14 px digit boxes
    chosen, nearest = torch.rand(64, generator=rng) < 0.5, torch.rand(64, generator=rng) < 0.5
    sides = torch.tensor(every, dtype=torch.float32)[torch.randint(0, len(every), (64,), generator=rng)]
    by_index = _low_resolution_chosen(digits, chosen, sides, nearest)
    assert torch.equal(by_index, _low_resolution_all(digits, chosen, sides, nearest, set(every)))
    assert torch.equal(by_index[~chosen], digits[~chosen]) and not torch.equal(by_index[chosen], digits[chosen])


def test_rotation_turns_by_the_angle_drawn() -> None:
    bar = torch.zeros(1, 1, 32, 32)
    bar[0, 0, 4:28, 15:17] = 1  # a vertical stroke
    turned = Augmentation(rotation=30, scale=0, shift=0, shear=0, thickness=0)(bar.expand(200, -1, -1, -1), generator())
    # The stroke's direction from its second moments: at most 30° either way, and both ways drawn.
    weights = turned[:, 0]
    rows, columns = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centre = centre_of_mass(turned)
    dr, dc = rows - centre[:, 0, None, None], columns - centre[:, 1, None, None]
    cov_rc = (weights * dr * dc).sum(dim=(1, 2))
    cov_rr, cov_cc = (weights * dr * dr).sum(dim=(1, 2)), (weights * dc * dc).sum(dim=(1, 2))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * cov_rc, cov_rr - cov_cc))
    assert angle.abs().max() < 30 + 2 and angle.min() < -20 and angle.max() > 20


def test_seeded_per_seed_epoch_and_rank(digits: torch.Tensor) -> None:
    augment = Augmentation()
    first = augment(digits, generator(seed=5, epoch=1, rank=0))
    assert torch.equal(first, augment(digits, generator(seed=5, epoch=1, rank=0)))
    for other in (generator(seed=6, epoch=1), generator(seed=5, epoch=2), generator(seed=5, epoch=1, rank=1)):
        assert not torch.allclose(first, augment(digits, other))


def batches(rank: int = 0, world_size: int = 1, augment: Augmentation | None = None) -> TensorBatches:
    images = to_model_input(idx.load(None, allow_download=False)["train_images"][:600])
    labels = torch.arange(600)
    return TensorBatches(
        images, labels, 50, shuffle=True, drop_last=True, seed=3, rank=rank, world_size=world_size, augment=augment
    )


@pytest.mark.parametrize("world_size", [1, 2])
def test_batches_keep_their_shards_and_labels(world_size: int) -> None:
    for rank in range(world_size):
        plain, distorted = list(batches(rank, world_size)), list(batches(rank, world_size, Augmentation()))
        assert len(plain) == len(distorted) == 600 // world_size // 50
        for (images, labels, indices), (augmented, augmented_labels, augmented_indices) in zip(
            plain, distorted, strict=True
        ):
            assert torch.equal(indices, augmented_indices) and torch.equal(labels, augmented_labels)
            assert augmented.shape == images.shape and not torch.allclose(augmented, images, atol=0.1)
            # Normalised as the model expects: the background stays at (0 - MEAN) / STD.
            assert augmented.min().item() == pytest.approx(-MEAN / STD, abs=1e-4)
            assert abs(augmented.mean().item() - images.mean().item()) < 0.15


def test_batches_repeat_per_epoch_and_differ_between_ranks(digits: torch.Tensor) -> None:
    # One digit 600 times: what a batch holds then depends on the distortions alone.
    same = to_model_input(idx.load(None, allow_download=False)["train_images"][:1]).expand(600, -1, -1, -1)

    def first_batch(rank: int, epoch: int) -> torch.Tensor:
        loader = TensorBatches(
            same,
            torch.zeros(600),
            50,
            shuffle=True,
            drop_last=True,
            seed=3,
            rank=rank,
            world_size=2,
            augment=Augmentation(),
        )
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(0, 0), first_batch(0, 0))
    assert not torch.allclose(first_batch(0, 0), first_batch(1, 0))
    assert not torch.allclose(first_batch(0, 0), first_batch(0, 1))


def test_option_parses_and_checkpoints_hold_plain_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MNISTDataModule(augment=True).augment == Augmentation()
    assert MNISTDataModule(augment=False).augment is None
    assert MNISTDataModule(augment={"rotation": 5.0}).augment == Augmentation(rotation=5.0)
    monkeypatch.chdir(tmp_path)
    run_cli(
        [
            "fit",
            "--config",
            str(CONFIGS / "quick.yaml"),
            *CPU,
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=1",
            "--data.augment.rotation=5",
            "--data.augment.elastic=1",
        ]
    )
    checkpoint = load.load(tmp_path / "runs" / "quick" / "version_0" / "checkpoints" / "last.ckpt")
    saved = checkpoint["datamodule_hyper_parameters"]["augment"]
    assert saved == Augmentation(rotation=5.0, elastic=1.0).as_dict()
    assert MNISTDataModule(augment=saved).augment == Augmentation(rotation=5.0, elastic=1.0)  # as a reload passes it
    assert "rotation: 5.0" in (tmp_path / "runs" / "quick" / "version_0" / "config.yaml").read_text()


# On a GPU 2 epochs of configs/robust.yaml as it is (> 97 % validation accuracy; minutes); on the CPU 20
# steps of 128 (~6 s).
ROBUST_RUNS = [
    pytest.param(
        "cpu",
        [
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=20",
            "--trainer.limit_val_batches=8",
            "--data.batch_size=128",
        ],
        id="cpu",
    ),
    pytest.param(
        "gpu",
        ["--trainer.max_epochs=2"],
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        id="gpu",
    ),
]


@pytest.mark.parametrize(("accelerator", "options"), ROBUST_RUNS)
def test_augmented_batches_train_under_the_cuda_graph(
    accelerator: str, options: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/robust.yaml (``--data.augment``, ``--model.cuda_graph``): on a GPU one graph is captured and
    every training step goes through it while each batch is distorted anew, and the model learns; on the
    CPU the option is ignored (no graph) and the distorted batches train eagerly."""
    monkeypatch.chdir(tmp_path)
    record = tmp_path / "graph.json"
    run_cli(
        [
            "fit",
            "--config",
            str(CONFIGS / "robust.yaml"),
            f"--trainer.accelerator={accelerator}",
            "--trainer.enable_progress_bar=false",
            "--seed_everything=1",
            *options,
            callback_option(GraphRecord, path=str(record)),
        ]
    )
    graph = json.loads(record.read_text())
    accuracy = last_logged(tmp_path / "runs" / "robust" / "version_0", "val/acc")
    if accelerator == "gpu":
        # 2 eager warm-up steps, 1 capture, then replays: all of them through the one GraphedStep.
        assert graph["graphed"] and graph["captures"] == 1 and graph["calls"] == graph["steps"] > 100, graph
        assert accuracy > 0.97
    else:
        assert graph == {"graphed": False, "steps": 20}
        assert accuracy > 0.5  # 65 % measured (seed 1, 2-core CPU); chance is 10 %
