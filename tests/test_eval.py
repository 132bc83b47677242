"""Evaluation by the standard protocol on a small trained digits model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ebjdat, write_tiny_recipe

from ebjdat_engine import load_classifier
from ebjdat_engine.eval.evaluate import evaluate
from ebjdat_engine.eval.robustness import accuracy, autoattack_examples, pgd_examples
from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A digits run with a replay buffer (JEM), trained a few epochs (~80 % clean)."""
    tmp = tmp_path_factory.mktemp("evalrun")
    recipe_path = write_tiny_recipe(tmp)
    recipe = resolve(recipe_path, ["method.name=jem", "method.l2_energy=0.1", "train.epochs=4",
                                   "model.width=2", "sampler.n_steps=5", "sampler.buffer_size=256",
                                   "train.px_batch_size=32", "monitor.every=0"])
    result = run(recipe, str(recipe_path))
    assert result.status == "finished"
    return result.run_dir


@pytest.fixture(scope="module")
def test_points():
    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.recipe import DataConfig

    splits = load_dataset(DataConfig(name="digits"), torch.device("cpu"), 0)
    return splits.test.images[:100].float() / 255, splits.test.labels[:100]


@pytest.mark.slow
def test_load_classifier_is_an_eval_mode_0_1_to_logits_module(trained, test_points):
    model = load_classifier(trained)
    x, y = test_points
    assert not model.training
    logits = model(x)
    assert logits.shape == (100, 10)
    assert accuracy(model, x, y) > 0.6  # trained (chance is 0.1)
    # the checkpoint file works as well as the run directory
    same = load_classifier(trained / "checkpoints" / "last.pt")
    assert torch.allclose(same(x), load_classifier(trained, ckpt="last")(x))


@pytest.mark.slow
def test_robust_accuracies_are_ordered(trained, test_points):
    model = load_classifier(trained)
    x, y = test_points
    x, y = x[:60], y[:60]
    clean = accuracy(model, x, y)
    x_pgd = pgd_examples(model, x, y, eps=8 / 255)
    pgd_acc = accuracy(model, x_pgd, y)
    x_aa, protocol = autoattack_examples(model, x, y, eps=8 / 255, version="standard")
    aa_acc = accuracy(model, x_aa, y)
    assert aa_acc <= pgd_acc <= clean
    assert (x_pgd - x).abs().max() <= 8 / 255 + 1e-6 and (x_aa - x).abs().max() <= 8 / 255 + 1e-5
    assert protocol["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_undefended_model_breaks_at_a_large_eps(trained, test_points):
    model = load_classifier(trained)
    x, y = test_points
    x_pgd = pgd_examples(model, x, y, eps=0.3)
    assert accuracy(model, x_pgd, y) <= 0.05
    x_aa, _ = autoattack_examples(model, x, y, eps=0.3, version="custom", attacks=["apgd-ce"])
    assert accuracy(model, x_aa, y) <= 0.05


@pytest.mark.slow
def test_eval_writes_json_event_and_plots_with_protocols(trained):
    result = evaluate(trained, n=50, attacks="apgd-ce,apgd-t", fid="off", n_samples=32)
    for key in ("clean_acc", "pgd_acc", "aa_acc", "n", "protocol", "energy", "generation", "checkpoint"):
        assert key in result
    assert result["n"] == 50
    assert 0 <= result["aa_acc"] <= result["pgd_acc"] <= result["clean_acc"] <= 1
    pgd = result["protocol"]["pgd"]
    assert pgd["eps"] == pytest.approx(8 / 255) and pgd["step"] == pytest.approx(2 / 255)
    assert pgd["steps"] == 20 and pgd["random_start"] is True and pgd["points"] == 50
    aa = result["protocol"]["autoattack"]
    assert aa["version"] == "custom" and aa["attacks"] == ["apgd-ce", "apgd-t"] and aa["points"] == 50
    energy = result["energy"]
    for pop in ("clean", "adversarial", "generated"):
        assert set(energy[pop]) >= {"n", "mean", "std", "quantiles"}
    assert energy["clean"]["n"] == 50 and energy["generated"]["n"] == 32
    assert energy["gaps"]["clean_minus_adversarial"] == pytest.approx(
        energy["clean"]["mean"] - energy["adversarial"]["mean"])
    gen = result["generation"]
    assert gen["samples"]["source"] == "replay buffer"  # a JEM run keeps one
    assert gen["fd_ref"]["fd_ref"] >= 0 and "reference" in gen["fd_ref"]["feature_network"]
    assert gen["fid"]["fid"] is None and gen["fid"]["skipped"] == "--no-fid"
    files = result["files"]
    stored = json.loads(Path(files["json"]).read_text())
    assert stored["aa_acc"] == result["aa_acc"]
    assert Path(files["energy_histogram"]).stat().st_size > 1000
    assert Path(files["samples"]).exists()
    event = [e for e in read_events(trained) if e["type"] == "eval" and e.get("source") == "ebjdat eval"][-1]
    assert event["aa_acc"] == result["aa_acc"]
    assert (trained / event["path"]).resolve() == Path(files["json"]).resolve()  # relative to the run


@pytest.mark.slow
def test_cli_eval_json_and_sample(trained, tmp_path):
    res = ebjdat("eval", str(trained), "--n", "40", "--attacks", "apgd-ce", "--no-fid", "--json",
                 "--samples", "fresh")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["aa_acc"] <= result["pgd_acc"] <= result["clean_acc"]
    assert result["generation"]["samples"]["source"] == "fresh chains"
    # fresh chains run the short run the model was trained with (sampler.n_steps = 5), 1,000 of
    # them for the generation metrics; the energy landscape takes the first --n
    assert result["generation"]["samples"]["steps"] == 5
    assert result["generation"]["fd_ref"]["n_fake"] == 1000
    assert result["energy"]["generated"]["n"] == 40 == result["energy"]["clean"]["n"]
    out = tmp_path / "grid.png"
    res = ebjdat("sample", str(trained), "--n", "16", "--steps", "5", "--class", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 100
    res = ebjdat("sample", str(trained), "--source", "buffer", "--n", "16")
    assert res.returncode == 0, res.stderr
    assert list((trained / "samples").glob("*.png"))
    bad = ebjdat("eval", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "no such run directory" in bad.stderr


@pytest.mark.slow
def test_outside_autoattack_on_load_classifier_agrees_with_ebjdat_eval(trained):
    """fra31's attacks called directly on `load_classifier` give our number (same points)."""
    from pyautoattack import AutoAttack

    from ebjdat_engine.data import load_dataset
    from ebjdat_engine.recipe import DataConfig

    ours = evaluate(trained, n=60, attacks="apgd-ce,apgd-t", fid="off", n_samples=16, write=False)
    model = load_classifier(trained)
    test = load_dataset(DataConfig(name="digits"), torch.device("cpu"), 0).test
    x, y = test.images[:60].float() / 255, test.labels[:60]
    aa = AutoAttack(model, eps=8 / 255, norm="Linf", version="custom", attacks=["apgd-ce", "apgd-t"], seed=1)
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=250)
    with torch.no_grad():
        outside = (model(x_adv).argmax(1) == y).float().mean().item()
    assert abs(outside - ours["aa_acc"]) <= 0.02 + 1e-9


@pytest.mark.slow
def test_robust_eval_during_training_and_final_eval(tiny_recipe):
    recipe = resolve(tiny_recipe, ["train.epochs=1", "eval.robust_every=1", "eval.robust_n=20",
                                   'eval.attacks="apgd-ce"', "eval.final=true", "eval.final_n=20",
                                   "monitor.every=0"])
    result = run(recipe, str(tiny_recipe))
    assert result.status == "finished"
    evals = [e for e in read_events(result.run_dir) if e["type"] == "eval"]
    during = [e for e in evals if "aa_acc" in e and e.get("source") != "ebjdat eval"]
    assert during and during[0]["n"] == 20
    assert during[0]["protocol"]["autoattack"]["attacks"] == ["apgd-ce"]
    assert during[0]["aa_acc"] <= during[0]["pgd_acc"] <= during[0]["clean_acc"]
    final = [e for e in evals if e.get("source") == "ebjdat eval"]
    assert len(final) == 1 and final[0]["checkpoint"] == "last" and final[0]["n"] == 20
    assert (result.run_dir / final[0]["path"]).exists()
    assert read_events(result.run_dir)[-1]["type"] == "end"
