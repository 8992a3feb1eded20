"""Decoding a user's picture: the first frame, upright, reduced, as grayscale intensities."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from lenet_cli.errors import LenetError

# The formats lenet decodes, passed to every Image.open: without ``formats=`` Pillow tries each plugin it
# has, and its EPS plugin runs Ghostscript (``gs`` on PATH) on the file's PostScript.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF")
FORMATS = ", ".join(PILLOW_FORMATS)


WORK_SIZE = 512  # the working image's longer side, in pixels: a digit of a tenth of a photo is ~40 px there


class BadImage(LenetError):
    """One file that cannot be used as a digit image; the message names the file."""


def read_image(source: Path | BinaryIO, name: str, colour: bool = False) -> Image.Image:
    """The first frame of a picture, upright (EXIF orientation applied), at most ~2 × WORK_SIZE pixels.

    JPEGs are decoded at a reduced scale (1/2, 1/4 or 1/8) that keeps at least 0.9 × WORK_SIZE pixels
    on the longer side, and without ``colour`` as their luminance alone (a colour JPEG stores it apart:
    ~10 % faster); other formats are decoded whole and then reduced.
    """
    with _decoding(name), Image.open(source, formats=PILLOW_FORMATS) as image:
        _first_frame_at_scale(image, name, colour)
        image.load()
        # Broken EXIF data: the pixels as stored are still a picture.
        with contextlib.suppress(Exception):
            ImageOps.exif_transpose(image, in_place=True)
        if max(image.size) > 2 * WORK_SIZE:
            image.thumbnail((2 * WORK_SIZE, 2 * WORK_SIZE), Image.Resampling.BOX, reducing_gap=None)
        return image  # loaded: usable after the file is closed
    raise AssertionError("unreachable: _decoding re-raises")  # for mypy: a context manager may swallow


def decoded_pixels(source: Path | BinaryIO, name: str) -> int:
    """How many pixels :func:`read_image` would decode (a JPEG at its reduced scale), read from the header alone."""
    with _decoding(name), Image.open(source, formats=PILLOW_FORMATS) as image:
        _first_frame_at_scale(image, name, colour=False)
        return image.width * image.height
    raise AssertionError("unreachable: _decoding re-raises")


def _first_frame_at_scale(image: Image.Image, name: str, colour: bool) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise BadImage(_too_large(name, image.width, image.height, limit))
    image.seek(0)  # GIF, TIFF, APNG: the first frame
    longer = max(image.size)
    if image.format == "JPEG" and longer > WORK_SIZE:
        # Pillow picks the largest DCT scaling that keeps the image at least this size.
        wanted = 0.9 * WORK_SIZE / longer
        image.draft(None if colour else "L", (max(1, int(image.width * wanted)), max(1, int(image.height * wanted))))


@contextlib.contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Every failure to open or decode, as a BadImage naming ``name``."""
    try:
        yield
    except BadImage:
        raise
    except Image.DecompressionBombError as error:
        raise BadImage(
            f"{name}: too large to decode safely ({error}); resize it below {Image.MAX_IMAGE_PIXELS} pixels"
        ) from error
    except Image.UnidentifiedImageError as error:
        raise BadImage(f"{name}: not an image file that can be read (lenet reads {FORMATS})") from error
    except PermissionError as error:
        raise BadImage(f"{name}: cannot be read ({error.strerror or 'permission denied'})") from error
    except FileNotFoundError as error:
        raise BadImage(f"{name}: does not exist") from error
    except IsADirectoryError as error:
        raise BadImage(f"{name}: is a folder, not an image file") from error
    except Exception as error:
        raise BadImage(f"{name}: corrupt or truncated image ({_first_line(error)})") from error


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def read_grayscale(source: Path | BinaryIO, name: str | None = None) -> np.ndarray:
    """A picture's first frame as float32 (H, W) intensities, upright, transparency flattened, reduced."""
    shown = name if name is not None else str(source)
    image = read_image(source, shown)
    try:
        return to_gray(image)
    except Exception as error:  # a mode Pillow decodes but cannot convert (a CIELab TIFF: ValueError)
        raise BadImage(
            f"{shown}: cannot be made grayscale ({_first_line(error)}); save it as an RGB or grayscale image"
        ) from error


def to_gray(image: Image.Image) -> np.ndarray:
    """A decoded picture as float32 (H, W) intensities, transparency flattened onto a contrasting ground."""
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        return np.asarray(image, dtype=np.float32)  # 16/32-bit: the scale does not matter, see to_mnist
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32)
    gray_alpha = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32)
    gray, alpha = gray_alpha[..., 0], gray_alpha[..., 1] / 255
    if alpha.min() == 1:
        return gray
    # Strokes drawn on a transparent canvas: put them on a background that contrasts with them.
    opaque_mean = float((gray * alpha).sum() / max(alpha.sum(), 1e-6))
    background = 255.0 if opaque_mean < 128 else 0.0
    return gray * alpha + background * (1 - alpha)


def _too_large(path: str | Path, width: int, height: int, limit: int) -> str:
    return (
        f"{path}: {width}×{height} pixels is more than the {limit} that are decoded safely "
        "(a possible decompression bomb); crop or resize it"
    )
