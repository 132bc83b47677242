"""The recipe DSL: defaults, files, extends, --set, strict types, unknown keys, all errors at once."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from ebjdat_engine.recipe import Budget, Recipe, RecipeError, from_toml_text, resolve, to_toml
from ebjdat_engine.recipe.docs import documented_toml
from ebjdat_engine.recipe.load import parse_override

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path | None, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(RecipeError) as info:
        resolve(path, overrides)
    return info.value.errors


def test_defaults_are_the_schema_defaults():
    recipe = resolve(None)
    assert recipe == Recipe()
    assert recipe.data.name == "digits"
    assert recipe.train.max_steps is None
    assert recipe.adversary.eps == Budget("8/255")


def test_every_field_has_a_doc():
    for section in attrs.fields(Recipe):
        for f in attrs.fields(section.type):
            assert f.metadata.get("doc"), f"$.{section.name}.{f.name} has no doc"


def test_file_values_override_defaults(tmp_path):
    path = write(tmp_path, "r.toml", "[optim]\nlr = 0.02\n[train]\nepochs = 3\n")
    recipe = resolve(path)
    assert recipe.optim.lr == 0.02 and recipe.train.epochs == 3
    assert recipe.optim.momentum == Recipe().optim.momentum


def test_configs_are_frozen():
    recipe = resolve(None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        recipe.optim.lr = 1.0  # type: ignore[misc]


def test_extends_merges_base_then_file_then_set(tmp_path):
    write(tmp_path, "base.toml", "[optim]\nlr = 0.5\nmomentum = 0.8\n[train]\nepochs = 7\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    child = write(sub, "child.toml", 'extends = "../base.toml"\n[optim]\nlr = 0.02\n')
    recipe = resolve(child, ["train.epochs=9"])
    assert recipe.optim.lr == 0.02          # file beats base
    assert recipe.optim.momentum == 0.8     # base beats defaults
    assert recipe.train.epochs == 9         # --set beats everything


def test_extends_cycle_is_an_error(tmp_path):
    a = write(tmp_path, "a.toml", 'extends = "b.toml"\n')
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    assert any("cycle" in e for e in errors_of(a))


def test_set_parses_toml_values_and_bare_strings():
    assert parse_override("optim.lr=0.02") == (["optim", "lr"], 0.02)
    assert parse_override("data.hflip=true") == (["data", "hflip"], True)
    assert parse_override('adversary.eps="4/255"') == (["adversary", "eps"], "4/255")
    assert parse_override("data.name=cifar10") == (["data", "name"], "cifar10")
    assert parse_override("optim.decay_epochs=[3, 5]") == (["optim", "decay_epochs"], [3, 5])
    recipe = resolve(None, ["optim.lr=0.02", "optim.lr=0.03"])
    assert recipe.optim.lr == 0.03  # the later --set wins


def test_set_without_section_is_an_error():
    assert any("section.key=value" in e for e in errors_of(None, ["lr=0.1"]))


def test_unknown_key_names_path_and_nearest_key(tmp_path):
    path = write(tmp_path, "r.toml", "[optim]\nlrr = 0.1\n")
    assert errors_of(path) == ["$.optim.lrr: unknown key (did you mean 'lr'?)"]


def test_unknown_section_is_an_error(tmp_path):
    path = write(tmp_path, "r.toml", "[optimizer]\nlr = 0.1\n")
    assert errors_of(path) == ["$.optimizer: unknown key (did you mean 'optim'?)"]


@pytest.mark.parametrize("line, path, expect", [
    ('[data]\nhflip = "false"', "$.data.hflip", "expected a boolean"),
    ('[train]\nepochs = "10"', "$.train.epochs", "expected an integer"),
    ("[train]\nepochs = true", "$.train.epochs", "expected an integer"),
    ("[train]\nepochs = 2.5", "$.train.epochs", "expected an integer"),
    ("[optim]\nlr = true", "$.optim.lr", "expected a number"),
    ("[data]\nname = 3", "$.data.name", "expected a string"),
    ("[optim]\ndecay_epochs = 3", "$.optim.decay_epochs", "expected an array"),
    ("optim = 3", "$.optim", "expected a table"),
])
def test_wrong_types_are_never_coerced(tmp_path, line, path, expect):
    errors = errors_of(write(tmp_path, "r.toml", line + "\n"))
    assert len(errors) == 1 and errors[0].startswith(path + ":") and expect in errors[0]


def test_int_is_fine_for_a_float_field(tmp_path):
    assert resolve(write(tmp_path, "r.toml", "[optim]\nlr = 1\n")).optim.lr == 1.0


@pytest.mark.parametrize("line, path, expect", [
    ("[optim]\nlr = -0.1", "$.optim.lr", "> 0"),
    ("[optim]\nlr = 0", "$.optim.lr", "> 0"),
    ('[data]\nname = "cifar11"', "$.data.name", "did you mean 'cifar10'"),
    ("[sampler]\nreinit_freq = 1.5", "$.sampler.reinit_freq", "[0, 1]"),
    ("[optim]\ndecay_epochs = [5, 3]", "$.optim.decay_epochs", "increasing"),
    ("[train]\nbatch_size = 0", "$.train.batch_size", ">= 1"),
    ('[adversary]\neps = "8/0"', "$.adversary.eps", "8/255"),
    ('[adversary]\neps = "-1/255"', "$.adversary.eps", ">= 0"),
    ('[runtime]\ndevice = "gpu"', "$.runtime.device", "cuda"),
    ("[optim]\nbetas = [0.9]", "$.optim.betas", "exactly 2"),
])
def test_bad_values_name_their_path(tmp_path, line, path, expect):
    errors = errors_of(write(tmp_path, "r.toml", line + "\n"))
    assert len(errors) == 1 and errors[0].startswith(path + ":"), errors
    assert expect in errors[0]


def test_all_errors_are_reported_at_once(tmp_path):
    path = write(tmp_path, "r.toml", '[optim]\nlrr = 0.1\nlr = -1\n[train]\nepochs = "ten"\n'
                 '[data]\nhflip = "no"\n[bogus]\nx = 1\n')
    errors = errors_of(path)
    paths = sorted(e.split(":")[0] for e in errors)
    assert paths == ["$.bogus", "$.data.hflip", "$.optim.lr", "$.optim.lrr", "$.train.epochs"]


def test_set_errors_carry_their_path():
    errors = errors_of(None, ["optim.lrr=0.1", "train.epochs=ten"])
    assert "$.optim.lrr: unknown key (did you mean 'lr'?)" in errors
    assert any(e.startswith("$.train.epochs:") for e in errors)


def test_budget_units():
    recipe = resolve(None, ['adversary.eps="8/255"', 'adversary.step_size="0.5"'])
    assert recipe.adversary.eps.value == pytest.approx(8 / 255)
    assert recipe.adversary.step_size.value == 0.5
    assert str(recipe.adversary.eps) == "8/255"  # printed as written


def test_toml_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "r.toml", "[optim\nlr = 1\n")
    errors = errors_of(path)
    assert len(errors) == 1 and str(path) in errors[0] and "TOML" in errors[0]


def test_missing_file_is_an_error(tmp_path):
    assert "no such recipe file" in errors_of(tmp_path / "nope.toml")[0]


def test_resolved_toml_round_trips(tmp_path):
    write(tmp_path, "base.toml", "[optim]\nlr = 0.5\n")
    child = write(tmp_path, "c.toml", 'extends = "base.toml"\n[train]\nmax_steps = 7\n')
    recipe = resolve(child, ['adversary.eps="4/255"', "optim.decay_epochs=[2, 4]"])
    text = to_toml(recipe)
    assert "extends" not in text
    assert from_toml_text(text) == recipe
    assert from_toml_text(documented_toml(recipe)) == recipe


def test_absent_optional_is_dropped_from_toml():
    assert "max_steps" not in to_toml(resolve(None))
    assert "max_steps = 5" in to_toml(resolve(None, ["train.max_steps=5"]))


def test_shipped_recipes_validate():
    for path in sorted((REPO / "recipes").rglob("*.toml")):
        resolve(path)


def test_readme_recipe_reference_is_current():
    from ebjdat_engine.recipe.docs import reference_markdown

    readme = (REPO / "README.md").read_text()
    assert reference_markdown() in readme, "regenerate with: python -m ebjdat_engine.recipe.docs"


@pytest.mark.parametrize("overrides, path, expect", [
    (['method.name="trades"', 'adversary.norm="l2"'], "$.adversary.norm", "'linf' only"),
    (['method.name="sadajem"', 'runtime.amp="fp16"'], "$.runtime.amp", "fp16 with SAM"),
    (['method.name="ebjdat"', 'method.base="sadajem"', 'runtime.amp="fp16"'], "$.runtime.amp", "SAM"),
    (['model.arch="wrn"', "model.depth=11"], "$.model.depth", "6n+4"),
    (['model.arch="resnet"', "model.depth=28", "model.width=1"], "$.model.depth", "depth 18 width 1"),
    (['method.profile="reference"', 'method.name="jem"'], "$.method.profile", "only for method 'ebjdat'"),
    (['adversary.eps="2"'], "$.adversary.eps", "above 1"),
    (['method.name="ebjdat"', 'method.profile="reference"', 'adversary.eps="3"'], "$.adversary.eps", "above 2"),
    (['adversary.step_size="0"'], "$.adversary.step_size", "never moves"),
    (['eval.eps="1.5"'], "$.eval.eps", "above 1"),
    (["model.input_mean=7"], "$.model.input_mean", "[0.0, 1.0]"),
    (['model.arch="wrn"', "model.pool=7"], "$.model.pool", "only arch 'cnn'"),
])
def test_what_cannot_be_built_or_run_is_a_recipe_error(overrides, path, expect):
    """Rules across fields live in the recipe layer: `validate` refuses what `run` would, with the
    same `$.path` message, before any data is read (the CLI's exit-2 path is in test_cli)."""
    errors = errors_of(None, overrides)
    assert len(errors) == 1 and errors[0].startswith(path + ":"), errors
    assert expect in errors[0]


@pytest.mark.parametrize("overrides", [
    ['method.name="trades"', 'adversary.norm="linf"'],
    ['method.name="sadajem"', 'runtime.amp="bf16"'],
    ['method.name="ebjdat"', 'method.base="jempp"', 'runtime.amp="fp16"'],
    ['model.arch="wrn"', "model.depth=16"],
    ['model.arch="resnet"', "model.depth=50", "model.width=2"],
    ['adversary.eps="1"'],
    ['adversary.norm="l2"', 'adversary.eps="3"', 'adversary.step_size="0.5"'],
    ['method.name="ebjdat"', 'method.profile="reference"', 'adversary.eps="16/255"'],
    ['adversary.eps="0"', 'adversary.step_size="0"'],
])
def test_their_neighbours_still_validate(overrides):
    resolve(None, overrides)


def test_the_models_refuse_by_the_recipe_layers_rules():
    """One rule each, shared: the builders raise the recipe layer's own message."""
    from ebjdat_engine.models.resnet import variant_name
    from ebjdat_engine.models.wrn import wrn_blocks_per_stage
    from ebjdat_engine.recipe.schema import resnet_variant_problem, wrn_depth_problem

    with pytest.raises(ValueError) as info:
        wrn_blocks_per_stage(11)
    assert str(info.value) == wrn_depth_problem(11)
    assert wrn_blocks_per_stage(28) == 4
    with pytest.raises(ValueError) as info:
        variant_name(28, 1)
    assert str(info.value) == resnet_variant_problem(28, 1)
    assert variant_name(50, 2) == "wide_resnet50_2"
