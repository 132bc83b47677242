"""GPU checks (skipped without CUDA): no host sync inside the training step (weight EMA and
channels_last included), bf16 autocast, the streaming loader's CUDA branch (pinned buffers, its
own copy stream, event waits) and DAT's decoupled augmentation on device tensors."""

from __future__ import annotations

import pytest
import torch

from ebjdat_engine.recipe import resolve

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")]


@pytest.mark.parametrize("method", ["standard", "ebjdat", "dat"])
def test_training_step_never_syncs_with_the_host(tiny_recipe, method):
    from pathlib import Path

    from ebjdat_engine.rundir.events import EventWriter
    from ebjdat_engine.train.build import build_parts

    recipe = resolve(tiny_recipe, [f"method.name={method}", 'runtime.device="cuda"', 'runtime.amp="bf16"',
                                   "sampler.buffer_size=128", "sampler.n_steps=2", "adversary.steps=2",
                                   "train.ema=0.999", "runtime.channels_last=true"])
    device = torch.device("cuda")
    trainer = build_parts(recipe, device).trainer(recipe, device, Path("."), EventWriter(Path("."), enabled=False))
    trainer.train_step(trainer.next_batch())  # warm-up (lazy inits may sync once)
    trainer.step += 1
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            batch = trainer.next_batch()
            trainer.train_step(batch)
            trainer.step += 1
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(torch.stack([v for v in trainer.window.last.values()])).all()


def test_streamed_batches_reach_the_gpu_intact_and_match_the_cpu_order():
    """The CUDA branch of StreamLoader: pinned ring buffers, the reader's own stream, the event
    wait; three epochs so every ring slot is reused. Without augmentation the batches equal the
    CPU DeviceLoader's (same CPU permutation)."""
    from ebjdat_engine.data import DeviceLoader, HostImages, ImageSplit, StreamLoader

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (96, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(96) % 10
    cpu = DeviceLoader(ImageSplit(images, labels), 16, seed=3)
    host = ImageSplit(HostImages([images.numpy()]), labels)
    gpu = StreamLoader(host, 16, seed=3, device=torch.device("cuda"), prefetch=2)
    try:
        for step in range(3 * cpu.steps_per_epoch):
            epoch, index = divmod(step, cpu.steps_per_epoch)
            x, y = gpu.batch(epoch, index)
            assert x.device.type == "cuda"
            xc, yc = cpu.batch(epoch, index)
            assert torch.equal(x.cpu(), xc) and torch.equal(y.cpu(), yc), step
    finally:
        gpu.close()


def test_stream_placement_trains_dat_with_its_decoupled_views_on_the_gpu(tiny_recipe):
    """data.placement = "stream" with DAT's AutoAugment + Cutout classifier stream on CUDA (the
    v2 transforms on device tensors, the streamed batches' event waits) trains to the end."""
    from ebjdat_engine.train.session import run

    recipe = resolve(tiny_recipe, ['method.name="dat"', 'runtime.device="cuda"', 'data.placement="stream"',
                                   'data.clf_augment="autoaugment"', "data.cutout=2", "train.max_steps=6",
                                   "sampler.n_steps=2", "adversary.steps=2"])
    result = run(recipe, None)
    assert result.status == "finished"
