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

EVENTS_FILE = "events.jsonl"

Listener = Callable[[dict[str, Any]], None]


def _jsonable(value: Any) -> Any:
    """Plain JSON: non-finite floats become strings ("nan", "inf") so every line parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class EventWriter:
    """Appends events to `run_dir/events.jsonl` and hands each to the listeners (e.g. progress)."""

    def __init__(self, run_dir: Path, listeners: list[Listener] | None = None, enabled: bool = True):
        self.path = Path(run_dir) / EVENTS_FILE
        self.listeners = list(listeners or [])
        self.enabled = enabled
        self._file = open(self.path, "a", encoding="utf-8") if enabled else None
        if self._file is not None and self._torn():
            self._file.write("\n")  # a torn last line (a killed writer) must not swallow ours
            self._file.flush()
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
        if self._file is not None:
            self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._file.flush()
        if type == "end":
            self.ended = True
        for listener in list(self.listeners):
            try:
                listener(event)
            except OSError:  # a closed pipe or full disk behind the console: the run goes on
                self.listeners.remove(listener)
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


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
