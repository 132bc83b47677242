"""The `ebjdat` command line (Typer). Heavy imports (torch) happen inside the commands, so
`ebjdat --help` answers at once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    name="ebjdat",
    help="Train and evaluate classifiers that are accurate, robust and generative (EB-JDAT and family).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SET_HELP = "Override a recipe value: section.key=value (value parsed as TOML; repeatable)."
EXIT_BAD_INPUT = 2


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _fail_recipe(errors: list[str], source: str | None = None) -> None:
    where = f"{source}: " if source else ""
    _err(f"{where}{len(errors)} error{'s' if len(errors) != 1 else ''} in recipe:")
    for line in errors:
        _err(f"  {line}")
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def validate(recipes: List[Path] = typer.Argument(..., help="Recipe files to check."),
             set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """Check recipes; exit 0 when all are valid, 2 otherwise (every error is listed)."""
    from ebjdat_engine.recipe import RecipeError, resolve

    bad = 0
    for path in recipes:
        try:
            resolve(path, set_)
        except RecipeError as e:
            bad += 1
            _err(f"{path}: {len(e.errors)} error{'s' if len(e.errors) != 1 else ''}:")
            for line in e.errors:
                _err(f"  {line}")
        else:
            typer.echo(f"{path}: ok")
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
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


@app.command()
def run(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (optional with --resume)."),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write the run here (must be new or empty)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory from checkpoints/last.pt."),
        plain: bool = typer.Option(False, "--plain", help="Plain progress lines even on a terminal.")) -> None:
    """Train headless; progress on stdout, everything in the run directory."""
    from ebjdat_engine.recipe import RecipeError, resolve

    if recipe is None and resume is None:
        _err("ebjdat run: give a RECIPE, or --resume RUN_DIR")
        raise typer.Exit(EXIT_BAD_INPUT)
    if resume is not None and run_dir is not None:
        _err("ebjdat run: --run-dir and --resume exclude each other (a resumed run stays in its directory)")
        raise typer.Exit(EXIT_BAD_INPUT)

    from ebjdat_engine.data import DataError
    from ebjdat_engine.train.rundir import RunDirError
    from ebjdat_engine.train.runtime import RuntimeError_
    from ebjdat_engine.train.session import resolve_for_resume
    from ebjdat_engine.train.session import run as run_training

    from .progress import make_progress

    try:
        if resume is not None:
            resolved = resolve_for_resume(resume, str(recipe) if recipe else None, set_)
        else:
            resolved = resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe) if recipe else str(resume / "recipe.toml"))
    except RunDirError as e:
        _err(str(e))
        raise typer.Exit(EXIT_BAD_INPUT)

    progress = make_progress(True if plain else None)
    try:
        result = run_training(resolved, str(recipe) if recipe else None, run_dir=run_dir,
                              resume=resume, listeners=[progress])
    except RecipeError as e:
        progress.close()
        _fail_recipe(e.errors, str(recipe) if recipe else None)
    except (DataError, RunDirError, RuntimeError_) as e:
        progress.close()
        _err(f"ebjdat run: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        progress.close()
        _err("ebjdat run: interrupted twice; the last checkpoint on disk is checkpoints/last.pt")
        raise typer.Exit(130)
    progress.close()
    typer.echo(f"{result.status}: results in {result.run_dir}")
    typer.echo(f"  events: {result.run_dir / 'events.jsonl'}   checkpoint: {result.run_dir / 'checkpoints' / 'last.pt'}")
    if result.status == "stopped":
        typer.echo(f"  continue with: ebjdat run --resume {result.run_dir}")
    if result.status == "collapsed":
        typer.echo(f"  collapsed (see the alarm events); last healthy state: {result.run_dir / 'checkpoints' / 'last.pt'}")
    raise typer.Exit(result.exit_code)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ebjdat")


if __name__ == "__main__":
    sys.exit(main())
