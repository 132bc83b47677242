"""Weight EMA (`train.ema`): an exponential moving average of the weights and BatchNorm buffers.

DAT evaluates an averaged copy of its weights (decay 0.999); so can any method here. The copy is
torch's own `AveragedModel` with `get_ema_multi_avg_fn` and `use_buffers=True`, so BatchNorm's
running statistics are averaged with the weights and the averaged network is usable as it is.

`AveragedModel.update_parameters` asks `n_averaged == 0` on the host every call, a device sync
per step on a GPU. The first update (a plain copy) is done through it once, at construction;
every later step applies the same multi-tensor EMA function directly to the cached lists of
tensors, on the device, with no host sync. Integer buffers (BatchNorm's `num_batches_tracked`)
follow the model.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..eval.loading import ema_label


class WeightEMA:
    """The averaged copy of `model`, updated by `update()` after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema must lie in (0, 1) to average, got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.update_parameters(model)  # W_0^EMA = W_0 (the one host check, at start)
        self.averaged.eval().requires_grad_(False)  # evaluated, never trained: attacks leave no .grad
        self._fn = get_ema_multi_avg_fn(decay)
        self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        ours = list(itertools.chain(self.averaged.module.parameters(), self.averaged.module.buffers()))
        theirs = list(itertools.chain(model.parameters(), model.buffers()))
        if len(ours) != len(theirs):
            raise ValueError("the EMA copy and the model have different tensors")
        pairs = list(zip(ours, theirs))
        self._float = ([a for a, b in pairs if a.is_floating_point()], [b for a, b in pairs if a.is_floating_point()])
        self._other = [(a, b) for a, b in pairs if not a.is_floating_point()]

    @property
    def label(self) -> str:
        return ema_label(self.decay)

    @property
    def module(self) -> nn.Module:
        """The averaged network (the same class and state-dict keys as the model)."""
        return self.averaged.module

    @torch.no_grad()
    def update(self) -> None:
        """W_EMA <- decay · W_EMA + (1 − decay) · W, in place on the device (no host sync)."""
        ours, theirs = self._float
        if ours:
            self._fn(ours, theirs, None)  # under no_grad: the parameters themselves, no detached copies
        for a, b in self._other:
            a.copy_(b)
        self.averaged.n_averaged += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "model": self.averaged.module.state_dict(),
                "n_averaged": self.averaged.n_averaged.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.module.load_state_dict(state["model"])  # in place: the cached lists stay valid
        self.averaged.n_averaged.copy_(state["n_averaged"])


__all__ = ["WeightEMA"]
