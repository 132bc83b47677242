"""One builder for the parts of a training run: data, model, method, then the Trainer.

`ebjdat run` (train/session.py), `ebjdat bench` (train/bench.py) and the tests build through
here, so they run the same checks in the same order and consume the RNG identically: the dataset,
the model (a depth the architecture lacks is a recipe error), the warm start, the device
placement, a per-rank reseed, the replay buffer's memory check, the method, DAT's seed images and
the batch sizes the data can fill. Everything that can fail on bad input fails here, before a run
directory is made.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ..data import DataError, DataSplits, ImageSplit, load_dataset
from ..methods import Method, MethodContext, build_method
from ..models import build_model
from ..recipe import Recipe, RecipeError
from ..recipe.schema import BASES
from ..rundir.events import EventWriter
from . import distributed
from .loop import Trainer
from .runtime import autocast, seed_everything

#: methods that keep a replay buffer of sampler.buffer_size images: the generative bases and
#: EB-JDAT, built on one of them
BUFFER_METHODS = (*BASES, "ebjdat")


@attrs.frozen
class Parts:
    """What a run trains: its data, model (on the device), method, warm start and DAT's seeds."""

    splits: DataSplits
    model: nn.Module
    method: Method
    warm_start: dict[str, Any] | None = None
    seed_images: ImageSplit | None = None

    def trainer(self, recipe: Recipe, device: torch.device, run_dir: Path, events: EventWriter,
                dist: distributed.DistInfo = distributed.DistInfo()) -> Trainer:
        """The Trainer for these parts, writing to `run_dir` through `events`."""
        return Trainer(recipe, self.splits, self.model, self.method, device, run_dir, events, dist=dist,
                       warm_start=self.warm_start, seed_images=self.seed_images)


def build_parts(recipe: Recipe, device: torch.device, dist: distributed.DistInfo = distributed.DistInfo(), *,
                splits: DataSplits | None = None, warm_start: bool = True) -> Parts:
    """Data (`splits` when the caller has them already), model, method and DAT's seeds for `recipe`.
    `warm_start`: apply `model.init_from` (a resumed run's weights come from its checkpoint)."""
    seed_everything(recipe.run.seed)
    if splits is None:
        splits = load_dataset(recipe.data, device, recipe.run.seed)
    try:
        model = build_model(recipe.model, splits.image_shape, splits.n_classes)
    except ValueError as e:  # a depth the architecture does not have, ...
        raise RecipeError([f"$.model: {e}"]) from None
    warm = None
    if recipe.model.init_from and warm_start:
        from .warm_start import warm_start as load_warm_start

        warm = load_warm_start(model, recipe.model)
    model = model.to(device)
    if recipe.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    seed_everything(recipe.run.seed + dist.rank)  # same init everywhere, own noise per rank
    sampler_cfg = recipe.sampler
    if dist.enabled:  # each rank keeps its own slice of the replay buffer
        sampler_cfg = attrs.evolve(sampler_cfg, buffer_size=max(1, sampler_cfg.buffer_size // dist.world_size))
    check_buffer(recipe, splits.image_shape, device)
    method = build_method(recipe.method, sampler_cfg, recipe.adversary, MethodContext(
        device=device, n_classes=splits.n_classes, image_shape=splits.image_shape,
        input_std=recipe.model.input_std, autocast=lambda: autocast(recipe.runtime, device),
        train_images=splits.train.images, train_labels=splits.train.labels))
    seed_images = None
    if recipe.sampler.seed_folder and recipe.method.name == "dat":  # DAT's OOD seeds
        from ..data import load_seed_images

        seed_images = load_seed_images(recipe.sampler.seed_folder, splits.image_shape,
                                       recipe.data.cache, recipe.data.placement, device)
    check_batches(recipe, len(splits.train), method.needs_px,
                  len(seed_images) if seed_images is not None else None)
    return Parts(splits, model, method, warm, seed_images)


def check_buffer(recipe: Recipe, image_shape: tuple[int, int, int], device: torch.device) -> None:
    """A replay buffer that fits: fp32 images on the device, at most half its memory (host RAM
    for the CPU); a RecipeError naming the size otherwise, instead of an allocation traceback."""
    if recipe.method.name not in BUFFER_METHODS:
        return
    from ..data.registry import device_memory

    need = recipe.sampler.buffer_size * math.prod(image_shape) * 4
    capacity = device_memory(device)
    if capacity is not None and need > capacity // 2:
        raise RecipeError([f"$.sampler.buffer_size: {recipe.sampler.buffer_size} images of "
                           f"{'x'.join(map(str, image_shape))} need {need / 2**30:.1f} GiB in fp32, more "
                           f"than half of the {capacity / 2**30:.0f} GiB of {device.type} memory; lower it"])


def check_batches(recipe: Recipe, n_train: int, needs_px: bool, n_seeds: int | None) -> None:
    """Batch sizes the data can fill, checked before a run directory is made (DataError)."""
    train = recipe.train
    sizes = [("train.batch_size", train.batch_size)]
    if needs_px and train.px_batch_size:
        sizes.append(("train.px_batch_size", train.px_batch_size))
    for key, size in sizes:
        if size > n_train:
            raise DataError(f"{key}={size} is larger than the {n_train} training images; lower it "
                            f"(`--set {key}=N`)")
    if n_seeds is not None and n_seeds < train.batch_size:
        raise DataError(f"sampler.seed_folder={recipe.sampler.seed_folder} holds {n_seeds} images, "
                        f"fewer than one batch ({train.batch_size}); add images or lower train.batch_size")


__all__ = ["BUFFER_METHODS", "Parts", "build_parts", "check_batches", "check_buffer"]
