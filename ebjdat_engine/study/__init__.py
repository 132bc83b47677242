"""Studies (DESIGN.md §8b): arms × seeds as ordinary runs, one evaluation protocol, one table.

`run_study` is what `ebjdat study` calls; `compare` is `ebjdat compare`.

The runner and compare modules (and through them torch) load on first use, so the TUI can read a
study's tables (`study.table`) without importing torch.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..rundir import StudyDir
from .schema import Study, load_study

if TYPE_CHECKING:  # for the annotation only: at runtime Listener loads lazily (see _LAZY)
    from .runner import Listener

#: Names re-exported from the modules that import torch, loaded on first access. (`compare` the
#: function lives in `study.compare`; the package attribute of that name is the module.)
_LAZY = {"CompareError": "compare", "Listener": "runner", "StudyError": "runner", "StudyRunner": "runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _StudyLock:
    """One `ebjdat study` per study directory: an OS lock (it dies with its process) on
    the study's lock file (`StudyDir.lock`), which names the holder."""

    def __init__(self, out_dir: Path):
        self.path = StudyDir(out_dir).lock
        self.fd: int | None = None

    def __enter__(self) -> "_StudyLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            from .runner import StudyError

            raise StudyError(f"{self.path.parent}: cannot write the study's directory ({e.strerror or e}); "
                             f"copy the study file somewhere writable and run it there") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from .runner import StudyError

            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise StudyError(f"{self.path.parent}: another `ebjdat study` is running it ({holder}); "
                             f"wait for it, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays (harmless, reused)
            self.fd = None


def run_study(study: Study, command: Sequence[str], listener: "Listener | None" = None, *,
              executor: str | None = None, detach: bool = False) -> int:
    """Run (or continue) a study; write the study's results (json and markdown) after every stage and the
    figures at the end. `command` is the `ebjdat` command line each run is started with (the
    front end passes its own). `executor` ('local' or 'slurm') overrides `[executor] kind`;
    `detach` (slurm only) submits and returns. Returns the exit code (see StudyRunner.run)."""
    from . import results
    from .runner import Listener, StudyRunner

    kind = executor or study.executor.kind
    if kind != study.executor.kind:  # --executor: what the study reports is what runs
        import attrs

        study = attrs.evolve(study, executor=attrs.evolve(study.executor, kind=kind))
    with _StudyLock(study.out_dir):
        started = time.time()
        before = results.previous_wall(StudyDir(study.out_dir).results)
        if kind == "slurm":
            from .slurm import SlurmStudy

            slurm = SlurmStudy(study, command, listener or Listener())
            slurm.runner.write_results = lambda s, tasks, state: results.write(
                s, tasks, state, before + time.time() - started)
            code = slurm.run(detach=detach)
            state = "running" if detach and code == 0 and any(
                t.record.get("state") != "done" for t in slurm.tasks) else _final_state(code)
            doc = results.write(study, slurm.tasks, state, before + time.time() - started,
                                figures=state != "running")
            if slurm.listener is not None:
                slurm.listener.message(f"results: {StudyDir(study.out_dir).results_md} ({doc['state']})")
            return code
        runner = StudyRunner(study, tuple(command), listener or Listener())
        runner.write_results = lambda s, tasks, state: results.write(s, tasks, state, before + time.time() - started)
        code = runner.run()
        doc = results.write(study, runner.tasks, _final_state(code), before + time.time() - started, figures=True)
        if runner.listener is not None:
            runner.listener.message(f"results: {StudyDir(study.out_dir).results_md} ({doc['state']})")
        return code


def _final_state(code: int) -> str:
    return {0: "finished", 1: "failed"}.get(code, "stopped")


__all__ = ["CompareError", "Listener", "Study", "StudyError", "StudyRunner", "load_study", "run_study"]
