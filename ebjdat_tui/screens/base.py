"""What the run screens share: the header, the footer keys, and `update_view`."""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen

from ..reducer import RunSnapshot


class RunScreen(Screen):
    """A screen that draws the run's snapshot; the App calls `update_view` at its redraw rate."""

    BINDINGS = [
        Binding("tab", "app.next_screen", "Next screen", show=False),
        Binding("shift+tab", "app.previous_screen", "Previous screen", show=False),
        Binding("ctrl+c", "app.quit", "Quit", show=False),
    ]

    def update_view(self, snapshot: RunSnapshot | None, status: str, title: str = "") -> None:
        raise NotImplementedError

    def on_screen_resume(self) -> None:
        app = self.app
        self.update_view(app.snapshot, app.display_status, app.title_text)  # type: ignore[attr-defined]
