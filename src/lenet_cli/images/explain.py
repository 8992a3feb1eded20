"""``--data.explain_dir``: one picture per input of what its preprocessing did, steps side by side.

original → flattened (the lighting divided out) → ink (darker than the threshold) → chosen (the
components kept as the digit, in black; the ones dropped in red) → the 28×28 digit the model sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lenet_cli.atomic import replace_atomically
from lenet_cli.images.mnist_style import Steps

PANEL_HEIGHT = 200  # pixels of every panel
TITLE_HEIGHT = 22
GAP = 8
DROPPED = (230, 80, 60)  # ink components that are not the digit
FRAME = (170, 170, 170)


def write_all(folder: Path, inputs: Sequence[tuple[Path, Image.Image | None, Steps | None, str]]) -> None:
    """``folder/NNNN-<name>.png`` for each input ``(file, picture, steps, note)``, NNNN its position (the
    index in predictions.csv); a picture refused before its steps were done shows the note, the reason."""
    folder.mkdir(parents=True, exist_ok=True)
    for position, (file, image, steps, note) in enumerate(inputs):
        if image is None:
            continue
        drawn = figure(image, steps, file.name) if steps is not None else refused(image, file.name, note)
        with replace_atomically(folder / f"{position:04d}-{file.stem}.png") as temporary:
            drawn.save(temporary, format="PNG")


def refused(image: Image.Image, name: str, note: str) -> Image.Image:
    """The picture with what it was refused for: ``no digit (reason)``."""
    panel = _scaled(image.convert("RGB"), False)
    font = _font()
    text = f"{name}: no digit ({note})"
    width = max(panel.width, round(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font))) + 2 * GAP
    canvas = Image.new("RGB", (width, PANEL_HEIGHT + 2 * TITLE_HEIGHT + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 3), text, fill=DROPPED, font=font)
    canvas.paste(panel, (GAP, 2 * TITLE_HEIGHT))
    return canvas


def figure(image: Image.Image, steps: Steps, name: str) -> Image.Image:
    """The five steps of one picture side by side, each titled, ``name`` above them."""
    gray = np.clip(steps.flattened * 255, 0, 255).astype(np.uint8)
    ink = np.where(steps.ink, 0, 255).astype(np.uint8)
    chosen = np.full((*steps.chosen.shape, 3), 255, dtype=np.uint8)
    chosen[steps.ink & ~steps.chosen] = DROPPED
    chosen[steps.chosen] = 0
    panels = [
        ("original" + (" (inverted next)" if steps.inverted else ""), image.convert("RGB")),
        ("flattened", Image.fromarray(gray)),
        (f"ink: {steps.threshold:.0%} darker than paper", Image.fromarray(ink)),
        ("chosen (red: dropped)", Image.fromarray(chosen)),
        (f"28x28 the model sees{' (each digit)' if len(steps.slots) > 1 else ''}", Image.fromarray(_digits(steps))),
    ]
    scaled = [(title, _scaled(panel, title.startswith("28x28"))) for title, panel in panels]
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    slots = [max(panel.width, round(measure.textlength(title, font=font)) + 4) for title, panel in scaled]
    width = max(sum(slots) + GAP * (len(slots) + 1), round(measure.textlength(name, font=font)) + 2 * GAP)
    canvas = Image.new("RGB", (width, PANEL_HEIGHT + 2 * TITLE_HEIGHT + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 3), name, fill="black", font=font)
    left = GAP
    for (title, panel), slot in zip(scaled, slots, strict=True):
        draw.text((left, TITLE_HEIGHT + 2), title, fill=(60, 60, 60), font=font)
        corner = (left + (slot - panel.width) // 2, 2 * TITLE_HEIGHT)
        canvas.paste(panel, corner)
        draw.rectangle((corner[0] - 1, corner[1] - 1, corner[0] + panel.width, corner[1] + panel.height), outline=FRAME)
        left += slot + GAP
    return canvas


def _digits(steps: Steps) -> np.ndarray:
    """The whole fields of every digit, side by side (uint8 (28, 28 × digits))."""
    if len(steps.slots) <= 1:
        return steps.digit
    return np.concatenate([steps.fields[readings[0][0]] for readings in steps.slots], axis=1)


def _scaled(panel: Image.Image, pixels_visible: bool) -> Image.Image:
    # The 28×28 digit keeps its square pixels (nearest); the working-size pictures are smoothed.
    width = max(1, round(panel.width * PANEL_HEIGHT / panel.height))
    resample = Image.Resampling.NEAREST if pixels_visible else Image.Resampling.BILINEAR
    return panel.resize((width, PANEL_HEIGHT), resample)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=14)  # Pillow's bundled font, scalable with FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()
