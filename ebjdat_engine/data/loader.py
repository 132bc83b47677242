"""Batches from device-resident splits: a stateless shuffled training loader and an eval iterator.

`DeviceLoader.batch(epoch, index)` is a pure function of (seed, epoch, index): the epoch's
permutation is seeded from (seed, epoch) and the augmentation from (seed, epoch, index). A run
resumed from a checkpoint therefore sees exactly the batches it would have seen, with no loader
state to save. Batches are gathered from uint8 tensors already on the device; there are no
DataLoader workers and no host syncs.
"""

from __future__ import annotations

from typing import Iterator

import torch

from .augment import add_noise, derive_seed, hflip, pad_crop
from .registry import ImageSplit
from .sources import DataError

#: Stream tags that keep the permutation and augmentation seeds apart.
_PERM_STREAM = 0
_AUG_STREAM = 1
_CLF_STREAM = 2
_CLF_AA_STREAM = 3


class BatchPlan:
    """What every loader shares: the epoch permutation and the batched augmentation.

    The permutation is a function of (seed, epoch), the augmentation of (seed, epoch, index), so a
    run resumed from a checkpoint sees exactly the batches it would have seen. With a classifier
    view (`clf_augment` 'autoaugment' and/or `cutout` > 0: DAT's decoupled augmentation) a second
    copy of each batch gets its own crop / flip draws, AutoAugment on the uint8 images and Cutout;
    the first copy (the energy stream) keeps the plain crop / flip / noise.
    """

    def __init__(self, n_images: int, image_hw: tuple[int, int], batch_size: int, *, seed: int,
                 crop_padding: int = 0, hflip: bool = False, noise_std: float = 0.0,
                 clf_augment: str = "none", clf_policy: str = "cifar10", cutout: int = 0) -> None:
        """Check the settings against the split."""
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if crop_padding < 0 or noise_std < 0:
            raise DataError(f"data.crop_padding ({crop_padding}) and data.noise_std ({noise_std}) "
                            f"must be non-negative")
        h, w = image_hw
        if crop_padding >= min(h, w):
            raise DataError(f"data.crop_padding={crop_padding} must be smaller than the image size "
                            f"{h}x{w}; lower it with `--set data.crop_padding=N`")
        if seed < 0:
            raise DataError(f"seed must be non-negative, got {seed}")
        self.n_images = n_images
        self.batch_size = batch_size
        self.seed = seed
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.noise_std = noise_std
        self.clf_augment = clf_augment
        self.clf_policy = clf_policy
        self.cutout = cutout
        self.steps_per_epoch = n_images // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"batch size {batch_size} is larger than the {n_images} training "
                            f"images; lower train.batch_size (`--set train.batch_size=N`)")

    @property
    def has_classifier_view(self) -> bool:
        return self.clf_augment != "none" or self.cutout > 0

    def views(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Batch `index` of `epoch`: (energy-stream images, labels, classifier-stream images or None)."""
        raise NotImplementedError

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index` (0 <= index < steps_per_epoch) of `epoch`: float images and int64 labels."""
        x, y, _ = self.views(epoch, index)
        return x, y

    def check_index(self, index: int) -> None:
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch index {index} outside 0..{self.steps_per_epoch - 1}")

    def augment(self, x_u8: torch.Tensor, gen: torch.Generator, epoch: int, index: int,
                rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 batch (or a rank's `rows` of it) -> (energy-stream x, classifier-stream x or None)."""
        total = self.batch_size if rows is not None else None
        share = dict(rows=rows, total=total)
        x = x_u8.to(torch.float32).div_(255.0)
        if self.crop_padding or self.hflip or self.noise_std > 0:
            gen.manual_seed(derive_seed(self.seed, _AUG_STREAM, epoch, index))
            x = pad_crop(x, self.crop_padding, gen, **share)
            if self.hflip:
                x = hflip(x, gen, **share)
            x = add_noise(x, self.noise_std, gen, **share)
        if not self.has_classifier_view:
            return x, None
        from .clf_augment import autoaugment, cutout

        x_clf = x_u8
        if self.clf_augment == "autoaugment":
            x_clf = autoaugment(x_clf, self.clf_policy, derive_seed(self.seed, _CLF_AA_STREAM, epoch, index),
                                **share)
        x_clf = x_clf.to(torch.float32).div_(255.0)
        gen.manual_seed(derive_seed(self.seed, _CLF_STREAM, epoch, index))
        x_clf = pad_crop(x_clf, self.crop_padding, gen, **share)
        if self.hflip:
            x_clf = hflip(x_clf, gen, **share)
        x_clf = cutout(x_clf, self.cutout, gen, **share)
        return x, x_clf


class DeviceLoader(BatchPlan):
    """Shuffled, augmented training batches from a device-resident uint8 split, no DataLoader workers.

    One epoch is `steps_per_epoch = len(split) // batch_size` batches (the last partial batch is
    dropped). Images come out as float32 in [0, 1] (plus unclipped Gaussian noise when
    `noise_std` > 0) on the split's device, labels as int64.
    """

    #: batches are whole global batches (under torchrun the loop takes each rank's share)
    rank_share = False

    def __init__(self, split: ImageSplit, batch_size: int, *, seed: int, crop_padding: int = 0,
                 hflip: bool = False, noise_std: float = 0.0, **views) -> None:
        """Check the settings against the split and prepare the per-device generators."""
        super().__init__(len(split), tuple(split.images.shape[-2:]), batch_size, seed=seed,
                         crop_padding=crop_padding, hflip=hflip, noise_std=noise_std, **views)
        self.split = split
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

    def views(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Batch `index` of `epoch`: (energy-stream images, labels, classifier-stream images or None)."""
        self.check_index(index)
        start = index * self.batch_size
        idx = self.permutation(epoch)[start:start + self.batch_size]
        x, x_clf = self.augment(self.split.images[idx], self._aug_gen, epoch, index)
        return x, self.split.labels[idx], x_clf

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """All batches of `epoch` from batch `start` on (convenience over `batch`)."""
        for index in range(start, self.steps_per_epoch):
            yield self.batch(epoch, index)

    def close(self) -> None:
        """Nothing to release (the stream loader stops its reader thread here)."""


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
