"""`ebjdat validate` and `ebjdat show`: recipes checked and printed, nothing trained."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import EXIT_BAD_INPUT, SET_HELP, _err, _fail_recipe, _print_errors


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
            _err(f"{path}: {len(e.errors)} error{'s' if len(e.errors) != 1 else ''}:")
            _print_errors(e.errors)
        else:
            typer.echo(f"{path}: ok")
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


def show(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (absent: the defaults)."),
         set_: List[str] = typer.Option([], "--set", help=SET_HELP),
         doc: bool = typer.Option(False, "--doc", help="Annotate every key with its documentation.")) -> None:
    """Print the resolved recipe as TOML (extends and --set applied, defaults filled in)."""
    from ebjdat_engine.recipe import RecipeError, resolve, to_toml
    from ebjdat_engine.recipe.docs import documented_toml

    try:
        resolved = resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe) if recipe else None)
    typer.echo(documented_toml(resolved) if doc else to_toml(resolved), nl=False)
