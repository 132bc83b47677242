"""Messages from the watcher thread to the App (posted, never touching widgets).

Textual merges a queued message into the next one only when they are adjacent and
`older.can_replace(newer)` is true, so all high-frequency state (metrics, energies, evals, log,
status) travels in one `RunUpdated` snapshot per poll: a newer snapshot makes a stale one
worthless, and however fast the job writes events, the App handles at most one per poll and
redraws at its own bounded rate. Rare, discrete happenings get their own messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from .reducer import RunSnapshot


@dataclass
class RunUpdated(Message):
    """The run changed: its whole state as an immutable snapshot (a newer one replaces this)."""

    snapshot: RunSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunUpdated)


@dataclass
class AlarmRaised(Message):
    """A collapse/anomaly alarm arrived while watching (not during the catch-up read)."""

    alarm: dict[str, Any]


@dataclass
class ControlServed(Message):
    """The job took a request from control/ (the file moved to control/handled/)."""

    name: str


@dataclass
class RunEnded(Message):
    """The job reached a final status while watched: finished, stopped, collapsed, crashed, died or failed."""

    status: str
    detail: str
