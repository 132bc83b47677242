"""The JEM family: JEM, JEM++ and SADA-JEM (ALGORITHMS.md §1–3).

    L = w1 · h1_px + w1·λ · h1_l2 + w_ce · CE(l(x), y)
    h1_px = -(mean f(x_p) - mean f(x_q)),   h1_l2 = (mean f(x_p))² + (mean f(x_q))²

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

from ..models import free_energy
from ..recipe import MethodConfig, SamplerConfig
from ..samplers import PxSampler
from .base import Batch, Method, MethodContext, Samples, StepOutput, clean_forward, loss_weights


def px_sampler(base: str, sampler: SamplerConfig, ctx: MethodContext) -> PxSampler:
    """The p(x) sampler of a JEM-family base, sized and placed from the method context."""
    return PxSampler(base, sampler, image_shape=ctx.image_shape, device=ctx.device, n_classes=ctx.n_classes,
                     input_std=ctx.input_std, autocast=ctx.autocast, train_images=ctx.train_images,
                     train_labels=ctx.train_labels)


class JEMFamily(Method):
    """JEM / JEM++ / SADA-JEM by `base`; EB-JDAT (methods/ebjdat.py) adds x̃, h2 and h3."""

    populations = ("clean", "generated")
    needs_px = True

    def __init__(self, base: str, cfg: MethodConfig, sampler: SamplerConfig, ctx: MethodContext):
        self.name = base
        self.base = base
        self.uses_sam = base == "sadajem"
        self.sampler = px_sampler(base, sampler, ctx)
        self.weights = loss_weights(cfg)
        #: SAM's second pass keeps the λ term (module docstring), except in the reference profile
        self.l2_in_second_pass = cfg.profile != "reference"

    def draw(self, model: nn.Module, batch: Batch) -> Samples:
        return Samples(x_q=self.sampler(model, batch.x_px.shape[0]))

    def h1(self, model: nn.Module, batch: Batch, x_q: torch.Tensor,
           second_pass: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """h1, the p(x) term: contrastive divergence of the data x_p against the sampler's x_q,
        h1_px = -(mean f(x_p) - mean f(x_q)), and the λ stabiliser h1_l2 when this pass has it
        (module docstring). Returns (terms, f(x_p), f(x_q), mean f(x_p)); the means are formed once,
        so every term that uses them shares them in the graph (the gradients' rounding depends on it)."""
        f_p, f_q = free_energy(model(batch.x_px)), free_energy(model(x_q))
        fp, fq = f_p.mean(), f_q.mean()
        terms = {"h1_px": -(fp - fq)}
        if "h1_l2" in self.weights and (self.l2_in_second_pass or not second_pass):
            terms["h1_l2"] = fp ** 2 + fq ** 2
        return terms, f_p, f_q, fp

    def terms(self, model: nn.Module, batch: Batch, samples: Samples, second_pass: bool = False) -> StepOutput:
        terms, f_p, f_q, _ = self.h1(model, batch, samples.x_q, second_pass)
        logits, terms["ce"], acc = clean_forward(model, batch)
        return StepOutput(
            terms=terms,
            stats={"acc": acc, "f_data": f_p.detach().mean(), "f_gen": f_q.detach().mean()},
            energies={"clean": -f_p.detach(), "generated": -f_q.detach()},
            generative_loss=terms["h1_px"].detach(),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def on_rollback(self) -> None:
        self.sampler.buffer.reinitialize()


__all__ = ["JEMFamily", "px_sampler"]
