"""What a run records of the SLURM job it runs in (rundir.scheduler), with a made-up environment.

The same function inside a real sbatch job: tests/test_slurm_cluster.py.
"""

from __future__ import annotations

import json
import os

import pytest

from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir import collect_meta
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.rundir.scheduler import slurm_info
from ebjdat_engine.train.loop import Trainer
from ebjdat_engine.train.session import run

# what slurmd sets in task 1 of array job 40 (task 1 got its own job id, 42), after one requeue
ARRAY_TASK_ENV = {"SLURM_JOB_ID": "42", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "1",
                  "SLURMD_NODENAME": "node7", "SLURM_JOB_PARTITION": "debug", "SLURM_RESTART_COUNT": "1",
                  "PATH": "/usr/bin"}


@pytest.fixture
def no_slurm(monkeypatch):
    """The test process itself may run under sbatch: take SLURM's variables away."""
    for name in list(os.environ):
        if name.startswith(("SLURM_", "SLURMD_")):
            monkeypatch.delenv(name)


def test_outside_slurm_there_is_nothing():
    assert slurm_info({}) is None
    assert slurm_info({"PATH": "/usr/bin", "SLURM_JOB_ID": ""}) is None


def test_an_array_task_after_a_requeue():
    assert slurm_info(ARRAY_TASK_ENV) == {"job_id": 42, "array_job_id": 40, "array_task_id": 1, "node": "node7",
                                          "partition": "debug", "restart_count": 1}


def test_a_plain_job_on_its_first_run():
    """No array variables, and no SLURM_RESTART_COUNT: SLURM sets it only once a job is requeued."""
    info = slurm_info({"SLURM_JOB_ID": "7", "SLURMD_NODENAME": "vm", "SLURM_JOB_PARTITION": "debug"})
    assert info == {"job_id": 7, "array_job_id": None, "array_task_id": None, "node": "vm", "partition": "debug",
                    "restart_count": 0}


def test_ids_that_are_not_numbers_are_kept_as_given():
    info = slurm_info({"SLURM_JOB_ID": "7.batch", "SLURM_RESTART_COUNT": "x"})
    assert info["job_id"] == "7.batch" and info["restart_count"] == 0 and info["node"] is None


def test_meta_has_slurm_only_under_slurm(no_slurm, monkeypatch):
    assert "slurm" not in collect_meta("cpu")
    for name, value in ARRAY_TASK_ENV.items():
        monkeypatch.setenv(name, value)
    assert collect_meta("cpu")["slurm"] == slurm_info(ARRAY_TASK_ENV)


def test_a_run_under_slurm_records_its_job_in_meta_and_the_start_event(tiny_recipe, no_slurm, monkeypatch):
    assert Trainer._where() == {}  # outside SLURM the start event keeps exactly its keys
    for name, value in ARRAY_TASK_ENV.items():
        monkeypatch.setenv(name, value)
    result = run(resolve(tiny_recipe, ["train.epochs=1", "eval.every_epochs=0"]), str(tiny_recipe))
    expected = slurm_info(ARRAY_TASK_ENV)
    assert json.loads((result.run_dir / "meta.json").read_text())["slurm"] == expected
    assert next(e for e in read_events(result.run_dir) if e["type"] == "start")["slurm"] == expected
