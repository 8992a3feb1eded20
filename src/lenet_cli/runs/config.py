"""``config.yaml`` of every run: written complete or not at all, never over another run's."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn

from lenet_cli import atomic
from lenet_cli.errors import LenetError
from lenet_cli.runs.paths import run_folder_of_checkpoint


class SaveRunConfig(SaveConfigCallback):
    """Lightning's SaveConfigCallback, but config.yaml appears complete or not at all.

    Lightning writes it in place (``open(path, "w")``): a kill mid-write leaves a truncated config,
    the one file that says how a run was made. A resumed ``fit`` also gets a comment naming the
    checkpoint it continues from.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved or not self.save_to_log_dir or "://" in str(trainer.log_dir):
            return super().setup(trainer, pl_module, stage)
        path = Path(str(trainer.log_dir)) / self.config_filename  # trainer.log_dir broadcasts: every rank
        exists = trainer.strategy.broadcast(path.is_file() if trainer.is_global_zero else False)
        if exists and not self.overwrite:
            raise LenetError(
                f"{path} already exists: a run folder is never reused; "
                + (
                    "leave --trainer.logger's version unset"
                    if trainer.logger is not None
                    else "without a logger the run folder is --trainer.default_root_dir: give each run its own"
                )
            )
        if trainer.is_global_zero:
            with atomic.replace_atomically(path) as temporary:
                self.parser.save(self.config, temporary, skip_unset=False, overwrite=True, multifile=self.multifile)
                ckpt_path = self.config.get("ckpt_path")
                if stage == TrainerFn.FITTING and ckpt_path:
                    comment = f"# resumed: continues {run_folder_of_checkpoint(ckpt_path)} from {ckpt_path}\n"
                    temporary.write_text(comment + temporary.read_text())
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)
