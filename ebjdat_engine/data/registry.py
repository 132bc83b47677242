"""Dataset name -> device-resident splits: the one entry point the engine calls for data.

`load_dataset` picks the reader in `sources`, holds out the validation images (chosen by the
run seed), and moves every split to the target device once as uint8 tensors, so that training
batches are gathered and augmented on the device with no host round trip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..recipe.schema import DataConfig
from .host import HostImages
from .imagefolder import listed_classes, open_cache, open_seeds
from .sources import (
    DataError,
    RawSplits,
    load_cifar_arrays,
    load_digits_arrays,
    load_fashion_mnist_arrays,
)


@dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split: uint8 images (N, C, H, W) in 0..255 and int64 labels (N,), on the device, or,
    for a streamed training split, `HostImages` in host memory and host labels."""

    images: torch.Tensor | HostImages
    labels: torch.Tensor

    @property
    def streamed(self) -> bool:
        """True when the images stay on the host and batches are streamed to the device."""
        return isinstance(self.images, HostImages)

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
    placement: str = "device"           # where the training split lives: 'device' or 'stream'
    note: str = ""                      # what was read (an image folder's classes and cache)


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


def _imagefolder(cfg: DataConfig) -> tuple[RawSplits, str]:
    """An image folder's prepared cache as RawSplits whose training images stay memory-mapped."""
    cached = open_cache(cfg.root, listed_classes(cfg.classes, cfg.classes_file), cfg.resolution,
                        cfg.cache)
    index = cached.index
    note = (f"{len(index['classes'])} classes of {index['root']} at {cfg.resolution} px, cache "
            f"{cached.path}")
    if index.get("missing_classes"):
        note += f"; listed but not in the folder: {', '.join(index['missing_classes'])}"
    return RawSplits(cached.images["train"], cached.labels["train"], cached.images["val"].numpy(),
                     cached.labels["val"], len(index["classes"])), note


def device_memory(device: torch.device) -> int | None:
    """Total memory of `device` in bytes (the host's RAM for the CPU), None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]  # CUDA only
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def choose_placement(requested: str, nbytes: int, device: torch.device) -> str:
    """'device' or 'stream': as asked, or for 'auto' by size (a quarter of the device's memory;
    the host's for the CPU)."""
    if requested != "auto":
        return requested
    capacity = device_memory(device)
    return "device" if capacity is None or nbytes <= capacity // 4 else "stream"


def _train_split(images, labels: np.ndarray, keep: np.ndarray | None, placement: str,
                 device: torch.device) -> ImageSplit:
    """The training split on the device, or kept on the host for streaming."""
    if placement == "stream":
        host = images if isinstance(images, HostImages) else HostImages([np.ascontiguousarray(images, dtype=np.uint8)])
        if keep is not None:
            host = HostImages(host.shards, rows=keep if host.rows is None else host.rows[keep])
        y = labels if keep is None else labels[keep]
        return ImageSplit(host, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
    if isinstance(images, HostImages):
        x = images.gather(keep) if keep is not None else images.numpy()
    else:
        x = images if keep is None else images[keep]
    return _to_split(x, labels if keep is None else labels[keep], device)


def _rows(images, idx: np.ndarray) -> np.ndarray:
    return images.gather(idx) if isinstance(images, HostImages) else images[idx]


def load_dataset(cfg: DataConfig, device: torch.device, seed: int) -> DataSplits:
    """Load dataset `cfg.name` onto `device`; `seed` only decides which images are held out.

    The train/test split is the dataset's own (fixed for digits, see `load_digits_arrays`);
    `cfg.n_valid` training images picked by a permutation from `torch.Generator().manual_seed(seed)`
    form the validation split (None when `n_valid` is 0). Augmentation settings in `cfg` are not
    applied here; the training loop passes them to `DeviceLoader`.
    """
    note = ""
    if cfg.name == "imagefolder":
        raw, note = _imagefolder(cfg)
    else:
        reader = _SOURCES.get(cfg.name)
        if reader is None:
            raise DataError(f"unknown dataset data.name={cfg.name!r}; choose one of "
                            f"{', '.join(sorted([*_SOURCES, 'imagefolder']))}")
        raw = reader(cfg.root, cfg.download)
    device = torch.device(device)
    train_x, train_y = raw.train_images, raw.train_labels
    valid: ImageSplit | None = None
    keep = None
    if cfg.n_valid > 0 or cfg.n_train > 0:
        keep, held = _validation_indices(len(train_y), cfg.n_valid, seed, cfg.n_train)
        valid = _to_split(_rows(train_x, held), train_y[held], device) if cfg.n_valid > 0 else None
    c, h, w = (int(v) for v in raw.train_images.shape[1:])
    n_kept = len(train_y) if keep is None else len(keep)
    placement = choose_placement(cfg.placement, n_kept * c * h * w, device)
    return DataSplits(
        name=cfg.name,
        train=_train_split(train_x, train_y, keep, placement, device),
        valid=valid,
        test=_to_split(raw.test_images, raw.test_labels, device),
        n_classes=raw.n_classes,
        image_shape=(c, h, w),
        placement=placement,
        note=note,
    )


def load_seed_images(folder: str, image_shape: tuple[int, int, int], cache: str, placement: str,
                     device: torch.device) -> ImageSplit:
    """DAT's out-of-distribution seed images (sampler.seed_folder), prepared at the data's size.

    Placed like the training split ('auto': by size); labels are zeros (unused)."""
    c, h, _w = image_shape
    cached = open_seeds(folder, h, c, cache)
    images = cached.images["seeds"]
    n = len(images)
    where = choose_placement(placement, images.nbytes, torch.device(device))
    return _train_split(images, np.zeros(n, dtype=np.int64), None, where, torch.device(device))
