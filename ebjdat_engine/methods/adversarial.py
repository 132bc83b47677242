"""Adversarial-training baselines: PGD-AT (Madry et al.) and TRADES (Zhang et al.).

    PGD-AT:  L = w_ce · CE(l(x), y) + w3 · h3_ce_adv,  h3_ce_adv = CE(l(x̃), y),  x̃ = PGD on CE within ε
    TRADES:  L = w_ce · CE(l(x), y) + β · KL(p(·|x) ‖ p(·|x̃)),  x̃ = PGD on that KL

Madry's PGD-AT is w_ce = 0, w3 = 1 (recipes/baselines/pgd_at.toml). Attacks run with the
parameters frozen and BatchNorm in `adversary.bn_mode`; budgets are in pixel units.

With w_ce = 0 Madry's training forwards only x̃ in train mode, so the BatchNorm running statistics
used at evaluation are those of adversarial batches. PGD-AT then still forwards the clean batch for
its `acc` stat and clean energies, but without grad and with the running statistics frozen (batch
statistics, as before; nothing in the running averages): a clean train-mode forward would leave
them about half clean, half adversarial. TRADES needs the clean forward in its loss (the KL's
target), and its reference trains on both batches in train mode, so it is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.normalize import bn_stats_frozen
from ..recipe import AdversaryConfig, MethodConfig
from ..samplers import pgd, sampling_network, trades_attack
from .base import Batch, Method, MethodContext, Samples, StepOutput, clean_forward, energies_of, loss_weights
from .budgets import pixel_budget


class _Adversarial(Method):
    populations = ("clean", "adversarial")

    def __init__(self, cfg: MethodConfig, adversary: AdversaryConfig, ctx: MethodContext):
        self.adversary = adversary
        self.ctx = ctx
        self.budget = pixel_budget(adversary, "standard")
        self.labels = {"norm": adversary.norm, "steps": adversary.steps, **self.budget.describe()}
        self.weights = loss_weights(cfg)


class PGDAT(_Adversarial):
    name = "pgd_at"

    def draw(self, model: nn.Module, batch: Batch) -> Samples:
        a = self.adversary
        with sampling_network(model, a.bn_mode) as net:
            x_adv = pgd(net, batch.x, batch.y, norm=a.norm, eps=self.budget.eps,
                        step_size=self.budget.step_size, steps=a.steps, random_start=a.random_start,
                        autocast=self.ctx.autocast)
        return Samples(x_adv=x_adv)

    def terms(self, model: nn.Module, batch: Batch, samples: Samples, second_pass: bool = False) -> StepOutput:
        if self.weights["ce"] == 0.0:  # Madry: the clean batch must not touch the BN running stats
            with torch.no_grad(), bn_stats_frozen(model):
                logits, ce, acc = clean_forward(model, batch)
        else:
            logits, ce, acc = clean_forward(model, batch)
        logits_adv = model(samples.x_adv).float()
        h3_ce_adv = F.cross_entropy(logits_adv, batch.y)
        acc_adv = (logits_adv.detach().argmax(1) == batch.y).float().mean()
        return StepOutput(terms={"ce": ce, "h3_ce_adv": h3_ce_adv}, stats={"acc": acc, "acc_adv": acc_adv},
                          energies={"clean": energies_of(logits), "adversarial": energies_of(logits_adv)})


class TRADES(_Adversarial):
    name = "trades"   # linf only: the recipe layer refuses 'l2'

    def draw(self, model: nn.Module, batch: Batch) -> Samples:
        a = self.adversary
        with sampling_network(model, a.bn_mode) as net:
            x_adv = trades_attack(net, batch.x, eps=self.budget.eps, step_size=self.budget.step_size,
                                  steps=a.steps, autocast=self.ctx.autocast)
        return Samples(x_adv=x_adv)

    def terms(self, model: nn.Module, batch: Batch, samples: Samples, second_pass: bool = False) -> StepOutput:
        logits, ce, acc = clean_forward(model, batch)
        logits_adv = model(samples.x_adv).float()
        kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits.float(), dim=1),
                      reduction="batchmean")
        acc_adv = (logits_adv.detach().argmax(1) == batch.y).float().mean()
        return StepOutput(terms={"ce": ce, "kl": kl}, stats={"acc": acc, "acc_adv": acc_adv},
                          energies={"clean": energies_of(logits), "adversarial": energies_of(logits_adv)})
