"""`ebjdat tui`: start a job and watch it in the terminal dashboard, or attach to a run (textual
is imported only when the command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import SET_HELP, Report, UserError


def tui(recipe: Optional[Path] = typer.Argument(None,
                                                help="Recipe to validate and start (a run directory is attached to)."),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        attach: Optional[Path] = typer.Option(None, "--attach",
                                              help="Watch this run directory (running or finished) "
                                                   "instead of starting a job.")) -> None:
    """Start a job and watch it in a terminal dashboard, or --attach to a run.

    The job runs detached (it survives the TUI and the SSH session); quitting asks whether to
    stop it (checkpoint, status 'stopped') or leave it running."""
    if recipe is not None and attach is None and recipe.is_dir():
        recipe, attach = None, recipe
    if (recipe is None) == (attach is None):
        raise UserError("give a RECIPE to start, or --attach RUN to watch a run")
    if attach is not None and set_:
        raise UserError("--set applies to a new job, not to --attach")
    if attach is not None and not attach.is_dir():
        raise Report([f"ebjdat tui --attach {attach}: no such run directory (`ebjdat ls` lists the runs)"])
    from ..app import create_app  # textual is imported only here

    app_ = create_app(recipe=recipe, sets=set_, attach=attach)
    result = app_.run()
    if result is not None:
        if result.message:
            typer.echo(result.message, err=result.code != 0)
        raise typer.Exit(result.code)
    if app_.return_code:  # the TUI itself crashed (Textual printed why): not a success
        raise typer.Exit(app_.return_code)
