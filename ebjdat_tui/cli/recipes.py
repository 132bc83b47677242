"""`ebjdat validate` and `ebjdat show`: recipes checked and printed, nothing trained."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import EXIT_BAD_INPUT, SET_HELP, error_list, n_errors, recipe_errors, say_err


def validate(recipes: List[Path] = typer.Argument(..., help="Recipe files to check."),
             set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """Check recipes; exit 0 when all are valid, 2 otherwise (every error is counted, the first 50 listed)."""
    from ebjdat_engine.recipe import RecipeError, resolve

    bad = 0
    for path in recipes:
        try:
            resolve(path, set_)
        except RecipeError as e:
            bad += 1
            for line in error_list(f"{path}: {n_errors(e.errors)}:", e.errors):
                say_err(line)
        else:
            typer.echo(f"{path}: ok")
    if bad:  # every file's errors are listed above
        raise typer.Exit(EXIT_BAD_INPUT)


def show(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (absent: the defaults)."),
         set_: List[str] = typer.Option([], "--set", help=SET_HELP),
         doc: bool = typer.Option(False, "--doc", help="Annotate every key with its documentation.")) -> None:
    """Print the resolved recipe as TOML (extends and --set applied, defaults filled in)."""
    from ebjdat_engine.recipe import resolve, to_toml
    from ebjdat_engine.recipe.docs import documented_toml

    with recipe_errors(str(recipe) if recipe else None):
        resolved = resolve(recipe, set_)
    typer.echo(documented_toml(resolved) if doc else to_toml(resolved), nl=False)
