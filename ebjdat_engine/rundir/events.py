"""The event log: `events.jsonl`, append-only, one JSON object per line, flushed per event.

Every event carries `type`, `time` (unix seconds), `step` and `epoch`. Readers must tolerate a
half-written last line (the job may be writing it right now) and event types they do not know.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .layout import EVENTS_FILE

Listener = Callable[[dict[str, Any]], None]

#: loss-term names written before the terms took the paper's symbols (h1, h2, h3): runs recorded
#: with them still read, under today's names, through :func:`canonical_terms`
OLD_TERM_NAMES = {"px": "h1_px", "l2": "h1_l2", "h2": "h2_adv", "ce_adv": "h3_ce_adv"}


def canonical_terms(terms: dict[str, Any] | None) -> dict[str, Any]:
    """A `metrics` event's loss terms under today's names (old runs' names translated)."""
    return {OLD_TERM_NAMES.get(name, name): value for name, value in (terms or {}).items()}


def _jsonable(value: Any) -> Any:
    """Plain JSON: non-finite floats become strings ("nan", "inf") so every line parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _append(fd: int, data: bytes) -> None:
    """One line, in one write(2) on an O_APPEND descriptor: another appender (an `ebjdat eval`
    of the running job) lands before or after it, never inside it."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


class EventWriter:
    """Appends events to `run_dir/events.jsonl` and hands each to the listeners (e.g. progress).

    Unbuffered: each event is one write(2) of a whole line with O_APPEND, so the job and an
    `ebjdat eval` appending its result to the same log never interleave inside a line."""

    def __init__(self, run_dir: Path, listeners: list[Listener] | None = None, enabled: bool = True):
        self.path = Path(run_dir) / EVENTS_FILE
        self.listeners = list(listeners or [])
        self.enabled = enabled
        self._fd: int | None = (os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                                if enabled else None)
        if self._fd is not None and self._torn():
            _append(self._fd, b"\n")  # a torn last line (a killed writer) must not swallow ours
        self.ended = False  # an `end` event was written (a crash after it is not a second end)

    def _torn(self) -> bool:
        """Whether the log ends without a newline (the previous writer died mid-line)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:
            return False

    def emit(self, type: str, step: int, epoch: float, **fields: Any) -> dict[str, Any]:
        event = {"type": type, "time": round(time.time(), 3), "step": step, "epoch": epoch, **fields}
        event = _jsonable(event)
        if self._fd is not None:
            _append(self._fd, (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8"))
        if type == "end":
            self.ended = True
        for listener in list(self.listeners):
            try:
                listener(event)
            except OSError:  # a closed pipe or full disk behind the console: the run goes on
                self.listeners.remove(listener)
        return event

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def parse_lines(text: str) -> Iterator[dict[str, Any]]:
    """Events in `text`; a line that does not parse (a half-written last line) is skipped."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "type" in event:
            yield event


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete events of a run (an absent log reads as no events)."""
    path = Path(run_dir) / EVENTS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return list(parse_lines(text))


class EventTail:
    """Incremental reader for a growing events.jsonl: `poll()` returns only new complete lines.

    A partial last line is kept back until its newline arrives, so a watcher never sees half an
    event and never sees one twice.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / EVENTS_FILE
        self._offset = 0
        self._pending = b""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._pending + chunk
        complete, sep, rest = data.rpartition(b"\n")
        self._pending = rest
        if not sep:
            return []
        return list(parse_lines(complete.decode("utf-8", errors="replace")))
