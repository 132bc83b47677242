"""Does a model generate, or only refine its init? fd_ref of fresh chains by their length
(`ebjdat eval --chain-lengths`, a study's `protocol.chain_lengths`) and its verdict; the study's
`[protocol.check]` (a second AutoAttack on named arms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, ebjdat

from ebjdat_engine.eval.generation import chain_verdict
from ebjdat_engine.recipe import RecipeError, resolve
from ebjdat_engine.study import load_study
from ebjdat_engine.train.session import run


def pts(*values):
    return [{"steps": k, "fd_ref": v} for k, v in values]


def test_chain_verdicts():
    assert chain_verdict(pts((0, 2.0), (5, 1.0), (10, 1.2), (100, 9.0)))["verdict"] == "short-run refiner"
    assert chain_verdict(pts((0, 2.0), (5, 1.0), (100, 1.05)))["verdict"] == "generator"
    assert chain_verdict(pts((0, 2.0), (5, 0.9), (100, 0.5)))["verdict"] == "generator"
    assert chain_verdict(pts((0, 1.0), (5, 1.5), (100, 9.0)))["verdict"] == "none"
    assert chain_verdict(pts((5, 1.0), (100, 9.0)))["verdict"] is None  # no init point


@pytest.fixture(scope="module")
def jem_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("chains")
    (tmp / "tiny.toml").write_text(TINY_RECIPE.format(out_dir=(tmp / "runs").as_posix()))
    recipe = resolve(tmp / "tiny.toml", ["method.name=jem", "train.max_steps=6", "monitor.every=0",
                                         "monitor.gen_every=0", "eval.every_epochs=0", "sampler.buffer_size=64",
                                         "sampler.n_steps=2", 'sampler.buffer_init="class_gaussian"'])
    result = run(recipe, str(tmp / "tiny.toml"))
    assert result.status == "finished"
    return result.run_dir


@pytest.mark.slow
def test_eval_chain_lengths_scores_every_length_from_the_same_init(jem_run: Path):
    proc = ebjdat("eval", str(jem_run), "--ckpt", "last", "--n", "20", "--attacks", "apgd-ce",
                  "--n-samples", "60", "--chain-lengths", "3,0,1", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    chains = result["generation"]["chain_lengths"]
    assert [p["steps"] for p in chains["points"]] == [0, 1, 3]
    assert all(p["fd_ref"] > 0 for p in chains["points"])
    assert chains["n"] == 60 and chains["init"] == "class_gaussian"
    assert chains["verdict"] in ("generator", "short-run refiner", "none")
    assert result["options"]["chain_lengths"] == [0, 1, 3]
    # more steps move the samples: the three lengths do not all score the same
    assert len({round(p["fd_ref"], 6) for p in chains["points"]}) == 3
    text = ebjdat("eval", str(jem_run), "--ckpt", "last", "--n", "20", "--attacks", "apgd-ce",
                  "--n-samples", "60", "--chain-lengths", "0,2", timeout=600)
    assert text.returncode == 0 and "fd_ref by steps  0:" in text.stdout


@pytest.mark.slow
@pytest.mark.parametrize("value", ["5,-1", "a,b", ""])
def test_eval_bad_chain_lengths_exit_2(jem_run: Path, value: str):
    proc = ebjdat("eval", str(jem_run), "--chain-lengths", value)
    assert proc.returncode == 2 and "--chain-lengths" in proc.stderr and "Traceback" not in proc.stderr


STUDY = """
[study]
recipe = "tiny.toml"
[protocol]
chain_lengths = {lengths}
[protocol.check]
arms = {arms}
[[arm]]
label = "a"
set = ["method.name=standard"]
"""


def test_study_protocol_checks_chain_lengths_and_check_arms(tmp_path: Path):
    (tmp_path / "tiny.toml").write_text(TINY_RECIPE.format(out_dir="unused"))
    path = tmp_path / "s.toml"
    path.write_text(STUDY.format(lengths="[5, 10]", arms='["a"]'))
    with pytest.raises(RecipeError) as info:
        load_study(path)
    assert info.value.errors[0].startswith("$.protocol.chain_lengths") and "include 0" in info.value.errors[0]
    path.write_text(STUDY.format(lengths="[0, 5]", arms='["b"]'))
    with pytest.raises(RecipeError) as info:
        load_study(path)
    assert info.value.errors == ["$.protocol.check.arms: no arm is labelled 'b'"]
    path.write_text(STUDY.format(lengths="[0, 5]", arms='["a"]'))
    study = load_study(path)
    from ebjdat_engine.study.runner import check_options, full_options

    assert full_options(study)["chain_lengths"] == [0, 5]
    assert check_options(study)["attacks"] == "standard" and "chain_lengths" not in check_options(study)
