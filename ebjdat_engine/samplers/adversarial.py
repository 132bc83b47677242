"""Attacks used *inside* training: Madry PGD, TRADES' inner max, and EB-JDAT's ascent.

All budgets here are floats in **pixel units of [0, 1] images** — the models normalise
internally, so an ε of 8/255 is the standard 8/255. The "reference" profile of the recipe writes
EB-JDAT's budgets in the released code's [-1, 1] units (ε = 8/255 there is 4/255 in pixels,
ALGORITHMS.md §0, §4.5); converting them (pixel = value / 2) is the caller's job, not this
module's. Adversarial examples ``x̃`` come back as detached fp32 tensors in [0, 1].

The caller picks the BatchNorm mode (:func:`~.common.bn_mode`; EB-JDAT and TRADES: eval); these
functions freeze the parameters for the loop and take input gradients with ``autograd.grad``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .common import (
    AutocastFactory,
    fp32_leaf,
    frozen_params,
    input_grad,
    l2_normalize,
    per_sample_norm,
    rand_like,
    randn_like,
)

NORMS = ("linf", "l2")


def _check_budget(norm: str, eps: float, step_size: float, steps: int) -> None:
    """User-facing checks of an attack's budget."""
    if norm not in NORMS:
        raise ValueError(f"attack norm must be 'linf' or 'l2', got {norm!r}")
    if eps < 0 or step_size < 0:
        raise ValueError(f"attack eps ({eps}) and step size ({step_size}) must be non-negative")
    if steps < 0:
        raise ValueError(f"attack steps must be >= 0, got {steps}")


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """``x̃`` projected onto the ε-ball around `x` (ℓ∞: per-pixel clamp; ℓ2: per-sample rescale of
    ``x̃ - x`` to norm ≤ ε), then clipped to [0, 1].

    The clip never leaves the ball: `x` lies in [0, 1], so clipping a coordinate only moves it
    towards `x`.
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        scale = (eps / per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * scale
    else:
        raise ValueError(f"attack norm must be 'linf' or 'l2', got {norm!r}")
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, norm: str = "linf",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random point of the ε-ball around `x`, clipped to [0, 1].

    ℓ∞: ``x + U(-ε, ε)`` per pixel. ℓ2: a uniformly random direction with a radius drawn
    uniformly from [0, ε] (Madry et al.'s convention; not uniform in the ball's volume).
    """
    if norm == "linf":
        delta = (2.0 * rand_like(x, generator) - 1.0) * eps
    elif norm == "l2":
        direction = l2_normalize(randn_like(x, generator))
        radius = torch.rand(x.shape[0], generator=generator, device=x.device) * eps
        delta = direction * radius.view(-1, *([1] * (x.dim() - 1)))
    else:
        raise ValueError(f"attack norm must be 'linf' or 'l2', got {norm!r}")
    return (x + delta).clamp(0.0, 1.0)


#: Alias for the attacks whose `random_start` keyword argument shadows the function's name.
_random_start = random_start


def _ascent_direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size: sign(g) for ℓ∞, g/‖g‖₂ per sample for ℓ2."""
    return g.sign() if norm == "linf" else l2_normalize(g)


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str = "linf",
        eps: float, step_size: float, steps: int, random_start: bool = True,
        autocast: AutocastFactory = contextlib.nullcontext,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Madry et al.'s PGD on the cross-entropy: ``x̃ = argmax_{‖x̃ - x‖ ≤ ε} CE(l(x̃), y)`` (approx.).

    Start at a random point of the ball (if `random_start`, see :func:`random_start`) or at x;
    then `steps` times ``x̃ ← Π_ε(x̃ + α·d)``, with ``d = sign(∇CE)`` (ℓ∞) or the per-sample
    L2-normalised gradient (ℓ2), α = `step_size`, Π_ε = :func:`project` (ball, then [0, 1]).
    ``eps == 0`` returns a copy of x. DAT's discriminative AT: ℓ2, ε = 0.5, α = 0.1, 10 steps,
    no random start (ALGORITHMS.md §7.3). Returns ``x̃``, detached fp32.
    """
    _check_budget(norm, eps, step_size, steps)
    x = x.detach().to(torch.float32)
    if eps == 0:
        return x.clone()
    x_adv = _random_start(x, eps, norm, generator) if random_start else x.clone()
    with frozen_params(model):
        for _ in range(steps):
            x_adv = fp32_leaf(x_adv)
            with autocast():
                logits = model(x_adv)
            g = input_grad(F.cross_entropy(logits.float(), y, reduction="sum"), x_adv)
            x_adv = project(x_adv.detach() + step_size * _ascent_direction(g, norm), x, eps, norm)
    return x_adv.detach()


def trades_kl(logits_adv: torch.Tensor, probs_clean: torch.Tensor) -> torch.Tensor:
    """TRADES' ``Σ_i KL(softmax(l(x_i)) ‖ softmax(l(x̃_i)))`` (sum reduction), computed in fp32.

    `probs_clean` = ``softmax(l(x))`` (no grad); the KL's gradient flows through `logits_adv`.
    """
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), probs_clean, reduction="sum")


def trades_attack(model: torch.nn.Module, x: torch.Tensor, *, eps: float, step_size: float,
                  steps: int, autocast: AutocastFactory = contextlib.nullcontext,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES' inner max (Zhang et al. 2019; WEAT, ALGORITHMS.md §6): ℓ∞ PGD on
    ``Σ_i KL(softmax(l(x_i)) ‖ softmax(l(x̃_i)))`` with no label.

    Start ``x̃ = x + 0.001·N(0, I)`` (clipped to [0, 1] here, so the model never sees an
    out-of-range pixel; the reference leaves the start unclipped), then `steps` times
    ``x̃ ← Π_ε(x̃ + α·sign(∇KL))``. Returns ``x̃``, detached fp32.
    """
    _check_budget("linf", eps, step_size, steps)
    x = x.detach().to(torch.float32)
    with torch.no_grad(), autocast():
        clean_logits = model(x)
    probs_clean = F.softmax(clean_logits.float(), dim=1)
    x_adv = (x + 0.001 * randn_like(x, generator)).clamp(0.0, 1.0)
    with frozen_params(model):
        for _ in range(steps):
            x_adv = fp32_leaf(x_adv)
            with autocast():
                logits = model(x_adv)
            g = input_grad(trades_kl(logits, probs_clean), x_adv)
            x_adv = project(x_adv.detach() + step_size * g.sign(), x, eps, "linf")
    return x_adv.detach()


def logit_cosine_distance(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """EB-JDAT's "perception loss" ``D(x, x̃) = Σ_i ‖ l(x_i)/‖l(x_i)‖ − l(x̃_i)/‖l(x̃_i)‖ ‖²``.

    A cosine-type distance between *logit vectors* (= 2 − 2·cos), summed over the batch; fp32.
    """
    ref = F.normalize(ref_logits.float(), dim=1)
    cur = F.normalize(logits.float(), dim=1)
    return (ref - cur).pow(2).sum()


#: Objectives of EB-JDAT's inner max (the recipe's `adversary.objective`, 'auto' resolved).
EBJDAT_OBJECTIVES = ("logit_cosine", "ce_cosine", "ce", "energy")
#: The objectives that read the clean reference logits (through D).
USES_REFERENCE = ("logit_cosine", "ce_cosine")


def ebjdat_objective(logits: torch.Tensor, ref_logits: torch.Tensor | None, y: torch.Tensor,
                     objective: str = "logit_cosine") -> torch.Tensor:
    """The scalar J that EB-JDAT's inner max ascends (ALGORITHMS.md §4.2 (a), §4.3, §11.2).

    With f(x) = logsumexp l(x) and the energy E = -f (ALGORITHMS.md §0):

    * 'logit_cosine' (the released code): ``J = Σ_i l_{y_i}(x̃_i) + D(x, x̃)``. Its first term
      *raises* f(x̃, y) = l_y(x̃), i.e. lowers E(x̃, y): on its own it makes x̃ more confidently
      class y; what makes x̃ adversarial is mostly D, which turns the logit direction away (§4.3).
    * 'ce_cosine' (the released code's commented-out alternative): ``J = Σ_i CE(l(x̃_i), y_i) + D``.
    * 'ce' (Madry's PGD): ``J = Σ_i CE(l(x̃_i), y_i)``.
    * 'energy' (the paper's text, "reverse SGLD along the energy ascent"): ``J = Σ_i E(x̃_i) =
      -Σ_i logsumexp l(x̃_i)``: x̃ moves to where the model puts little density, without a label.

    `ref_logits` (the clean l(x)) is needed only by the two objectives with D.
    """
    logits = logits.float()
    if objective == "logit_cosine":
        first = logits.gather(1, y.long()[:, None]).sum()
    elif objective in ("ce_cosine", "ce"):
        first = F.cross_entropy(logits, y, reduction="sum")
    elif objective == "energy":
        return -torch.logsumexp(logits, dim=1).sum()
    else:
        raise ValueError(f"EB-JDAT objective must be one of {', '.join(EBJDAT_OBJECTIVES)}, got {objective!r}")
    if objective == "ce":
        return first
    if ref_logits is None:
        raise ValueError(f"objective {objective!r} needs the clean reference logits")
    return first + logit_cosine_distance(ref_logits, logits)


def ebjdat_ascent(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                  step_size: float, steps: int, objective: str = "logit_cosine",
                  project: bool = True, random_start: bool = True, noise: float = 0.0,
                  autocast: AutocastFactory = contextlib.nullcontext,
                  ref_logits: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """EB-JDAT's inner max ``sampleXadv`` (ALGORITHMS.md §4.2 (a), §11.2), whole batch at once.

    ``x̃ = clip(x + U(-ε, ε))`` (if `random_start`, else x); for the objectives with D,
    ``ref = l(x)`` without grad (or the given `ref_logits`, to reuse clean logits the caller
    already has); then K = `steps` times::

        x̃ ← x̃ + α·sign(∇_x̃ J(x̃)) + σ·N(0, I)  J = ebjdat_objective(l(x̃), ref, y, objective)
        x̃ ← x + clamp(x̃ - x, -ε, ε)          only if `project` (the "corrected" profile)
        x̃ ← clip(x̃, 0, 1)

    σ = `noise` (0 by default, as in the released code) makes the 'energy' ascent the paper's
    "reverse SGLD". ``project=False`` reproduces the released code, which has no ε-ball: only the
    step budget bounds x̃, ``‖x̃ - x‖∞ ≤ ε + K·α``. ε, α and σ are pixel units here (the
    reference's 8/255 and 2/255 in [-1, 1] units are 4/255 and 1/255 pixels; the caller
    converts). The released code's 2-image micro-batches change nothing mathematically (J is a
    per-sample sum, BN in eval mode) and are not reproduced. Returns ``x̃``, detached fp32.
    """
    _check_budget("linf", eps, step_size, steps)
    if objective not in EBJDAT_OBJECTIVES:
        raise ValueError(f"EB-JDAT objective must be one of {', '.join(EBJDAT_OBJECTIVES)}, got {objective!r}")
    if noise < 0:
        raise ValueError(f"ascent noise must be >= 0, got {noise}")
    x = x.detach().to(torch.float32)
    if objective in USES_REFERENCE:
        if ref_logits is None:
            with torch.no_grad(), autocast():
                ref_logits = model(x)
        ref_logits = ref_logits.detach().float()
    x_adv = _random_start(x, eps, "linf", generator) if random_start else x.clone()
    with frozen_params(model):
        for _ in range(steps):
            x_adv = fp32_leaf(x_adv)
            with autocast():
                logits = model(x_adv)
            g = input_grad(ebjdat_objective(logits, ref_logits, y, objective), x_adv)
            x_adv = x_adv.detach() + step_size * g.sign()
            if noise:
                x_adv = x_adv + noise * randn_like(x_adv, generator)
            if project:
                x_adv = x + (x_adv - x).clamp(-eps, eps)
            x_adv = x_adv.clamp(0.0, 1.0)
    return x_adv.detach()
