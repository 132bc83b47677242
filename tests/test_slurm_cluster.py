"""Jobs on a real SLURM cluster: a batch job, a 2-task array, and what a job records of itself.

Skipped, with the reason, where no SLURM node is ready (no sinfo, or no node idle within 5 s):
`scripts/slurm/start_local_cluster.sh` starts a single-node cluster on this machine as root, and
.ci/run runs it when it can. Each test takes a few seconds on that cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from slurm_helpers import need_cluster, sbatch, wait_done

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _cluster():
    need_cluster()


def test_a_batch_job_runs_and_writes_its_output(tmp_path):
    out = tmp_path / "job.out"
    job = sbatch("--job-name=ebjdat-test", "-o", str(out), "--wrap", 'echo "job $SLURM_JOB_ID on $SLURMD_NODENAME"')
    assert wait_done(job) == {job: "COMPLETED"}
    assert out.read_text().split()[:2] == ["job", job]


def test_an_array_runs_both_tasks(tmp_path):
    job = sbatch("--job-name=ebjdat-test", "--array=0-1", "-o", str(tmp_path / "task_%a.out"),
                 "--wrap", 'echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID"')
    assert wait_done(job, expect=2) == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    for task in (0, 1):
        assert (tmp_path / f"task_{task}.out").read_text().split() == [job, str(task)]


def test_slurm_info_inside_a_real_job(tmp_path):
    """ebjdat_engine.rundir.scheduler.slurm_info, run by python under sbatch, reads the job it is in."""
    out = tmp_path / "info.json"
    code = ("import json; from ebjdat_engine.rundir.scheduler import slurm_info; "
            f"open({str(out)!r}, 'w').write(json.dumps(slurm_info()))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    job = sbatch("--job-name=ebjdat-test", "--array=1", "-o", str(tmp_path / "job.out"),
                 "--wrap", f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}", env=env)
    states = wait_done(job)
    assert list(states.values()) == ["COMPLETED"], (tmp_path / "job.out").read_text()
    info = json.loads(out.read_text())
    assert info["array_job_id"] == int(job) and info["array_task_id"] == 1
    assert isinstance(info["job_id"], int)  # the task's own id (an array's last task keeps the array's id)
    assert info["node"] and info["partition"] and info["restart_count"] == 0
