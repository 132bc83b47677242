"""The log tail: the latest events as human lines (as `ebjdat run` prints them)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..reducer import RunSnapshot


def line_style(line: str) -> str:
    if line.startswith("ALARM"):
        return "bold red"
    if line.startswith("end:"):
        return "bold"
    if line.startswith("eval"):
        return "green"
    if line.startswith(("start", "checkpoint")):
        return "cyan"
    if line.startswith("energy"):
        return "grey62"
    return ""


class LogTail(Widget):
    """The last lines of the event log that fit."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.lines: tuple[str, ...] = ()
        self.border_title = "log"

    def show(self, snapshot: RunSnapshot) -> None:
        if snapshot.log is not self.lines and snapshot.log != self.lines:
            self.lines = snapshot.log
            self.refresh()

    def render(self) -> Text:
        height, width = max(self.size.height, 1), max(self.size.width, 1)
        shown = self.lines[-height:]
        if not shown:
            return Text("no events yet", style="dim")
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(shown):
            if i:
                out.append("\n")
            out.append(line if len(line) <= width else line[:width - 1] + "…", line_style(line))
        return out
