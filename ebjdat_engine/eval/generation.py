"""Generated samples of a trained run: drawn from its replay buffer or from fresh chains.

The JEM papers report FID on the replay buffer (ALGORITHMS.md §8.3); fresh short-run chains
from the init distribution are the stricter test. Every result records which it was, how many
steps, and any class conditioning.

`init_baseline` draws from the same init distribution without running any chain: what "no
learning" scores under a generation metric (DESIGN.md §6), reported beside every such number.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data import DataSplits, load_dataset
from ..samplers import ReplayBuffer, bn_mode, generative_pgd, pyld, sgld
from .loading import LoadedRun


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


def buffer_slots(size: int, n: int, seed: int = 0) -> torch.Tensor:
    """The replay-buffer slots `ebjdat eval` scores: the first `n` of ``randperm(size)`` from a CPU
    generator seeded `seed`. The training monitor reads the same slots of the live buffer."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=g)[:n]


def draw_buffer(run: LoadedRun, n: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, Any]]:
    buffer = buffer_of(run)
    if buffer is None:
        raise ValueError(f"method {run.recipe.method.name!r} keeps no replay buffer; use fresh chains")
    idx = buffer_slots(len(buffer), n, seed)
    return buffer[idx].float(), {"source": "replay buffer", "n": len(idx), "buffer_size": len(buffer),
                                 "filtering": "none"}


def init_distribution(run: LoadedRun) -> str:
    """The distribution the run's samples start from: DAT's negatives start from uniform noise
    (`generative_pgd` on ``torch.rand``), every other method from ``sampler.buffer_init``."""
    return "uniform" if run.recipe.method.name == "dat" else run.recipe.sampler.buffer_init


def _init_buffer(run: LoadedRun, init: str, size: int, device: torch.device,
                 splits: DataSplits | None, generator: torch.Generator | None = None) -> ReplayBuffer:
    """A ReplayBuffer of the run's image shape whose `init_draws` are the run's init distribution."""
    recipe = run.recipe
    n_classes = int(run.checkpoint["n_classes"])
    train_images = train_labels = None
    if init in ("class_gaussian", "data_noise"):
        splits = splits or load_dataset(recipe.data, device, recipe.run.seed)
        train_images, train_labels = splits.train.images, splits.train.labels
    return ReplayBuffer(size, tuple(run.checkpoint["image_shape"]), device, init=init,
                        reinit_freq=0.0, train_images=train_images, train_labels=train_labels,
                        n_classes=n_classes, generator=generator)


def init_baseline(run: LoadedRun, n: int, device: torch.device, *, seed: int = 0,
                  splits: DataSplits | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """`n` fresh draws (fp32 [0, 1], on `device`) from the run's init distribution, no chain run:
    the no-learning baseline of a generation metric. 'class_gaussian' fits the per-class Gaussians
    on the run's train split, 'data_noise' perturbs its train images (``samplers/buffer.py``).
    Draws come from a private generator seeded with `seed` (the global RNG is left alone), so the
    baseline is reproducible and does not shift any other random number of the evaluation."""
    init = init_distribution(run)
    method = run.recipe.method.name
    generator = torch.Generator(device=device).manual_seed(seed)
    buffer = _init_buffer(run, init, 1, device, splits, generator)
    x = buffer.init_draws(n)
    if method == "dat":
        why = "DAT's negatives start from uniform noise"
    elif buffer_of(run) is not None:
        why = "the sampler's init"
    else:
        why = f"the init of the fresh chains; {method} trains no sampler"
    return x.detach(), {"source": f"{init} draws ({why})", "init": init, "n": int(n), "seed": seed}


def fresh_chains(run: LoadedRun, n: int, device: torch.device, *, steps: int | None = None,
                 klass: int | None = None, seed: int = 0,
                 splits: DataSplits | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """New chains from the run's buffer-init distribution, run with the run's sampler settings
    (PYLD for JEM++ bases, DAT's generative PGD for DAT, SGLD otherwise), BatchNorm in eval mode.
    `steps` defaults to the run's `sampler.n_steps`: the short run the model was trained with
    (longer chains than that overshoot on the quickstart: fd_ref 1.56 after 5 PYLD steps, 3.23
    after 10, class-Gaussian init 1.45). `splits`: the run's data when the caller has loaded it already (data-fitted
    inits need it)."""
    recipe, model = run.recipe, run.model.to(device).eval()
    s, m = recipe.sampler, recipe.method
    steps = steps if steps is not None else s.n_steps
    torch.manual_seed(seed)
    n_classes = int(run.checkpoint["n_classes"])
    init = _init_buffer(run, s.buffer_init, max(n, n_classes), device, splits)
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
    return x.detach(), {"source": "fresh chains", "n": n, "init": init_distribution(run), "steps": steps,
                        "algorithm": algorithm, "class": klass, "bn_mode": "eval", "seed": seed}


#: A chain whose fd_ref at the longest length is within this factor of its best length still
#: "generates"; beyond it, longer chains make the samples worse: a short-run refiner.
REFINER_MARGIN = 1.10


def chain_verdict(points: list[dict[str, Any]]) -> dict[str, Any]:
    """What a chain-length curve of fd_ref says about the model as a sampler.

    `points`: ``[{"steps": L, "fd_ref": v}, ...]`` with L = 0 (the init draws themselves) among
    them. 'none': no chain length beats its init; 'generator': some length beats the init and
    the longest chain is within REFINER_MARGIN of the best length (samples hold or improve as
    chains run on); 'short-run refiner': short chains beat the init but longer chains end worse
    than the best by more than that margin (the model refines its init, it does not hold a
    distribution its chains converge to)."""
    by_steps = {int(p["steps"]): float(p["fd_ref"]) for p in points if p.get("fd_ref") is not None}
    if 0 not in by_steps or len(by_steps) < 2:
        return {"verdict": None, "why": "needs the 0-step point (the init) and at least one chain length"}
    init = by_steps[0]
    chains = {k: v for k, v in by_steps.items() if k > 0}
    best_steps = min(chains, key=chains.get)
    longest = max(chains)
    best, last = chains[best_steps], chains[longest]
    if best >= init:
        verdict, why = "none", f"no chain length beats the init ({init:.3g})"
    elif last <= REFINER_MARGIN * best:
        verdict, why = "generator", (f"the longest chain ({longest} steps, {last:.3g}) is within "
                                     f"{REFINER_MARGIN - 1:.0%} of the best ({best_steps} steps, {best:.3g}), "
                                     f"init {init:.3g}")
    else:
        verdict, why = "short-run refiner", (f"best at {best_steps} steps ({best:.3g}, init {init:.3g}); "
                                             f"{longest} steps end at {last:.3g}, "
                                             f"{'worse than the init' if last >= init else 'drifting away'}")
    return {"verdict": verdict, "why": why, "best_steps": best_steps, "margin": REFINER_MARGIN}


def chain_length_curve(run: LoadedRun, lengths: list[int], n: int, device: torch.device,
                       score: Any, *, seed: int = 0,
                       splits: DataSplits | None = None) -> dict[str, Any]:
    """`score(x)` (a generation metric of a batch of samples, e.g. fd_ref) of `n` fresh chains of
    each length in `lengths`, every length started from the same init draws (`fresh_chains`
    seeds them with `seed`); 0 steps is the init draws themselves. Does the model generate, or
    only refine its init? :func:`chain_verdict` says."""
    points, algorithm = [], None
    for steps in sorted(set(int(k) for k in lengths)):
        x, info = fresh_chains(run, n, device, steps=steps, seed=seed, splits=splits)
        points.append({"steps": steps, "fd_ref": score(x)})
        algorithm = info["algorithm"]
    return {"points": points, "n": n, "seed": seed, "init": init_distribution(run),
            "sampler": algorithm, "bn_mode": "eval", **chain_verdict(points)}
