"""Dual Adversarial Training, DAT (Yin et al. 2025; ALGORITHMS.md §7).

    L = w1 · h1_bce + w3 · h3_ce_adv + w_ce · CE(l(x), y)
    h1_bce = BCE([f(x); f(x_neg)], [1; 0]),  h3_ce_adv = CE(l(x̃), y)

f = logsumexp l. Negatives x_neg: T steps of L2-normalised ascent on l_y from seed images
(`sampler.seed_folder`: out-of-distribution images, as DAT seeds from TinyImages; uniform noise
when none is given), T raised by the AUC curriculum. x̃: PGD on CE with the recipe's adversary
(DAT: L2, ε 0.5, step 0.1, 10 steps, no random start), started from the classifier stream's view
`x_clf` (AutoAugment + Cutout under `data.clf_augment` / `data.cutout`: DAT's decoupled
augmentation); the energy term f(x) sees the plain crop / flip stream. DAT itself has no clean
CE: its recipe sets w_ce = 0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import free_energy
from ..recipe import AdversaryConfig, MethodConfig, SamplerConfig
from ..samplers import AucCurriculum, generative_pgd, pgd, sampling_network
from .base import Batch, Method, MethodContext, Samples, StepOutput, clean_forward, energies_of, loss_weights
from .budgets import pixel_budget


class DAT(Method):
    name = "dat"
    populations = ("clean", "adversarial", "generated")

    def __init__(self, cfg: MethodConfig, sampler: SamplerConfig, adversary: AdversaryConfig,
                 ctx: MethodContext):
        self.sampler_cfg = sampler
        self.adversary = adversary
        self.ctx = ctx
        self.budget = pixel_budget(adversary, "standard")
        self.curriculum = AucCurriculum(sampler.n_steps, sampler.auc_threshold, sampler.auc_window,
                                        ctx.device)
        self.cadence = sampler.auc_every
        self.weights = loss_weights(cfg)
        seeds = (f"seeds from the image folder {sampler.seed_folder}" if sampler.seed_folder
                 else "uniform-noise seeds")
        self.labels = {"norm": adversary.norm, "steps": adversary.steps, **self.budget.describe(),
                       "negatives": f"{seeds}, L2 ascent on l_y"}

    def draw(self, model: nn.Module, batch: Batch) -> Samples:
        a = self.adversary
        with sampling_network(model, "eval") as net:
            # out-of-distribution images (sampler.seed_folder) or uniform noise
            seeds = batch.x_seed if batch.x_seed is not None else torch.rand_like(batch.x)
            x_neg = generative_pgd(net, seeds, batch.y, steps=self.curriculum.steps,
                                   step_size=self.sampler_cfg.step_size, autocast=self.ctx.autocast)
        # the classifier stream: its own view of the batch under decoupled augmentation
        x_clf = batch.x_clf if batch.x_clf is not None else batch.x
        with sampling_network(model, a.bn_mode) as net:
            x_adv = pgd(net, x_clf, batch.y, norm=a.norm, eps=self.budget.eps,
                        step_size=self.budget.step_size, steps=a.steps, random_start=a.random_start,
                        autocast=self.ctx.autocast)
        return Samples(x_adv=x_adv, x_neg=x_neg)

    def terms(self, model: nn.Module, batch: Batch, samples: Samples, second_pass: bool = False) -> StepOutput:
        logits, ce, acc = clean_forward(model, batch)
        f_real = free_energy(logits)
        f_neg = free_energy(model(samples.x_neg))
        scores = torch.cat([f_real, f_neg])
        targets = torch.cat([torch.ones_like(f_real), torch.zeros_like(f_neg)])
        h1_bce = F.binary_cross_entropy_with_logits(scores, targets)
        logits_adv = model(samples.x_adv).float()
        h3_ce_adv = F.cross_entropy(logits_adv, batch.y)
        acc_adv = (logits_adv.detach().argmax(1) == batch.y).float().mean()
        if not second_pass:
            self.curriculum.update(f_real.detach(), f_neg.detach())
        return StepOutput(
            terms={"h1_bce": h1_bce, "h3_ce_adv": h3_ce_adv, "ce": ce},
            stats={"acc": acc, "acc_adv": acc_adv},
            energies={"clean": -f_real.detach(), "adversarial": energies_of(logits_adv),
                      "generated": -f_neg.detach()},
            generative_loss=h1_bce.detach(),
        )

    def host_check(self) -> dict[str, Any]:
        return {"dat_T": self.curriculum.steps}

    def on_cadence(self, reduce) -> dict[str, Any] | None:
        """The AUC curriculum's check (every sampler.auc_every steps, agreed across ranks)."""
        if self.curriculum.advance(reduce):
            return {"dat_T": self.curriculum.steps}
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state["curriculum"])
