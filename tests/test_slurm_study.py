"""`ebjdat study --executor slurm` against a real SLURM cluster (a single node on this machine,
started by scripts/slurm/start_local_cluster.sh; `.ci/run` starts it). Skipped, saying why, when
no cluster answers.

A tiny study through the job array gives the local executor's numbers; a task requeued
mid-training (`scontrol requeue`) resumes and ends with the uninterrupted run's last loss;
`--detach` then a second invocation collects without submitting again; a cancelled task is
failed with its log, and the next invocation resubmits only it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, ebjdat

from ebjdat_engine.rundir.events import read_events


def _cluster_idle() -> str | None:
    """None when a SLURM node answers idle (or mixed), else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo/sbatch) on this machine"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (subprocess.TimeoutExpired, OSError) as e:
        return f"sinfo did not answer ({e})"
    if not any(s.strip().rstrip("*") in ("idle", "mixed", "allocated") for s in out.split()):
        return f"no SLURM node is up (sinfo: {out.strip() or 'nothing'})"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'ebjdat[slurm]')"
    return None


WHY = _cluster_idle()
pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(WHY is not None, reason=f"needs a SLURM cluster: {WHY}")]

STUDY = """
[study]
name = "{name}"
recipe = "tiny.toml"
seeds = [0]
set = [{steps}, "monitor.every=0", "monitor.gen_every=0", "eval.every_epochs=0", "train.log_every=10",
       "adversary.eps=0.1", "adversary.step_size=0.025", "adversary.steps=2", "runtime.threads=1"]

[protocol]
n = 24
eps = "0.1"
attacks = "apgd-ce"
n_samples = 40

[executor]
kind = "{kind}"
time_min = 10
{arms}
"""
TWO_ARMS = """
[[arm]]
label = "standard"
set = ["method.name=standard"]

[[arm]]
label = "pgd_at"
set = ["method.name=pgd_at"]
"""


def write(folder: Path, name: str, kind: str = "slurm", steps: str = '"train.max_steps=4"',
          arms: str = TWO_ARMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.toml").write_text(TINY_RECIPE.format(out_dir=(folder / "unused").as_posix()))
    path = folder / f"{name}.toml"
    path.write_text(STUDY.format(name=name, kind=kind, steps=steps, arms=arms))
    return path


def results(folder: Path, name: str) -> dict:
    return json.loads((folder / name / "results.json").read_text())


def metrics(doc: dict) -> dict:
    return {(a["label"], r["seed"]): {k: r["metrics"][k] for k in ("clean", "pgd", "aa", "fd_ref")}
            for a in doc["arms"] for r in a["runs"]}


def queued() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30).stdout
    return set(out.split())


def wait_until(what, timeout: float = 180.0, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def test_a_study_through_a_job_array_gives_the_local_numbers_and_records_its_jobs(tmp_path: Path):
    proc = ebjdat("study", str(write(tmp_path, "on_slurm")), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = ebjdat("study", str(write(tmp_path, "local", kind="local")), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    slurm, local = results(tmp_path, "on_slurm"), results(tmp_path, "local")
    assert slurm["state"] == "finished" and metrics(slurm) == metrics(local)
    for arm in slurm["arms"]:
        (run,) = arm["runs"]
        run_dir = tmp_path / "on_slurm" / run["run_dir"]
        start = next(e for e in read_events(run_dir) if e["type"] == "start")
        assert start["slurm"]["job_id"] and run["slurm_job"]          # the start event names its job
        assert list(run_dir.glob("slurm-*_log.out"))                   # the job's log sits in the run


def test_a_requeued_task_resumes_and_ends_with_the_uninterrupted_loss(tmp_path: Path):
    arm = '\n[[arm]]\nlabel = "pgd_at"\nset = ["method.name=pgd_at"]\n'
    steps = '"train.max_steps=200", "train.epochs=100"'
    path = write(tmp_path, "rq", steps=steps, arms=arm)
    proc = ebjdat("study", str(path), "--detach", "--plain", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = results(tmp_path, "rq")["arms"][0]["runs"][0]["slurm_job"]
    run_dir = tmp_path / "rq" / "runs" / "pgd_at-s0"
    wait_until(lambda: any(e["type"] == "metrics" and e["step"] >= 30 for e in read_events(run_dir)))
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    wait_until(lambda: any(e["type"] == "end" for e in read_events(run_dir)))
    ends = [e for e in read_events(run_dir) if e["type"] == "end"]
    assert ends[0]["status"] == "stopped", ends
    # SLURM holds a requeued job about 2 minutes (BeginTime); once it is pending again, start it now
    def released() -> bool:
        state = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%T"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
        if state != "PENDING":
            return state == "RUNNING"
        return subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], capture_output=True,
                              timeout=30).returncode == 0
    wait_until(released, timeout=150)
    proc = ebjdat("study", str(path), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(run_dir)
    starts = [e for e in events if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"] == ends[0]["step"]
    assert [e for e in events if e["type"] == "end"][-1]["status"] == "finished"
    # the same run, uninterrupted, on this machine
    local = write(tmp_path, "straight", kind="local", steps=steps, arms=arm)
    proc = ebjdat("study", str(local), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    straight = read_events(tmp_path / "straight" / "runs" / "pgd_at-s0")
    last = [e["loss"] for e in events if e["type"] == "metrics"][-1]
    assert last == [e["loss"] for e in straight if e["type"] == "metrics"][-1]


def test_detach_then_collect_submits_nothing_new_and_a_cancelled_task_is_resubmitted_alone(tmp_path: Path):
    path = write(tmp_path, "later")
    proc = ebjdat("study", str(path), "--detach", "--plain", timeout=120)
    assert proc.returncode == 0 and "submitted 2 run(s)" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    jobs = {r["run_dir"]: r["slurm_job"] for a in results(tmp_path, "later")["arms"] for r in a["runs"]}
    wait_until(lambda: not (set(jobs.values()) & queued()), timeout=300)
    proc = ebjdat("study", str(path), "--plain", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = results(tmp_path, "later")
    assert doc["state"] == "finished"
    assert {r["run_dir"]: r["slurm_job"] for a in doc["arms"] for r in a["runs"]} == jobs   # nothing resubmitted
    assert "submitted" not in proc.stdout + proc.stderr or "submitted 0" in proc.stdout + proc.stderr
    # a cancelled task: failed, with its log; the next invocation resubmits it and only it
    cancel = write(tmp_path, "cancel", steps='"train.max_steps=300", "train.epochs=100"')
    proc = ebjdat("study", str(cancel), "--detach", "--plain", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = {r["run_dir"]: r["slurm_job"] for a in results(tmp_path, "cancel")["arms"] for r in a["runs"]}
    victim = first["runs/pgd_at-s0"]
    wait_until(lambda: (tmp_path / "cancel" / "runs" / "pgd_at-s0").is_dir())
    subprocess.run(["scancel", victim], check=True, timeout=30)
    proc = ebjdat("study", str(cancel), "--plain", timeout=600)
    assert proc.returncode == 1
    doc = results(tmp_path, "cancel")
    runs = {r["run_dir"]: r for a in doc["arms"] for r in a["runs"]}
    assert runs["runs/standard-s0"]["state"] == "done"
    assert runs["runs/pgd_at-s0"]["state"] == "failed" and victim in runs["runs/pgd_at-s0"]["error"]
    proc = ebjdat("study", str(cancel), "--plain", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = {r["run_dir"]: r["slurm_job"] for a in results(tmp_path, "cancel")["arms"] for r in a["runs"]}
    assert again["runs/standard-s0"] == first["runs/standard-s0"]     # not resubmitted
    assert again["runs/pgd_at-s0"] != victim                           # resubmitted alone
