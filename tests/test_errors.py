"""One user-error type: every user-facing error of the engine is a `UserError` carrying the command
line's exit status (2 for a bad recipe, argument, file or directory), under its own name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebjdat_engine.data import DataError
from ebjdat_engine.errors import EXIT_BAD_INPUT, UserError
from ebjdat_engine.eval.loading import LoadError
from ebjdat_engine.eval.robustness import EvalError
from ebjdat_engine.export.tensorboard import TensorBoardMissing
from ebjdat_engine.models.fold import FoldError
from ebjdat_engine.recipe import RecipeError
from ebjdat_engine.recipe.fields import CheckError
from ebjdat_engine.rundir import RunDirError
from ebjdat_engine.rundir.checkpoint import CheckpointError
from ebjdat_engine.study import CompareError, StudyError
from ebjdat_engine.train.runtime import DeviceError
from ebjdat_engine.train.session import Interrupted, StoppedBeforeStart


@pytest.mark.parametrize("cls", [DataError, LoadError, EvalError, TensorBoardMissing, FoldError, CheckError,
                                 RunDirError, CheckpointError, CompareError, StudyError, DeviceError])
def test_every_user_facing_error_is_a_user_error_exiting_2(cls):
    e = cls("what to change")
    assert isinstance(e, UserError) and e.exit_code == EXIT_BAD_INPUT == 2
    assert e.message == str(e) == "what to change"
    assert e.lines("ebjdat run") == ["ebjdat run: what to change"]


def test_the_old_bases_still_catch_them():
    assert isinstance(CheckError("x"), ValueError) and isinstance(FoldError("x"), ValueError)
    assert isinstance(TensorBoardMissing("x"), RuntimeError)
    assert isinstance(CheckpointError("x"), RunDirError)


def test_a_recipe_error_keeps_its_lines():
    e = RecipeError(["$.a: one", "$.b: two"])
    assert isinstance(e, UserError) and e.errors == ["$.a: one", "$.b: two"] and e.exit_code == 2
    assert str(e) == "$.a: one\n$.b: two"


def test_stops_carry_their_own_exit_status():
    assert Interrupted(Path("r"), 7, None).exit_code == 130
    assert StoppedBeforeStart(143).exit_code == 143
    assert UserError("full", exit_code=1).exit_code == 1 and UserError("x").exit_code == 2
