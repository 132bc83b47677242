"""The run directory: the one contract between the engine and every front end (DESIGN.md §3).

The only package that knows the layout on disk, below both `train/` (the writer) and `eval/`
and the TUI (readers and occasional writers of evaluations and samples):

* `layout`     — every file name of a run (`RECIPE_FILE`, `META_FILE`, `EVENTS_FILE`, the
                 checkpoints, the subfolders), the one "is this a run" rule (`is_run_dir`),
                 creating a run directory, atomic text writes, meta, the writer's lock
                 (`RunLock`), dead temp files;
* `dirs`       — `RunDir` and `StudyDir`: a run / a study directory with its names attached
                 (and a study's names: `RESULTS_FILE`, `STUDY_LOCK_FILE`, ...);
* `events`     — the event log: the writer, the tolerant reader, the incremental tail;
* `checkpoint` — atomic checkpoint writes and checked loads (imports torch: not re-exported here);
* `control`    — stop / checkpoint / eval requests from a front end, and signals;
* `scheduler`  — the SLURM job a run runs in (`slurm_info`), recorded in meta and the start event.

Importing this package does not import torch (the TUI relies on that).
"""

from . import control, events, scheduler
from .dirs import (
    RESULTS_FILE,
    RESULTS_MD,
    STUDY_LOCK_FILE,
    STUDY_LOGS_DIR,
    STUDY_RUNS_DIR,
    RunDir,
    StudyDir,
)
from .events import EventTail
from .layout import (
    BEST,
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    CONTROL_DIR,
    EVAL_DIR,
    EVENTS_FILE,
    LAST,
    LAST_CHECKPOINT,
    LAUNCHER_FILES,
    LOCK_FILE,
    META_FILE,
    NO_RUN_MARKERS,
    RECIPE_FILE,
    RUN_MARKERS,
    SAMPLES_DIR,
    STDOUT_LOG,
    SUBDIRS,
    TENSORBOARD_DIR,
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

__all__ = ["BEST", "BEST_CHECKPOINT", "CHECKPOINT_DIR", "CONTROL_DIR", "EVAL_DIR", "EVENTS_FILE", "LAST",
           "LAST_CHECKPOINT", "LAUNCHER_FILES", "LOCK_FILE", "META_FILE", "NO_RUN_MARKERS", "RECIPE_FILE",
           "RESULTS_FILE", "RESULTS_MD", "RUN_MARKERS", "SAMPLES_DIR", "STDOUT_LOG", "STUDY_LOCK_FILE",
           "STUDY_LOGS_DIR", "STUDY_RUNS_DIR", "SUBDIRS", "TENSORBOARD_DIR", "EventTail", "RunDir", "RunDirError",
           "RunLock", "StudyDir", "collect_meta", "control", "create_run_dir", "default_name", "events", "is_run_dir",
           "read_meta", "remove_dead_temp_files", "scheduler", "write_meta", "write_text_atomic"]
