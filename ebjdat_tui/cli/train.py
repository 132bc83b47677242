"""`ebjdat run`: train headless (or resume a run), progress on stdout, everything in the run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ebjdat_engine.rundir import CHECKPOINT_DIR, LAST_CHECKPOINT, RunDir

from ._common import SET_HELP, UserError, recipe_errors


def run(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (optional with --resume)."),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write the run here (must be new or empty)."),
        resume: Optional[Path] = typer.Option(None, "--resume",
                                              help=f"Continue this run directory from "
                                                   f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}."),
        plain: bool = typer.Option(False, "--plain", help="Plain progress lines even on a terminal.")) -> None:
    """Train headless; progress on stdout, everything in the run directory."""
    from ebjdat_engine.recipe import resolve

    if recipe is None and resume is None:
        raise UserError("give a RECIPE, or --resume RUN_DIR")
    if resume is not None and run_dir is not None:
        raise UserError("--run-dir and --resume exclude each other (a resumed run stays in its directory)")

    from ebjdat_engine.rundir.checkpoint import DiskFullError
    from ebjdat_engine.train.session import resolve_for_resume
    from ebjdat_engine.train.session import run as run_training

    from ..progress import make_progress

    with recipe_errors(str(recipe) if recipe else str(resume / "recipe.toml")):
        if resume is not None:
            resolved = resolve_for_resume(resume, str(recipe) if recipe else None, set_)
        else:
            resolved = resolve(recipe, set_)

    progress = make_progress(True if plain else None)
    try:
        with recipe_errors(str(recipe) if recipe else None):
            result = run_training(resolved, str(recipe) if recipe else None, run_dir=run_dir,
                                  resume=resume, listeners=[progress])
    except UserError:  # bad data, run directory or device; a stop (Interrupted, StoppedBeforeStart: their codes)
        progress.close()  # the display ends before the message
        raise
    except DiskFullError as e:  # a crash (exit 1), said plainly; the `end` event says the same
        progress.close()
        raise UserError(f"crashed: {e}", exit_code=1) from None
    except KeyboardInterrupt:
        progress.close()
        raise UserError("interrupted twice while the job was starting, before training began", exit_code=130) from None
    progress.close()
    lines = [f"{result.status}: results in {result.run_dir}",
             f"  events: {RunDir(result.run_dir).events}   checkpoint: {RunDir(result.run_dir).last_checkpoint}"]
    if result.status == "stopped":
        lines.append(f"  continue with: ebjdat run --resume {result.run_dir}")
    if result.status == "collapsed":
        lines.append(f"  collapsed (see the alarm events); last healthy state: "
                     f"{RunDir(result.run_dir).last_checkpoint}")
    from ..progress import best_effort

    best_effort(lambda: [typer.echo(line) for line in lines] and sys.stdout.flush())
    raise typer.Exit(result.exit_code)
