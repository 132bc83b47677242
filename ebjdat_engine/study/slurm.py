"""`ebjdat study --executor slurm`: the study's runs as one SLURM job array, through submitit.

Each pending arm × seed becomes one task of a single job array (submitit's `map_array`). A task
is :class:`StudyTask`: on its node it does exactly what the local runner does for one run (the
same `ebjdat run`, then `ebjdat eval` with the protocol, the curve and the check, as child
processes, in the same run directory), then leaves the run's record in the run directory
(`RunDir.study_record`) and copies its job's log there. The run directories must therefore be on
a filesystem the nodes share.

The study command follows the jobs and collects the records. Where a run stands comes from two
places only: the run directory (its events, its record) and `squeue` (is the job still queued or
running). `sacct` is not used: many small clusters run without accounting, and there submitit's
own job states read UNKNOWN although the results come back. A run's state is `pending` (queued),
`requeued` (queued again after it ran: preempted, timed out or `scontrol requeue`), `training`
/ `evaluating` (running), `done` (its record is in), or `failed` (its job left the queue without
a record; the error names its log).

Preemption and time limits: SLURM signals the job before it kills it. `scontrol requeue` and a
preemption send SIGTERM, which reaches the task's `ebjdat run`: it checkpoints and ends `stopped`,
and when the job runs again the task resumes it (`ebjdat run --resume`), so the losses are those of
an uninterrupted run. Before the time limit submitit's signal (USR2) calls
:meth:`StudyTask.checkpoint`: the running child is stopped the same way and the task requeued.

Submitting is idempotent: a run whose previous job is still in `squeue` is followed, never
submitted again; `--detach` submits and returns, and the same command later collects what finished
and submits only what is missing (a failed or cancelled run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from ..rundir import RunDir, StudyDir
from ..rundir.layout import write_text_atomic
from .runner import Listener, RunTask, StudyError, StudyRunner, _previous_runs, full_options
from .schema import Study, load_study

#: squeue states that mean "still in the queue or running"
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
        "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}


def _submitit():
    try:
        import submitit
    except ImportError:
        raise StudyError("the slurm executor needs submitit: pip install 'ebjdat[slurm]'") from None
    return submitit


class StudyTask:
    """One arm × seed of a study, run on a SLURM node (see the module docstring).

    Picklable (submitit sends it to the node); `checkpoint` makes it requeue-able."""

    def __init__(self) -> None:
        self._runner: StudyRunner | None = None

    def __call__(self, study_file: str, label: str, seed: int, command: Sequence[str]) -> dict[str, Any]:
        import attrs

        # SLURM placed this task on its GPUs already (CUDA_VISIBLE_DEVICES): hand out none
        study = attrs.evolve(load_study(study_file), devices=())
        self._runner = runner = StudyRunner(study, tuple(command))
        task = next(t for t in runner.plan({}) if t.arm.label == label and t.seed == seed)
        try:
            runner.run_task(task)
        finally:
            record = {**task.record, "slurm_job": _job_id(), "node": os.environ.get("SLURMD_NODENAME"),
                      "protocol_options": full_options(study)}
            if RunDir(task.run_dir).path.is_dir():
                write_text_atomic(RunDir(task.run_dir).study_record, json.dumps(record, indent=1))
                _copy_job_logs(task)
        return record

    def checkpoint(self, *args: Any, **kwargs: Any):
        """The scheduler's warning (time limit): stop the running child gracefully (it checkpoints),
        then resubmit this task; run again, it resumes the run."""
        if self._runner is not None:
            self._runner.stop(signal.SIGTERM)
            self._runner.wait_children(timeout=120)
        submitit = _submitit()
        return submitit.helpers.DelayedSubmission(StudyTask(), *args, **kwargs)


def _job_id() -> str | None:
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{index}" if array and index else os.environ.get("SLURM_JOB_ID")


def _copy_job_logs(task: RunTask) -> None:
    """The job's own stdout / stderr (submitit's) and the run's command log, into the run directory."""
    try:
        submitit = _submitit()
        paths = submitit.JobEnvironment().paths
        sources = [Path(str(paths.stdout)), Path(str(paths.stderr))]
    except Exception:  # not under submitit (a test calling the task directly)
        sources = []
    for source in [*sources, task.log]:
        try:
            if source.is_file():
                shutil.copyfile(source, task.run_dir / f"slurm-{source.name}")
        except OSError:
            pass


def squeue_states(job_ids: Sequence[str]) -> dict[str, str]:
    """The squeue state of each of `job_ids` still known to SLURM ("123_4" for array tasks)."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-u", str(os.getuid())],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except FileNotFoundError:
        raise StudyError("squeue: not found; is this a SLURM login node?") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise StudyError(f"squeue failed: {getattr(e, 'stderr', '') or e}") from None
    states = {}
    for line in out.splitlines():
        job, _, state = line.strip().partition("|")
        states[job] = state
    wanted = set(job_ids)
    return {job: state for job, state in states.items() if job in wanted}


def _record_if_done(task: RunTask, options: dict[str, Any]) -> dict[str, Any] | None:
    """The run's record when its job finished it under this protocol, else None."""
    path = RunDir(task.run_dir).study_record
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("state") != "done" or task.action not in ("trained",):
        return None
    if record.get("protocol_options") not in (None, options):
        return None
    return record


class SlurmStudy:
    """Submits a study's missing runs as one job array and follows them (module docstring)."""

    def __init__(self, study: Study, command: Sequence[str], listener: Listener | None = None,
                 poll_s: float = 5.0):
        self.study = study
        self.command = tuple(command)
        self.listener = listener or Listener()
        self.poll_s = poll_s
        self.runner = StudyRunner(study, self.command, self.listener)  # plan and records, as local
        self.tasks: list[RunTask] = []
        self.submitted: list[str] = []
        self._stop = False

    # --- planning -----------------------------------------------------------------------

    def plan(self) -> tuple[list[RunTask], list[RunTask]]:
        """(tasks to submit, tasks to follow); records of finished runs are collected here."""
        previous = _previous_runs(StudyDir(self.study.out_dir).results)
        self.tasks = self.runner.plan(previous)
        options = full_options(self.study)
        jobs = {t.name: previous.get(t.record["run_dir"], {}).get("slurm_job") for t in self.tasks}
        live = squeue_states([j for j in jobs.values() if j])
        submit, follow = [], []
        for task in self.tasks:
            job = jobs[task.name]
            done = _record_if_done(task, options)
            if done is not None:
                task.record.update(done, state="done")
            elif job and job in live:
                task.record.update(slurm_job=job, state=self._queued_state(task, live[job]))
                follow.append(task)
            else:
                submit.append(task)
        return submit, follow

    @staticmethod
    def _queued_state(task: RunTask, squeue_state: str) -> str:
        if squeue_state == "RUNNING":
            return "training"
        ran_before = RunDir(task.run_dir).has_events()
        return "requeued" if ran_before else "pending"

    # --- submitting ---------------------------------------------------------------------

    def submit(self, tasks: list[RunTask]) -> None:
        if not tasks:
            return
        submitit = _submitit()
        ex = self.study.executor
        folder = StudyDir(self.study.out_dir).slurm / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = dict(name=f"ebjdat-{self.study.name}", timeout_min=ex.time_min,
                                      cpus_per_task=ex.cpus_per_run, slurm_array_parallelism=ex.array_parallelism,
                                      tasks_per_node=1, nodes=1)
        if ex.partition:
            params["slurm_partition"] = ex.partition
        if ex.gpus_per_run:
            params["gpus_per_node"] = ex.gpus_per_run
        if ex.mem_gb:
            params["mem_gb"] = ex.mem_gb
        extra = dict(item.split("=", 1) for item in ex.sbatch)
        extra.setdefault("requeue", True)   # preemption and `scontrol requeue` put the task back
        params["slurm_additional_parameters"] = extra
        executor.update_parameters(**params)
        study_file = str(Path(self.study.path).resolve())
        try:
            jobs = executor.map_array(StudyTask(), [study_file] * len(tasks), [t.arm.label for t in tasks],
                                      [t.seed for t in tasks], [list(self.command)] * len(tasks))
        except Exception as e:  # sbatch refused (no such partition, ...): say so, submit nothing
            raise StudyError(f"sbatch refused the study's job array: {e}") from None
        for task, job in zip(tasks, jobs):
            task.record.update(slurm_job=str(job.job_id), state="pending", error=None)
            self.submitted.append(str(job.job_id))
            self.listener.state(task, "pending", f"SLURM job {job.job_id}")

    # --- following ----------------------------------------------------------------------

    def follow(self, tasks: list[RunTask]) -> None:
        """Poll squeue and the run directories until every followed task has left the queue."""
        tails = {t.name: RunDir(t.run_dir) for t in tasks}
        active = list(tasks)
        while active and not self._stop:
            live = squeue_states([t.record["slurm_job"] for t in active])
            for task in list(active):
                job = task.record["slurm_job"]
                if job in live:
                    state = self._queued_state(task, live[job])
                    if state == "training" and tails[task.name].has_events():
                        ends = [e for e in tails[task.name].read_events() if e["type"] in ("end", "start")]
                        if ends and ends[-1].get("status") in ("finished", "collapsed"):
                            state = "evaluating"
                    if state != task.record["state"]:
                        self.listener.state(task, state, f"SLURM job {job}")
                    task.record["state"] = state
                    continue
                active.remove(task)
                record = _read_record(task)
                if record is not None and record.get("state") == "done":
                    task.record.update(record)
                    self.listener.state(task, "done")
                else:
                    log = StudyDir(self.study.out_dir).slurm / job
                    why = (record or {}).get("error") or "cancelled, killed or failed"
                    task.record.update(state="failed", error=f"SLURM job {job} left the queue without a result "
                                       f"({why}); see {log}_*_log.err and {task.log}")
                    self.listener.state(task, "failed", task.record["error"])
            self.runner.tasks = self.tasks
            self.runner._save("running")
            if active:
                time.sleep(self.poll_s)

    def stop(self, *_: Any) -> None:
        self._stop = True

    # --- the whole study ----------------------------------------------------------------

    def run(self, detach: bool = False) -> int:
        submit, follow = self.plan()
        self.listener.plan(self.study, self.tasks)
        for task in self.tasks:
            if task.record["state"] != "pending" or task in follow:
                self.listener.state(task, task.record["state"], f"SLURM job {task.record.get('slurm_job')}"
                                    if task in follow else "")
        self.submit(submit)
        self.runner.tasks = self.tasks
        self.runner._save("running")
        if detach:
            n = len(submit)
            self.listener.message(f"submitted {n} run(s) as SLURM job array "
                                  f"{self.submitted[0].split('_')[0] if self.submitted else '-'}; "
                                  f"following {len(follow)}; run the same command again to collect")
            return 0
        handlers = {s: signal.signal(s, self.stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.follow([*follow, *submit])
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        if self._stop:
            self.listener.message("stopped following; the jobs keep running: run the same command again to "
                                  "collect them")
            return 130
        return 1 if any(t.record["state"] == "failed" for t in self.tasks) else 0


def _read_record(task: RunTask) -> dict[str, Any] | None:
    try:
        return json.loads(RunDir(task.run_dir).study_record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = ["SlurmStudy", "StudyTask", "squeue_states"]
