"""Warm start (`model.init_from`) and BatchNorm folding: DAT's stage 1 (BN) -> stage 2 (no BN)."""

from __future__ import annotations

import attrs
import pytest
import torch
from conftest import ebjdat, trained_bn_net

from ebjdat_engine.eval.loading import load_run
from ebjdat_engine.models import build_model
from ebjdat_engine.models.fold import FoldError, folded_state_dict
from ebjdat_engine.recipe import RecipeError, resolve
from ebjdat_engine.recipe.schema import ModelConfig
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import run


def test_folding_gives_the_same_eval_mode_logits_without_batchnorm():
    bn = trained_bn_net(arch="cnn", width=1)
    state, folded = folded_state_dict(bn)
    assert len(folded) == 4 and not any("running" in k for k in state)
    plain = build_model(ModelConfig(arch="cnn", width=1, norm="none"), (1, 8, 8), 10)
    plain.load_state_dict(state)  # strict: exactly the keys of the BN-free network
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.rand(64, 1, 8, 8)
    with torch.no_grad():
        assert (plain.eval()(x) - bn(x)).abs().max() < 1e-4


def test_a_pre_activation_batchnorm_is_refused_by_name():
    wrn = build_model(ModelConfig(arch="wrn", depth=10, width=1, norm="batch"), (3, 8, 8), 10)
    with pytest.raises(FoldError, match=r"BatchNorm `stages\.0\.0\.norm1`.*(used elsewhere|follows)"):
        folded_state_dict(wrn)


STAGE2 = ["model.norm=\"none\"", "method.name=\"dat\"", "method.w_ce=0.0", "optim.name=\"sgd\"",
          "optim.lr=0.001", "optim.decay_epochs=[]", "optim.warmup_steps=0", "sampler.n_steps=3",
          "sampler.step_size=0.1", "train.max_steps=8", "train.ema=0.9"]


def test_dat_stage1_to_stage2_on_digits(tiny_recipe):
    stage1 = run(resolve(tiny_recipe, ["method.name=\"pgd_at\"", "train.max_steps=20", "run.name=\"stage1\""]),
                 str(tiny_recipe))
    assert stage1.status == "finished"
    recipe = resolve(tiny_recipe, STAGE2 + [f"model.init_from=\"{stage1.run_dir}\"", "run.name=\"stage2\"",
                                            "train.max_steps=1", "optim.lr=1e-12"])
    # one step at lr 1e-12: the stage-2 network is the folded stage-1 network, same eval-mode logits
    stage2 = run(recipe, str(tiny_recipe))
    assert stage2.status == "finished"
    start = next(e for e in read_events(stage2.run_dir) if e["type"] == "start")
    assert start["init_from"]["folded_batchnorms"] == 4 and start["init_from"]["weights"] == "raw"
    x = torch.rand(64, 1, 8, 8)
    a = load_run(stage1.run_dir, "last").model
    b = load_run(stage2.run_dir, "last", weights="raw").model
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() < 1e-4
    # and stage 2 proper trains from there
    trained = run(resolve(tiny_recipe, STAGE2 + [f"model.init_from=\"{stage1.run_dir}\"", "run.name=\"s2\""]),
                  str(tiny_recipe))
    assert trained.status == "finished"


@pytest.mark.slow
def test_a_misfit_source_is_a_clear_error_before_any_run_directory(tiny_recipe, tmp_path):
    src = run(resolve(tiny_recipe, ["train.max_steps=2", "run.name=\"src\""]), str(tiny_recipe))
    out = ebjdat("run", str(tiny_recipe), "--set", f"model.init_from=\"{src.run_dir}\"", "--set", "model.width=2",
                 "--set", "run.name=\"wide\"")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "$.model.init_from" in out.stderr and "stem.weight: 16x1x3x3 in the source, 32x1x3x3 here" in out.stderr
    assert not (src.run_dir.parent / "wide").exists()
    missing = ebjdat("run", str(tiny_recipe), "--set", f"model.init_from=\"{tmp_path / 'nope'}\"")
    assert missing.returncode == 2 and "no such run directory" in missing.stderr
    with pytest.raises(RecipeError, match="norm"):
        recipe = resolve(tiny_recipe, [f"model.init_from=\"{src.run_dir}\"", "model.norm=\"group\""])
        run(recipe, str(tiny_recipe))


def test_init_weights_is_checked():
    with pytest.raises(Exception):
        attrs.evolve(ModelConfig(), init_weights="mean")


def test_a_torchvision_resnet_folds_every_batchnorm_exactly():
    bn = trained_bn_net((3, 32, 32), arch="resnet", depth=18, width=1)
    state, folded = folded_state_dict(bn)
    assert len(folded) == 20  # stem, 2 per basic block x 8, 3 downsample shortcuts
    plain = build_model(ModelConfig(arch="resnet", depth=18, width=1, norm="none"), (3, 32, 32), 10)
    plain.load_state_dict(state)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert (plain.eval()(x) - bn(x)).abs().max() < 1e-4


def test_a_pre_activation_wrn_converts_to_affine_exactly():
    from ebjdat_engine.models.fold import affine_state_dict

    bn = trained_bn_net((3, 8, 8), arch="wrn", depth=10, width=1)
    state, names = affine_state_dict(bn)
    assert len(names) == 7 and not any("running" in k for k in state)  # 2 per block x 3 + final
    affine = build_model(ModelConfig(arch="wrn", depth=10, width=1, norm="affine"), (3, 8, 8), 10)
    affine.load_state_dict(state)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in affine.modules())
    x = torch.rand(32, 3, 8, 8)
    with torch.no_grad():
        assert (affine.eval()(x) - bn(x)).abs().max() < 1e-4
        # no batch statistics: an image's logits do not depend on the rest of its batch in train mode
        affine.train()
        assert torch.allclose(affine(x)[:4], affine(x[:4]), atol=1e-5)
