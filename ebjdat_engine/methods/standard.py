"""Standard training: cross-entropy on clean labelled images (the baseline every method adds to)."""

from __future__ import annotations

from torch import nn

from ..recipe import MethodConfig
from .base import Batch, Method, Samples, StepOutput, clean_forward, energies_of, loss_weights


class Standard(Method):
    """L = w_ce · CE(l(x), y)."""

    name = "standard"

    def __init__(self, cfg: MethodConfig):
        self.weights = loss_weights(cfg)

    def terms(self, model: nn.Module, batch: Batch, samples: Samples, second_pass: bool = False) -> StepOutput:
        logits, ce, acc = clean_forward(model, batch)
        return StepOutput(terms={"ce": ce}, stats={"acc": acc}, energies={"clean": energies_of(logits)})
