"""The JEM family: JEM, JEM++ and SADA-JEM (ALGORITHMS.md §1–3).

    L = w1 · [ -(mean f(x_p) - mean f(x_q)) ]  +  w1·λ · (mean f(x_p)² + mean f(x_q)²)
      + w_ce · CE(l(x), y)

with f = logsumexp l (the negative energy), x_p the p(x) stream, x_q the sampler's negatives.
JEM samples with SGLD from a uniform buffer without clipping; JEM++ with PYLD; SADA-JEM with
clamped SGLD and trains with SAM.

The λ stabiliser and SAM. SADA-JEM's code leaves the λ term out of SAM's second pass, and the
update is the second pass's gradient, so there λ only shapes the weight perturbation and never
acts on the update (harmless in SADA-JEM, whose λ defaults to 0). With λ > 0 as a stabiliser that
is no stabiliser at all: on the quickstart (digits, lr 0.05, λ 0.1) SADA-JEM's energies ran to
E ≈ -4000 by step 170 and the collapse detectors stopped the run, while with λ in both passes the
same run finished at 98 % test accuracy with mean energies near -2. So the `standard` profile
keeps λ in the second pass; the `reference` profile (EB-JDAT's released code) leaves it out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..recipe import MethodConfig, SamplerConfig
from .base import Batch, Method, MethodContext, StepOutput, clean_forward
from .generative import ALGORITHM, PxSampler


class JEMFamily(Method):
    """JEM / JEM++ / SADA-JEM by `base`."""

    populations = ("clean", "generated")
    needs_px = True

    def __init__(self, base: str, cfg: MethodConfig, sampler: SamplerConfig, ctx: MethodContext):
        self.name = base
        self.base = base
        self.uses_sam = base == "sadajem"
        self.sampler = PxSampler(ALGORITHM[base], sampler, ctx, clip=base != "jem")
        self.weights = {"px": cfg.w1, "ce": cfg.w_ce}
        #: SAM's second pass keeps the λ term (module docstring), except in the reference profile
        self.l2_in_second_pass = cfg.profile != "reference"
        if cfg.l2_energy:
            self.weights["l2"] = cfg.w1 * cfg.l2_energy

    def draw(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        return {"x_q": self.sampler(model, batch.x_px.shape[0])}

    def generative_terms(self, model: nn.Module, batch: Batch, x_q: torch.Tensor,
                         second_pass: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """The p(x) contrastive-divergence term; returns (terms, per-sample f, mean f(x_p))."""
        f_p = self._f(model, batch.x_px)
        f_q = self._f(model, x_q)
        fp, fq = f_p.mean(), f_q.mean()
        terms = {"px": -(fp - fq)}
        if "l2" in self.weights and (self.l2_in_second_pass or not second_pass):
            terms["l2"] = fp ** 2 + fq ** 2
        return terms, {"p": f_p, "q": f_q}, fp

    @staticmethod
    def _f(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(model(x).float(), dim=1)

    def terms(self, model: nn.Module, batch: Batch, samples: dict[str, torch.Tensor],
              second_pass: bool = False) -> StepOutput:
        gen, f, _ = self.generative_terms(model, batch, samples["x_q"], second_pass)
        logits, ce, acc = clean_forward(model, batch)
        return StepOutput(
            terms={**gen, "ce": ce},
            stats={"acc": acc, "f_data": f["p"].detach().mean(), "f_gen": f["q"].detach().mean()},
            energies={"clean": -f["p"].detach(), "generated": -f["q"].detach()},
            generative_loss=gen["px"].detach(),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def on_rollback(self) -> None:
        self.sampler.buffer.reinitialize()


__all__ = ["JEMFamily"]
