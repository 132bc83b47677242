"""The streaming reader: images/s at 64 and 224 px, and how long a training step waits for data.

    python benchmarks/data_stream.py [--sizes 64 224] [--images 600] [--batch 128] [--json OUT]

For each size: writes a synthetic ImageNet-style folder of JPEGs (3 classes, sources 25 % larger
than the target, non-square), `ebjdat data prepare`s it (decode + resize in worker processes:
images/s), then reads shuffled batches with `StreamLoader` from the memory-mapped cache (the
background thread's gather + the hand-over; the training thread only takes batches: images/s).
The cache was just written, so it is read from the page cache: this is the reader's cost, not
the disk's.

Then the data stall on the quickstart model: `recipes/quickstart.toml` trained for `--steps`
iterations with `data.placement = "stream"`, timing how long the loop blocked waiting for a
batch (`StreamLoader.wait_seconds`, both streams) against the wall time of those steps.
Prints a table; `--json` writes the numbers. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ebjdat_engine.data import ImageSplit, StreamLoader
from ebjdat_engine.data import imagefolder as folder
from ebjdat_engine.data.synthetic import write_folder


def reader_speed(size: int, n_images: int, batch: int, workers: int, tmp: Path) -> dict:
    classes = ["c0", "c1", "c2"]
    root = write_folder(tmp / f"folder{size}", classes, n_images // 3, 3, fmt="jpg",
                        size=(int(size * 1.33), int(size * 1.25)))
    t0 = time.perf_counter()
    folder.prepare(str(root), None, size, str(tmp / "cache"), workers=workers, progress=False)
    prepare_s = time.perf_counter() - t0
    cached = folder.open_cache(str(root), None, size, str(tmp / "cache"))
    split = ImageSplit(cached.images["train"], torch.from_numpy(cached.labels["train"]))
    loader = StreamLoader(split, batch, seed=0, device=torch.device("cpu"), crop_padding=0)
    n_batches = max(3 * loader.steps_per_epoch, 20)
    loader.batch(0, 0)  # the thread starts; its first batch is not timed
    t0 = time.perf_counter()
    for step in range(1, n_batches + 1):
        loader.batch(*divmod(step, loader.steps_per_epoch))
    read_s = time.perf_counter() - t0
    loader.close()
    n_train = len(split)
    return {"size": size, "images": n_train, "prepare_images_per_s": (n_train + 9) / prepare_s,
            "workers": workers, "batch": batch, "batches": n_batches,
            "stream_images_per_s": n_batches * batch / read_s,
            "cache_mb": split.images.nbytes / 2**20}


def quickstart_stall(steps: int) -> dict:
    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.methods import MethodContext, build_method
    from ebjdat_engine.models import build_model
    from ebjdat_engine.recipe import resolve
    from ebjdat_engine.rundir.events import EventWriter
    from ebjdat_engine.train.loop import Trainer
    from ebjdat_engine.train.runtime import autocast, configure, resolve_device, seed_everything

    recipe = resolve("recipes/quickstart.toml", ['data.placement="stream"'])
    device = resolve_device(recipe.runtime)
    configure(recipe.runtime)
    seed_everything(0)
    splits = load_dataset(recipe.data, device, recipe.run.seed)
    model = build_model(recipe.model, splits.image_shape, splits.n_classes).to(device)
    method = build_method(recipe.method, recipe.sampler, recipe.adversary, MethodContext(
        device=device, n_classes=splits.n_classes, image_shape=splits.image_shape,
        input_std=recipe.model.input_std, autocast=lambda: autocast(recipe.runtime, device),
        train_images=splits.train.images, train_labels=splits.train.labels))
    trainer = Trainer(recipe, splits, model, method, device, Path("."), EventWriter(Path("."), enabled=False))
    for _ in range(3):  # warm-up: the reader threads start, the first batches are not timed
        trainer.train_step(trainer.next_batch())
        trainer.step += 1
    loaders = [trainer.loader, trainer.px_loader]
    waited0 = sum(lo.wait_seconds for lo in loaders)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(trainer.next_batch())
        trainer.step += 1
    wall = time.perf_counter() - t0
    waited = sum(lo.wait_seconds for lo in loaders) - waited0
    trainer.close_loaders()
    return {"recipe": "recipes/quickstart.toml", "placement": splits.placement, "steps": steps,
            "seconds_per_step": wall / steps, "wait_seconds_per_step": waited / steps,
            "wait_fraction": waited / wall, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--images", type=int, default=600, help="training images per size")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="prepare's processes (0: min(8, CPUs))")
    parser.add_argument("--steps", type=int, default=200, help="quickstart steps timed")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ebjdat-data-stream-"))
    workers = args.workers or min(8, os.cpu_count() or 1)
    try:
        rows = [reader_speed(s, args.images, args.batch, workers, tmp) for s in args.sizes]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stall = quickstart_stall(args.steps)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"{'size':>5} {'images':>7} {'cache MB':>9} {'prepare img/s':>14} {'stream img/s':>13}")
    for r in rows:
        print(f"{r['size']:>5} {r['images']:>7} {r['cache_mb']:>9.1f} {r['prepare_images_per_s']:>14.0f} "
              f"{r['stream_images_per_s']:>13.0f}")
    print(f"quickstart, streamed ({stall['device']}): {stall['seconds_per_step'] * 1e3:.1f} ms a step, "
          f"{stall['wait_seconds_per_step'] * 1e3:.2f} ms of it waiting for data "
          f"({100 * stall['wait_fraction']:.2f} %)")
    if args.json:
        args.json.write_text(json.dumps({"reader": rows, "quickstart": stall}, indent=1))


if __name__ == "__main__":
    main()
