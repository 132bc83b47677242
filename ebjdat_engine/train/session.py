"""Setting up a run: recipe -> data, model, method -> run directory -> Trainer.fit.

This is the one place that sees the whole recipe; each component is built from its own
section. Order matters for "nothing lost, nothing half-made": everything that can fail on bad
input (recipe, device, dataset, resume compatibility) is checked before a run directory is
created or written.
"""

from __future__ import annotations

import shutil
import time
import traceback
from pathlib import Path
from typing import Callable

import attrs
import torch

from ..errors import UserError
from ..recipe import Recipe, RecipeError, resolve, to_dict, to_toml
from ..recipe.load import apply_overrides, structure
from ..rundir import CHECKPOINT_DIR, LAST_CHECKPOINT, RunDir, control
from ..rundir.checkpoint import TRAINING_KEYS, load_checkpoint
from ..rundir.events import EventWriter, Listener, read_events
from ..rundir.layout import (
    RECIPE_FILE,
    RunDirError,
    RunLock,
    collect_meta,
    create_run_dir,
    default_name,
    is_run_dir,
    read_meta,
    remove_dead_temp_files,
    write_meta,
    write_text_atomic,
)
from . import distributed
from .build import build_parts
from .loop import planned_steps
from .runtime import configure, resolve_device

#: when this process started: control requests older than this were left by an earlier job
STARTED = control.process_start_time()

#: exit code of a run that ended because a collapse detector stopped it
EXIT_COLLAPSED = 3

#: Sections that must not change when a run is resumed (the checkpoint would not fit them).
FROZEN_ON_RESUME = ("data", "model", "method")


@attrs.frozen
class RunResult:
    status: str          # finished | stopped | crashed
    run_dir: Path
    exit_code: int


def _resumable_checkpoint(run_dir: Path, recipe: Recipe, n_train: int) -> dict:
    """The last checkpoint, loaded and checked before the run's recipe and meta change: it must load, and the
    recipe must ask for steps beyond it (a plain --resume of a finished run appends nothing)."""
    state = load_checkpoint(RunDir(run_dir).last_checkpoint, map_location="cpu", required=TRAINING_KEYS)
    at = int(state["step"])
    total = planned_steps(recipe.train, n_train // recipe.train.batch_size)
    if at > total:
        raise RecipeError([f"$.train.max_steps: the run is at step {at}, past the {total} steps "
                           f"this recipe asks for; raise train.max_steps or train.epochs"])
    ends = [e for e in read_events(run_dir) if e["type"] == "end"]
    if at == total and ends and ends[-1].get("status") == "finished":
        raise RecipeError([f"$.train.max_steps: the run already finished at step {at}, the "
                           f"{total} steps its recipe.toml asks for; go further with "
                           f"`--set train.max_steps=N` (or train.epochs)"])
    return state


def _saved_recipe(run_dir: Path) -> Recipe:
    """The run's own recipe.toml; RunDirError (exit 2) when it is missing or unreadable."""
    from ..recipe.load import parse_toml_bytes

    path = run_dir / RECIPE_FILE
    try:
        raw = parse_toml_bytes(path.read_bytes(), str(path))
        return structure(raw)
    except FileNotFoundError:
        problem = "is missing"
    except OSError as e:
        problem = f"cannot be read ({e.strerror})"
    except RecipeError as e:
        problem = f"is not a valid recipe ({e.errors[0]})"
    raise RunDirError(f"--resume {run_dir}: its {RECIPE_FILE} {problem}; give the recipe it was "
                      f"started with: `ebjdat run RECIPE --resume {run_dir}` (data, model and method "
                      f"must match the checkpoint)")


def resolve_for_resume(run_dir: Path, recipe_path: str | None, overrides: list[str]) -> Recipe:
    """The recipe a resumed run continues with: the run's own recipe.toml (or RECIPE when
    given) plus --set; sections that shape the checkpoint must be unchanged."""
    if not Path(run_dir).is_dir():
        raise RunDirError(f"--resume {run_dir}: no such directory (`ebjdat ls` lists the runs)")
    if not is_run_dir(run_dir):
        raise RunDirError(f"--resume {run_dir}: not a run directory (no {RECIPE_FILE})")
    if not RunDir(run_dir).last_checkpoint.exists():
        raise RunDirError(f"--resume {run_dir}: no {CHECKPOINT_DIR}/{LAST_CHECKPOINT} to continue from")
    saved = _saved_recipe(run_dir)
    if recipe_path is not None:
        recipe = resolve(recipe_path, overrides)
    else:
        recipe = structure(apply_overrides(to_dict(saved), overrides))
    changed = [name for name in FROZEN_ON_RESUME if getattr(recipe, name) != getattr(saved, name)]
    if recipe.run.seed != saved.run.seed:
        changed.append("run.seed")
    for key in ("batch_size", "px_batch_size"):  # the batches are a function of these: exact resume
        if getattr(recipe.train, key) != getattr(saved.train, key):
            changed.append(f"train.{key}")
    if changed:
        raise RecipeError([f"$.{name}: cannot change on --resume (the checkpoint was trained with "
                           f"the run's recipe.toml); start a new run instead" for name in changed])
    return recipe


def run(recipe: Recipe, recipe_path: str | None = None, *, run_dir: str | Path | None = None,
        resume: str | Path | None = None, listeners: list[Listener] | None = None,
        on_run_dir: Callable[[Path], None] | None = None) -> RunResult:
    """Train `recipe` into a new run directory, or continue the run at `resume`.
    Under torchrun every rank calls this; rank 0 owns the run directory."""
    info = distributed.from_env()
    # signals are caught from here on: a SIGTERM / Ctrl-C while the data loads still ends in a
    # clean state (nothing written yet, or a checkpoint and an `end` event)
    with control.StopFlag() as stop:
        device = distributed.init(info, resolve_device(recipe.runtime))
        try:
            return _run(recipe, recipe_path, info, device, stop, run_dir=run_dir, resume=resume,
                        listeners=listeners, on_run_dir=on_run_dir)
        finally:
            distributed.shutdown(info)


class Interrupted(UserError):
    """A second Ctrl-C interrupted training before the stop could checkpoint this step; the run
    ended 'stopped' and resumes from its last checkpoint (`checkpoint_step`, None when none).
    The command line exits 130 (a user error with its own status)."""

    exit_code = 130

    def __init__(self, run_dir: Path, step: int, checkpoint_step: int | None) -> None:
        where = (f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT} holds step {checkpoint_step}: ebjdat run --resume {run_dir} "
                 f"continues from there" if checkpoint_step is not None else "no checkpoint was written")
        super().__init__(f"interrupted by a second Ctrl-C at step {step}, before the stop's checkpoint; {where}")
        self.run_dir, self.step, self.checkpoint_step = run_dir, step, checkpoint_step


class StoppedBeforeStart(UserError):
    """A stop signal arrived before the run directory was written: nothing was created. The
    command line exits with the signal's status (`exit_code`)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("stopped by a signal before training started; no run directory was written",
                         exit_code=exit_code)


def _run(recipe: Recipe, recipe_path: str | None, info: distributed.DistInfo, device: torch.device,
         stop: control.StopFlag, *,
         run_dir: str | Path | None, resume: str | Path | None, listeners: list[Listener] | None,
         on_run_dir: Callable[[Path], None] | None) -> RunResult:
    configure(recipe.runtime)
    if info.enabled and recipe.train.batch_size % info.world_size:
        raise RecipeError([f"$.train.batch_size: {recipe.train.batch_size} does not split into "
                           f"{info.world_size} ranks; use a multiple of the number of processes"])
    parts = build_parts(recipe, device, info, warm_start=resume is None)
    if recipe.runtime.tensorboard:  # on every rank: one rank failing alone would leave the rest waiting
        from ..export.tensorboard import missing_reason

        if (reason := missing_reason()) is not None:
            raise RecipeError([f"$.runtime.tensorboard: {reason}; or set it to false"])

    if stop.requested and not info.enabled:
        raise StoppedBeforeStart(stop.exit_code())
    path = None
    lock = None
    resumed_state = None
    tensorboard = None
    try:  # the lock is given back if anything below fails before training starts
        if info.is_main:
            if resume is not None:
                path = Path(resume)
                lock = RunLock(path)  # one writer: refused before anything in the directory changes
                resumed_state = _resumable_checkpoint(path, recipe, len(parts.splits.train))
                previous = path / RECIPE_FILE
                shutil.copyfile(previous, path / f"recipe.before-resume-{time.strftime('%Y%m%d-%H%M%S')}.toml")
            else:
                path = create_run_dir(recipe.run.out_dir, recipe.run.name or default_name(recipe_path), run_dir)
                lock = RunLock(path)
            # requests left in control/ by an earlier job (a dead run's stop) are not for this one
            control.set_aside_stale(path / "control", before=STARTED)
            remove_dead_temp_files(path)  # we hold the lock: a temp file is a killed writer's
            write_text_atomic(path / RECIPE_FILE, to_toml(recipe))
            meta = read_meta(path) if resume is not None else {}
            now_meta = collect_meta(str(device))
            if info.enabled:
                now_meta["world_size"] = info.world_size
            if resume is not None and meta:
                meta.setdefault("resumes", []).append(now_meta)
            else:
                meta = {**now_meta, "recipe_source": str(recipe_path) if recipe_path else None}
            write_meta(path, meta)
            if on_run_dir is not None:
                on_run_dir(path)
        path = Path(distributed.broadcast_object(info, str(path) if path else None))

        events = EventWriter(path, listeners if info.is_main else None, enabled=info.is_main)
        trainer = parts.trainer(recipe, device, path, events, info)
        resumed_from = (trainer.restore(RunDir(path).last_checkpoint, state=resumed_state)
                        if resume is not None else None)
        if recipe.runtime.tensorboard and info.is_main:
            from ..export.tensorboard import mirror_into_run

            # a resumed job re-does the steps after its checkpoint: TensorBoard hides the old ones
            tensorboard = mirror_into_run(path, None if resumed_from is None else resumed_from + 1)
            if tensorboard is not None:
                events.listeners.append(tensorboard)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        status = trainer.fit(stop, resumed_from)
        if status == "stopped":  # a signal: 128 + signum; a control/stop request: 0
            code = stop.exit_code() if stop.requested else 0
        else:
            code = EXIT_COLLAPSED if status == "collapsed" else 0
        return RunResult(status, path, code)
    except KeyboardInterrupt:  # a second Ctrl-C before the stop began: stopped, not crashed
        saved = trainer.last_saved_step
        if not trainer.events.ended:
            trainer.emit("end", status="stopped", reason="interrupted by a second Ctrl-C before the stop's "
                         "checkpoint", checkpoint_step=saved)
        raise Interrupted(path, trainer.step, saved) from None
    except BaseException as e:  # record the crash, keep everything on disk, re-raise
        if not trainer.events.ended:
            trainer.emit("end", status="crashed", error=f"{type(e).__name__}: {e}",
                         traceback=traceback.format_exc(limit=20))
        raise
    finally:
        trainer.close_loaders()
        trainer.events.close()
        if tensorboard is not None:
            tensorboard.close()
        if lock is not None:
            lock.release()
