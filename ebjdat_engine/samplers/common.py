"""Shared machinery of the samplers and attacks: frozen parameters, BatchNorm mode, input gradients.

Every sampler (SGLD, PYLD, generative PGD) and every attack (PGD, TRADES, EB-JDAT's ascent) is a
loop of "forward, gradient w.r.t. the *input*, step". Three habits keep those loops cheap and
correct, and live here so that each loop states them in one line:

* :func:`frozen_params` turns ``requires_grad`` off on the model's parameters for the loop, so
  autograd neither stores what the weight gradients need nor launches their kernels, and no
  ``.grad`` is ever written into the parameters (the optimiser's next step must not see them).
* :func:`bn_mode` puts BatchNorm into 'train' (batch statistics, the JEM line's sampler) or 'eval'
  (running statistics, EB-JDAT's attack) for the loop and restores every module's own flag after.
* :func:`sampling_network` does both and hands the loop the network to run: in eval mode the
  model with its BatchNorms folded into its convolutions (``models/fold.py``, the same function,
  cheaper), in train mode the model itself.
* :func:`input_grad` takes ``∂J/∂x`` with ``torch.autograd.grad(..., inputs=x)`` — never
  ``.backward()`` — so nothing accumulates anywhere else.

Images are fp32 pixels in [0, 1]; the network may run under autocast (a zero-argument factory
returning a context manager), but gradients w.r.t. the fp32 input come back in fp32.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn

from ..models.fold import folded_view

#: A zero-argument callable returning a context manager to run model forwards in, e.g.
#: ``lambda: torch.autocast("cuda", dtype=torch.bfloat16)``; default ``contextlib.nullcontext``.
AutocastFactory = Callable[[], ContextManager]

#: Guard against dividing by a zero gradient norm (a per-sample L2 normalisation of 0 stays 0).
NORM_EPS = 1e-12


@contextlib.contextmanager
def frozen_params(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, no parameter of `model` requires grad; each flag is restored afterwards.

    Sampler and attack loops only need ``∂/∂x``: with frozen parameters autograd skips the
    weight-gradient kernels and never writes ``.grad``. Nesting is safe (each level restores what
    it found), and flags are restored even when the block raises.
    """
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextlib.contextmanager
def bn_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Within the block `model` is in `mode` ('train' or 'eval'); every submodule's own
    ``training`` flag is restored afterwards.

    'train' = BatchNorm uses (and updates the running averages with) batch statistics, as the JEM
    line's samplers do; 'eval' = running statistics, as EB-JDAT's ``sampleXadv`` does
    (ALGORITHMS.md §4.2, §11.1 ``sampler_bn_mode`` / ``adv_bn_mode``).
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"bn mode must be 'train' or 'eval', got {mode!r}")
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(mode == "train")
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


@contextlib.contextmanager
def sampling_network(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    """:func:`bn_mode` and :func:`frozen_params` for a sampler or attack loop; yields the network
    the loop runs: in 'eval' mode :func:`~ebjdat_engine.models.fold.folded_view` (the BatchNorms
    folded into their convolutions, refreshed from the live weights; the model itself when it
    cannot be folded), in 'train' mode the model (batch statistics cannot be folded)."""
    with bn_mode(model, mode), frozen_params(model):
        yield folded_view(model) if mode == "eval" else model


def input_grad(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``∂ objective / ∂x`` for a scalar `objective` built from the leaf `x` (same dtype as `x`).

    Uses ``torch.autograd.grad(..., inputs=x)`` so no gradient lands in any ``.grad``.
    """
    (grad,) = torch.autograd.grad(objective, inputs=x)
    return grad


def fp32_leaf(x: torch.Tensor) -> torch.Tensor:
    """A detached fp32 copy of `x` that requires grad: the start of one gradient step."""
    return x.detach().to(torch.float32).requires_grad_(True)


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like `x` (fp32, on `x`'s device), from `generator` or the
    global torch RNG (``torch.randn_like`` takes no generator)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)


def rand_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(0, 1) noise shaped like `x` (fp32, on `x`'s device), from `generator` or the global RNG."""
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)


def per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each sample of a batch (N, ...), shaped (N, 1, ..., 1) for broadcasting."""
    norms = t.flatten(1).norm(dim=1)
    return norms.view(-1, *([1] * (t.dim() - 1)))


def l2_normalize(t: torch.Tensor) -> torch.Tensor:
    """Each sample of `t` divided by its L2 norm (a zero sample stays zero)."""
    return t / per_sample_norm(t).clamp_min(NORM_EPS)
