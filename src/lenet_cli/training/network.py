"""LeNet-5, the network alone: a plain ``nn.Module`` that training, serving, export and the bundled model share."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

PREFIX = "network."  # where the LightningModule keeps the network: its checkpoints' state_dict keys start so


class LeNet5(nn.Module):
    """LeNet for 32×32 inputs: conv 6@5×5 → pool → conv 16@5×5 → pool → FC 120 → 84 → classes.

    Args:
        in_channels: Image channels (1 for MNIST).
        num_classes: Output classes.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # (B, 6, 28, 28)
            nn.MaxPool2d(2),  # (B, 6, 14, 14)
            nn.ReLU(),
            nn.Conv2d(6, 16, kernel_size=5),  # (B, 16, 10, 10)
            nn.MaxPool2d(2),  # (B, 16, 5, 5)
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 400)
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes) for normalised images (B, in_channels, 32, 32)."""
        return self.classifier(self.features(images))


def upgraded(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A checkpoint's ``state_dict`` with the network's weights under ``network.``.

    lenet-cli 0.2 kept LeNet's layers on the LightningModule itself (``features.0.weight``); its
    checkpoints, the bundled model's among them, load unchanged through this.
    """
    return {
        (PREFIX + key if key.startswith(("features.", "classifier.")) else key): value
        for key, value in state_dict.items()
    }


def network_weights(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The :class:`LeNet5` weights in a LightningModule's ``state_dict`` (either layout)."""
    return {key.removeprefix(PREFIX): value for key, value in upgraded(state_dict).items() if key.startswith(PREFIX)}
