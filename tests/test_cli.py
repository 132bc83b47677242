"""The `ebjdat` command line as a user meets it: exit codes, messages, nothing written on error."""

from __future__ import annotations

import pytest
from conftest import REPO, ebjdat

from ebjdat_engine.recipe import from_toml_text, resolve
from ebjdat_engine.rundir.events import read_events


def test_validate_reports_every_error_and_exits_2_writing_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[optim]\nlrr = 0.1\n[train]\nepochs = "ten"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    res = ebjdat("validate", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    assert "$.optim.lrr: unknown key (did you mean 'lr'?)" in res.stderr
    assert "$.train.epochs: expected an integer" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_validate_accepts_good_recipes():
    recipes = sorted(str(p) for p in (REPO / "recipes").rglob("*.toml"))
    res = ebjdat("validate", *recipes)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(": ok") == len(recipes)


def test_run_with_a_bad_recipe_exits_2_and_creates_no_run(tmp_path):
    res = ebjdat("run", str(REPO / "recipes" / "quickstart.toml"), "--set", "optim.lrr=1",
                 "--set", f"run.out_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert res.returncode == 2
    assert "did you mean 'lr'" in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_missing_dataset_exits_2_naming_root_and_flag(tmp_path):
    res = ebjdat("run", "--set", 'data.name="cifar10"', "--set", f'data.root="{tmp_path / "nodata"}"',
                 "--set", f"run.out_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert res.returncode == 2  # no RECIPE and no --resume
    res = ebjdat("run", str(REPO / "recipes" / "quickstart.toml"), "--set", 'data.name="cifar10"',
                 "--set", f'data.root="{tmp_path / "nodata"}"', "--set", f"run.out_dir={tmp_path / 'runs'}",
                 cwd=tmp_path)
    assert res.returncode == 2
    assert str(tmp_path / "nodata") in res.stderr and "data.download" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_show_output_resolves_to_the_same_recipe(tmp_path, tiny_recipe):
    res = ebjdat("show", str(tiny_recipe), "--set", "optim.lr=0.02", "--set", 'adversary.eps="4/255"')
    assert res.returncode == 0, res.stderr
    shown = tmp_path / "shown.toml"
    shown.write_text(res.stdout)
    assert resolve(shown) == resolve(tiny_recipe, ["optim.lr=0.02", 'adversary.eps="4/255"'])
    doc = ebjdat("show", str(tiny_recipe), "--doc")
    assert doc.returncode == 0 and from_toml_text(doc.stdout) == resolve(tiny_recipe)


@pytest.mark.slow
def test_run_end_to_end_and_refuse_an_existing_run_dir(tiny_recipe, tmp_path):
    out = tmp_path / "r1"
    res = ebjdat("run", str(tiny_recipe), "--set", "train.max_steps=6", "--run-dir", str(out))
    assert res.returncode == 0, res.stderr
    assert f"results in {out}" in res.stdout
    events = read_events(out)
    assert events[-1]["status"] == "finished"
    again = ebjdat("run", str(tiny_recipe), "--run-dir", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr
    assert read_events(out) == events  # untouched
    assert (out / "checkpoints" / "last.pt").exists()


def test_resume_of_a_non_run_is_exit_2(tmp_path):
    res = ebjdat("run", "--resume", str(tmp_path))
    assert res.returncode == 2 and "not a run directory" in res.stderr


def test_one_handler_says_any_user_error_with_its_exit_code(monkeypatch, tmp_path):
    """A UserError escaping a command (here from the engine, with a code of its own) is its message
    after the command's name on stderr and its exit code; never a traceback."""
    from typer.testing import CliRunner

    from ebjdat_engine.errors import UserError
    from ebjdat_engine.study import compare as compare_module
    from ebjdat_tui.cli import app

    def refuse(_runs):
        raise UserError("nothing to compare here", exit_code=7)

    monkeypatch.setattr(compare_module, "compare", refuse)
    done = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert done.exit_code == 7 and done.output == "ebjdat compare: nothing to compare here\n"
    assert done.exception is None or isinstance(done.exception, SystemExit)
