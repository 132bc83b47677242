"""Headless progress for `ebjdat run`: a rich progress bar on a terminal, plain lines otherwise.

It is an event listener: it sees exactly what is written to the run's event log, nothing more.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, TextIO

from ebjdat_engine.rundir.events import canonical_terms


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def metrics_line(event: dict[str, Any]) -> str:
    parts = [f"step {event['step']}", f"epoch {event['epoch']:.2f}", f"loss {_fmt(event.get('loss'))}"]
    for name, value in canonical_terms(event.get("terms")).items():
        parts.append(f"{name} {_fmt(value)}")
    if "acc" in event:
        parts.append(f"acc {_fmt(event['acc'], 3)}")
    parts.append(f"lr {_fmt(event.get('lr'), 3)}")
    if event.get("images_per_s"):
        parts.append(f"{event['images_per_s']:.0f} img/s")
    return "  ".join(parts)


def event_line(event: dict[str, Any]) -> str | None:
    """One human line for an event, or None for events not worth a line."""
    kind = event.get("type")
    if kind == "metrics":
        return metrics_line(event)
    if kind == "start":
        resumed = f", resumed from step {event['resumed_from']}" if event.get("resumed_from") else ""
        return (f"start: {event.get('method')} on {event.get('device')}, {event.get('total_steps')} steps "
                f"({event.get('steps_per_epoch')}/epoch){resumed} -> {event.get('run_dir')}")
    if kind == "eval":
        robust = "".join(f" {key} {_fmt(event[key], 4)}" for key in ("pgd_acc", "aa_acc")
                         if event.get(key) is not None)
        return (f"eval  step {event['step']}: {event.get('split')} clean_acc {_fmt(event.get('clean_acc'), 4)}"
                f"{robust} (n={event.get('n')})")
    if kind == "generation":
        ref = event.get("reference") or {}
        trained = f"; reference CNN trained in {ref['seconds']:.1f} s" if ref.get("trained_now") else ""
        return (f"gen   step {event['step']}: fd_ref {_fmt(event.get('fd_ref'))} "
                f"(init {_fmt(event.get('init_baseline'))}, "
                f"floor {_fmt(event.get('floor'))}, n={event.get('n')}){trained}")
    if kind == "checkpoint":
        return None
    if kind == "alarm":
        return (f"ALARM step {event['step']}: {event.get('detector')}: {event.get('message', '')} "
                f"-> {event.get('action')}")
    if kind == "end":
        extra = event.get("reason") or event.get("error") or ""
        return f"end: {event.get('status')} at step {event['step']}" + (f" ({extra})" if extra else "")
    return None


def detach_stdout() -> None:
    """Point file descriptor 1 at /dev/null: stdout broke (a closed pipe, a full disk), and the
    job must not die of it, now or when Python flushes stdout at exit. The run directory is the
    record; the console is best effort."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def best_effort(write: Callable[[], None]) -> bool:
    """Run a console write; on a broken stdout detach it and say False."""
    try:
        write()
        return True
    except OSError:
        detach_stdout()
        return False


class PlainProgress:
    """One line per interesting event (batch jobs, pipes, CI logs)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: dict[str, Any]) -> None:
        line = event_line(event)
        if line and not best_effort(lambda: print(line, file=self.stream, flush=True)):
            raise BrokenPipeError("stdout is gone; progress lines stop, training goes on")

    def close(self) -> None:
        pass


class RichProgress:
    """A live progress bar with the latest metrics; other events print above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=self.console, transient=False)
        self.task = None

    def __call__(self, event: dict[str, Any]) -> None:
        if not best_effort(lambda: self._show(event)):
            raise BrokenPipeError("stdout is gone; the progress bar stops, training goes on")

    def _show(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "start":
            self.progress.start()
            self.task = self.progress.add_task("train", total=event.get("total_steps"),
                                               completed=event.get("step", 0), info="")
        if kind == "metrics" and self.task is not None:
            info = f"loss {_fmt(event.get('loss'))}"
            if "acc" in event:
                info += f"  acc {_fmt(event['acc'], 3)}"
            if event.get("images_per_s"):
                info += f"  {event['images_per_s']:.0f} img/s"
            self.progress.update(self.task, completed=event["step"], info=info)
            return
        line = event_line(event)
        if line:
            self.progress.console.print(line, highlight=False, markup=False)
        if kind == "end":
            self.close()

    def close(self) -> None:
        best_effort(self.progress.stop)


def make_progress(plain: bool | None = None):
    """Rich on a terminal, plain lines otherwise (or when asked)."""
    if plain is None:  # a dumb terminal cannot redraw a bar: lines there too
        plain = not sys.stdout.isatty() or os.environ.get("TERM", "") in ("dumb", "")
    return PlainProgress() if plain else RichProgress()
