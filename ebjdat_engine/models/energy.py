"""Energies of a classifier read as an energy-based model (JEM's convention, ALGORITHMS.md §0).

A classifier with logits ``l(x)`` defines ``f(x, y) = l_y(x)`` and the *free* (negative) energy
``f(x) = logsumexp_y l_y(x)``, with ``p_θ(x) ∝ exp(f(x))``. The energies proper are
``E(x) = -f(x)`` and ``E(x, y) = -l_y(x)``; lower energy means more likely. JEM-family code
returns ``f`` (not ``E``) from ``model(x)``, so the sign is spelled out on every helper here.

All helpers compute in float32 even when the logits come out of a bf16/fp16 autocast region:
logsumexp over low-precision logits loses several digits, which matters for the contrastive
``f(x_data) - f(x_neg)`` difference of the maximum-likelihood surrogate.
"""

from __future__ import annotations

import torch


def free_energy(logits: torch.Tensor) -> torch.Tensor:
    """``f(x) = logsumexp_y l_y(x)``, shape (N,): the *negative* energy, ``-E(x)``.

    Higher means more likely under ``p_θ(x) ∝ exp(f(x))``; this is what the JEM line's
    ``model(x)`` returns and what SGLD / PYLD ascend. Computed in float32.
    """
    return torch.logsumexp(logits.float(), dim=-1)


def energy(logits: torch.Tensor) -> torch.Tensor:
    """``E(x) = -f(x) = -logsumexp_y l_y(x)``, shape (N,): the energy, lower = more likely.

    Computed in float32.
    """
    return -free_energy(logits)


def class_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``E(x, y) = -l_y(x)``, shape (N,): the joint energy of image and label, lower = more likely.

    ``E(x, y) - E(x) = -log p(y | x)`` with ``p(y | x) = softmax(l(x))_y``. Computed in float32.
    """
    return -logits.float().gather(1, y.long()[:, None]).squeeze(1)
