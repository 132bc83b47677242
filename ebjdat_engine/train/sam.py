"""Sharpness-Aware Minimisation as an optimizer wrapper (SADA-JEM, ALGORITHMS.md §3.1).

`first_step` moves the weights to w + e(w), the (adaptive) worst case within radius rho;
the caller recomputes the loss there and backpropagates; `second_step` restores w and takes
the base optimizer's step with the gradient from w + e(w). Adaptive SAM scales the ascent by
|w| (Kwon et al.), which SADA-JEM turns on (rho = 2).
"""

from __future__ import annotations

from typing import Any

import torch


class SAM(torch.optim.Optimizer):
    """Wraps a base optimizer; shares its param_groups, so lr schedules act on both."""

    def __init__(self, params: Any, base: type[torch.optim.Optimizer], rho: float = 2.0,
                 adaptive: bool = True, **base_kwargs: Any):
        if rho <= 0:
            raise ValueError(f"SAM rho must be > 0, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [((torch.abs(p) if group["adaptive"] else 1.0) * p.grad).norm(2)
                 for group in self.param_groups for p in group["params"] if p.grad is not None]
        return torch.stack(norms).norm(2)

    @torch.no_grad()
    def first_step(self) -> None:
        """w <- w + e(w), e(w) = rho * T(w)^2 g / ||T(w) g|| (T = |w| when adaptive, else 1)."""
        scale_norm = self._grad_norm() + 1e-12
        for group in self.param_groups:
            scale = group["rho"] / scale_norm
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale
                p.add_(e_w)
                self.state[p]["e_w"] = e_w

    @torch.no_grad()
    def second_step(self) -> None:
        """Restore w and step the base optimizer with the gradient taken at w + e(w)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
        self.base_optimizer.step()

    def step(self, closure: Any = None) -> None:  # pragma: no cover - the loop calls the two steps
        raise RuntimeError("SAM needs two passes: call first_step(), recompute the loss, second_step()")

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
