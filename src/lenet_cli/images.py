"""The user's own digit images: finding the files, decoding them, and making them look like MNIST.

MNIST itself was made this way (LeCun et al.): each digit, light on dark, was scaled to fit a 20×20
box keeping its aspect ratio, then placed in a 28×28 field so that its centre of mass sits at the
centre (pixel (14, 14), as measured on the bundled test set). A model trained on MNIST expects
exactly that, so a photo or drawing of a digit goes through the same steps before prediction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from lenet_cli.errors import LenetError, escaped, print_safely
from lenet_cli.listing import list_files

FIELD = 28  # MNIST's image size
BOX = 20  # the digit's longest side inside the field
CENTRE = 14.0  # where MNIST's centres of mass lie, in pixel indices (rows and columns)
INK_THRESHOLD = 0.2  # fraction of the darkest-to-lightest range that counts as the digit (not noise)
MAX_LISTED = 10  # skipped files named one by one in a message; the rest are counted
FORMATS = "PNG, JPEG, BMP, TIFF, GIF"


class BadImage(LenetError):
    """One file that cannot be used as a digit image; the message names the file."""


def load_digits(path: str | Path, num_workers: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Digits of the image file, folder or glob ``path``: uint8 (N, 28, 28) light on dark, and sources.

    A single file that cannot be used fails; from a folder or glob the good files are kept and the
    bad ones listed in a warning, failing only when none is left. ``num_workers`` threads decode the
    files (Pillow decodes without holding the GIL).
    """
    files, single = collect(str(path))
    # Pillow only warns for images between MAX_IMAGE_PIXELS and twice that; read_grayscale refuses
    # them itself, so the warning would be noise. Set here, in the calling thread, as filters are global.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if num_workers > 0 and len(files) > 1:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                results = list(pool.map(_digit_or_error, files))
        else:
            results = [_digit_or_error(file) for file in files]

    failures = [result for result in results if isinstance(result, BadImage)]
    if single and failures:
        raise failures[0]
    digits = [result for result in results if not isinstance(result, BadImage)]
    sources = [str(file) for file, result in zip(files, results) if not isinstance(result, BadImage)]
    if not digits:
        raise LenetError(f"none of the {len(files)} files of {path} is a readable digit image: {_listing(failures, '; ')}")
    if failures:
        _warn(f"warning: skipped {len(failures)} of {len(files)} files of {path} that are not readable digit images:\n  {_listing(failures, chr(10) + '  ')}")
    return torch.from_numpy(np.stack(digits)), sources


def collect(path: str) -> tuple[list[Path], bool]:
    """The files ``path`` names, in natural order (``2.png`` before ``10.png``), and whether it is one file.

    Each real file once, symbolic link loops cut (:func:`lenet_cli.listing.list_files`); entries that
    are not regular files (dangling links, FIFOs, devices) are named in a warning.
    """
    listing = list_files(path)
    if listing.skipped:
        lines = [f"{escaped(entry)}: {kind}" for entry, kind in listing.skipped[:MAX_LISTED]]
        if len(listing.skipped) > MAX_LISTED:
            lines.append(f"… and {len(listing.skipped) - MAX_LISTED} more")
        _warn(
            f"warning: skipped {len(listing.skipped)} entries of {escaped(path)} that are not regular files:\n  "
            + "\n  ".join(lines)
        )
    return listing.files, listing.single


def read_grayscale(path: Path) -> np.ndarray:
    """The first frame of an image file as float32 (H, W) intensities, transparency flattened."""
    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise BadImage(_too_large(path, image.width, image.height, limit))
            image.seek(0)  # GIF, TIFF, APNG: the first frame
            image.load()
            return _to_gray(image)
    except BadImage:
        raise
    except Image.DecompressionBombError as error:
        raise BadImage(f"{path}: too large to decode safely ({error}); resize it below {Image.MAX_IMAGE_PIXELS} pixels") from error
    except Image.UnidentifiedImageError as error:
        raise BadImage(f"{path}: not an image file that can be read ({FORMATS}, …)") from error
    except PermissionError as error:
        raise BadImage(f"{path}: cannot be read ({error.strerror or 'permission denied'})") from error
    except FileNotFoundError as error:
        raise BadImage(f"{path}: does not exist") from error
    except IsADirectoryError as error:
        raise BadImage(f"{path}: is a folder, not an image file") from error
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise a grab-bag of types on broken data
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadImage(f"{path}: corrupt or truncated image ({detail})") from error


def to_mnist(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """Grayscale intensities (H, W) of one digit → uint8 (28, 28), light on dark, MNIST-style."""
    gray = gray.astype(np.float32, copy=False)
    low, high = float(gray.min()), float(gray.max())
    if not high > low:
        raise BadImage(f"{name}: no digit in it (the image is one flat colour)")
    # The border is mostly background: light there means a dark digit on light paper, to invert.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > (low + high) / 2:
        gray, background = high + low - gray, high + low - background
    ink = np.clip((gray - background) / max(high - background, 1e-6), 0, 1)  # 0 background, 1 darkest stroke

    rows, columns = np.nonzero(ink > INK_THRESHOLD)
    if len(rows) == 0:
        raise BadImage(f"{name}: no digit in it (no strokes stand out from the background)")
    # Faint paper texture and compression noise below the threshold would pull the centre of mass.
    ink = np.clip((ink - INK_THRESHOLD / 2) / (1 - INK_THRESHOLD / 2), 0, 1)
    digit = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]

    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # Pillow's (width, height)
    if size != (width, height):
        # Area averaging when shrinking is the anti-aliasing MNIST's digits have; bilinear when growing.
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        digit = np.asarray(Image.fromarray(digit, mode="F").resize(size, resample), dtype=np.float32)
        digit = np.clip(digit / max(float(digit.max()), 1e-6), 0, 1)  # thin strokes fade when shrunk

    height, width = digit.shape
    mass = float(digit.sum())
    centre_row = float((digit.sum(axis=1) * np.arange(height)).sum()) / mass
    centre_column = float((digit.sum(axis=0) * np.arange(width)).sum()) / mass
    top = min(max(round(CENTRE - centre_row), 0), FIELD - height)
    left = min(max(round(CENTRE - centre_column), 0), FIELD - width)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return np.rint(field * 255).astype(np.uint8)


def _to_gray(image: Image.Image) -> np.ndarray:
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


def _digit_or_error(path: Path) -> np.ndarray | BadImage:
    try:
        return to_mnist(read_grayscale(path), name=str(path))
    except BadImage as error:
        return error


def _too_large(path: Path, width: int, height: int, limit: int) -> str:
    return (
        f"{path}: {width}×{height} pixels is more than the {limit} that are decoded safely "
        "(a possible decompression bomb); crop or resize it"
    )


def _listing(failures: Sequence[BadImage], separator: str) -> str:
    lines = [escaped(failure) for failure in failures[:MAX_LISTED]]
    if len(failures) > MAX_LISTED:
        lines.append(f"… and {len(failures) - MAX_LISTED} more")
    return separator.join(lines)


@rank_zero_only
def _warn(message: str) -> None:
    print_safely(message)  # every DDP rank reads the files; one of them says so
