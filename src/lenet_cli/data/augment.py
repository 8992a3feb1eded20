"""Random distortions of training digits, drawn per image on the training device (``--data.augment``).

MNIST's digits are all upright, centred, of one size and one stroke thickness; handwriting photographed
by people is not. Each training batch is distorted as a whole, after the batch's index gather and before
normalisation: one ``grid_sample`` for the geometry (rotation, scale, shear, shift and an optional elastic
field), two 3×3 max-pools for the stroke thickness, and for a share of the digits a trip through a low
resolution (shrunk by area averaging, enlarged again, nearest or bilinear: a thumbnail's digit as the
reading pipeline renders it). That happens in the batch iterator, before
``training_step``, so a CUDA-graphed step (lenet_cli/graphs.py) replays unchanged on distorted inputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augmentation:
    """Per-image random distortions; each amount is drawn uniformly from its range.

    Args:
        rotation: Largest rotation either way, in degrees.
        scale: Largest relative change of size (0.2: 0.8–1.2×).
        shift: Largest shift along each axis, in pixels of the 28×28 digit.
        shear: Largest horizontal shear either way, in degrees.
        thickness: Largest change of stroke thickness, as a fraction of one 3×3 dilation (thicker) or
            erosion (thinner); 0 keeps the strokes.
        elastic: Elastic distortion (Simard et al. 2003): the largest displacement of a smooth random
            field, in pixels of the 28×28 digit; 0 turns it off.
        probability: The fraction of images distorted; the others are left as MNIST has them.
        low_resolution: The fraction of images (drawn apart from ``probability``) shrunk so that MNIST's
            20-pixel digit box is ``low_resolution_sizes`` pixels (area averaging), then enlarged back,
            half with nearest-neighbour blocks and half bilinear, and stretched to full ink again; 0 turns
            it off.
        low_resolution_sizes: The smallest and largest side of the shrunk digit box, in pixels.
    """

    rotation: float = 15.0
    scale: float = 0.2
    shift: float = 2.0
    shear: float = 10.0
    thickness: float = 0.6
    elastic: float = 0.0
    probability: float = 1.0
    low_resolution: float = 0.0
    low_resolution_sizes: tuple[int, int] = (6, 14)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Distorted copies of ``images`` (B, 1, H, W), intensities 0 (background) to 1 (ink)."""
        batch, _, height, width = images.shape
        device, dtype = images.device, images.dtype

        def uniform(low: float, high: float, *shape: int) -> Tensor:
            return torch.rand(shape or (batch,), generator=generator, device=device, dtype=dtype) * (high - low) + low

        on = (uniform(0, 1) < self.probability).to(dtype)  # (B,) 1 for the images to distort
        angle = uniform(-1, 1) * math.radians(self.rotation) * on
        shear = uniform(-1, 1) * math.radians(self.shear) * on
        # The sampling grid maps output pixels to input pixels: the inverse of the distortion. The ranges
        # are symmetric, so drawing the inverse's amounts directly is the same distribution (1/scale
        # aside, which is drawn as such).
        zoom = 1 / (1 + uniform(-1, 1) * self.scale * on)
        # Normalised coordinates run from -1 to 1 over the field: a pixel of the 28×28 digit is 2/28.
        shift = uniform(-1, 1, batch, 2) * (2 * self.shift / 28) * on[:, None]
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        matrix = torch.stack(
            (
                torch.stack((zoom * cos, zoom * (cos * tan - sin), shift[:, 0]), dim=1),
                torch.stack((zoom * sin, zoom * (sin * tan + cos), shift[:, 1]), dim=1),
            ),
            dim=1,
        )  # (B, 2, 3): input (x, y) per output (x, y, 1)
        grid = _affine_grid(matrix, height, width)  # (B, H, W, 2)
        if self.elastic > 0:
            # A random field on a 4×4 lattice, interpolated smoothly over the image (a cheap stand-in for
            # Simard's Gaussian-filtered noise: the same smooth, local warps), in two bilinear steps for a
            # smoother field. As 2B channels in channels-last layout: 60× faster on the CPU than B images
            # of 2 channels (and bicubic would be 60× slower again).
            coarse = uniform(-1, 1, batch, 2, 4, 4) * (2 * self.elastic / 28) * on[:, None, None, None]
            field = coarse.view(1, 2 * batch, 4, 4).contiguous(memory_format=torch.channels_last)
            for size in ((height // 4, width // 4), (height, width)):
                field = F.interpolate(field, size=size, mode="bilinear", align_corners=True)
            grid = grid + field.reshape(batch, 2, height, width).permute(0, 2, 3, 1)
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.thickness > 0:
            amount = (uniform(-1, 1) * self.thickness * on)[:, None, None, None]
            # One dilation serves both ways: -dilate(-x) is the erosion of x.
            sign = torch.where(amount < 0, -1.0, 1.0).to(dtype)
            morphed = sign * _dilate(sign * warped)
            warped = warped + amount.abs() * (morphed - warped)
        if self.low_resolution > 0:
            warped = self._low_resolution(warped, uniform)
        return warped

    def _low_resolution(self, images: Tensor, uniform: Any) -> Tensor:
        """Some of ``images`` through a low resolution and back. The whole field is shrunk: MNIST's 28×28
        field holds the 20-pixel digit box, whatever size the field has been resized to since."""
        low, high = self.low_resolution_sizes
        chosen = uniform(0, 1) < self.low_resolution
        # The field's side at the drawn digit size; drawn for every image, so a rerun repeats them.
        sides = (uniform(low, high + 1).floor().clamp(max=high) * 28 / 20).round()
        nearest = uniform(0, 1) < 0.5
        if images.device.type == "cpu":  # the chosen images alone: ~10 ms a batch of 512 instead of ~170
            return _low_resolution_chosen(images, chosen, sides, nearest)
        # Every size for the whole batch, the drawn one picked per image: no host sync. Selecting by index
        # waits for the GPU every batch: 72 s instead of 32 s for a robust.yaml fit on an H100 shared by six
        # fits (this path is not timed there yet).
        return _low_resolution_all(
            images, chosen, sides, nearest, {round(size * 28 / 20) for size in range(low, high + 1)}
        )


def _shrunk_and_back(images: Tensor, side: int, nearest: Tensor) -> Tensor:
    """``images`` shrunk to side × side by area averaging, enlarged back (``nearest``: whole blocks on a
    larger grid, then averaged down, as a picture enlarged and read; else bilinear), full ink again."""
    height, width = images.shape[-2:]
    small = F.interpolate(images, size=(side, side), mode="area")
    large = F.interpolate(small, scale_factor=-(-2 * height // side), mode="nearest")
    blocky = F.interpolate(large, size=(height, width), mode="area")
    smooth = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    back = torch.where(nearest[:, None, None, None], blocky, smooth)
    return (back / back.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)).clamp(0, 1)


def _low_resolution_chosen(images: Tensor, chosen: Tensor, sides: Tensor, nearest: Tensor) -> Tensor:
    result = images.clone()
    for side in sides[chosen].unique().tolist():
        index = (chosen & (sides == side)).nonzero().squeeze(1)
        result[index] = _shrunk_and_back(images[index], int(side), nearest[index])
    return result


def _low_resolution_all(images: Tensor, chosen: Tensor, sides: Tensor, nearest: Tensor, every: set[int]) -> Tensor:
    result = images
    for side in sorted(every):
        result = torch.where(
            (chosen & (sides == side))[:, None, None, None], _shrunk_and_back(images, side, nearest), result
        )
    return result


def _affine_grid(matrix: Tensor, height: int, width: int) -> Tensor:
    """``F.affine_grid(matrix, (B, 1, H, W), align_corners=False)``, 15× faster on the CPU (broadcasting)."""
    xs = (torch.arange(width, device=matrix.device, dtype=matrix.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=matrix.device, dtype=matrix.dtype) * 2 + 1) / height - 1
    m = matrix[:, :, None, None, :]  # (B, 2, 1, 1, 3)
    grid = m[..., 0] * xs[None, None, None, :] + m[..., 1] * ys[None, None, :, None] + m[..., 2]  # (B, 2, H, W)
    return grid.permute(0, 2, 3, 1)


def _dilate(images: Tensor) -> Tensor:
    """3×3 grey-level dilation of (B, 1, H, W) as two 1-D max-pools (12× faster on the CPU than one 2-D)."""
    batch, _, height, width = images.shape
    rows = F.max_pool1d(images.reshape(batch * height, 1, width), 3, stride=1, padding=1)
    columns = rows.view(batch, height, width).transpose(1, 2).reshape(batch * width, 1, height)
    return F.max_pool1d(columns, 3, stride=1, padding=1).view(batch, width, height).transpose(1, 2).unsqueeze(1)


def epoch_generator(device: torch.device, seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator of one rank's distortions in one epoch: reruns repeat them, ranks differ."""
    generator = torch.Generator(device=device)
    # Distinct, fixed streams per (seed, epoch, rank); the constants are primes, the mask keeps it in int64.
    generator.manual_seed((seed * 1_000_003 + epoch) * 10_007 + rank & 0x7FFF_FFFF_FFFF_FFFF)
    return generator
