"""The tutorial's output: a few random test images saved as ``{index}_predicted_{class}.png``."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from lenet_cli.atomic import replace_atomically
from lenet_cli.runs.paths import callback_output_folder


class SampleImages(Callback):
    """After ``test`` and ``predict``, save ``num_images`` random inputs named by the predicted class.

    Args:
        num_images: How many images to save (0 turns it off).
        seed: Seed of the random choice, so reruns pick the same images.
        output_dir: Folder for the PNGs; default: the run folder (``trainer.log_dir``).
    """

    def __init__(self, num_images: int = 10, seed: int = 0, output_dir: str | None = None) -> None:
        self.num_images, self.seed, self.output_dir = num_images, seed, output_dir

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, pl_module, "test", callback_output_folder(trainer, self.output_dir))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, pl_module, "predict", callback_output_folder(trainer, self.output_dir))

    @rank_zero_only
    def _save(self, trainer: Trainer, pl_module: LightningModule, split: str, folder: Path) -> None:
        datamodule = trainer.datamodule
        if self.num_images <= 0 or not hasattr(datamodule, "digits"):
            return
        from PIL import Image  # noqa: PLC0415 - Pillow only when images are written

        images, _ = datamodule.model_inputs(split)
        raw = datamodule.digits(split)
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(len(images), generator=generator)[: self.num_images].sort().values
        with torch.no_grad():
            predicted = pl_module(images[chosen.to(images.device)]).argmax(dim=1).cpu()
        for index, label in zip(chosen.tolist(), predicted.tolist(), strict=True):
            # Like every file lenet writes: complete or not there (replace_atomically makes the folder).
            with replace_atomically(folder / f"{index}_predicted_{label}.png") as temporary:
                Image.fromarray(raw[index].numpy(), mode="L").save(temporary, format="PNG")
