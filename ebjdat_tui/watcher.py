"""The file watcher: a background thread that tails a run directory and posts messages.

It reads only files (the event log through `EventTail`, which keeps a half-written last line back,
the meta, the recipe, control/handled/, sample PNGs; names from `RunDir`) and checks whether the job's process is
alive; it never touches a widget. The job never waits on it: the log is append-only and the
watcher only reads.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

from textual.message import Message

from ebjdat_engine.rundir import NO_RUN_MARKERS, RunDir, is_run_dir

from .liveness import LIVE, job_status, process_alive, read_meta
from .messages import AlarmRaised, ControlServed, RunEnded, RunUpdated
from .reducer import RunState
from .runs import newest_sample, read_recipe_text, resolve_sample_path

#: lines of the launcher's stdout log shown when a launched job fails before its first event
FAILED_TAIL_LINES = 20


def tail_text(path: Path, lines: int = FAILED_TAIL_LINES, max_bytes: int = 16384) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(size - max_bytes, 0))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


class RunWatcher:
    """Polls `run_dir` every `interval` seconds in a daemon thread; `post` receives messages.

    `process` is the job's `Popen` when this TUI launched it (its exit is then known exactly,
    and a zombie is never mistaken for a live job); otherwise the pid in the run's meta is checked.
    `poll_once` does one round synchronously (tests call it without the thread).
    """

    def __init__(self, run_dir: str | Path, post: Callable[[Message], Any], *,
                 process: subprocess.Popen | None = None, interval: float = 0.2,
                 slow_every: int = 5):
        self.run_dir = Path(run_dir)
        self.files = RunDir(self.run_dir)
        self.post = post
        self.process = process
        self.interval = interval
        self.slow_every = slow_every
        self.state = RunState(self.run_dir)
        self._tail = self.files.tail()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polls = 0
        self._last_key: tuple[Any, ...] | None = None
        self._status = ""
        self._meta: dict[str, Any] = {}
        self._meta_mtime: float | None = None
        self._recipe_text: str | None = None
        self._sample: Path | None = None
        self._sample_event_id: int | None = None
        self._handled: set[str] | None = None

    # --- thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ebjdat-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                for message in self.poll_once():
                    self.post(message)
            except Exception as e:  # noqa: BLE001 - a reader must never die silently
                self.post(RunUpdated(self.state.snapshot("unknown", f"watcher error: {type(e).__name__}: {e}")))
            if self._stop.wait(self.interval):
                return

    # --- one round ----------------------------------------------------------------------

    def poll_once(self) -> list[Message]:
        slow = self._polls % self.slow_every == 0
        first = self._polls == 0
        self._polls += 1
        out: list[Message] = []
        if not self.run_dir.is_dir():
            status, detail = "missing", f"no run directory at {self.run_dir}"
            if self.run_dir.exists():
                detail = f"{self.run_dir} is not a directory"
            return self._publish(status, detail, changed=False, out=out)

        if slow:
            self._read_meta()
        alive = self._alive()  # before reading: an end event written before exit is then seen
        events = self._tail.poll()
        for event in events:
            self.state.apply(event)
            if event.get("type") == "alarm" and not first:
                out.append(AlarmRaised(event))
        if slow or events:
            self._read_side_files(slow)
        if slow:
            out.extend(self._served())
        status, detail = self._status_of(alive)
        return self._publish(status, detail, changed=bool(events), out=out)

    def _publish(self, status: str, detail: str, changed: bool, out: list[Message]) -> list[Message]:
        key = (status, detail, self._sample, self._recipe_text is not None, len(self._meta))
        if changed or key != self._last_key:
            out.insert(0, RunUpdated(self.state.snapshot(status, detail, sample_path=self._sample,
                                                         recipe_text=self._recipe_text, meta=self._meta)))
        if self._status in LIVE and status not in LIVE:
            out.append(RunEnded(status, detail))
        self._last_key = key
        self._status = status
        return out

    def _alive(self) -> bool | None:
        if self.process is not None:
            return self.process.poll() is None
        return process_alive(self._meta)

    def _status_of(self, alive: bool | None) -> tuple[str, str]:
        state = self.state
        if self.process is not None and alive is False and state.start is None and state.end is None:
            code = self.process.returncode
            how = f"was ended by signal {-code}" if code < 0 else f"exited with code {code}"
            log = tail_text(self.files.stdout_log)
            return "failed", (f"the job {how} before its first event; "
                              f"the end of {self.files.stdout_log}:\n{log}")
        if (self.process is None and state.n_events == 0 and not self._meta and not self.files.is_run()
                and not self.files.stdout_log.exists()):  # a launcher's folder before its job wrote anything
            runs = sorted(p.name for p in self.run_dir.iterdir() if is_run_dir(p))[-5:]
            hint = f"; it holds runs: {', '.join(runs)}" if runs else ""
            return "missing", f"{self.run_dir} is not a run directory ({NO_RUN_MARKERS}){hint}"
        if state.end_status() == "crashed":
            end = state.end or {}
            return "crashed", str(end.get("error") or "crashed")
        status, detail = job_status(state.end_status(), state.start is not None, alive, state.last_time)
        if status == "starting" and self.process is None and not self._meta:
            detail = f"waiting for the job to write {self.files.meta.name}"
        return status, detail

    def _read_meta(self) -> None:
        try:
            mtime = self.files.meta.stat().st_mtime
        except OSError:
            return
        if mtime != self._meta_mtime:
            self._meta_mtime = mtime
            self._meta = read_meta(self.run_dir)

    def _read_side_files(self, slow: bool) -> None:
        if self._recipe_text is None or (slow and self.state.start is not None
                                         and self.state.start.get("resumed_from") is not None):
            if self.files.recipe.exists():
                self._recipe_text = read_recipe_text(self.run_dir)
        sample = self.state.sample_event
        if sample is not None and id(sample) != self._sample_event_id:
            self._sample_event_id = id(sample)
            found = resolve_sample_path(self.run_dir, str(sample.get("path", "")))
            if found is not None:
                self._sample = found
                return
        if slow:
            newest = newest_sample(self.run_dir)
            if newest is not None and (self._sample is None or newest != self._sample and
                                       _mtime(newest) > _mtime(self._sample)):
                self._sample = newest

    def _served(self) -> list[Message]:
        handled_dir = self.files.control / "handled"
        try:
            names = {p.name for p in handled_dir.iterdir()}
        except OSError:
            names = set()
        if self._handled is None:
            self._handled = names
            return []
        new = sorted(names - self._handled)
        self._handled = names
        return [ControlServed(name.split("-", 1)[0]) for name in new]


def _mtime(path: Path | None) -> float:
    try:
        return path.stat().st_mtime if path is not None else -1.0
    except OSError:
        return -1.0


__all__ = ["RunWatcher", "tail_text"]
