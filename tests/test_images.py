"""Reading the user's own digit images and making them look like MNIST (no model needed).

Files that cannot be used are rows of ``test_errors.py`` (through ``lenet predict``), and a folder with
some of them is ``test_predict.py``'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_cli.data import idx
from lenet_cli.images import decode, mnist_style
from lenet_cli.images import files as image_files
from tests.helpers import dark_on_light_rgb, on_canvas


@pytest.fixture(scope="module")
def mnist_digits() -> torch.Tensor:
    """The first 50 MNIST test digits, uint8 (50, 28, 28), light on dark."""
    return idx.load(None, allow_download=False)["test_images"][:50]


def bounding_box(digit: np.ndarray) -> tuple[int, int]:
    rows, columns = np.nonzero(digit)
    return int(rows.max() - rows.min() + 1), int(columns.max() - columns.min() + 1)


def difference_up_to_shift(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute difference in grey levels, at the best shift of at most one pixel each way."""
    shifts = [(rows, columns) for rows in (-1, 0, 1) for columns in (-1, 0, 1)]
    first, second = first.astype(int), second.astype(int)
    return min(float(np.abs(np.roll(first, shift, axis=(0, 1)) - second).mean()) for shift in shifts)


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    weights = digit.astype(np.float64)
    rows, columns = np.indices(digit.shape)
    return float((weights * rows).sum() / weights.sum()), float((weights * columns).sum() / weights.sum())


# Preprocessing ----------------------------------------------------------------------------------


def test_mnist_digits_come_out_as_mnist_made_them(mnist_digits: torch.Tensor) -> None:
    for digit in mnist_digits.numpy():
        result = mnist_style.to_mnist(digit)
        assert result.shape == (28, 28) and result.dtype == np.uint8
        assert max(bounding_box(result)) in (19, 20, 21)  # fitted into the 20×20 box
        centre = centre_of_mass(result)
        assert abs(centre[0] - 14) <= 0.6 and abs(centre[1] - 14) <= 0.6
        # An MNIST digit is already made this way: it comes back nearly unchanged (up to the one-pixel
        # shifts that rounding the centre of mass to whole pixels allows).
        assert difference_up_to_shift(result, digit) < 4


def test_dark_on_light_is_inverted_and_position_does_not_matter(mnist_digits: torch.Tensor) -> None:
    digit = mnist_digits[0].numpy()
    light_on_dark = mnist_style.to_mnist(digit)
    assert np.array_equal(mnist_style.to_mnist(255 - digit), light_on_dark)
    paper = dark_on_light_rgb(digit)
    gray = np.asarray(Image.fromarray(paper).convert("L"), dtype=np.float32)
    centred = mnist_style.to_mnist(gray)
    for top, left in [(0, 0), (50, 3), (7, 61)]:
        shifted = on_canvas(paper, (90, 100), top, left)
        moved = mnist_style.to_mnist(np.asarray(Image.fromarray(shifted).convert("L"), dtype=np.float32))
        assert np.array_equal(moved, centred)


def test_aspect_ratio_is_kept() -> None:
    bar = np.zeros((200, 100), dtype=np.float32)
    bar[20:170, 40:55] = 255  # a "1": 150 tall, 15 wide
    result = mnist_style.to_mnist(bar)
    height, width = bounding_box(result)
    assert height == 20 and width == 2


def test_large_and_small_digits_look_alike(mnist_digits: torch.Tensor) -> None:
    digit = mnist_digits[3].numpy()
    reference = mnist_style.to_mnist(digit).astype(int)
    for scale in (3, 10):
        big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC))
        assert np.abs(mnist_style.to_mnist(big).astype(int) - reference).mean() < 15


@pytest.mark.parametrize("picture", [np.zeros((30, 30)), np.full((30, 30), 200.0)], ids=["black", "grey"])
def test_blank_image_is_refused(picture: np.ndarray) -> None:
    with pytest.raises(decode.BadImage, match=r"blank\.png: no digit"):
        mnist_style.to_mnist(picture, name="blank.png")


# Decoding ----------------------------------------------------------------------------------------


def save_variants(digit: np.ndarray, folder: Path) -> dict[str, Path]:
    """One dark-on-light digit in every format and mode the tool promises to read."""
    paper = dark_on_light_rgb(digit)
    gray = Image.fromarray(paper).convert("L")
    files = {}

    def save(name: str, image: Image.Image, **options: object) -> None:
        files[name] = folder / name
        image.save(files[name], **options)

    save("gray.png", gray)
    save("rgb.jpg", Image.fromarray(paper), quality=90)
    save("rgb.bmp", Image.fromarray(paper))
    save("palette.png", Image.fromarray(paper).convert("P", palette=Image.Palette.ADAPTIVE))
    save("sixteen_bit.tif", Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257))
    save("cmyk.tif", Image.fromarray(paper).convert("CMYK"))
    save("one_bit.png", gray.point(lambda value: 255 if value > 128 else 0).convert("1"))
    # Dark strokes on a transparent canvas: the transparent pixels are black, as drawing apps leave them.
    ink = 255 - np.asarray(gray)
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = ink
    save("transparent.png", Image.fromarray(rgba, mode="RGBA"))
    # An animation: the first frame is the digit, the second a blank frame.
    save("animated.gif", gray, save_all=True, append_images=[Image.new("L", gray.size, 255)])
    return files


def test_every_format_and_mode_gives_the_same_digit(mnist_digits: torch.Tensor, tmp_path: Path) -> None:
    digit = mnist_digits[0].numpy()
    files = save_variants(digit, tmp_path)
    reference = mnist_style.to_mnist(255 - np.asarray(Image.open(files["gray.png"]), dtype=np.float32))
    for name, path in files.items():
        result, sources = image_files.load_digits(path)
        assert sources == [str(path)]
        difference = np.abs(result[0].astype(int) - reference.astype(int)).mean()
        limit = 25 if name == "one_bit.png" else 6  # thresholding to 1 bit loses the anti-aliasing
        assert difference < limit, f"{name}: mean difference {difference:.1f} grey levels"


# Finding files -------------------------------------------------------------------------------------


def test_folder_and_glob_in_natural_order(mnist_digits: torch.Tensor, tmp_path: Path) -> None:
    for number in (10, 2, 1):
        Image.fromarray(mnist_digits[number].numpy()).save(tmp_path / f"digit{number}.png")
    Image.fromarray(mnist_digits[0].numpy()).save(tmp_path / ".hidden.png")
    (tmp_path / "subfolder").mkdir()
    digits, sources = image_files.load_digits(tmp_path)
    assert [Path(source).name for source in sources] == ["digit1.png", "digit2.png", "digit10.png"]
    assert digits.shape == (3, 28, 28) and digits.dtype == np.uint8
    _, globbed = image_files.load_digits(str(tmp_path / "digit1*.png"))
    assert [Path(source).name for source in globbed] == ["digit1.png", "digit10.png"]


def test_threads_decode_the_same(mnist_digits: torch.Tensor, tmp_path: Path) -> None:
    for number in range(12):
        Image.fromarray(dark_on_light_rgb(mnist_digits[number].numpy(), scale=2)).save(tmp_path / f"{number}.jpg")
    serial, serial_sources = image_files.load_digits(tmp_path)
    threaded, threaded_sources = image_files.load_digits(tmp_path, num_workers=2)
    assert np.array_equal(serial, threaded) and serial_sources == threaded_sources


# Photos ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(mnist_digits: torch.Tensor, tmp_path: Path, orientation: int) -> None:
    from tests.photos import ORIENTATION_TAG, STORED

    upright = Image.fromarray(dark_on_light_rgb(mnist_digits[7].numpy(), scale=4))  # a 9: no symmetry
    stored = upright.transpose(STORED[orientation]) if orientation > 1 else upright
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    stored.save(tmp_path / "turned.png", exif=exif.tobytes())
    upright.save(tmp_path / "upright.png")
    assert np.array_equal(
        image_files.load_digit(tmp_path / "turned.png", "turned.png"),
        image_files.load_digit(tmp_path / "upright.png", "upright.png"),
    )


def test_large_jpegs_are_decoded_reduced(mnist_digits: torch.Tensor, tmp_path: Path) -> None:
    big = Image.fromarray(dark_on_light_rgb(mnist_digits[0].numpy(), scale=20)).resize((4000, 3000))
    big.save(tmp_path / "big.jpg", quality=85)
    decoded = decode.read_image(tmp_path / "big.jpg", "big.jpg")
    assert decoded.size == (500, 375)  # JPEG's 1/8 DCT scaling: never the 12 megapixels
    with (tmp_path / "big.jpg").open("rb") as stream:  # an open binary file, as a server has one
        from_stream = image_files.load_digit(stream, "upload")
    assert np.array_equal(from_stream, image_files.load_digit(tmp_path / "big.jpg", "big.jpg"))
    big.save(tmp_path / "big.png")
    assert max(decode.read_image(tmp_path / "big.png", "big.png").size) <= 2 * decode.WORK_SIZE


def test_lighting_is_divided_out(mnist_digits: torch.Tensor) -> None:
    """A digit under a lamp's fall-off and a shadow's edge reads as under even light; a global threshold would not."""
    paper = dark_on_light_rgb(mnist_digits[1].numpy(), scale=10).astype(np.float32).mean(axis=2)  # 280×280
    even = mnist_style.to_mnist(np.pad(paper, 60, constant_values=float(paper[0, 0])))
    canvas = np.pad(paper, 60, constant_values=float(paper[0, 0]))
    rows, columns = np.indices(canvas.shape, dtype=np.float32)
    light = 1 - 0.6 * columns / columns.max()  # 40 % at the right edge
    light[rows > 0.55 * canvas.shape[0]] *= 0.5  # and a shadow over the lower part, through the digit
    lit = mnist_style.to_mnist(canvas * light)
    assert np.abs(lit.astype(int) - even.astype(int)).mean() < 6


def test_light_strokes_on_dark_are_told_from_shadows(mnist_digits: torch.Tensor) -> None:
    digit = mnist_digits[2].numpy().astype(np.float32)
    assert mnist_style.light_on_dark(digit)  # MNIST itself
    assert not mnist_style.light_on_dark(255 - digit)
    paper = 255 - np.pad(digit, 20)
    shadowed = paper.copy()
    shadowed[:, :50] *= 0.4  # a shadow over most of the page, the border included
    assert not mnist_style.light_on_dark(shadowed)


def test_two_stroke_digits_stay_whole_and_specks_go() -> None:
    four = np.full((200, 200), 240.0, dtype=np.float32)
    four[40:120, 60:70] = 30  # the left stroke and the bar of a 4, written in one go
    four[110:120, 60:140] = 30
    four[30:170, 120:130] = 30  # the right stroke, lifted pen: a second component
    speck = four.copy()
    speck[185:188, 10:13] = 30  # a speck in a corner
    speck[5:8, 150:153] = 30
    whole = mnist_style.to_mnist(four)
    assert np.array_equal(mnist_style.to_mnist(speck), whole)
    rows, _ = np.nonzero(whole)
    assert rows.max() - rows.min() + 1 >= 19  # the taller right stroke sets the size: both strokes are in
