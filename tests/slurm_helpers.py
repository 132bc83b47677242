"""A SLURM cluster for tests: skip without one, submit with sbatch, wait for the job's end.

The cluster is the single-node one that `scripts/slurm/start_local_cluster.sh` starts as root
(CI runs it when it can). No accounting there, so no sacct: a job's state is read with squeue
(`-t all` still lists a finished job for MinJobAge, 300 s by default), and its result from the
files it wrote.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time

import pytest

# node states in which a node takes a 1-CPU job now (mixed: some CPUs busy with other jobs)
READY_STATES = {"idle", "mixed"}
# a job in one of these will not run (again) by itself
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"}


@functools.cache
def cluster_problem(wait_s: float = 5.0) -> str | None:
    """Why no cluster can take a job (asked once per session), or None when a node is ready."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo/sbatch) on PATH; scripts/slurm/start_local_cluster.sh starts one as root"
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=wait_s)
            states = set(out.stdout.split())
            last = " ".join(out.stdout.split()) or "; ".join(out.stderr.strip().splitlines())
            if states & READY_STATES:
                return None
        except subprocess.TimeoutExpired:
            last = "sinfo did not answer"
        if time.monotonic() >= deadline:
            return (f"no SLURM node idle within {wait_s:.0f} s (sinfo: {last or 'nothing'}); "
                    "scripts/slurm/start_local_cluster.sh starts a local cluster as root")
        time.sleep(0.5)


def need_cluster() -> None:
    """Skip the calling test when no SLURM node is ready."""
    problem = cluster_problem()
    if problem is not None:
        pytest.skip(problem)


def sbatch(*args: str, env: dict[str, str] | None = None) -> str:
    """Submit with `sbatch --parsable ARGS`; returns the job id (an array's id for an array).

    The job gets the environment sbatch runs in (`env`, else ours): sbatch's default --export=ALL."""
    out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, f"sbatch failed: {out.stderr.strip()}"
    return out.stdout.strip().split(";")[0]  # "ID" or "ID;CLUSTER"


def job_states(job_id: str) -> dict[str, str]:
    """{job or array task id (e.g. "12" or "12_0"): state} from squeue, finished ones included."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i %T"],
                         capture_output=True, text=True, timeout=30)
    return dict(line.split(maxsplit=1) for line in out.stdout.splitlines() if line.strip())


def wait_done(job_id: str, timeout: float = 60.0, expect: int = 1) -> dict[str, str]:
    """Wait until `expect` tasks of the job are listed and all are done; their final states."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = job_states(job_id)
        # an array not yet split lists one pending line "ID_[0-1]": wait for its tasks
        if len(states) >= expect and all(s in DONE_STATES for s in states.values()):
            return states
        time.sleep(0.25)
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
    raise AssertionError(f"job {job_id} not done after {timeout:.0f} s: {states}")
