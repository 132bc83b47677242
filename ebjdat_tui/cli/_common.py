"""What the command groups of the `ebjdat` command line share: the --set help, the exit status of a
bad input, how `ebjdat study` starts its runs, and the helpers that report a bad recipe.

Nothing here imports torch or the engine's heavy parts at module level (the engine is imported
inside the helpers), so that `ebjdat --help` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ebjdat_engine.rundir import RESULTS_FILE, RESULTS_MD

SET_HELP = "Override a recipe value: section.key=value (value parsed as TOML; repeatable)."
EXIT_BAD_INPUT = 2
#: how `ebjdat study` starts each of its runs: this command line, with this interpreter
EBJDAT_COMMAND = (sys.executable, "-m", "ebjdat_tui.cli")
#: recipe errors printed at most (a generated recipe can have thousands of unknown keys)
MAX_ERRORS_SHOWN = 50


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _names_in_doc(command):
    """A command whose help (its docstring) names run and study files by their constants."""
    command.__doc__ = command.__doc__.format(RESULTS_FILE=RESULTS_FILE, RESULTS_MD=RESULTS_MD)
    return command


def _fail_recipe(errors: list[str], source: str | None = None) -> None:
    where = f"{source}: " if source else ""
    _err(f"{where}{len(errors)} error{'s' if len(errors) != 1 else ''} in recipe:")
    _print_errors(errors)
    raise typer.Exit(EXIT_BAD_INPUT)


def _print_errors(errors: list[str]) -> None:
    for line in errors[:MAX_ERRORS_SHOWN]:
        _err(f"  {line}")
    if len(errors) > MAX_ERRORS_SHOWN:
        _err(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more")


def _device(device: Optional[str], command: str):
    """--device checked against this machine (None: CUDA when present), or a message and exit 2."""
    from ebjdat_engine.train.runtime import DeviceError, pick_device

    try:
        return pick_device(device)
    except DeviceError as e:
        _err(f"ebjdat {command}: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)


def _resolved(recipe: Path, set_: List[str]):
    """The resolved recipe, or the recipe errors and exit 2."""
    from ebjdat_engine.recipe import RecipeError, resolve

    try:
        return resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe))
