"""The run directory: the one contract between the engine and every front end (DESIGN.md §3).

The only package that knows the layout on disk, below both `train/` (the writer) and `eval/`
and the TUI (readers and occasional writers of evaluations and samples):

* `layout`     — names (recipe.toml, meta.json, the subfolders), creating a run directory,
                 atomic text writes, meta, the writer's lock (`RunLock`), dead temp files;
* `events`     — events.jsonl: the writer, the tolerant reader, the incremental tail;
* `checkpoint` — atomic checkpoint writes and checked loads (imports torch: not re-exported here);
* `control`    — stop / checkpoint / eval requests from a front end, and signals.

Importing this package does not import torch (the TUI relies on that).
"""

from . import control, events
from .layout import (
    LAUNCHER_FILES,
    LOCK_FILE,
    META_FILE,
    RECIPE_FILE,
    SUBDIRS,
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

__all__ = ["LAUNCHER_FILES", "LOCK_FILE", "META_FILE", "RECIPE_FILE", "SUBDIRS", "RunDirError", "RunLock",
           "collect_meta", "control", "create_run_dir", "default_name", "events", "is_run_dir", "read_meta",
           "remove_dead_temp_files", "write_meta", "write_text_atomic"]
