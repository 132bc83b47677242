"""`RunDir` and `StudyDir`: a run directory and a study directory as objects that know every
file name in them, so that nothing outside `rundir/` spells one.

```
<study>/                              <run>/
  results.json  results.md              recipe.toml  meta.json  events.jsonl  stdout.log  .lock
  study.lock                            checkpoints/{last,best}.pt  samples/  eval/  control/
  runs/<run>/   logs/
```
Both are plain paths with names attached: building one touches no file and imports no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .events import EventTail, read_events
from .layout import (
    BEST,
    CHECKPOINT_DIR,
    CHECKPOINT_SUFFIX,
    CONTROL_DIR,
    EVAL_DIR,
    EVENTS_FILE,
    LAST,
    LOCK_FILE,
    META_FILE,
    RECIPE_FILE,
    SAMPLES_DIR,
    STDOUT_LOG,
    TENSORBOARD_DIR,
    is_run_dir,
    read_meta,
)

# --- a study directory's names ------------------------------------------------------------------
RESULTS_FILE = "results.json"
RESULTS_MD = "results.md"
#: one `ebjdat study` per study directory holds an OS lock on it
STUDY_LOCK_FILE = "study.lock"
STUDY_RUNS_DIR = "runs"
STUDY_LOGS_DIR = "logs"
#: submitit's folder of a study run on SLURM (its pickles and the jobs' own stdout / stderr)
STUDY_SLURM_DIR = "slurm"
#: a run's study record (what a SLURM job of `ebjdat study` measured), written by the job
STUDY_RECORD_FILE = "study_record.json"


class RunDir:
    """One run directory: `RunDir(path).events`, `.last_checkpoint`, `.is_run()`, `.tail()`, ..."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # files
    @property
    def recipe(self) -> Path:
        return self.path / RECIPE_FILE

    @property
    def meta(self) -> Path:
        return self.path / META_FILE

    @property
    def events(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def stdout_log(self) -> Path:
        return self.path / STDOUT_LOG

    # folders
    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES_DIR

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def control(self) -> Path:
        return self.path / CONTROL_DIR

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def study_record(self) -> Path:
        """The record a SLURM job of a study leaves for the study command to collect."""
        return self.path / STUDY_RECORD_FILE

    # checkpoints
    def checkpoint(self, kind: str) -> Path:
        """`checkpoints/<kind>.pt` (kind "last", "best", "collapsed", ...)."""
        return self.checkpoints / f"{kind}{CHECKPOINT_SUFFIX}"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint(LAST)

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint(BEST)

    # reading
    def is_run(self) -> bool:
        """The one rule (`layout.is_run_dir`): a directory with its event log, meta or recipe."""
        return is_run_dir(self.path)

    def has_events(self) -> bool:
        return self.events.is_file()

    def tail(self) -> EventTail:
        """An incremental reader of the event log (new complete events per `poll()`)."""
        return EventTail(self.path)

    def read_events(self) -> list[dict[str, Any]]:
        return read_events(self.path)

    def read_meta(self) -> dict[str, Any]:
        return read_meta(self.path)


class StudyDir:
    """One study directory: `StudyDir(path).results`, `.lock`, `.runs`, `.logs`, `.run(name)`."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"StudyDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StudyDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def results(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def results_md(self) -> Path:
        return self.path / RESULTS_MD

    @property
    def lock(self) -> Path:
        return self.path / STUDY_LOCK_FILE

    @property
    def runs(self) -> Path:
        return self.path / STUDY_RUNS_DIR

    @property
    def logs(self) -> Path:
        return self.path / STUDY_LOGS_DIR

    @property
    def slurm(self) -> Path:
        return self.path / STUDY_SLURM_DIR

    def run(self, name: str) -> RunDir:
        """The run directory `runs/<name>`."""
        return RunDir(self.runs / name)

    @classmethod
    def of_results(cls, results_file: str | os.PathLike[str]) -> "StudyDir":
        """The study directory that holds this results file."""
        return cls(Path(results_file).parent)
