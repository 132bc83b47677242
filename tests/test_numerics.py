"""The GPU settings exercised on the CPU: every method trains a few steps under bf16 autocast with
channels_last tensors, and EB-JDAT trains under torch.compile, so the code paths GPU users run
are covered where CI can reach them (tests/test_gpu.py holds the CUDA-only checks)."""

from __future__ import annotations

import math

import pytest
import torch

from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir.checkpoint import load_checkpoint
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import run

#: every method, EB-JDAT on each generative base
ARMS = [("standard", None), ("pgd_at", None), ("trades", None), ("jem", None), ("jempp", None),
        ("sadajem", None), ("ebjdat", "jem"), ("ebjdat", "jempp"), ("ebjdat", "sadajem"), ("dat", None)]
SHORT = ["sampler.buffer_size=64", "sampler.n_steps=2", "sampler.pyld_inner_steps=2", "adversary.steps=2",
         "train.log_every=2", "monitor.every=2", "monitor.probe_n=16", "eval.every_epochs=0"]


def _arm(method: str, base: str | None) -> list[str]:
    return [f'method.name="{method}"'] + ([f'method.base="{base}"'] if base else [])


def _finite_losses(run_dir) -> list[float]:
    losses = [e["loss"] for e in read_events(run_dir) if e["type"] == "metrics"]
    assert losses and all(math.isfinite(x) for x in losses)
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("method,base", ARMS, ids=[m if b is None else f"{m}-{b}" for m, b in ARMS])
def test_every_method_trains_under_bf16_and_channels_last(tiny_recipe, method, base):
    recipe = resolve(tiny_recipe, _arm(method, base) + SHORT + [
        'runtime.amp="bf16"', "runtime.channels_last=true", "train.max_steps=4", f'run.name="{method}-{base}"'])
    result = run(recipe, str(tiny_recipe))
    assert result.status == "finished", result
    _finite_losses(result.run_dir)
    start = next(e for e in read_events(result.run_dir) if e["type"] == "start")
    assert start["method"].startswith(method)
    weights = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.isfinite(w.float()).all() for w in weights.values())
    assert weights["stem.weight"].dtype == torch.float32  # autocast leaves the weights in fp32


def test_channels_last_model_really_is_channels_last(tiny_recipe):
    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.models import build_model

    recipe = resolve(tiny_recipe, ["runtime.channels_last=true"])
    splits = load_dataset(recipe.data, torch.device("cpu"), 0)
    model = build_model(recipe.model, splits.image_shape, splits.n_classes).to(memory_format=torch.channels_last)
    assert model.stem.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_ebjdat_trains_under_torch_compile(tiny_recipe):
    recipe = resolve(tiny_recipe, _arm("ebjdat", "jempp") + SHORT + [
        "runtime.compile=true", "train.max_steps=3", 'run.name="compiled"'])
    result = run(recipe, str(tiny_recipe))
    assert result.status == "finished"
    compiled = _finite_losses(result.run_dir)
    eager = run(resolve(tiny_recipe, _arm("ebjdat", "jempp") + SHORT + ["train.max_steps=3", 'run.name="eager"']),
                str(tiny_recipe))
    # the same steps from the same seed: compiled and eager agree to float tolerance
    assert compiled == pytest.approx(_finite_losses(eager.run_dir), rel=1e-3, abs=1e-3)
