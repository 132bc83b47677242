"""Progress of `ebjdat study`: run k of n with the running runs' training progress; a rich
display on a terminal, plain lines in a batch job (one per state change, and a progress line
every tenth of a run)."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from ebjdat_engine.study.runner import Listener, RunTask


def _metrics_text(record: dict[str, Any]) -> str:
    m = record.get("metrics") or {}
    parts = []
    for key, name in (("clean", "clean"), ("pgd", "PGD"), ("aa", "AA")):
        if m.get(key) is not None:
            parts.append(f"{name} {100 * m[key]:.1f}%")
    if m.get("fd_ref") is not None:
        init = m.get("fd_ref_init")
        parts.append(f"fd_ref {m['fd_ref']:.3g}" + (f" (init {init:.3g})" if init is not None else ""))
    return "  ".join(parts)


class PlainStudyProgress(Listener):
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.total = 0
        self.lock = threading.Lock()
        self.last_tenth: dict[str, int] = {}

    def _print(self, text: str) -> None:
        with self.lock:
            try:
                print(text, file=self.stream, flush=True)
            except (BrokenPipeError, OSError):
                pass  # the console is best effort; the study's results file is the record

    def _k(self, task: RunTask) -> str:
        return f"[{self.tasks.index(task) + 1}/{self.total}]"

    def plan(self, study, tasks) -> None:
        self.tasks, self.total = list(tasks), len(tasks)
        trained = sum(1 for t in tasks if t.action == "trained")
        self._print(f"study {study.name}: {len(study.arms)} arms x {len(study.seeds)} seeds = {len(tasks)} runs, "
                    f"{_pace(study)}; {trained} already trained -> {study.out_dir}")

    def state(self, task, state, detail="") -> None:
        extra = _metrics_text(task.record) if state == "done" else detail
        self._print(f"{self._k(task)} {task.name}: {state}" + (f"  {extra}" if extra else ""))

    def progress(self, task, step, total) -> None:
        if not total:
            return
        tenth = int(10 * step / total)
        if tenth > self.last_tenth.get(task.name, 0):
            self.last_tenth[task.name] = tenth
            self._print(f"{self._k(task)} {task.name}: step {step}/{total}")

    def message(self, text) -> None:
        self._print(text)


class RichStudyProgress(Listener):
    """An overall bar (runs done of n) and one bar per running run."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console)
        self.overall = None
        self.bars: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.done = 0

    def plan(self, study, tasks) -> None:
        self.tasks = list(tasks)
        self.progress.start()
        self.overall = self.progress.add_task(f"[bold]{study.name}", total=len(tasks), info=_pace(study))

    def _k(self, task: RunTask) -> str:
        return f"{self.tasks.index(task) + 1}/{len(self.tasks)}"

    def state(self, task, state, detail="") -> None:
        with self.lock:
            bar = self.bars.get(task.name)
            if state in ("training", "evaluating"):
                if bar is None:
                    bar = self.bars[task.name] = self.progress.add_task(
                        f"  run {self._k(task)} {task.name}", total=task.record.get("total_steps"), info="")
                self.progress.update(bar, info=f"{state} {detail}".strip())
                return
            if bar is not None:
                self.progress.remove_task(bar)
                del self.bars[task.name]
            if state in ("done", "failed", "stopped"):
                if state == "done":
                    self.done += 1
                    self.progress.update(self.overall, completed=self.done)
                text = _metrics_text(task.record) if state == "done" else detail
                self.progress.console.print(f"run {self._k(task)} {task.name}: {state}  {text}".rstrip(),
                                            highlight=False, markup=False)

    def progress(self, task, step, total) -> None:
        with self.lock:
            bar = self.bars.get(task.name)
            if bar is not None:
                self.progress.update(bar, completed=step, total=total)

    def message(self, text) -> None:
        self.progress.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


def make_study_progress(plain: bool | None = None) -> Listener:
    if plain is None:
        plain = not sys.stdout.isatty()
    return PlainStudyProgress() if plain else RichStudyProgress()


def _pace(study) -> str:
    """How the study's runs go: `jobs` at a time here, or as one SLURM job array."""
    if getattr(getattr(study, "executor", None), "kind", "local") == "slurm":
        return "as one SLURM job array"
    return f"{study.jobs} at a time"
