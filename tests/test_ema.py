"""Weight EMA (`train.ema`): the average itself, BatchNorm buffers, checkpoints, exact resume,
and the averaged weights as what evaluation, sampling and load_classifier see by default."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ebjdat
from torch import nn

from ebjdat_engine.eval.loading import LoadError, load_classifier, load_run
from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir.checkpoint import load_checkpoint
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.ema import WeightEMA
from ebjdat_engine.train.session import resolve_for_resume, run


def test_the_average_follows_its_formula_buffers_included():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(2, 1, 8, 8))
    ema = WeightEMA(model, 0.9)
    expected = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 1, 8, 8))  # moves BatchNorm's running statistics
        ema.update()
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                expected[k] = 0.9 * expected[k] + 0.1 * v.float()
            else:
                expected[k] = v.clone()
    got = ema.module.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k].float(), v.float(), atol=1e-6), k
    assert got["1.running_mean"].abs().sum() > 0  # the BN buffers are averaged, not left at init
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])
    assert int(ema.averaged.n_averaged) == 4


def test_decay_outside_the_open_interval_is_refused():
    with pytest.raises(ValueError):
        WeightEMA(nn.Linear(2, 2), 1.0)


@pytest.fixture
def ema_run(tiny_recipe):
    return run(resolve(tiny_recipe, ["train.max_steps=30", "train.ema=0.9", "run.name=ema"]), str(tiny_recipe))


def test_checkpoints_keep_the_ema_and_loading_uses_it_unless_raw(ema_run):
    assert ema_run.status == "finished"
    ckpt = load_checkpoint(ema_run.run_dir / "checkpoints" / "last.pt")
    assert ckpt["ema"]["decay"] == 0.9 and set(ckpt["ema"]["model"]) == set(ckpt["model"])
    auto, raw = load_run(ema_run.run_dir, "last"), load_run(ema_run.run_dir, "last", weights="raw")
    assert auto.weights == "ema 0.9" and raw.weights == "raw"
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(auto.model(x), load_classifier(ema_run.run_dir, "last")(x))
        assert not torch.allclose(auto.model(x), raw.model(x), atol=1e-4)
        w = auto.model.state_dict()
        assert all(torch.equal(w[k], ckpt["ema"]["model"][k]) for k in w)
    evals = [e for e in read_events(ema_run.run_dir) if e["type"] == "eval"]
    assert evals and all(e["protocol"]["weights"] == "ema 0.9" for e in evals)


def test_a_run_without_ema_refuses_weights_ema(tiny_recipe):
    plain = run(resolve(tiny_recipe, ["train.max_steps=5"]), str(tiny_recipe))
    assert load_run(plain.run_dir, "last").weights == "raw"
    with pytest.raises(LoadError, match="no EMA weights"):
        load_run(plain.run_dir, "last", weights="ema")
    with pytest.raises(LoadError, match="--weights"):
        load_run(plain.run_dir, "last", weights="average")


def test_resume_gives_the_same_ema_as_an_uninterrupted_run(tiny_recipe):
    straight = run(resolve(tiny_recipe, ["train.max_steps=30", "train.ema=0.9", "run.name=a"]), str(tiny_recipe))
    first = run(resolve(tiny_recipe, ["train.max_steps=12", "train.ema=0.9", "run.name=b"]), str(tiny_recipe))
    second = run(resolve_for_resume(first.run_dir, None, ["train.max_steps=30"]), None, resume=first.run_dir)
    assert second.status == "finished"
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["ema"]
    b = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")["ema"]
    for k, v in a["model"].items():
        assert torch.allclose(v.float(), b["model"][k].float(), atol=1e-6), k
    assert int(a["n_averaged"]) == int(b["n_averaged"]) == 31


@pytest.mark.slow
def test_cli_eval_labels_the_weights(ema_run):
    out = ebjdat("eval", str(ema_run.run_dir), "--ckpt", "last", "--n", "20", "--attacks", "apgd-ce",
                 "--robust-only", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["checkpoint"]["weights"] == "ema 0.9" and result["protocol"]["weights"] == "ema 0.9"
    raw = ebjdat("eval", str(ema_run.run_dir), "--ckpt", "last", "--n", "20", "--attacks", "apgd-ce",
                 "--robust-only", "--weights", "raw")
    assert raw.returncode == 0, raw.stderr
    assert "(raw weights)" in raw.stdout
    bad = ebjdat("eval", str(ema_run.run_dir), "--weights", "mean")
    assert bad.returncode == 2 and "--weights mean" in bad.stderr and "Traceback" not in bad.stderr
