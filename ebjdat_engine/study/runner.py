"""`ebjdat study`: run every arm × seed as an ordinary run, evaluate each by the one protocol.

Each run is a child process of the `ebjdat` command itself (`ebjdat run`, then `ebjdat eval`,
then one robust-only `ebjdat eval` per curve budget), so a study run is exactly what a user
would get by hand, and `--jobs N` runs N of them at once. Children start in their own process
group: Ctrl-C (SIGINT) or SIGTERM reach the study, which passes the signal on once, so
training stops gracefully (checkpoint, status "stopped") and the study writes what it has.

Re-running a study does only what is missing:

* a run whose directory holds the arm's exact recipe and an `end` event `finished` (or
  `collapsed`: a result too) is not trained again; a stopped or crashed one with a
  last checkpoint is resumed (`ebjdat run --resume`); an arm whose recipe changed since
  trains anew in `<label>-s<seed>.2` (the old directory is kept: nothing deletes a run);
* an evaluation is reused when the run's `eval/` holds one with the protocol's options for the
  checkpoint file as it is now (same step, size and mtime); otherwise it is run.

The results file (`StudyDir.results`, layout in `results.py`) is rewritten atomically after every stage, so the TUI
(`ebjdat tui --attach studies/<name>`) and a later re-run see the study as it stands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..recipe import from_toml_text
from ..recipe.load import RecipeError
from ..rundir import LAST, EventTail, RunDir, StudyDir
from .devices import DevicePool, cuda_device_count, resolve_devices, visible_device
from .schema import Arm, Study, protocol_options
from .table import eval_results, row_of, training_stats

TERMINAL_DONE = ("finished", "collapsed")


class StudyError(UserError):
    """A study that cannot run (its directory is locked by another study process, ...)."""


@dataclass
class RunTask:
    """One arm × seed: where it runs and what the study knows about it (its entry in the results file)."""

    arm: Arm
    seed: int
    run_dir: Path
    record: dict[str, Any]
    log: Path
    action: str = "new"    # new | resume | trained (see run_dir_for)
    device: int | None = None  # the GPU index it holds while it runs (devices.py), else None

    @property
    def name(self) -> str:
        return self.run_dir.name


class Listener:
    """What a front end hears about a study (no-ops here; the front end has rich and plain ones)."""

    def plan(self, study: Study, tasks: list[RunTask]) -> None: ...
    def state(self, task: RunTask, state: str, detail: str = "") -> None: ...
    def progress(self, task: RunTask, step: int, total: int | None) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


def _recipe_matches(run_dir: Path, recipe) -> bool:
    try:
        return from_toml_text(RunDir(run_dir).recipe.read_text(encoding="utf-8")) == recipe
    except (OSError, UnicodeDecodeError, RecipeError):
        return False


def run_dir_for(study: Study, arm: Arm, seed: int) -> tuple[Path, str]:
    """The run directory of an arm × seed and what to do there: 'new', 'resume', 'trained',
    or 'fresh' (an empty slot after directories of older versions of the arm)."""
    base = StudyDir(study.out_dir).run(study.run_name(arm.label, seed)).path
    recipe = arm.recipes[seed]
    k = 1
    while True:
        path = base if k == 1 else base.with_name(f"{base.name}.{k}")
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            return path, "new"
        if path.is_dir() and _recipe_matches(path, recipe):
            stats = training_stats(path) if RunDir(path).has_events() else {}
            if stats.get("status") in TERMINAL_DONE:
                return path, "trained"
            if RunDir(path).last_checkpoint.is_file():
                return path, "resume"
        k += 1


def checkpoint_file(run_dir: Path, kind: str) -> Path | None:
    """The checkpoint `ebjdat eval --ckpt kind` reads ('best' falls back to 'last')."""
    for k in ([kind, LAST] if kind == "best" else [kind]):
        path = RunDir(run_dir).checkpoint(k)
        if path.is_file():
            return path
    return None


def reusable_eval(run_dir: Path, options: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The latest evaluation of the run with exactly these options, on the checkpoint file as
    it is now; None when there is none (then the study evaluates)."""
    ckpt = checkpoint_file(run_dir, options["ckpt"])
    if ckpt is None:
        return None
    stat = ckpt.stat()
    for path, result in reversed(eval_results(run_dir)):
        got = result.get("options") or {}
        c = result.get("checkpoint") or {}
        if all(got.get(k) == v for k, v in options.items()) and \
                c.get("size") == stat.st_size and c.get("mtime_ns") == stat.st_mtime_ns:
            return path, result
    return None


def eval_args(options: dict[str, Any]) -> list[str]:
    """`ebjdat eval` flags for evaluate()'s options."""
    args = ["--ckpt", options["ckpt"], "--n", str(options["n"]), "--eps", str(options["eps"]),
            "--norm", options["norm"], "--attacks", options["attacks"], "--pgd-steps", str(options["pgd_steps"]),
            "--n-samples", str(options["n_samples"]), "--samples", options["samples"], "--seed", str(options["seed"])]
    args += {"on": ["--fid"], "off": ["--no-fid"], "auto": []}[options["fid"]]
    if options.get("robust_only"):
        args.append("--robust-only")
    if options.get("chain_lengths"):
        args += ["--chain-lengths", ",".join(map(str, options["chain_lengths"]))]
    return args


def curve_options(study: Study, eps: str) -> dict[str, Any]:
    base = protocol_options(study.protocol)
    curve = study.protocol.curve
    base.pop("chain_lengths", None)  # generation is not measured by a robust-only evaluation
    return {**base, "n": curve.n or base["n"], "eps": eps, "attacks": curve.attacks, "robust_only": True}


def check_options(study: Study) -> dict[str, Any]:
    """The second AutoAttack of `[protocol.check]`: the headline budget and points, its attacks."""
    base = protocol_options(study.protocol)
    base.pop("chain_lengths", None)
    return {**base, "attacks": study.protocol.check.attacks, "robust_only": True}


def full_options(study: Study) -> dict[str, Any]:
    return {**protocol_options(study.protocol), "robust_only": False}


@dataclass
class StudyRunner:
    """Runs a study; `run()` returns the exit code (0 every run has its results, 1 some failed,
    130 / 143 stopped by SIGINT / SIGTERM)."""

    study: Study
    #: the `ebjdat` command line that trains and evaluates each run (the front end passes its own:
    #: the engine does not name it)
    command: tuple[str, ...]
    listener: Listener = field(default_factory=Listener)
    poll_s: float = 0.5
    write_results: Callable[[Study, list[RunTask], str], None] | None = None

    #: how many CUDA devices 'auto' finds (a test double replaces it)
    device_count: Callable[[], int] = cuda_device_count

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen] = set()
        self._stop_signal: int | None = None
        self.tasks: list[RunTask] = []
        self.devices = DevicePool(resolve_devices(self.study.devices, self.device_count), self.study.per_device)

    # --- planning -------------------------------------------------------------------------

    def plan(self, previous: dict[str, dict[str, Any]]) -> list[RunTask]:
        """A task per arm × seed, its record seeded from the previous results file."""
        tasks = []
        logs = StudyDir(self.study.out_dir).logs
        for arm in self.study.arms:
            for seed in self.study.seeds:
                run_dir, action = run_dir_for(self.study, arm, seed)
                rel = str(run_dir.relative_to(self.study.out_dir))
                old = previous.get(rel, {}) if run_dir.is_dir() else {}  # a fresh clone: nothing carried
                record = {"seed": seed, "run_dir": rel, "state": "pending", "status": None, "step": None,
                          "total_steps": None, "eval": old.get("eval"), "metrics": old.get("metrics"),
                          "curve": old.get("curve", {}), "error": None}
                tasks.append(RunTask(arm, seed, run_dir, record, logs / f"{run_dir.name}.log", action))
        self.tasks = tasks
        return tasks

    # --- children -------------------------------------------------------------------------

    def _spawn(self, args: list[str], log: Path, stdout: Path | None = None,
               device: int | None = None) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        err = open(log, "a", encoding="utf-8")
        out = open(stdout, "w", encoding="utf-8") if stdout is not None else err
        err.write(f"\n$ ebjdat {' '.join(args)}\n")
        err.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if device is not None:  # the arm's own GPU (devices.py): cuda:0 inside the child
            env["CUDA_VISIBLE_DEVICES"] = visible_device(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        proc = subprocess.Popen([*self.command, *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        err.close()
        if out is not err:
            out.close()
        with self._lock:
            self._children.add(proc)
            stop = self._stop_signal
        if stop is not None:  # a stop arrived while this child was being started
            self._signal(proc, stop)
        return proc

    def _wait(self, proc: subprocess.Popen, task: RunTask | None = None) -> int:
        tail = RunDir(task.run_dir).tail() if task is not None else None
        last_step = None
        try:
            while True:
                try:
                    return proc.wait(timeout=self.poll_s)
                except subprocess.TimeoutExpired:
                    pass
                if tail is not None:
                    step, total = _progress(tail)
                    if step is not None and step != last_step:
                        last_step = step
                        task.record["step"], task.record["total_steps"] = step, total or task.record["total_steps"]
                        self.listener.progress(task, step, task.record["total_steps"])
        finally:
            with self._lock:
                self._children.discard(proc)

    @staticmethod
    def _signal(proc: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, signum: int) -> None:
        """Pass a stop signal on to every child (once per signal received)."""
        with self._lock:
            first = self._stop_signal is None
            self._stop_signal = self._stop_signal or signum
            children = list(self._children)
        for proc in children:
            self._signal(proc, signum)
        if first:
            self.listener.message("stopping: the running jobs checkpoint and stop; run the study again to resume")

    def wait_children(self, timeout: float) -> None:
        """Wait (up to `timeout` s in all) for the running children to exit, e.g. after `stop`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            children = list(self._children)
        for proc in children:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    @property
    def stopping(self) -> bool:
        return self._stop_signal is not None

    # --- one run --------------------------------------------------------------------------

    def _set(self, task: RunTask, state: str, detail: str = "") -> None:
        task.record["state"] = state
        self.listener.state(task, state, detail)
        self._save("running")

    def _train(self, task: RunTask) -> bool:
        run_dir, action = task.run_dir, task.action
        if action == "trained":
            stats = training_stats(run_dir)
            task.record.update(status=stats["status"], step=stats["step"], total_steps=stats["total_steps"])
            return True
        if action == "resume":
            args = ["run", "--resume", str(run_dir), "--plain"]
        else:
            args = ["run", str(task.arm.recipe_path), *sum((["--set", o] for o in task.arm.overrides), []),
                    "--set", f"run.seed={task.seed}", "--run-dir", str(run_dir), "--plain"]
        self._set(task, "training", "resuming" if action == "resume" else "")
        code = self._wait(self._spawn(args, task.log, device=task.device), task)
        stats = training_stats(run_dir) if RunDir(run_dir).has_events() else {}
        task.record.update(status=stats.get("status"), step=stats.get("step"), total_steps=stats.get("total_steps"))
        if stats.get("status") in TERMINAL_DONE:
            return True
        if self.stopping:
            self._set(task, "stopped")
        else:
            task.record["error"] = f"`ebjdat run` exited {code} (status {stats.get('status')}); see {task.log}"
            self._set(task, "failed", task.record["error"])
        return False

    def _evaluate(self, task: RunTask, options: dict[str, Any]) -> dict[str, Any] | None:
        found = reusable_eval(task.run_dir, options)
        if found is not None:
            return found[1]
        out = task.log.with_suffix(".eval.json")
        code = self._wait(self._spawn(["eval", str(task.run_dir), "--json", *eval_args(options)], task.log, out,
                                      device=task.device))
        if code == 0:
            try:
                return json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
        if not self.stopping:
            task.record["error"] = f"`ebjdat eval` (eps {options['eps']}) exited {code}; see {task.log}"
        return None

    def run_task(self, task: RunTask) -> None:
        if self.stopping:
            return
        task.device = self.devices.acquire(cancelled=lambda: self.stopping)
        if task.device is None and self.devices.devices:  # stopped while waiting for a device
            return
        if task.device is not None:
            task.record["device"] = f"cuda:{task.device}"
        try:
            self._run_task(task)
        finally:
            self.devices.release(task.device)
            task.device = None

    def _run_task(self, task: RunTask) -> None:
        try:
            if not self._train(task):
                return
            if self.stopping:
                self._set(task, "stopped")
                return
            self._set(task, "evaluating")
            result = self._evaluate(task, full_options(self.study))
            if result is None:
                self._set(task, "stopped" if self.stopping else "failed", task.record.get("error") or "")
                return
            task.record["eval"] = _relative(result.get("files", {}).get("json"), self.study.out_dir)
            task.record["metrics"] = row_of(result, task.run_dir)
            eval_s = float(result.get("duration_s") or 0.0)
            curve = {}
            for eps in self.study.protocol.curve.eps:
                self._set(task, "evaluating", f"curve eps {eps.text}")
                point = self._evaluate(task, curve_options(self.study, eps.text))
                if point is None:
                    self._set(task, "stopped" if self.stopping else "failed", task.record.get("error") or "")
                    return
                curve[eps.text] = {"clean": point["clean_acc"], "pgd": point["pgd_acc"], "aa": point["aa_acc"]}
                eval_s += float(point.get("duration_s") or 0.0)
            task.record["curve"] = curve
            if task.arm.label in self.study.protocol.check.arms:
                self._set(task, "evaluating", f"check: AutoAttack {self.study.protocol.check.attacks}")
                point = self._evaluate(task, check_options(self.study))
                if point is None:
                    self._set(task, "stopped" if self.stopping else "failed", task.record.get("error") or "")
                    return
                task.record["check"] = {"attacks": self.study.protocol.check.attacks, "clean": point["clean_acc"],
                                        "pgd": point["pgd_acc"], "aa": point["aa_acc"],
                                        "eval": _relative(point.get("files", {}).get("json"), self.study.out_dir)}
                eval_s += float(point.get("duration_s") or 0.0)
            task.record["eval_s"] = round(eval_s, 1)  # the evaluations' own time (without startup)
            task.record["error"] = None
            self._set(task, "done")
        except Exception as e:  # one run's failure must not take the others down
            task.record["error"] = f"{type(e).__name__}: {e}"
            self._set(task, "failed", task.record["error"])

    # --- the whole study ------------------------------------------------------------------

    def _save(self, state: str) -> None:
        if self.write_results is not None:
            with self._lock:
                self.write_results(self.study, self.tasks, state)

    def run(self) -> int:
        previous = _previous_runs(StudyDir(self.study.out_dir).results)
        tasks = self.plan(previous)
        self.listener.plan(self.study, tasks)
        self._save("running")
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                handlers[signum] = signal.signal(signum, lambda s, _f: self.stop(s))
        try:
            with ThreadPoolExecutor(max_workers=self.study.jobs, thread_name_prefix="arm") as pool:
                futures = [pool.submit(self.run_task, t) for t in tasks]
                while not all(f.done() for f in futures):
                    time.sleep(0.1)  # the main thread stays free to take signals
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        for task in tasks:
            if task.record["state"] in ("pending", "training", "evaluating"):
                task.record["state"] = "stopped" if self.stopping else task.record["state"]
        failed = any(t.record["state"] == "failed" for t in tasks)
        state = "stopped" if self.stopping else ("failed" if failed else "finished")
        self._save(state)
        if self.stopping:
            return 128 + int(self._stop_signal or signal.SIGINT)
        return 1 if failed else 0


def _progress(tail: EventTail) -> tuple[int | None, int | None]:
    """The latest step and total_steps among the events appended since the last poll (whole
    lines only: `EventTail` keeps a half-written one for the next poll)."""
    step = total = None
    try:
        events = tail.poll()
    except OSError:
        return None, None
    for ev in events:
        if ev.get("type") == "start":
            total = ev.get("total_steps")
        if ev.get("type") in ("metrics", "checkpoint", "end", "start") and isinstance(ev.get("step"), int):
            step = ev["step"]
    return step, total


def _relative(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _previous_runs(path: Path) -> dict[str, dict[str, Any]]:
    """The run records of an earlier results file, by run directory (relative)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {r["run_dir"]: r for arm in data.get("arms", []) for r in arm.get("runs", [])
                if isinstance(r, dict) and "run_dir" in r}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return {}
