"""BatchNorm running statistics around the attacks (issue 9): what EB-JDAT's eval-mode ascent
normalises with, and what Madry PGD-AT (w_ce = 0) leaves in the running averages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebjdat_engine.methods import Batch, MethodContext, build_method
from ebjdat_engine.models import build_model
from ebjdat_engine.recipe import resolve

torch.set_num_threads(1)

SHAPE, N_CLASSES = (1, 8, 8), 10


def _setup(tiny_recipe, overrides, seed=0):
    recipe = resolve(tiny_recipe, overrides)
    torch.manual_seed(seed)
    model = build_model(recipe.model, SHAPE, N_CLASSES)
    method = build_method(recipe.method, recipe.sampler, recipe.adversary, MethodContext(
        device=torch.device("cpu"), n_classes=N_CLASSES, image_shape=SHAPE,
        input_std=recipe.model.input_std))
    x = torch.rand(32, *SHAPE) * 0.3              # dark "clean" images
    y = torch.randint(0, N_CLASSES, (32,))
    batch = Batch(x, y, x_px=torch.rand(16, *SHAPE) * 0.3)
    model.train()
    return model, method, batch


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def _first_bn_stats(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and unbiased variance of the first BatchNorm's input for `x`."""
    h = model.stem(model.normalize(x))
    return h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), unbiased=True)


# --- EB-JDAT: the eval-mode ascent sees the clean batch's running statistics ------------------

# the released objective (l_y + D): its ascent also forwards the clean batch for D's reference logits
EBJDAT = ["method.name=ebjdat", "method.base=jem", "model.bn_momentum=0.9", "sampler.reinit_freq=0.0",
          "sampler.n_steps=1", "sampler.step_size=0.0", "sampler.buffer_size=64", "adversary.steps=2",
          'adversary.objective="logit_cosine"']


@pytest.fixture
def unfolded(monkeypatch):
    """The attack loops run the model itself, not its folded view (models/fold.py), so that hooks on
    its BatchNorms and forward see every pass; the view is the same function (test_folded_view)."""
    import ebjdat_engine.samplers.common as common

    monkeypatch.setattr(common, "folded_view", lambda model: model)


def test_ebjdat_ascent_normalises_with_the_clean_batch_statistics(tiny_recipe, unfolded):
    model, method, batch = _setup(tiny_recipe, EBJDAT)
    method.sampler.buffer.buffer.fill_(1.0)   # generated batch: white images, far from the clean ones
    bn = _batch_norms(model)[0]
    seen = []
    hook = bn.register_forward_pre_hook(
        lambda m, inp: seen.append(m.running_mean.clone()) if not m.training else None)
    try:
        samples = method.draw(model, batch)
    finally:
        hook.remove()
    assert torch.equal(samples.x_q, torch.ones_like(samples.x_q))  # the sampler stood still
    m_clean, _ = _first_bn_stats(model, batch.x)
    m_gen, _ = _first_bn_stats(model, samples.x_q)
    gap = (m_gen - m_clean).norm()
    assert len(seen) == 1 + 2                 # the reference logits l(x), then K = 2 ascent steps
    for running in seen:                      # 0.9 * clean + 0.1 * (0.9 * generated + 0.1 * 0)
        assert (running - m_clean).norm() < 0.15 * gap, (
            f"ascent running mean is {(running - m_clean).norm() / gap:.2f} of the clean-to-generated "
            f"gap away from the clean batch's statistics")
        torch.testing.assert_close(running, 0.9 * m_clean + 0.09 * m_gen, rtol=1e-4, atol=1e-5)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("overrides", "clean_forwards"), [
    ([], 2),                                   # the refresh (train mode) + the ascent's l(x)
    (['adversary.bn_mode="train"'], 1),        # the attack uses batch statistics: no refresh
    (['model.norm="none"'], 1),                # no BatchNorm: no refresh
    (['model.norm="group"'], 1),
])
def test_ebjdat_refreshes_bn_only_when_the_ascent_reads_running_statistics(tiny_recipe, overrides,
                                                                           clean_forwards, unfolded):
    model, method, batch = _setup(tiny_recipe, EBJDAT + overrides)
    calls = []
    hook = model.register_forward_pre_hook(lambda m, inp: calls.append(torch.equal(inp[0], batch.x)))
    try:
        method.draw(model, batch)
    finally:
        hook.remove()
    assert sum(calls) == clean_forwards


# --- PGD-AT: with w_ce = 0 only x̃ moves the running statistics (Madry) -----------------------

PGD_AT = ["method.name=pgd_at", "model.bn_momentum=0.5", "adversary.steps=2"]


def _one_pgd_at_step(tiny_recipe, w_ce):
    model, method, batch = _setup(tiny_recipe, PGD_AT + [f"method.w_ce={w_ce}"])
    bn = _batch_norms(model)[0]
    bn.running_mean.fill_(0.25)               # a recognisable start
    bn.running_var.fill_(2.0)
    r_mean, r_var = bn.running_mean.clone(), bn.running_var.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    samples = method.draw(model, batch)       # eval-mode attack: no running-stat update
    torch.testing.assert_close(bn.running_mean, r_mean)
    clean = _first_bn_stats(model, batch.x)   # with the parameters of the forward, before the step
    adv = _first_bn_stats(model, samples.x_adv)
    out = method.terms(model, batch, samples)
    loss = sum(method.weights[k] * v for k, v in out.terms.items() if method.weights[k] != 0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return bn, out, (r_mean, r_var), clean, adv


def test_madry_pgd_at_running_statistics_are_the_adversarial_batch_only(tiny_recipe):
    bn, out, (r_mean, r_var), clean, adv = _one_pgd_at_step(tiny_recipe, 0.0)
    # momentum 0.5: one update with x̃ alone; a clean update first would give 0.25·r + 0.25·c + 0.5·a
    torch.testing.assert_close(bn.running_mean, 0.5 * r_mean + 0.5 * adv[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, 0.5 * r_var + 0.5 * adv[1], rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.5                 # restored after the frozen clean forward
    # the clean accuracy and energies are still reported, from batch statistics
    assert set(out.terms) == {"ce", "h3_ce_adv"} and torch.isfinite(out.terms["ce"])
    assert 0.0 <= float(out.stats["acc"]) <= 1.0 and out.energies["clean"].shape == (32,)


def test_pgd_at_with_clean_ce_still_trains_bn_on_both_batches(tiny_recipe):
    bn, out, (r_mean, r_var), clean, adv = _one_pgd_at_step(tiny_recipe, 1.0)
    torch.testing.assert_close(bn.running_mean, 0.25 * r_mean + 0.25 * clean[0] + 0.5 * adv[0],
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, 0.25 * r_var + 0.25 * clean[1] + 0.5 * adv[1],
                               rtol=1e-4, atol=1e-5)
    assert out.terms["ce"].requires_grad
