"""A notice that takes the place of the dashboard when there is nothing to watch: recipe
errors (nothing was started), a missing run directory, a job that failed before its first event."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class Notice(Widget):
    """A titled message; hidden while empty."""

    DEFAULT_CSS = """
    Notice { display: none; height: 1fr; padding: 0 1; }
    Notice.-active { display: block; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.title = ""
        self.body = ""
        self.severity = "error"

    def show(self, title: str, body: str = "", severity: str = "error") -> None:
        if (title, body, severity) == (self.title, self.body, self.severity):
            return
        self.title, self.body, self.severity = title, body, severity
        self.set_class(bool(title), "-active")
        self.refresh(layout=True)

    def clear(self) -> None:
        self.show("")

    def render(self) -> Text:
        style = {"error": "bold red", "warning": "bold yellow"}.get(self.severity, "bold")
        text = Text(self.title, style=style)
        if self.body:
            text.append("\n\n")
            text.append(self.body)
        return text
