"""Where a run ran when a batch scheduler started it: today SLURM only.

A run started under `sbatch` (by hand, by a job array, or by submitit) records its job in its
`meta.json` and its `start` event, so that a reader can find the job's log, tell the tasks of an
array apart, and see that a run was requeued (SLURM_RESTART_COUNT). Nothing is recorded outside
SLURM: the meta and the events of other runs keep exactly the keys they had.

Reads the environment variables that slurmd sets in every job (see `man sbatch`, OUTPUT
ENVIRONMENT VARIABLES); asks no SLURM command, so it costs nothing and works without accounting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def slurm_info(environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The SLURM job this process runs in, or None outside SLURM (no SLURM_JOB_ID).

    Keys: job_id (this task's own job id: in an array each task has one), array_job_id and
    array_task_id (None outside an array), node (SLURMD_NODENAME), partition, restart_count
    (0 on the first run: SLURM sets SLURM_RESTART_COUNT only once the job has been requeued).
    Ids are ints when they read as ints, else the string as given.
    """
    if not environ.get("SLURM_JOB_ID"):
        return None

    def ident(name: str) -> int | str | None:
        value = environ.get(name) or None
        number = _int_or_none(value)
        return number if number is not None else value

    return {
        "job_id": ident("SLURM_JOB_ID"),
        "array_job_id": ident("SLURM_ARRAY_JOB_ID"),
        "array_task_id": ident("SLURM_ARRAY_TASK_ID"),
        "node": environ.get("SLURMD_NODENAME") or None,
        "partition": environ.get("SLURM_JOB_PARTITION") or None,
        "restart_count": _int_or_none(environ.get("SLURM_RESTART_COUNT")) or 0,
    }
