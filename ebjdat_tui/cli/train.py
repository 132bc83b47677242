"""`ebjdat run`: train headless (or resume a run), progress on stdout, everything in the run directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ebjdat_engine.rundir import CHECKPOINT_DIR, LAST_CHECKPOINT, RunDir

from ._common import EXIT_BAD_INPUT, SET_HELP, _err, _fail_recipe


def run(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (optional with --resume)."),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write the run here (must be new or empty)."),
        resume: Optional[Path] = typer.Option(None, "--resume",
                                              help=f"Continue this run directory from "
                                                   f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}."),
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
    from ebjdat_engine.rundir import RunDirError
    from ebjdat_engine.rundir.checkpoint import DiskFullError
    from ebjdat_engine.train.runtime import DeviceError
    from ebjdat_engine.train.session import Interrupted, StoppedBeforeStart, resolve_for_resume
    from ebjdat_engine.train.session import run as run_training

    from ..progress import make_progress

    try:
        if resume is not None:
            resolved = resolve_for_resume(resume, str(recipe) if recipe else None, set_)
        else:
            resolved = resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe) if recipe else str(resume / "recipe.toml"))
    except RunDirError as e:
        _err(f"ebjdat run: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)

    progress = make_progress(True if plain else None)
    try:
        result = run_training(resolved, str(recipe) if recipe else None, run_dir=run_dir,
                              resume=resume, listeners=[progress])
    except RecipeError as e:
        progress.close()
        _fail_recipe(e.errors, str(recipe) if recipe else None)
    except (DataError, RunDirError, DeviceError) as e:
        progress.close()
        _err(f"ebjdat run: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except (StoppedBeforeStart, Interrupted) as e:
        progress.close()
        _err(f"ebjdat run: {e}")
        raise typer.Exit(e.exit_code)
    except DiskFullError as e:  # a crash (exit 1), said plainly; the `end` event says the same
        progress.close()
        _err(f"ebjdat run: crashed: {e}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        progress.close()
        _err("ebjdat run: interrupted twice while the job was starting, before training began")
        raise typer.Exit(130)
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
