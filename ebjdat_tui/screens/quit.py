"""Quitting while the job runs: stop it (graceful: checkpoint, status 'stopped'), leave it
running, or cancel. Every choice has a key; no mouse needed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitScreen(ModalScreen[str]):
    """Dismisses with 'stop', 'leave' or 'cancel'."""

    BINDINGS = [
        Binding("s", "choose('stop')", "Stop the job"),
        Binding("l", "choose('leave')", "Leave it running"),
        Binding("escape,c,n", "choose('cancel')", "Cancel"),
        Binding("left,up", "app.focus_previous", show=False),
        Binding("right,down", "app.focus_next", show=False),
    ]

    def __init__(self, run_name: str, **kw) -> None:
        super().__init__(**kw)
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"The job {self.run_name} is still running.", id="question")
            yield Label("[b]s[/b] stop (checkpoint, status 'stopped') · [b]l[/b] leave running · "
                        "[b]esc[/b] cancel", id="hint")
            with Horizontal(id="buttons"):
                yield Button("Stop the job", id="stop", variant="error")
                yield Button("Leave it running", id="leave", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
