"""Reading and verifying MNIST-format IDX files (the bundled copy, a user's folder, or a download).

The IDX format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x0000 TT DD`` where TT is
the element type (0x08 = unsigned byte) and DD the number of dimensions, then DD big-endian int32
sizes, then the data in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import shutil
import urllib.request
import zlib
from importlib import resources
from pathlib import Path

import torch

from lenet_cli.errors import LenetError, escaped

# Stems of the four files, as in the canonical distribution.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# sha256 of the *decompressed* bytes of the bundled copy (see datasets/mnist/README.md).
BUNDLED_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# The mirrors torchvision uses for MNIST; only tried for a user folder that lacks the files.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_UBYTE = 0x08


def bundled_dir() -> Path:
    """The folder inside the installed package that holds the verified MNIST copy."""
    return Path(str(resources.files("lenet_cli.data") / "datasets" / "mnist"))


# The largest IDX array lenet reads (EMNIST's biggest split is ~550 MB): a header that claims more, or a
# gzip stream that inflates past what its header says, is refused before the memory is taken.
MAX_IDX_BYTES = 2**30
READ_CHUNK = 16 * 2**20


def find_file(folder: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``folder`` (also the ``stem.idx3-ubyte`` spelling some mirrors use).

    A name that is there but not a regular file (a folder, FIFO or device) is an error, not a missing
    file: a download into its place would fail or read the device forever.
    """
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
        if candidate.exists():
            kind = "a folder" if candidate.is_dir() else "not a regular file (a FIFO, device or socket)"
            raise LenetError(f"data file {escaped(candidate)} is {kind}; put the IDX file itself there")
    return None


def read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, inflated when it ends in ``.gz`` (at most :data:`MAX_IDX_BYTES` + 1)."""
    try:
        with _open(path) as stream:
            return stream.read(MAX_IDX_BYTES + 1)
    except OSError as error:
        raise _read_error(path, error) from error
    except (EOFError, zlib.error) as error:
        raise LenetError(f"data file {escaped(path)} is corrupt or truncated (gzip: {error})") from error


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _read_error(path: Path, error: OSError) -> LenetError:
    if isinstance(error, gzip.BadGzipFile) or not error.strerror:
        return LenetError(f"data file {escaped(path)} is corrupt or truncated (gzip: {error})")
    return LenetError(f"cannot read data file {escaped(path)}: {error.strerror}")


def parse_idx(data: bytes, path: Path, dims: int) -> torch.Tensor:
    """The unsigned-byte array in ``data`` with ``dims`` dimensions; any mismatch names ``path``."""
    shape = parse_header(data[: 4 + 4 * dims], path, dims)
    expected = 4 + 4 * dims + math.prod(shape)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise LenetError(f"data file {escaped(path)} is {state}: {len(data)} bytes, header {shape} needs {expected}")
    body = bytearray(data[4 + 4 * dims :])  # writable copy: torch.frombuffer warns on read-only bytes
    return torch.frombuffer(body, dtype=torch.uint8).reshape(shape) if body else torch.zeros(shape, dtype=torch.uint8)


def parse_header(header: bytes, path: Path, dims: int) -> list[int]:
    """The shape an IDX header of ``dims`` dimensions declares, checked against :data:`MAX_IDX_BYTES`."""
    if len(header) < 4 + 4 * dims:
        raise LenetError(f"data file {escaped(path)} is truncated: {len(header)} bytes is shorter than an IDX header")
    zero, dtype, ndim = int.from_bytes(header[0:2], "big"), header[2], header[3]
    if zero != 0 or dtype != _UBYTE or ndim != dims:
        raise LenetError(
            f"data file {escaped(path)} has a wrong IDX header (magic {header[:4].hex()}, "
            f"expected 0000080{dims}: unsigned bytes in {dims} dimensions)"
        )
    shape = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    if math.prod(shape) > MAX_IDX_BYTES:
        raise LenetError(
            f"data file {escaped(path)} declares {shape} = {math.prod(shape) / 2**30:.1f} GiB of pixels or labels, "
            f"more than the {MAX_IDX_BYTES // 2**30} GiB lenet reads; is it really an MNIST-style file?"
        )
    return shape


def read_idx(path: Path, dims: int, sha256: str | None = None) -> torch.Tensor:
    """Read one IDX file (plain or gzip), checking its checksum when one is known.

    Streamed: the header is read first, then exactly the bytes it declares, so a gzip file that
    inflates to far more than that (a "zip bomb") costs no more memory than a good one.
    """
    header_size = 4 + 4 * dims
    try:
        with _open(path) as stream:
            header = stream.read(header_size)
            shape = parse_header(header, path, dims)
            declared, body = math.prod(shape), bytearray()
            # In chunks: memory grows with the bytes that arrive, not with what a (damaged) header claims.
            while len(body) < declared and (chunk := stream.read(min(READ_CHUNK, declared - len(body)))):
                body += chunk
            extra = stream.read(1)
    except OSError as error:
        raise _read_error(path, error) from error
    except (EOFError, zlib.error) as error:
        raise LenetError(f"data file {escaped(path)} is corrupt or truncated (gzip: {error})") from error
    expected = header_size + declared
    if len(body) < declared or extra:
        state = "truncated" if len(body) < declared else "longer than its header says"
        size = header_size + len(body) + len(extra)
        raise LenetError(
            f"data file {escaped(path)} is {state}: {size}{'+' if extra else ''} bytes, header {shape} needs {expected}"
        )
    if sha256 is not None and hashlib.sha256(header + body).hexdigest() != sha256:
        raise LenetError(
            f"data file {escaped(path)} does not match the verified MNIST checksum (corrupt or modified); "
            "reinstall lenet-cli or point --data.data_dir at a good copy"
        )
    if not body:
        return torch.zeros(shape, dtype=torch.uint8)
    return torch.frombuffer(body, dtype=torch.uint8).reshape(shape)


def download(folder: Path, mirrors: tuple[str, ...] = MIRRORS, timeout: float = 30.0) -> None:
    """Fetch the missing ``*.gz`` files into ``folder``; each file appears only once complete.

    The folder is made only once a mirror answers, so a failed download leaves nothing behind.
    """
    for stem in FILES.values():
        if find_file(folder, stem) is not None:
            continue
        target = folder / f"{stem}.gz"
        errors = []
        for mirror in mirrors:
            partial = target.with_suffix(".gz.part")
            try:
                with urllib.request.urlopen(mirror + target.name, timeout=timeout) as response:
                    folder.mkdir(parents=True, exist_ok=True)
                    with partial.open("wb") as out:
                        shutil.copyfileobj(response, out)
                partial.replace(target)
                break
            except OSError as error:
                partial.unlink(missing_ok=True)
                errors.append(f"{mirror}: {getattr(error, 'reason', error)}")
        else:
            raise LenetError(
                f"{folder} lacks {stem}[.gz] and downloading it failed ({'; '.join(errors)}); "
                "copy the four MNIST-format IDX files there"
            )


def load(
    data_dir: str | Path | None = None, allow_download: bool = True, splits: tuple[str, ...] = ("train", "test")
) -> dict[str, torch.Tensor]:
    """The arrays of ``splits`` (``train_images`` (N, 28, 28) uint8, ``train_labels`` (N,) uint8, ...).

    ``data_dir=None`` reads the copy bundled with the package and checks its sha256 sums; any other
    folder gets the header, shape and count checks (it may hold Fashion-MNIST, KMNIST, ...). Only the
    files of ``splits`` are read: ``test`` alone is a sixth of the bytes to decompress and hash.
    """
    wanted = {key: stem for key, stem in FILES.items() if key.split("_")[0] in splits}
    if data_dir is None:
        folder, checksums = bundled_dir(), BUNDLED_SHA256
    else:
        folder, checksums = Path(data_dir).expanduser(), {}
        if folder.exists() and not folder.is_dir():
            raise LenetError(f"data_dir {folder} is not a folder")
    missing = [stem for stem in wanted.values() if find_file(folder, stem) is None]
    if missing and data_dir is not None and allow_download:
        download(folder)
    elif missing:
        raise LenetError(f"{folder} lacks the MNIST file(s) {', '.join(missing)} (plain or .gz)")

    arrays = {}
    for key, stem in wanted.items():
        path = find_file(folder, stem)
        assert path is not None  # every file is present after the download above
        arrays[key] = read_idx(path, dims=3 if key.endswith("images") else 1, sha256=checksums.get(stem))
    for split in splits:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise LenetError(
                f"{folder}: {split} has {len(images)} images but {len(labels)} labels; the files do not belong together"
            )
    return arrays
