"""Every training method on digits: finite named terms, energy populations, SAM, profiles, collapse."""

from __future__ import annotations

import math

import pytest
import torch

from ebjdat_engine.recipe import RecipeError, resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import run

torch.set_num_threads(1)

SMALL = ["train.max_steps=3", "train.log_every=1", "monitor.every=3", "train.px_batch_size=16",
         "sampler.n_steps=2", "sampler.buffer_size=64", "adversary.steps=2",
         "sampler.auc_window=8", "eval.n=50", "monitor.samples_every=3"]

CASES = {
    "standard": (["method.name=standard"], {"ce"}, {"clean"}),
    "pgd_at": (["method.name=pgd_at"], {"ce", "h3_ce_adv"}, {"clean", "adversarial"}),
    "trades": (["method.name=trades"], {"ce", "kl"}, {"clean", "adversarial"}),
    "jem": (["method.name=jem"], {"h1_px", "ce"}, {"clean", "generated"}),
    "jempp": (["method.name=jempp", 'sampler.buffer_init="class_gaussian"'], {"h1_px", "ce"},
              {"clean", "generated"}),
    "sadajem": (["method.name=sadajem", "method.l2_energy=0.1"], {"h1_px", "ce", "h1_l2"},
                {"clean", "generated"}),
    "ebjdat-jem": (["method.name=ebjdat", "method.base=jem"], {"h1_px", "ce", "h2_adv", "h3_ce_adv"},
                   {"clean", "adversarial", "generated"}),
    "ebjdat-jempp": (["method.name=ebjdat", "method.base=jempp"], {"h1_px", "ce", "h2_adv", "h3_ce_adv"},
                     {"clean", "adversarial", "generated"}),
    "ebjdat-sadajem": (["method.name=ebjdat", "method.base=sadajem"], {"h1_px", "ce", "h2_adv", "h3_ce_adv"},
                       {"clean", "adversarial", "generated"}),
    "dat": (["method.name=dat", 'adversary.norm="l2"', 'adversary.eps="0.5"', 'adversary.step_size="0.1"'],
            {"h1_bce", "h3_ce_adv", "ce"}, {"clean", "adversarial", "generated"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_method_gives_finite_named_terms_and_its_energy_populations(tiny_recipe, case):
    overrides, terms, populations = CASES[case]
    result = run(resolve(tiny_recipe, SMALL + overrides), str(tiny_recipe))
    assert result.status == "finished", case
    events = read_events(result.run_dir)
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        assert set(m["terms"]) == terms
        assert all(math.isfinite(v) for v in m["terms"].values()) and math.isfinite(m["loss"])
    energy = [e for e in events if e["type"] == "energy"]
    assert energy and set(energy[-1]["populations"]) == populations
    if {"clean", "adversarial"} <= populations:
        assert "clean_minus_adversarial" in energy[-1]["gaps"]
    assert not [e for e in events if e["type"] == "alarm"]
    samples = [e for e in events if e["type"] == "sample"]
    if "generated" in populations:  # a grid of the sampler's output, path relative to the run
        assert samples and (result.run_dir / samples[-1]["path"]).stat().st_size > 0
    else:
        assert not samples
    start = events[0]
    assert start["populations"] == sorted(populations, key=["clean", "adversarial", "generated"].index)


def test_weighted_loss_is_the_sum_of_weighted_terms(tiny_recipe):
    result = run(resolve(tiny_recipe, SMALL + ["method.name=ebjdat", "method.w2=0.5", "method.w3=2.0"]),
                 str(tiny_recipe))
    for m in (e for e in read_events(result.run_dir) if e["type"] == "metrics"):
        expect = sum(m["weights"][k] * v for k, v in m["terms"].items())
        assert m["loss"] == pytest.approx(expect, rel=1e-5, abs=1e-6)
        assert m["weights"]["h2_adv"] == 0.5 and m["weights"]["h3_ce_adv"] == 2.0


def test_reference_profile_reads_eps_in_minus1_1_units_and_does_not_project(tiny_recipe):
    from ebjdat_engine.methods.budgets import pixel_budget

    recipe = resolve(tiny_recipe, ["method.name=ebjdat", 'method.profile="reference"'])
    budget = pixel_budget(recipe.adversary, recipe.method.profile)
    assert budget.eps == pytest.approx(4 / 255) and budget.step_size == pytest.approx(1 / 255)
    assert budget.project is False
    standard = pixel_budget(recipe.adversary, "standard")
    assert standard.eps == pytest.approx(8 / 255) and standard.project is True
    result = run(resolve(tiny_recipe, SMALL + ["method.name=ebjdat", 'method.profile="reference"',
                                               "method.base=jempp", "sampler.pyld_inner_steps=3"]),
                 str(tiny_recipe))
    labels = read_events(result.run_dir)[0]["labels"]
    assert labels["profile"] == "reference" and labels["projection"] is False
    assert labels["attack_steps"] == 3  # tied to PYLD's N, as the released JEM++ graft


def test_reference_profile_only_for_ebjdat(tiny_recipe):
    with pytest.raises(RecipeError) as info:
        run(resolve(tiny_recipe, SMALL + ["method.name=pgd_at", 'method.profile="reference"']),
            str(tiny_recipe))
    assert info.value.errors[0].startswith("$.method.profile:")


def test_replay_buffer_is_in_the_checkpoint(tiny_recipe):
    from ebjdat_engine.rundir.checkpoint import load_checkpoint

    recipe = resolve(tiny_recipe, SMALL + ["method.name=jem"])
    result = run(recipe, str(tiny_recipe))
    ckpt = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    buffer = ckpt["method"]["sampler"]["buffer"]
    tensor = next(v for v in buffer.values() if torch.is_tensor(v)) if isinstance(buffer, dict) else buffer
    assert tensor.shape[0] == 64


def test_sam_two_passes_on_a_toy_problem():
    from ebjdat_engine.train.sam import SAM

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SAM([w], torch.optim.SGD, rho=0.5, adaptive=False, lr=0.1)
    loss_fn = lambda: (w ** 2).sum() + w[0] * w[1]  # noqa: E731
    loss_fn().backward()
    g0 = w.grad.clone()
    w0 = w.detach().clone()
    opt.first_step()
    e = w.detach() - w0
    assert torch.allclose(e, 0.5 * g0 / g0.norm(), atol=1e-6)  # ascent of radius rho along g
    opt.zero_grad()
    loss_fn().backward()
    g1 = w.grad.clone()  # gradient at w + e(w)
    opt.second_step()
    assert torch.allclose(w.detach(), w0 - 0.1 * g1, atol=1e-6)  # base step from w with g(w + e)
    assert not torch.allclose(g0, g1)


def test_adaptive_sam_scales_the_ascent_by_weight_magnitude():
    from ebjdat_engine.train.sam import SAM

    w = torch.nn.Parameter(torch.tensor([1.0, 4.0]))
    opt = SAM([w], torch.optim.SGD, rho=1.0, adaptive=True, lr=0.1)
    w.grad = torch.tensor([1.0, 1.0])
    opt.first_step()
    e = w.detach() - torch.tensor([1.0, 4.0])
    t_g = torch.tensor([1.0, 4.0]) * torch.tensor([1.0, 1.0])
    assert torch.allclose(e, torch.tensor([1.0, 16.0]) / t_g.norm(), atol=1e-6)


def test_sam_second_pass_does_not_move_bn_running_stats():
    from ebjdat_engine.models.normalize import bn_stats_frozen

    bn = torch.nn.BatchNorm2d(3, momentum=0.9)
    before = bn.running_mean.clone()
    with bn_stats_frozen(bn):
        bn(torch.randn(8, 3, 4, 4) + 5)
    assert torch.equal(bn.running_mean, before) and bn.momentum == 0.9
    bn(torch.randn(8, 3, 4, 4) + 5)
    assert not torch.equal(bn.running_mean, before)


@pytest.mark.slow
def test_divergence_raises_an_alarm_and_rollback_resumes_finite_training(tiny_recipe):
    recipe = resolve(tiny_recipe, SMALL + [
        "method.name=jem", "optim.lr=1e4", "optim.warmup_steps=0", "train.max_steps=40",
        "monitor.collapse.check_every=2", 'monitor.collapse.nonfinite="rollback"',
        'monitor.collapse.energy="rollback"', 'monitor.collapse.loss="rollback"',
        "monitor.collapse.max_rollbacks=3", "monitor.collapse.rollback_lr_factor=1e-6"])
    result = run(recipe, str(tiny_recipe))
    events = read_events(result.run_dir)
    alarms = [e for e in events if e["type"] == "alarm"]
    assert alarms, "a divergence at lr=1e4 must raise an alarm"
    assert alarms[0]["action"] == "rollback" and alarms[0]["detector"] in ("nonfinite", "energy", "loss")
    assert alarms[0]["collapse_epoch"] is not None
    # after rolling back with a tiny lr the run trains on, finite, to the end
    assert result.status == "finished"
    after = [e for e in events if e["type"] == "metrics" and e["time"] >= alarms[-1]["time"]]
    assert after and all(math.isfinite(m["loss"]) for m in after)


def test_stop_policy_ends_collapsed_with_a_checkpoint(tiny_recipe):
    recipe = resolve(tiny_recipe, SMALL + [
        "method.name=jem", "optim.lr=1e4", "optim.warmup_steps=0", "train.max_steps=40",
        "monitor.collapse.check_every=2", 'monitor.collapse.nonfinite="stop"',
        'monitor.collapse.energy="stop"', 'monitor.collapse.loss="stop"'])
    result = run(recipe, str(tiny_recipe))
    events = read_events(result.run_dir)
    assert result.status == "collapsed" and result.exit_code == 3
    assert events[-1]["type"] == "end" and events[-1]["status"] == "collapsed"
    assert events[-1]["collapse_epoch"] is not None
    assert any(e["type"] == "alarm" and e["action"] == "stop" for e in events)
    assert (result.run_dir / "checkpoints" / "collapsed.pt").exists()
    assert (result.run_dir / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("profile, expect_l2", [("standard", True), ("reference", False)])
def test_sam_second_pass_keeps_the_l2_stabiliser_except_in_the_reference_profile(tiny_recipe, profile, expect_l2):
    """SADA-JEM's code drops λ·(f̄(x_p)² + f̄(x_q)²) from SAM's second pass, whose gradient is the
    update: then λ never stabilises anything (the quickstart's SADA-JEM diverged to E ≈ -4000).
    The standard profile keeps it; the reference profile (EB-JDAT's released code) drops it."""
    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.methods import Batch, MethodContext, build_method
    from ebjdat_engine.models import build_model

    recipe = resolve(tiny_recipe, SMALL + ["method.name=ebjdat", "method.base=sadajem", "method.l2_energy=0.1",
                                           f'method.profile="{profile}"'])
    splits = load_dataset(recipe.data, torch.device("cpu"), recipe.run.seed)
    model = build_model(recipe.model, splits.image_shape, splits.n_classes)
    method = build_method(recipe.method, recipe.sampler, recipe.adversary, MethodContext(
        device=torch.device("cpu"), n_classes=splits.n_classes, image_shape=splits.image_shape,
        input_std=recipe.model.input_std))
    x, y = splits.train.images[:16].float() / 255, splits.train.labels[:16]
    batch = Batch(x, y, x)
    samples = method.draw(model, batch)
    first = method.terms(model, batch, samples)
    second = method.terms(model, batch, samples, second_pass=True)
    assert "h1_l2" in first.terms
    assert ("h1_l2" in second.terms) is expect_l2


def test_dat_checks_its_auc_curriculum_on_its_own_cadence(tiny_recipe):
    # metrics only at the end (log_every 1000), the curriculum every 2 steps: T still rises on time
    result = run(resolve(tiny_recipe, SMALL + ["method.name=dat", "method.w_ce=0.0", "train.log_every=1000",
                                               "sampler.n_steps=3", "sampler.auc_every=2", "sampler.auc_window=1",
                                               "sampler.auc_threshold=0.0", "train.max_steps=8"]),
                 str(tiny_recipe))
    assert result.status == "finished"
    events = read_events(result.run_dir)
    rises = [(e["step"], e["dat_T"]) for e in events if e["type"] == "curriculum"]
    assert rises == [(2, 1), (4, 2), (6, 3)]  # capped at sampler.n_steps = 3
    assert [e["dat_T"] for e in events if e["type"] == "metrics"] == [3]
