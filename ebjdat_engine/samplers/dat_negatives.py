"""DAT's negatives: class-conditional "generative PGD" from seed images, and its AUC curriculum on T.

Dual Adversarial Training (ALGORITHMS.md §7.2) replaces SGLD by T steps of unconstrained,
L2-normalised gradient ascent on ``l_y(x) = f(x, y)`` (i.e. descent on ``E(x, y) = -l_y(x)``)
started from out-of-distribution seeds, and raises T by one each time the running AUC of
``f(x_real)`` against ``f(x_neg)`` reaches a threshold, so the negatives get harder only once the
energy separates the current ones from real data.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .common import AutocastFactory, fp32_leaf, frozen_params, input_grad, l2_normalize


def generative_pgd(model: torch.nn.Module, seeds: torch.Tensor, y: torch.Tensor, *, steps: int,
                   step_size: float,
                   autocast: AutocastFactory = contextlib.nullcontext) -> torch.Tensor:
    """T = `steps` steps of ``x ← clip(x + α·∇l_y(x)/‖∇l_y(x)‖₂, 0, 1)`` from `seeds`, α = `step_size`.

    Unconstrained (ε = ∞), per-sample L2-normalised, class-conditional on the target labels `y`,
    no noise, no buffer (DAT: α = 0.1 on CIFAR, model in eval mode — set by the caller).
    ``steps = 0`` returns a copy of the seeds. Pixel units of [0, 1]. Returns detached fp32.
    """
    if steps < 0:
        raise ValueError(f"generative PGD steps must be >= 0, got {steps}")
    x = seeds.detach().to(torch.float32).clone()
    with frozen_params(model):
        for _ in range(steps):
            x = fp32_leaf(x)
            with autocast():
                logits = model(x)
            objective = logits.float().gather(1, y.long()[:, None]).sum()  # Σ_i l_{y_i}(x_i)
            g = input_grad(objective, x)
            x = (x.detach() + step_size * l2_normalize(g)).clamp_(0.0, 1.0)
    return x.detach()


def pairwise_auc(f_real: torch.Tensor, f_neg: torch.Tensor) -> torch.Tensor:
    """AUC of scores `f_real` vs `f_neg`: mean over all pairs of ``[f_real > f_neg] + 0.5·[=]``.

    A 0-d fp32 tensor on the inputs' device (no host sync). 1 = every real image has a higher
    f (lower energy) than every negative; 0.5 = chance.
    """
    r = f_real.detach().float().reshape(-1, 1)
    n = f_neg.detach().float().reshape(1, -1)
    return ((r > n).float() + 0.5 * (r == n).float()).mean()


class AucCurriculum:
    """DAT's curriculum on T: running AUC of f(real) vs f(negatives); T += 1 when it reaches the
    threshold over >= window images.

    :meth:`update` accumulates each batch's :func:`pairwise_auc`, weighted by its number of real
    images, on the device (no sync). :meth:`advance`, called rarely by the loop, reads the
    accumulators once: when at least `window` images have been seen it decides and starts a new
    window — T rises by one (up to `max_steps`) if the window's mean AUC ≥ `threshold`. DAT keeps
    a sliding window of the last ⌈window / batch⌉ batch AUCs and checks it every step; these
    disjoint windows of ≥ `window` images (the accumulators are reset after every decision, also a
    failed one, so old batches never drag the mean) give the same rule with one sync per check.
    """

    def __init__(self, max_steps: int, threshold: float, window: int,
                 device: torch.device | str) -> None:
        if max_steps < 0:
            raise ValueError(f"curriculum max_steps must be >= 0, got {max_steps}")
        if window < 1:
            raise ValueError(f"AUC window must be >= 1 image, got {window}")
        self.max_steps = int(max_steps)
        self.threshold = float(threshold)
        self.window = int(window)
        self.device = torch.device(device)
        self.steps = 0
        self._auc_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._count = 0  # images seen in this window (host-side: batch sizes are known there)

    def update(self, f_real: torch.Tensor, f_neg: torch.Tensor) -> None:
        """Add one batch: ``AUC(f_real, f_neg) · n`` with n = number of real images (device-side)."""
        n = int(f_real.numel())
        self._auc_sum += pairwise_auc(f_real, f_neg).to(self._auc_sum) * n
        self._count += n

    def mean_auc(self) -> float:
        """Mean AUC of the current window (one host sync; NaN when it is empty)."""
        return float(self._auc_sum.item() / self._count) if self._count else float("nan")

    def advance(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """Decide once ≥ `window` images have been seen (one sync): returns True iff T rose.

        Below `window` images nothing happens; otherwise the window is reset and T becomes
        ``min(T + 1, max_steps)`` if its mean AUC ≥ `threshold`. At ``T = max_steps`` it stays
        there and False is returned. `reduce` (under torchrun: the mean over ranks, whose windows
        hold equal numbers of images) makes every rank take the same decision.
        """
        if self._count < self.window:
            return False
        mean = self._auc_sum / self._count
        if reduce is not None:
            mean = reduce(mean.reshape(1))[0]
        passed = float(mean.item()) >= self.threshold
        self._auc_sum.zero_()
        self._count = 0
        if passed and self.steps < self.max_steps:
            self.steps += 1
            return True
        return False

    def state_dict(self) -> dict:
        """T and the current window's accumulators (tensors and ints: ``weights_only`` loadable)."""
        return {"steps": self.steps, "auc_sum": self._auc_sum.detach().clone(), "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.steps = int(state["steps"])
        self._auc_sum = torch.as_tensor(state["auc_sum"], dtype=torch.float64).to(self.device).clone()
        self._count = int(state["count"])
