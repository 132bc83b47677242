"""What the command groups of the `ebjdat` command line share: the --set help, how `ebjdat study`
starts its runs, and the ways a command says a user error.

A command says a user error by raising `UserError` (the engine's errors are UserErrors already);
the one handler, `reporting` in `__init__`, prints it on stderr and exits with its status. The
helpers here give the raised error its words where the command knows more than the engine: which
file a list of recipe errors is about (`recipe_errors`), a list printed as it stands (`Report`),
an engine ValueError said as a user error (`value_errors_said`).

Nothing here imports torch or the engine's heavy parts at module level (the engine is imported
inside the helpers), so that `ebjdat --help` answers at once.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Sequence

import typer

from ebjdat_engine.errors import EXIT_BAD_INPUT, UserError
from ebjdat_engine.rundir import RESULTS_FILE, RESULTS_MD

__all__ = ["EBJDAT_COMMAND", "EXIT_BAD_INPUT", "MAX_ERRORS_SHOWN", "Report", "SET_HELP", "UserError", "error_list",
           "n_errors", "names_in_doc", "recipe_errors", "resolved_recipe", "say_err", "value_errors_said"]

SET_HELP = "Override a recipe value: section.key=value (value parsed as TOML; repeatable)."
#: how `ebjdat study` starts each of its runs: this command line, with this interpreter
EBJDAT_COMMAND = (sys.executable, "-m", "ebjdat_tui.cli")
#: recipe errors printed at most (a generated recipe can have thousands of unknown keys)
MAX_ERRORS_SHOWN = 50


def say_err(message: str) -> None:
    """A line on stderr (progress notes and warnings; errors are raised, see `UserError`)."""
    typer.echo(message, err=True)


def names_in_doc(command):
    """A command whose help (its docstring) names run and study files by their constants."""
    command.__doc__ = command.__doc__.format(RESULTS_FILE=RESULTS_FILE, RESULTS_MD=RESULTS_MD)
    return command


class Report(UserError):
    """A user error whose lines are printed as they stand, without the command's name in front
    (a list of recipe errors under its headline)."""

    def __init__(self, lines: Sequence[str], *, exit_code: int | None = None) -> None:
        super().__init__("\n".join(lines), exit_code=exit_code)
        self._lines = list(lines)

    def lines(self, speaker: str) -> list[str]:
        return list(self._lines)


def n_errors(errors: Sequence[str]) -> str:
    """'1 error', '2 errors'."""
    return f"{len(errors)} error{'s' if len(errors) != 1 else ''}"


def error_list(headline: str, errors: Sequence[str]) -> list[str]:
    """The headline, then the errors indented, the first MAX_ERRORS_SHOWN of them."""
    lines = [headline, *(f"  {line}" for line in errors[:MAX_ERRORS_SHOWN])]
    if len(errors) > MAX_ERRORS_SHOWN:
        lines.append(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more")
    return lines


@contextmanager
def recipe_errors(source: str | None, what: str = "recipe") -> Iterator[None]:
    """A RecipeError raised inside becomes the list of its errors under '<source>: N errors in
    <what>:' (no '<source>: ' when None)."""
    from ebjdat_engine.recipe import RecipeError

    try:
        yield
    except RecipeError as e:
        where = f"{source}: " if source else ""
        raise Report(error_list(f"{where}{n_errors(e.errors)} in {what}:", e.errors)) from None


@contextmanager
def value_errors_said() -> Iterator[None]:
    """A ValueError raised inside (the engine's word for a request it cannot meet) becomes a user
    error with the same message."""
    try:
        yield
    except ValueError as e:
        if isinstance(e, UserError):
            raise
        raise UserError(str(e)) from None


def resolved_recipe(recipe: Path, set_: List[str]):
    """The resolved recipe; its errors are a user error (the list, under the recipe's name)."""
    from ebjdat_engine.recipe import resolve

    with recipe_errors(str(recipe)):
        return resolve(recipe, set_)
