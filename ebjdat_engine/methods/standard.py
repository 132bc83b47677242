"""Standard training: cross-entropy on clean labelled images (the baseline every method adds to)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..models import energy
from ..recipe import MethodConfig
from .base import Batch, Stateless, StepOutput


class Standard(Stateless):
    """L = w_ce · CE(l(x), y)."""

    name = "standard"

    def __init__(self, cfg: MethodConfig):
        self.weights = {"ce": cfg.w_ce}

    def __call__(self, model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.x)
        ce = F.cross_entropy(logits.float(), batch.y)
        acc = (logits.detach().argmax(1) == batch.y).float().mean()
        return StepOutput(terms={"ce": ce}, stats={"acc": acc},
                          energies={"clean": energy(logits.detach())})
