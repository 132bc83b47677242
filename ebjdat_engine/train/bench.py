"""`ebjdat bench`: what one training iteration of a recipe costs, measured, not estimated.

Warm-up iterations, then timed ones (the only place that syncs the device every step: the
timings need it). Reported: time per phase (generative sampler, adversarial sampler, update),
images per second, FLOPs per iteration counted by `torch.utils.flop_counter` and expressed per
labelled image in units of F (one forward pass of one image of that model and input size), and,
on a GPU with a known peak, the model FLOPs utilisation.

When the recipe's dataset is not on disk (CIFAR on a laptop), the benchmark runs on synthetic
images of the dataset's shape and says so: speed does not depend on pixel values.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..data import DataError, DataSplits, ImageSplit, load_dataset
from ..recipe import Recipe
from ..rundir.events import EventWriter
from .build import build_parts
from .runtime import autocast, configure, resolve_device, seed_everything

#: shapes of the datasets, for synthetic benchmark data
SHAPES = {"digits": ((1, 8, 8), 10), "fashion-mnist": ((1, 28, 28), 10),
          "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}

#: dense bf16 peak FLOP/s by device-name fragment (vendor data sheets, no sparsity)
PEAK_BF16 = {"H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
             "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "RTX 4090": 165e12, "RTX 3090": 71e12}


def model_label(cfg, image_shape) -> str:
    """'wrn-28-10', 'cnn-w1', 'resnet18 (3x3 stem)', 'wide_resnet50_2 (7x7 stem)', ..."""
    if cfg.arch == "wrn":
        return f"wrn-{cfg.depth}-{cfg.width}"
    if cfg.arch == "resnet":
        from ..models.resnet import small_stem, variant_name

        stem = "3x3" if small_stem(cfg, int(image_shape[1])) else "7x7"
        return f"{variant_name(cfg.depth, cfg.width)} ({stem} stem)"
    return f"cnn-w{cfg.width}"


def data_shape(cfg) -> tuple[tuple[int, int, int], int]:
    """(image shape, number of classes) a recipe's data has, without reading it."""
    if cfg.name == "imagefolder":
        from ..data.imagefolder import listed_classes

        try:
            classes = listed_classes(cfg.classes, cfg.classes_file)
        except DataError:
            classes = None
        return (3, cfg.resolution, cfg.resolution), len(classes) if classes else 10
    return SHAPES[cfg.name]


def synthetic_splits(cfg, n_train: int, device: torch.device, seed: int) -> DataSplits:
    name = cfg.name
    (shape, n_classes) = data_shape(cfg)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=g)
    labels = torch.arange(n_train) % n_classes
    split = ImageSplit(images.to(device), labels.to(device))
    return DataSplits(name=f"{name} (synthetic)", train=split, valid=None, test=split,
                      n_classes=n_classes, image_shape=shape)


class FlopCount(TorchDispatchMode):
    """Sums `torch.utils.flop_counter`'s per-op FLOP formulas (matmuls, convolutions and their
    backward ops) over everything dispatched inside. Unlike FlopCounterMode it installs no
    module hooks, which `torch.autograd.grad` w.r.t. inner activations (PYLD) cannot live with."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def forward_flops(model: torch.nn.Module, image_shape: tuple[int, int, int], device: torch.device,
                  ctx: Callable[[], contextlib.AbstractContextManager]) -> float:
    """F: FLOPs of one forward pass of one image (eval mode, no grad)."""
    was = model.training
    model.eval()
    x = torch.rand(1, *image_shape, device=device)
    with torch.no_grad(), ctx(), FlopCount() as counter:
        model(x)
    model.train(was)
    return float(counter.total)


class _Timed:
    """Wraps a callable and adds its (synchronised) wall time to `seconds`."""

    def __init__(self, fn: Callable, sync: Callable[[], None]):
        self.fn, self.sync, self.seconds = fn, sync, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.sync()
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.sync()
        self.seconds += time.perf_counter() - t0
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fn, name)


def peak_flops(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16.items():
        if key in name:
            return peak, name
    return None, name


def bench(recipe: Recipe, steps: int = 5, warmup: int = 2,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark `recipe`'s training iteration; returns the report dict."""
    device = resolve_device(recipe.runtime)
    configure(recipe.runtime)
    seed_everything(recipe.run.seed)
    train = recipe.train
    batch = train.batch_size
    px_batch = train.px_batch_size or batch
    try:
        splits = load_dataset(recipe.data, device, recipe.run.seed)
        where = "streamed from the host" if splits.train.streamed else "on the device"
        data_note = f"{recipe.data.name} ({len(splits.train)} training images {where})"
    except DataError as e:
        n = max(4 * max(batch, px_batch), 512)
        splits = synthetic_splits(recipe.data, n, device, recipe.run.seed)
        data_note = f"synthetic {recipe.data.name}-shaped images ({n}): {str(e).splitlines()[0]}"
    if log:
        log(f"building {recipe.method.name} on {device} with {data_note}")
    # run's builder: the same checks as `ebjdat run` (a model that cannot be built, a buffer
    # that does not fit, batches the data cannot fill) before anything is measured
    parts = build_parts(recipe, device, splits=splits, warm_start=False)
    model, method = parts.model, parts.method
    ctx = lambda: autocast(recipe.runtime, device)  # noqa: E731
    trainer = parts.trainer(recipe, device, Path("."), EventWriter(Path("."), enabled=False))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    draw = _Timed(method.draw, sync)
    method.draw = draw  # type: ignore[method-assign]
    generative = None
    if hasattr(method, "sampler"):
        generative = _Timed(method.sampler, sync)
        method.sampler = generative  # type: ignore[attr-defined]

    # FLOPs are counted in one untimed iteration after the others: on a GPU an extra one (the
    # counter must not meet torch.compile's first calls); on a CPU, where a WRN-28-10 iteration
    # takes minutes, the last warm-up iteration itself
    for _ in range(warmup - 1 if device.type == "cpu" and warmup > 0 else warmup):
        trainer.train_step(trainer.next_batch())
        trainer.step += 1
    with FlopCount() as counter:
        trainer.train_step(trainer.next_batch())
    trainer.step += 1
    iteration_flops = float(counter.total)
    sync()
    F = forward_flops(model, splits.image_shape, device, ctx)

    draw.seconds = 0.0
    if generative is not None:
        generative.seconds = 0.0
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(trainer.next_batch())
        trainer.step += 1
    sync()
    total = time.perf_counter() - t0
    gen_s = generative.seconds if generative is not None else 0.0
    per_iter = total / steps
    peak, device_name = peak_flops(device)
    report: dict[str, Any] = {
        "recipe_method": recipe.method.name,
        "base": recipe.method.base if recipe.method.name == "ebjdat" else None,
        "profile": recipe.method.profile,
        "device": str(device), "device_name": device_name, "torch": torch.__version__,
        "data": data_note, "model": model_label(recipe.model, splits.image_shape),
        "image_shape": list(splits.image_shape), "batch_size": batch, "px_batch_size": px_batch,
        "amp": trainer.amp, "compile": recipe.runtime.compile,
        "channels_last": recipe.runtime.channels_last,
        "warmup_steps": warmup, "timed_steps": steps,
        "seconds_per_iteration": per_iter,
        "images_per_s": batch / per_iter,
        "phases_s": {"generative_sampler": gen_s / steps,
                     "adversarial_sampler": (draw.seconds - gen_s) / steps,
                     "update": (total - draw.seconds) / steps},
        "F_flops": F,
        "flops_per_iteration": iteration_flops,
        "flops_per_image_F": iteration_flops / (batch * F) if F else None,
        "achieved_flops_per_s": iteration_flops / per_iter,
        "peak_flops_per_s": peak,
        "mfu": (iteration_flops / per_iter) / peak if peak else None,
        "note": "F = FLOPs of one forward of one image; per image = per labelled image of the batch",
    }
    return report


__all__ = ["bench"]
