"""EB-JDAT: energy-based joint distribution adversarial training (ALGORITHMS.md §4, §11).

One iteration, read top to bottom in `draw` and `terms` below (ALGORITHMS.md §11.2), on a
JEM-family base (`method.base`: its p(x) sampler; f = logsumexp l, E = -f):

    x_q = the base's p(x) sampler (SGLD / PYLD from the replay buffer)
    x̃   = EB-JDAT ascent from x within ε (the inner max; §4.2 (a)), ascending
          `adversary.objective`: 'energy' E(x̃) (the paper's text), 'logit_cosine' l_y + D
          (the released code), 'ce_cosine' CE + D, or 'ce' (Madry)
    h1  = h1_px = -(mean f(x_p) - mean f(x_q))   weight w1   (+ w1·λ · h1_l2, the stabiliser)
    ce  = CE(l(x), y)                            weight w_ce
    h2  = h2_adv, `method.h2`, weight w2:
          'align'     mean_i [E(x̃_i) - E(x_i)]  = mean_i [f(x_i) - f(x̃_i)]: the paper's
                      min_θ E[max_x̃ E(x̃) - E(x)], each x̃_i paired with the clean x_i it came
                      from; its gradient LOWERS E(x̃) (and raises E(x)): x̃ pulled back to data
          'negatives' -(mean f(x_p) - mean f(x̃)): the released code; x̃ joins the sampler's
                      negatives against the unlabelled p(x) batch, so it RAISES E(x̃)
    h3  = h3_ce_adv = CE(l(x̃), y)               weight w3
    L   = w1·h1_px + w1·λ·h1_l2 + w_ce·ce + w2·h2_adv + w3·h3_ce_adv

Which of these is EB-JDAT: the paper's text says the inner max ascends the energy and h2 brings
x̃ back to low energy; under the standard sign E = -f the released code does the opposite in
both places (ALGORITHMS.md §4.3). `"auto"` (the default of both keys) gives the text under the
`standard` profile and the released code under `reference`; every `start` event records which.

The `standard` profile reads ε in pixel units and projects onto the ε-ball every step; the
`reference` profile reproduces the released code: [-1, 1] units (8/255 is 4/255 in pixels), no
projection, and on the JEM++ base the attack steps K tied to PYLD's inner steps N (§4.5.3).

BatchNorm statistics seen by the ascent (both profiles). The ascent runs in eval mode
(`adversary.bn_mode = "eval"`), i.e. it normalises with the running statistics, and with the JEM
line's momentum 0.9 those are essentially the last batch forwarded in train mode (§0). In the
released code that batch is the clean labelled one: `classify(x_lab)` runs in train mode just
before `sampleXadv`. Here `draw` runs the p(x) sampler (train mode) right before the ascent, so
the running statistics would be the *generated* batch's, a different input distribution (on the
quickstart model, eval-mode clean accuracy during the ascent fell from 84 % to 26 %). `draw`
therefore forwards the clean batch x once more in train mode, without grad and with the
parameters frozen, between the sampler and the ascent: that restores the reference order's
running statistics (0.9·clean + 0.1·previous). The ascent's reference logits l(x) are still
computed by the ascent in eval mode, with those refreshed statistics, as in the released code
(the train-mode logits of the refresh use batch statistics and would differ). The refresh is
skipped, at no cost, when the attack runs in train mode or the model has no BatchNorm layer
tracking running statistics in train mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import free_energy
from ..recipe import AdversaryConfig, MethodConfig, SamplerConfig, resolved_h2, resolved_objective
from ..samplers import ebjdat_ascent, frozen_params, sampling_network
from .base import Batch, MethodContext, Samples, StepOutput, clean_forward
from .budgets import pixel_budget
from .jem import JEMFamily


class EBJDAT(JEMFamily):
    """EB-JDAT on the base named by `method.base`."""

    populations = ("clean", "adversarial", "generated")

    def __init__(self, cfg: MethodConfig, sampler: SamplerConfig, adversary: AdversaryConfig,
                 ctx: MethodContext):
        super().__init__(cfg.base, cfg, sampler, ctx)
        self.name = "ebjdat"
        self.adversary = adversary
        self.ctx = ctx
        self.budget = pixel_budget(adversary, cfg.profile)
        self.attack_steps = adversary.steps
        if cfg.profile == "reference" and cfg.base == "jempp":
            self.attack_steps = sampler.pyld_inner_steps  # one flag, --in_steps, set both
        self.objective = resolved_objective(adversary.objective, cfg.profile)
        self.h2_form = resolved_h2(cfg.h2, cfg.profile)
        self.labels = {"profile": cfg.profile, "base": cfg.base, "attack_steps": self.attack_steps,
                       "objective": self.objective, "h2": self.h2_form, "ascent_noise": adversary.noise,
                       **self.budget.describe()}

    def draw(self, model: nn.Module, batch: Batch) -> Samples:
        x_q = self.sampler(model, batch.x_px.shape[0])                       # the p(x) sampler
        if self.adversary.bn_mode == "eval" and _updates_bn_running_stats(model):
            # the reference order: the clean batch, not x_q, sets the running statistics the
            # eval-mode ascent normalises with (module docstring)
            with torch.no_grad(), frozen_params(model), self.ctx.autocast():
                model(batch.x)
        with sampling_network(model, self.adversary.bn_mode) as net:         # the inner max
            x_adv = ebjdat_ascent(net, batch.x, batch.y, eps=self.budget.eps,
                                  step_size=self.budget.step_size, steps=self.attack_steps,
                                  objective=self.objective, project=self.budget.project,
                                  random_start=self.adversary.random_start, noise=self.adversary.noise,
                                  autocast=self.ctx.autocast)
        return Samples(x_q=x_q, x_adv=x_adv)

    def terms(self, model: nn.Module, batch: Batch, samples: Samples, second_pass: bool = False) -> StepOutput:
        terms, f_p, f_q, fp = self.h1(model, batch, samples.x_q, second_pass)   # h1: p(x), as the base
        # ce: the classifier on the clean labelled batch
        logits, terms["ce"], acc = clean_forward(model, batch)
        # h2: the energy of x̃ against the data's
        logits_adv = model(samples.x_adv).float()
        f_adv = free_energy(logits_adv)
        if self.h2_form == "align":   # mean_i E(x̃_i) - E(x_i), each x̃_i paired with its clean x_i
            terms["h2_adv"] = (free_energy(logits) - f_adv).mean()
        else:                         # 'negatives': x̃ against the p(x) batch, as CD negatives
            terms["h2_adv"] = -(fp - f_adv.mean())
        # h3: the classifier on x̃
        terms["h3_ce_adv"] = F.cross_entropy(logits_adv, batch.y)
        acc_adv = (logits_adv.detach().argmax(1) == batch.y).float().mean()
        return StepOutput(
            terms=terms,
            stats={"acc": acc, "acc_adv": acc_adv, "f_data": f_p.detach().mean(),
                   "f_gen": f_q.detach().mean(), "f_adv": f_adv.detach().mean()},
            energies={"clean": -f_p.detach(), "adversarial": -f_adv.detach(), "generated": -f_q.detach()},
            generative_loss=terms["h1_px"].detach(),
        )


def _updates_bn_running_stats(model: nn.Module) -> bool:
    """Whether a forward of `model` as it stands updates some BatchNorm running statistics
    (a BatchNorm layer in train mode that tracks them)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
               for m in model.modules())
