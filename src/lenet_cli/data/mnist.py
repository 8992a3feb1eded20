"""The MNIST datamodule: verified IDX files → one tensor per split on the training device → batches.

There is no ``Dataset``/``DataLoader`` per sample here. The images are decoded once, resized (or
padded) to 32×32 and normalised as one batched tensor operation, and kept on the device the model
runs on; a batch is one index gather. Lightning accepts any iterable as a loader, and calls
``set_epoch`` on its ``sampler`` at each epoch, which is all the shuffling needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Tensor

from lenet_cli.data import idx
from lenet_cli.data.augment import Augmentation, epoch_generator
from lenet_cli.data.negatives import negatives as non_digits
from lenet_cli.errors import LenetError
from lenet_cli.reading.batch import Proposals, load_proposals

MEAN, STD = 0.1307, 0.3081  # of the MNIST training pixels on [0, 1]
INPUT_SIZE = 32  # LeNet's input; MNIST digits are 28×28
Batch = tuple[Tensor, Tensor, Tensor]  # images (B, 1, 32, 32) float, labels (B,) int64, indices (B,) int64


def to_model_input(
    images: Tensor, mode: Literal["resize", "pad"] = "resize", device: torch.device | str = "cpu"
) -> Tensor:
    """uint8 (N, H, W) digits → normalised float32 (N, 1, 32, 32) on ``device``, in chunks."""
    return torch.cat([preprocess(chunk.to(device), mode) for chunk in images.split(8192)])


def preprocess(digits: Tensor, mode: Literal["resize", "pad"] = "resize") -> Tensor:
    """uint8 (N, H, W) digits → normalised float32 (N, 1, 32, 32), on their device, in one go.

    Free of loops over the batch, so ``torch.export`` keeps N dynamic (``lenet export --with_preprocessing``).
    """
    x = digits.unsqueeze(1).float().div_(255)
    if mode == "resize":
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    else:
        pad_h, pad_w = INPUT_SIZE - x.shape[-2], INPUT_SIZE - x.shape[-1]
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return x.sub_(MEAN).div_(STD)


class EpochOrder:
    """The sample order of one epoch: a permutation seeded by ``seed + epoch``, or 0..n-1."""

    def __init__(self, size: int, shuffle: bool, seed: int = 0) -> None:
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator)


class TensorBatches:
    """Batches ``(images[i], labels[i], i)`` over tensors that already live on the training device.

    Under DDP each rank takes its own part. Training (``drop_last``) gives every rank the same number
    of samples, as gradient all-reduce needs; evaluation splits 0..n-1 into contiguous parts so each
    sample is seen exactly once over all ranks (no padding duplicates, unlike DistributedSampler).
    With ``augment``, each gathered batch is distorted (lenet_cli.augment) by a generator seeded with
    the shuffle seed, the epoch and the rank: a rerun repeats the distortions, and ranks differ.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: Augmentation | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.augment = augment
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochOrder(len(images), shuffle, seed)
        self.batch_sampler = None  # read by Lightning's loader checks alongside ``sampler``

    def shard(self) -> Tensor:
        """The dataset indices this rank visits this epoch, in order."""
        order = self.sampler.indices()
        if self.world_size == 1:
            return order
        if self.drop_last:
            per_rank = len(order) // self.world_size
            return order[self.rank :: self.world_size][:per_rank]
        return torch.tensor_split(order, self.world_size)[self.rank]

    def __len__(self) -> int:
        size, world = len(self.images), self.world_size
        if self.drop_last:
            return (size // world) // self.batch_size
        shard_size = size // world + (1 if self.rank < size % world else 0)  # as torch.tensor_split
        return math.ceil(shard_size / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self.shard().to(self.images.device, non_blocking=True)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        augment = self.augment
        if augment is not None:
            generator = epoch_generator(self.images.device, self.sampler.seed, self.sampler.epoch, self.rank)
        for start in range(0, stop, self.batch_size):
            indices = order[start : start + self.batch_size]
            images = self.images[indices]  # a new tensor: the gather copies
            if augment is not None:
                # Distorted as intensities (background 0), then normalised again as the model expects.
                images = augment(images.mul_(STD).add_(MEAN), generator).sub_(MEAN).div_(STD)
            yield images, self.labels[indices], indices


class MNISTDataModule(LightningDataModule):
    """MNIST (or any MNIST-format IDX set) kept in memory on the training device.

    Args:
        data_dir: Folder with the four IDX files (``.gz`` or not). ``None`` uses the verified copy
            bundled with the package (no network). A folder that lacks the files is downloaded into
            from the canonical mirrors, if ``download`` is true.
        batch_size: Training images per step (per device under DDP).
        eval_batch_size: Images per validation/test/predict step.
        val_size: Images held out of the 60 000 training images for validation.
        split_seed: Seed of the train/validation split (kept fixed so runs compare on the same split).
        input_mode: ``"resize"`` 28×28 → 32×32 bilinearly (the tutorial's), or ``"pad"`` 2 pixels of
            background on each side (LeCun's original LeNet-5 input).
        download: Allow downloading into ``data_dir`` when files are missing.
        predict_path: Image file, folder or glob to predict on instead of the MNIST test set.
        num_workers: Threads decoding ``predict_path`` images (0: the main thread). MNIST itself is
            decoded once into memory and needs no workers.
        augment: Distort every training image at random on the training device (rotation, scale,
            shift, shear, stroke thickness; lenet_cli.augment): ``true`` for the defaults, or the
            amounts (``--data.augment.rotation 10``). Validation, test and predict images are not.
        explain_dir: Folder where ``predict`` writes, per ``predict_path`` image, its preprocessing steps
            side by side (original, flattened, ink, chosen strokes, the 28×28 the model sees).
        negatives: Pictures of no digit (letters, strokes, shapes, halves of two digits;
            lenet_cli.data.negatives) added to the training split, labelled -1: the model learns low
            confidence on them (outlier exposure), so that reading can answer "no digit". 0: none.
    """

    in_channels = 1
    num_classes = 10

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 42,
        input_mode: Literal["resize", "pad"] = "resize",
        download: bool = True,
        predict_path: str | None = None,
        num_workers: int = 0,
        augment: bool | Augmentation = False,
        explain_dir: str | None = None,
        negatives: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise LenetError(f"batch sizes must be positive, got {batch_size} and {eval_batch_size}")
        self.augment = _augmentation(augment)
        self.save_hyperparameters(ignore=["augment"])
        # Plain values only: the hyperparameters go into checkpoints, which load with weights_only.
        self.hparams["augment"] = self.augment.as_dict() if self.augment is not None else False
        self.raw: dict[str, tuple[Tensor, Tensor]] = {}  # uint8 (N, 28, 28) images, int64 labels, on the CPU
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}  # model inputs on the device (model_inputs)
        self.predict_sources: list[str] | None = None  # file names when predicting on user images
        self.predict_proposals: Proposals | None = None  # their digit fields (the predict inputs), per file
        self.shuffle_seed = 0

    @property
    def device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def setup(self, stage: str) -> None:
        if stage == "predict" and self.hparams.predict_path is not None:
            if "predict" not in self.raw:
                self._load_user_images()
        elif stage in ("test", "predict"):
            if "test" not in self.raw:
                self._load_mnist(("test",))  # a sixth of the files to read: test and predict need no more
        elif "train" not in self.raw:
            self._load_mnist(("train",))
        if stage == "fit":
            self._check_batch_fits()
        # One shuffle seed for all ranks (drawn from the global RNG, so --seed_everything fixes it):
        # DDP ranks must cut their shards from the same permutation.
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        self.shuffle_seed = self.trainer.strategy.broadcast(seed, src=0) if self.trainer is not None else seed

    def _check_batch_fits(self) -> None:
        """Fail in one line on a batch larger than a rank's training images: with ``drop_last``, Lightning
        would train zero steps, save nothing and exit 0. Here in ``setup``, before the logger writes."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        per_rank = len(self.raw["train"][0]) // world_size
        if self.hparams.batch_size > per_rank:
            ranks = f" of each of the {world_size} ranks" if world_size > 1 else ""
            raise LenetError(
                f"--data.batch_size {self.hparams.batch_size} is larger than the {per_rank} training images{ranks}: "
                f"no step would run; give at most {per_rank}"
            )

    def _load_mnist(self, splits: tuple[str, ...] = ("train", "test")) -> None:
        arrays = idx.load(self.hparams.data_dir, allow_download=self.hparams.download, splits=splits)
        source = self.hparams.data_dir or "the bundled MNIST"
        for split in splits:
            check_split(split, arrays[f"{split}_images"], arrays[f"{split}_labels"], self.num_classes, source)
        if "test" in splits:
            self.raw["test"] = (arrays["test_images"], arrays["test_labels"].long())
        if "train" not in splits:
            return
        train_images, train_labels = arrays["train_images"], arrays["train_labels"].long()
        if not 0 < self.hparams.val_size < len(train_images):
            raise LenetError(f"val_size must be between 1 and {len(train_images) - 1}, got {self.hparams.val_size}")
        # A seeded split, independent of the global seed: every run validates on the same images.
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        train_index, val_index = order[: -self.hparams.val_size], order[-self.hparams.val_size :]
        self.raw["train"] = (train_images[train_index], train_labels[train_index])
        if self.hparams.negatives > 0:
            # Seeded apart from the global seed, like the split: every run sees the same negatives.
            made = torch.from_numpy(non_digits(self.hparams.negatives, seed=0))
            self.raw["train"] = (
                torch.cat([self.raw["train"][0], made]),
                torch.cat([self.raw["train"][1], torch.full((len(made),), -1, dtype=torch.long)]),
            )
        self.raw["val"] = (train_images[val_index], train_labels[val_index])

    def _load_user_images(self) -> None:
        # Every candidate digit field of every picture, and each view of it, is one predict input;
        # outputs/predictions.py groups the answers back per picture (self.predict_proposals) and decides
        # each one's text.
        read = load_proposals(
            self.hparams.predict_path, num_workers=self.hparams.num_workers, explain_dir=self.hparams.explain_dir
        )
        self.predict_sources, self.predict_proposals = read.sources, read
        inputs = read.inputs if len(read.inputs) else np.zeros((1, 28, 28), np.uint8)  # none: one blank, unused
        self.raw["predict"] = (torch.from_numpy(inputs), torch.full((len(inputs),), -1, dtype=torch.long))

    def _source(self, split: str) -> str:
        # Without predict_path, predict runs on the MNIST test set.
        return "test" if split == "predict" and "predict" not in self.raw else split

    def digits(self, split: str) -> Tensor:
        """uint8 (N, 28, 28) images of ``split`` as read (user images after preprocessing), on the CPU."""
        return self._raw(self._source(split))[0]

    def _raw(self, split: str) -> tuple[Tensor, Tensor]:
        if split == "test" and "test" not in self.raw:
            self._load_mnist(("test",))  # setup("fit") reads only the training files
        return self.raw[split]

    def model_inputs(self, split: str) -> tuple[Tensor, Tensor]:
        """Normalised 32×32 images and labels of ``split`` on the training device, made once."""
        split = self._source(split)
        device = self.device
        if split not in self.splits or self.splits[split][0].device != device:
            images, labels = self._raw(split)
            self.splits[split] = (to_model_input(images, self.hparams.input_mode, device), labels.to(device))
        return self.splits[split]

    def _batches(self, split: str, train: bool = False) -> TensorBatches:
        images, labels = self.model_inputs(split)
        trainer = self.trainer
        return TensorBatches(
            images,
            labels,
            self.hparams.batch_size if train else self.hparams.eval_batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.shuffle_seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            augment=self.augment if train else None,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test")

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("predict")


def _augmentation(augment: bool | Augmentation | Mapping[str, Any]) -> Augmentation | None:
    # A checkpoint's hyperparameters hold the amounts as a dict (see MNISTDataModule.__init__).
    if isinstance(augment, Mapping):
        return Augmentation(**augment)
    if augment is True:
        return Augmentation()
    return augment if isinstance(augment, Augmentation) else None


def check_split(split: str, images: Tensor, labels: Tensor, num_classes: int, source: object) -> None:
    """Fail in one line on a split that training or evaluation would trip over late (or not at all)."""
    if len(images) == 0:
        raise LenetError(f"the {split} set of {source} holds no images")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise LenetError(f"the {split} images of {source} have no pixels ({images.shape[1]}×{images.shape[2]})")
    if labels.numel() and int(labels.max()) >= num_classes:
        raise LenetError(
            f"the {split} labels of {source} go up to {int(labels.max())}, but there are {num_classes} classes "
            f"(labels 0 to {num_classes - 1}); is it another kind of data set?"
        )
