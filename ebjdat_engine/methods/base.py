"""What every training method gives the loop: named loss terms, their weights, diagnostics.

The loop sums ``weights[name] * terms[name]`` and backpropagates; it never needs to know which
method it runs. Methods keep their own state (a replay buffer, a curriculum) and expose it via
``state_dict`` so that checkpoints hold it.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
import torch
from torch import nn


@attrs.frozen
class Batch:
    """One iteration's data: a labelled batch of [0, 1] images."""

    x: torch.Tensor
    y: torch.Tensor


@attrs.frozen
class StepOutput:
    """A method's answer for one iteration.

    terms:    unweighted scalar loss terms, by name (e.g. ``ce``, ``px``, ``h2``);
    stats:    detached scalar diagnostics (e.g. ``acc``), averaged over the logging window;
    energies: detached per-sample energies E(x) = -logsumexp l(x) by population
              (``clean``, ``adversarial``, ``generated``) for the energy monitor.
    """

    terms: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = attrs.field(factory=dict)
    energies: dict[str, torch.Tensor] = attrs.field(factory=dict)


class Method(Protocol):
    name: str
    weights: dict[str, float]

    def __call__(self, model: nn.Module, batch: Batch) -> StepOutput: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Stateless:
    """Mixin for methods with no state of their own."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
