"""Dataset name -> device-resident splits: the one entry point the engine calls for data.

`load_dataset` picks the reader in `sources`, holds out the validation images (chosen by the
run seed), and moves every split to the target device once as uint8 tensors, so that training
batches are gathered and augmented on the device with no host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..recipe.schema import DataConfig
from .sources import (
    DataError,
    RawSplits,
    load_cifar_arrays,
    load_digits_arrays,
    load_fashion_mnist_arrays,
)


@dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split on its device: uint8 images (N, C, H, W) in 0..255 and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        """Number of images in the split."""
        return int(self.labels.shape[0])


@dataclass(frozen=True, eq=False)
class DataSplits:
    """A loaded dataset: train, optional validation (held out of train) and test splits."""

    name: str
    train: ImageSplit
    valid: ImageSplit | None
    test: ImageSplit
    n_classes: int
    image_shape: tuple[int, int, int]


#: Reader of each dataset name, given (root, download).
_SOURCES: dict[str, Callable[[str, bool], RawSplits]] = {
    "digits": lambda root, download: load_digits_arrays(),
    "fashion-mnist": load_fashion_mnist_arrays,
    "cifar10": lambda root, download: load_cifar_arrays("cifar10", root, download),
    "cifar100": lambda root, download: load_cifar_arrays("cifar100", root, download),
}


def _to_split(images: np.ndarray, labels: np.ndarray, device: torch.device) -> ImageSplit:
    """Copy host arrays to `device` as uint8 images and int64 labels."""
    return ImageSplit(
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).to(device),
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)).to(device),
    )


def _validation_indices(n_train: int, n_valid: int, seed: int,
                        keep: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n_train) into (kept, held out) by a permutation seeded with `seed`; with
    `keep` > 0 only that many of the rest are kept (the next ones of the same permutation).

    Both index arrays are sorted, so the kept training images keep their dataset order.
    """
    if n_valid >= n_train:
        raise DataError(f"data.n_valid={n_valid} must be smaller than the {n_train} training "
                        f"images; lower it with `--set data.n_valid=N`")
    if keep and n_valid + keep > n_train:
        raise DataError(f"data.n_train={keep} plus data.n_valid={n_valid} exceed the {n_train} training "
                        f"images; lower data.n_train (0: all)")
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed)).numpy()
    kept = perm[n_valid:n_valid + keep] if keep else perm[n_valid:]
    return np.sort(kept), np.sort(perm[:n_valid])


def load_dataset(cfg: DataConfig, device: torch.device, seed: int) -> DataSplits:
    """Load dataset `cfg.name` onto `device`; `seed` only decides which images are held out.

    The train/test split is the dataset's own (fixed for digits, see `load_digits_arrays`);
    `cfg.n_valid` training images picked by a permutation from `torch.Generator().manual_seed(seed)`
    form the validation split (None when `n_valid` is 0). Augmentation settings in `cfg` are not
    applied here; the training loop passes them to `DeviceLoader`.
    """
    reader = _SOURCES.get(cfg.name)
    if reader is None:
        raise DataError(f"unknown dataset data.name={cfg.name!r}; choose one of "
                        f"{', '.join(sorted(_SOURCES))}")
    raw = reader(cfg.root, cfg.download)
    device = torch.device(device)
    train_x, train_y = raw.train_images, raw.train_labels
    valid: ImageSplit | None = None
    if cfg.n_valid > 0 or cfg.n_train > 0:
        keep, held = _validation_indices(len(train_y), cfg.n_valid, seed, cfg.n_train)
        valid = _to_split(train_x[held], train_y[held], device) if cfg.n_valid > 0 else None
        train_x, train_y = train_x[keep], train_y[keep]
    c, h, w = raw.train_images.shape[1:]
    return DataSplits(
        name=cfg.name,
        train=_to_split(train_x, train_y, device),
        valid=valid,
        test=_to_split(raw.test_images, raw.test_labels, device),
        n_classes=raw.n_classes,
        image_shape=(int(c), int(h), int(w)),
    )
