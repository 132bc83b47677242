"""Readers that turn each dataset on disk into host numpy arrays.

Every reader returns a `RawSplits`: uint8 images in NCHW layout and int64 labels for a fixed
train and test split. Nothing here touches a torch device; `registry.load_dataset` moves the
arrays to the device once. Missing files raise `DataError` with a message that says what to
change (the directory searched, the package to install, the recipe flag to set).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError

#: Where Debian's `dataset-fashion-mnist` package installs the idx files.
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
#: Default root of torchvision's CIFAR folders when `data.root` is empty.
CIFAR_DEFAULT_ROOT = "./data"
#: Size of the fixed digits test set (the rest, 1,497 images, is the training set).
DIGITS_N_TEST = 300

#: Fashion-MNIST idx files by role. Debian's package uses exactly the standard names; each may
#: also be found uncompressed (torchvision extracts the archives next to the `.gz` files).
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


class DataError(UserError):
    """A user-facing data problem; the message names what to change (a root, a flag, a package)."""


class RawSplits(NamedTuple):
    """Host arrays of one dataset: uint8 (N, C, H, W) images and int64 (N,) labels per split."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    n_classes: int


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def load_digits_arrays() -> RawSplits:
    """scikit-learn's 1,797 real 8x8 handwritten digits, 1 channel, 10 classes.

    Pixel values 0..16 become uint8 via round(v * 255 / 16). The train/test split is fixed and
    does NOT depend on the run seed: a stratified split drawn with `numpy.random.RandomState(0)`
    puts 300 images (about 30 per class) in the test set and the other 1,497 in the training set;
    both keep the original dataset order. Runs with different seeds therefore report test numbers
    on the same 300 images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images.astype(np.float64) * 255.0 / 16.0).astype(np.uint8)
    images = images[:, None, :, :]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_N_TEST,
        stratify=labels,
        random_state=np.random.RandomState(0),
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return RawSplits(
        np.ascontiguousarray(images[train_idx]), labels[train_idx],
        np.ascontiguousarray(images[test_idx]), labels[test_idx], 10,
    )


# --------------------------------------------------------------------------------------------
# fashion-mnist
# --------------------------------------------------------------------------------------------


def _read_idx(path: Path, magic: int, header_bytes: int) -> np.ndarray:
    """Read one idx file (gzip-compressed when its name ends in .gz) and check its header.

    The header is big-endian int32s: the magic number, then one size per dimension (images:
    count, rows, cols = 16 bytes; labels: count = 8 bytes). The body is uint8.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; the file may be truncated, fetch it again") from exc
    if len(raw) < header_bytes:
        raise DataError(f"{path} is too short to be an idx file ({len(raw)} bytes)")
    header = np.frombuffer(raw, dtype=">i4", count=header_bytes // 4)
    if int(header[0]) != magic:
        raise DataError(f"{path} is not an idx file of the expected kind "
                        f"(magic {int(header[0])}, expected {magic})")
    shape = tuple(int(v) for v in header[1:])
    body = np.frombuffer(raw, dtype=np.uint8, offset=header_bytes)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape).copy()  # frombuffer is read-only; torch wants writable memory


def _find_fashion_files(root: Path) -> dict[str, Path] | None:
    """Paths of the four idx files under `root` (or torchvision's `root/FashionMNIST/raw`).

    Each file may be gzip-compressed (`.gz`, Debian's layout) or plain. Returns None when any
    of the four is missing.
    """
    for folder in (root, root / "FashionMNIST" / "raw"):
        found: dict[str, Path] = {}
        for role, stem in _FASHION_FILES.items():
            for name in (stem + ".gz", stem):
                if (folder / name).is_file():
                    found[role] = folder / name
                    break
        if len(found) == len(_FASHION_FILES):
            return found
    return None


def _download_fashion_mnist(root: Path) -> None:
    """Let torchvision fetch Fashion-MNIST into `root/FashionMNIST/raw` (needs internet)."""
    from torchvision.datasets import FashionMNIST

    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError or OSError offline
        raise DataError(
            f"downloading fashion-mnist into {root} failed ({exc}); check the internet "
            f"connection and that {root} is writable, or `apt-get install dataset-fashion-mnist` "
            f"and leave data.root empty"
        ) from exc


def load_fashion_mnist_arrays(root: str, download: bool) -> RawSplits:
    """Fashion-MNIST's 60,000 + 10,000 28x28 grey images, 10 classes, read from idx files.

    `root` empty means Debian's `/usr/share/datasets/fashion-mnist`. The `.gz` files are read
    directly with gzip + numpy (Debian's files have other checksums than torchvision's, so
    torchvision's own loader would reject them). With `download`, missing files are fetched by
    torchvision into `root/FashionMNIST/raw` and read from there.
    """
    folder = Path(root or FASHION_MNIST_DEFAULT_ROOT)
    files = _find_fashion_files(folder)
    if files is None and download:
        _download_fashion_mnist(folder)
        files = _find_fashion_files(folder)
    if files is None:
        names = ", ".join(stem + ".gz" for stem in _FASHION_FILES.values())
        raise DataError(
            f"fashion-mnist files not found in {folder} (looked for {names}, also under "
            f"{folder / 'FashionMNIST' / 'raw'}). Install them with `apt-get install "
            f"dataset-fashion-mnist` (to {FASHION_MNIST_DEFAULT_ROOT}), point to another "
            f"directory with `--set data.root=DIR`, or let torchvision fetch them with "
            f"`--set data.download=true`"
        )
    arrays = {}
    for role, path in files.items():
        if role.endswith("images"):
            arrays[role] = _read_idx(path, _IDX_IMAGES_MAGIC, 16)[:, None, :, :]
        else:
            arrays[role] = _read_idx(path, _IDX_LABELS_MAGIC, 8).astype(np.int64)
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(f"fashion-mnist in {folder}: {split} images and labels differ in count")
    return RawSplits(arrays["train_images"], arrays["train_labels"],
                     arrays["test_images"], arrays["test_labels"], 10)


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


def load_cifar_arrays(name: str, root: str, download: bool) -> RawSplits:
    """CIFAR-10 or CIFAR-100 (`name` 'cifar10' / 'cifar100') through torchvision, 32x32 RGB.

    `root` empty means ./data. torchvision keeps NHWC uint8 in `.data`; it is transposed to
    NCHW. A missing or corrupted dataset raises DataError naming the root and the download flag.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    dataset_cls, n_classes = {"cifar10": (CIFAR10, 10), "cifar100": (CIFAR100, 100)}[name]
    folder = root or CIFAR_DEFAULT_ROOT
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_cls(folder, train=train, download=download)
        except (RuntimeError, OSError) as exc:
            if download:
                hint = (f"the download into {os.path.abspath(folder)} failed ({exc}); check the "
                        f"internet connection and that the directory is writable")
            else:
                hint = (f"{name} not found (or corrupted) under data.root={os.path.abspath(folder)}; "
                        f"put torchvision's {dataset_cls.base_folder} folder there, point to it "
                        f"with `--set data.root=DIR`, or let torchvision fetch it with "
                        f"`--set data.download=true`")
            raise DataError(hint) from exc
        images = np.ascontiguousarray(np.asarray(dataset.data, dtype=np.uint8).transpose(0, 3, 1, 2))
        labels = np.asarray(dataset.targets, dtype=np.int64)
        splits.append((images, labels))
    (train_x, train_y), (test_x, test_y) = splits
    return RawSplits(train_x, train_y, test_x, test_y, n_classes)
