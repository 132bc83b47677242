"""The p(x) samplers of the JEM line: SGLD (JEM, SADA-JEM) and PYLD-M-N (JEM++).

Both draw the negatives ``x_q`` of the contrastive-divergence surrogate
``L_px = -(mean f(x_data) - mean f(x_q))`` by **ascending** ``f(x) = logsumexp_y l_y(x)``, i.e.
*descending* the energy ``E(x) = -f(x)`` (ALGORITHMS.md §0, §1.2, §2.2, §3.2, §11.2-11.3).

Units. Step sizes, noise and gradient clamps are in the units of the model's **normalised** input
``x_n = (x - mean) / std`` (the JEM line's [-1, 1]), so the papers' numbers (α = 1, σ = 0.01,
clamp ±1, η = 0.2) carry over unchanged, while the samples themselves are fp32 pixels in [0, 1].
With ``x = std·x_n + mean``: ``∂f/∂x_n = std·∂f/∂x`` and a step ``Δx_n`` is ``Δx = std·Δx_n`` in
pixels; clipping to [0, 1] in pixels is clipping to [-1, 1] in x_n when mean = std = 0.5.

The model's train/eval (BatchNorm) mode is the caller's choice (:func:`~.common.bn_mode`); these
functions only freeze the parameters for the loop.
"""

from __future__ import annotations

import contextlib

import torch

from ..models.energy import free_energy
from .common import AutocastFactory, fp32_leaf, frozen_params, input_grad, randn_like


def _check_common(n_steps: int, input_std: float) -> None:
    """User-facing checks shared by both samplers."""
    if n_steps < 0:
        raise ValueError(f"sampler n_steps must be >= 0, got {n_steps}")
    if not input_std > 0:
        raise ValueError(f"input_std must be positive (the model's normaliser std), got {input_std}")


def _clamped_energy_grad(model: torch.nn.Module, x: torch.Tensor, *, grad_clamp: float, input_std: float,
                         autocast: AutocastFactory) -> torch.Tensor:
    """``g_n = clamp(∂Σf/∂x_n, -c, c)`` at `x` in normalised units (c = `grad_clamp`; 0: no
    clamp): one forward and one input-gradient of the whole network, the step both samplers take."""
    x = fp32_leaf(x)
    with autocast():
        logits = model(x)
    g = input_grad(free_energy(logits).sum(), x) * input_std  # ∂Σf/∂x_n = std·∂Σf/∂x
    return g.clamp(-grad_clamp, grad_clamp) if grad_clamp > 0 else g


def sgld(model: torch.nn.Module, x0: torch.Tensor, *, n_steps: int, step_size: float,
         noise_std: float, grad_clamp: float, input_std: float, clip: bool = True,
         autocast: AutocastFactory = contextlib.nullcontext,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Short-run SGLD from `x0` on ``f(x) = logsumexp l(x)`` (JEM §1.2 / SADA-JEM §3.2).

    Each of the `n_steps` steps, in normalised units::

        g_n = ∂/∂x_n Σ_i f(x_i)               (= input_std · ∂Σf/∂x)
        g_n = clamp(g_n, -c, c)                if grad_clamp = c > 0
        x_n ← x_n + α·g_n + σ·N(0, I)          α = step_size, σ = noise_std
        x_n ← clip(x_n) to the image range     if clip

    i.e. ascent on f (descent on E = -f), with JEM's decoupled step and noise (not a true Langevin
    step). In pixels the update is ``x ← x + input_std·(α·g_n + σ·ξ)`` clipped to [0, 1].
    JEM: α = 1, σ = 0.01, no clamp, no clip; SADA-JEM / EB-JDAT: α = 1, clamp ±1, σ = 0, clip.

    One forward + one input-gradient per step, the whole batch at once, no host sync. Returns the
    final samples ``x_q``, detached fp32.
    """
    _check_common(n_steps, input_std)
    x = x0.detach().to(torch.float32).clone()
    with frozen_params(model):
        for _ in range(n_steps):
            g = _clamped_energy_grad(model, x, grad_clamp=grad_clamp, input_std=input_std, autocast=autocast)
            step_n = step_size * g
            if noise_std > 0:
                step_n = step_n + noise_std * randn_like(x, generator)
            x = x + input_std * step_n  # Δx = std·Δx_n
            if clip:
                x = x.clamp_(0.0, 1.0)
    return x.detach()


def pyld(model: torch.nn.Module, x0: torch.Tensor, *, n_steps: int, inner_steps: int,
         inner_step: float, grad_clamp: float, input_std: float, noise_std: float = 0.0,
         autocast: AutocastFactory = contextlib.nullcontext,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """JEM++'s PYLD-M-N ("proximal YOPO Langevin", ALGORITHMS.md §2.2, §11.3) from `x0`.

    For each of the M = `n_steps` outer steps:

    1. one forward/backward of ``Σ_i f(x_i)`` through the network above the stem gives the
       co-state ``p = ∂Σf/∂h`` at the stem output ``h = stem(normalize(x))`` (JEM++'s conv1);
    2. N = `inner_steps` cheap inner steps on the "Hamiltonian" ``H(x) = Σ stem(normalize(x)) ⊙ p``::

           x_n ← clip(x_n + η·clamp(∇_{x_n} H, -c, c))      η = inner_step, c = grad_clamp

       (c = 0 turns the clamp off); clip is to the image range ([0, 1] pixels);
    3. optional Gaussian noise ``noise_std·N(0, I)`` in normalised units (JEM++: 0), then clip.

    How it is computed. The stem is a single convolution and the normaliser is affine, so
    ``∇_x H = J_stemᵀ p`` does not depend on x, and by the chain rule it *is* the input gradient
    ``∂Σf/∂x`` of the outer step's full pass. So each outer step is one forward and one
    input-gradient of the whole network at x (the co-state's pass, continued through the stem),
    and the N inner steps are N elementwise clamp-step-clip updates with that one gradient: the
    trajectory of the reference's literal inner loop (a clip after every sub-step), without its
    N stem forwards and backwards (on the quickstart, dropping them took a step from 111 to 93 ms;
    `tests/test_samplers.py` checks the two agree). JEM++'s optional full-gradient step
    (``sgld_lr > 0``, off by default) is not implemented.

    M forwards of the full network per call, no host sync. Returns the final samples ``x_q``,
    detached fp32.
    """
    _check_common(n_steps, input_std)
    if inner_steps < 0:
        raise ValueError(f"PYLD inner_steps N must be >= 0, got {inner_steps}")
    x = x0.detach().to(torch.float32).clone()
    with frozen_params(model):
        for _ in range(n_steps):
            if inner_steps > 0:
                # 1. + 2. ∇_{x_n} H = ∂Σf/∂x_n: the co-state's pass continued through the stem
                g = _clamped_energy_grad(model, x, grad_clamp=grad_clamp, input_std=input_std,
                                         autocast=autocast)
                step = input_std * inner_step * g                 # Δx in pixels, the same each sub-step
                for _ in range(inner_steps):
                    x = (x + step).clamp_(0.0, 1.0)
            # 3. optional Langevin noise (JEM++ default 0: PYLD is deterministic).
            if noise_std > 0:
                x = (x + input_std * noise_std * randn_like(x, generator)).clamp_(0.0, 1.0)
    return x.detach()
