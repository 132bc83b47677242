"""The metrics window: the loss, its terms and the methods' statistics between two `metrics` events.

Every step adds its values on the device (no host sync); once per `train.log_every` the window
is read with one stack and one copy to the host (the loop's one regular sync), averaged over
the ranks, and cleared. The last step's loss and terms are reported as they are; the statistics
(`loss_avg`, `acc`, ...) as their mean over the window.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]


class MetricsWindow:
    """Device-side sums of one logging window (see the module docstring)."""

    def __init__(self) -> None:
        self.last: dict[str, torch.Tensor] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], stats: dict[str, torch.Tensor]) -> None:
        """One step's detached loss, its unweighted terms and its statistics (no host sync)."""
        self.last = {"loss": loss, **{f"terms/{k}": v.detach().float() for k, v in terms.items()}}
        window = {"loss_avg": loss, **{k: v.detach().float() for k, v in stats.items()}}
        for key, value in window.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self.steps += 1

    def read(self, reduce: Reduce) -> dict[str, Any] | None:
        """The window's fields (``loss``, ``loss_avg``, the statistics, ``terms``) as host floats,
        `reduce`d over the ranks, and the window cleared; None when no step was added."""
        if not self.steps:
            return None
        keys = list(self.last) + list(self._sums)
        stacked = torch.stack([v.float() for v in self.last.values()] + [v.float() for v in self._sums.values()])
        values = reduce(stacked).cpu().tolist()
        fields: dict[str, Any] = {}
        terms: dict[str, float] = {}
        for key, value in zip(keys, values):
            if key.startswith("terms/"):
                terms[key[6:]] = value
            elif key in self.last:
                fields[key] = value
            else:
                fields[key] = value / self.steps
        fields["terms"] = terms
        fields["window_steps"] = self.steps
        self.clear()
        return fields

    def clear(self) -> None:
        """Forget the window's sums (a rollback restarts it); the last step's values stay."""
        self._sums.clear()
        self.steps = 0


__all__ = ["MetricsWindow"]
