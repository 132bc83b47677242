"""Generated samples of a trained run: drawn from its replay buffer or from fresh chains.

The JEM papers report FID on the replay buffer (ALGORITHMS.md §8.3); fresh short-run chains
from the init distribution are the stricter test. Every result records which it was, how many
steps, and any class conditioning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import DataSplits, load_dataset
from ..samplers import ReplayBuffer, bn_mode, generative_pgd, pyld, sgld
from .loading import LoadedRun

DEFAULT_FRESH_STEPS = 100


class ClassLogit(nn.Module):
    """l_k(x) as a one-column logit matrix: SGLD on logsumexp of it is SGLD on f(x, k) = l_k(x),
    the class-conditional negative energy -E(x, k)."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k
        self.stem = getattr(model, "stem", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.k:self.k + 1]


def buffer_of(run: LoadedRun) -> torch.Tensor | None:
    """The run's replay buffer (pixel units, fp32) if its method keeps one."""
    method_state = run.checkpoint.get("method") or {}
    sampler = method_state.get("sampler") if isinstance(method_state, dict) else None
    if isinstance(sampler, dict) and isinstance(sampler.get("buffer"), dict):
        return sampler["buffer"]["buffer"]
    return None


def draw_buffer(run: LoadedRun, n: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    buffer = buffer_of(run)
    if buffer is None:
        raise ValueError(f"method {run.recipe.method.name!r} keeps no replay buffer; use fresh chains")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(buffer), generator=g)[:n]
    return buffer[idx].float(), {"source": "replay buffer", "n": len(idx), "buffer_size": len(buffer),
                                 "filtering": "none"}


def fresh_chains(run: LoadedRun, n: int, device: torch.device, *, steps: int | None = None,
                 klass: int | None = None, seed: int = 0,
                 splits: DataSplits | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """New chains from the run's buffer-init distribution, run with the run's sampler settings
    (PYLD for JEM++ bases, DAT's generative PGD for DAT, SGLD otherwise), BatchNorm in eval mode.
    `splits`: the run's data when the caller has loaded it already (data-fitted inits need it)."""
    recipe, model = run.recipe, run.model.to(device).eval()
    s, m = recipe.sampler, recipe.method
    steps = steps if steps is not None else DEFAULT_FRESH_STEPS
    torch.manual_seed(seed)
    train_images = train_labels = None
    n_classes = int(run.checkpoint["n_classes"])
    if s.buffer_init in ("class_gaussian", "data_noise"):
        splits = splits or load_dataset(recipe.data, device, recipe.run.seed)
        train_images, train_labels = splits.train.images, splits.train.labels
    init = ReplayBuffer(max(n, n_classes), tuple(run.checkpoint["image_shape"]), device,
                        init=s.buffer_init, reinit_freq=0.0, train_images=train_images,
                        train_labels=train_labels, n_classes=n_classes)
    if klass is not None and s.buffer_init == "class_gaussian":
        x0 = init.class_draws(torch.full((n,), klass, dtype=torch.long, device=device))
    else:
        x0 = init.init_draws(n)
    base = m.base if m.name == "ebjdat" else m.name
    target = ClassLogit(model, klass) if klass is not None else model
    with bn_mode(model, "eval"):
        if m.name == "dat":
            y = torch.full((n,), klass if klass is not None else 0, dtype=torch.long, device=device)
            if klass is None:
                y = torch.arange(n, device=device) % n_classes
            x = generative_pgd(model, torch.rand_like(x0), y, steps=steps, step_size=s.step_size)
            algorithm = f"DAT generative PGD (L2 step {s.step_size}, {steps} steps, from uniform noise)"
        elif base == "jempp" and klass is None:
            x = pyld(model, x0, n_steps=steps, inner_steps=s.pyld_inner_steps, inner_step=s.pyld_step,
                     grad_clamp=s.grad_clamp, input_std=recipe.model.input_std, noise_std=s.noise_std)
            algorithm = f"PYLD ({steps} x {s.pyld_inner_steps} steps, eta {s.pyld_step})"
        else:
            x = sgld(target, x0, n_steps=steps, step_size=s.step_size, noise_std=s.noise_std,
                     grad_clamp=s.grad_clamp, input_std=recipe.model.input_std, clip=True)
            algorithm = (f"SGLD ({steps} steps, step {s.step_size}, noise {s.noise_std}, "
                         f"clamp {s.grad_clamp})")
    return x.detach(), {"source": "fresh chains", "n": n, "init": s.buffer_init, "steps": steps,
                        "algorithm": algorithm, "class": klass, "bn_mode": "eval", "seed": seed}
