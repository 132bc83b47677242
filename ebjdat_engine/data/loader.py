"""Batches from device-resident splits: a stateless shuffled training loader and an eval iterator.

`DeviceLoader.batch(epoch, index)` is a pure function of (seed, epoch, index): the epoch's
permutation is seeded from (seed, epoch) and the augmentation from (seed, epoch, index). A run
resumed from a checkpoint therefore sees exactly the batches it would have seen, with no loader
state to save. Batches are gathered from uint8 tensors already on the device; there are no
DataLoader workers and no host syncs.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .augment import add_noise, hflip, pad_crop
from .registry import ImageSplit
from .sources import DataError

#: Stream tags that keep the permutation and augmentation seeds apart.
_PERM_STREAM = 0
_AUG_STREAM = 1


def derive_seed(*numbers: int) -> int:
    """Mix non-negative integers into one 63-bit seed (numpy's SeedSequence, host-side only)."""
    state = np.random.SeedSequence(list(numbers)).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


class DeviceLoader:
    """Shuffled, augmented training batches from a device-resident uint8 split, no DataLoader workers.

    One epoch is `steps_per_epoch = len(split) // batch_size` batches (the last partial batch is
    dropped). Images come out as float32 in [0, 1] (plus unclipped Gaussian noise when
    `noise_std` > 0) on the split's device, labels as int64.
    """

    def __init__(self, split: ImageSplit, batch_size: int, *, seed: int, crop_padding: int = 0,
                 hflip: bool = False, noise_std: float = 0.0) -> None:
        """Check the settings against the split and prepare the per-device generators."""
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if crop_padding < 0 or noise_std < 0:
            raise DataError(f"data.crop_padding ({crop_padding}) and data.noise_std ({noise_std}) "
                            f"must be non-negative")
        h, w = split.images.shape[-2:]
        if crop_padding >= min(h, w):
            raise DataError(f"data.crop_padding={crop_padding} must be smaller than the image size "
                            f"{h}x{w}; lower it with `--set data.crop_padding=N`")
        if seed < 0:
            raise DataError(f"seed must be non-negative, got {seed}")
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.noise_std = noise_std
        self.steps_per_epoch = len(split) // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"batch size {batch_size} is larger than the {len(split)} training "
                            f"images; lower train.batch_size (`--set train.batch_size=N`)")
        self._device = split.images.device
        self._perm_gen = torch.Generator(device=self._device)
        self._aug_gen = torch.Generator(device=self._device)
        self._perm_epoch: int | None = None
        self._perm: torch.Tensor | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the training images in `epoch` (a function of (seed, epoch); cached)."""
        if self._perm_epoch != epoch or self._perm is None:
            if epoch < 0:
                raise ValueError(f"epoch must be non-negative, got {epoch}")
            self._perm_gen.manual_seed(derive_seed(self.seed, _PERM_STREAM, epoch))
            self._perm = torch.randperm(len(self.split), generator=self._perm_gen,
                                        device=self._device)
            self._perm_epoch = epoch
        return self._perm

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index` (0 <= index < steps_per_epoch) of `epoch`: float images and int64 labels."""
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch index {index} outside 0..{self.steps_per_epoch - 1}")
        start = index * self.batch_size
        idx = self.permutation(epoch)[start:start + self.batch_size]
        x = self.split.images[idx].to(torch.float32).div_(255.0)
        y = self.split.labels[idx]
        if self.crop_padding or self.hflip or self.noise_std > 0:
            gen = self._aug_gen
            gen.manual_seed(derive_seed(self.seed, _AUG_STREAM, epoch, index))
            x = pad_crop(x, self.crop_padding, gen)
            if self.hflip:
                x = hflip(x, gen)
            x = add_noise(x, self.noise_std, gen)
        return x, y

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """All batches of `epoch` from batch `start` on (convenience over `batch`)."""
        for index in range(start, self.steps_per_epoch):
            yield self.batch(epoch, index)


def iterate_batches(split: ImageSplit, batch_size: int,
                    limit: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential float [0, 1] batches (x, y) of `split` for evaluation: no shuffle, no augmentation.

    `limit` > 0 keeps only the first `limit` images; the last batch may be smaller.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    n = len(split) if limit <= 0 else min(limit, len(split))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield split.images[start:stop].to(torch.float32).div_(255.0), split.labels[start:stop]
