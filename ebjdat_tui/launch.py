"""Starting a job from the TUI: validate the recipe here, then `ebjdat run` as a detached child.

The child gets its own session (`start_new_session`), no stdin, and writes its output to
`RUN/stdout.log`, so it survives the TUI quitting, Ctrl-C in the TUI and the SSH session
ending. The TUI only reads the run directory afterwards; the job never waits on it.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ebjdat_engine.recipe import Recipe, resolve
from ebjdat_engine.rundir import STDOUT_LOG  # the launcher's own file in a fresh run (allowed by --run-dir)


@dataclass(frozen=True)
class Launched:
    """A job started by the TUI: its run directory, process and command line."""

    run_dir: Path
    process: subprocess.Popen
    argv: tuple[str, ...]
    recipe: Recipe


def validate(recipe_path: str | Path, sets: Sequence[str] = ()) -> Recipe:
    """The resolved recipe; raises `RecipeError` (with `.errors`) when it is not valid."""
    return resolve(recipe_path, list(sets))


def planned_run_dir(recipe: Recipe, recipe_path: str | Path, now: _dt.datetime | None = None) -> Path:
    """`<run.out_dir>/<run.name or '<stem>-<YYYYmmdd-HHMMSS>'>` (before adding -2, -3 ...)."""
    now = now or _dt.datetime.now()
    name = recipe.run.name or f"{Path(recipe_path).stem}-{now.strftime('%Y%m%d-%H%M%S')}"
    return Path(recipe.run.out_dir) / name


def make_run_dir(base: Path) -> Path:
    """Create a new run directory at `base`, or `base-2`, `base-3`, ... when taken; it holds
    only an empty stdout.log."""
    for path in [base] + [base.with_name(f"{base.name}-{i}") for i in range(2, 1000)]:
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        (path / STDOUT_LOG).touch()
        return path
    raise FileExistsError(f"{base}: too many runs with this name; set run.name")


def job_argv(recipe_path: str | Path, run_dir: Path, sets: Sequence[str] = (),
             python: str | None = None) -> list[str]:
    argv = [python or sys.executable, "-m", "ebjdat_tui.cli", "run", str(recipe_path),
            "--run-dir", str(run_dir), "--plain"]
    for s in sets:
        argv += ["--set", s]
    return argv


def launch(recipe_path: str | Path, sets: Sequence[str] = (), *, recipe: Recipe | None = None,
           python: str | None = None) -> Launched:
    """Validate (raises `RecipeError`, nothing created), make the run directory and start
    `ebjdat run RECIPE --run-dir DIR --plain [--set ...]` detached from this process."""
    recipe = recipe if recipe is not None else validate(recipe_path, sets)
    run_dir = make_run_dir(planned_run_dir(recipe, recipe_path))
    argv = job_argv(recipe_path, run_dir, sets, python)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / STDOUT_LOG, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True, env=env)
    return Launched(run_dir=run_dir, process=process, argv=tuple(argv), recipe=recipe)
