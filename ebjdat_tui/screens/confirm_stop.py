"""Confirming the stop key: the job checkpoints and ends with status 'stopped'."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from ebjdat_engine.rundir import CHECKPOINT_DIR, LAST_CHECKPOINT


class ConfirmStopScreen(ModalScreen[bool]):
    """Dismisses with True (stop) or False."""

    BINDINGS = [
        Binding("y,s", "choose(True)", "Stop"),
        Binding("escape,n,c", "choose(False)", "Cancel"),
        Binding("left,up", "app.focus_previous", show=False),
        Binding("right,down", "app.focus_next", show=False),
    ]

    def __init__(self, run_name: str, control_every: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.run_name = run_name
        self.control_every = control_every

    def compose(self) -> ComposeResult:
        when = f" (it looks every {self.control_every} steps)" if self.control_every else ""
        with Vertical(id="dialog"):
            yield Label(f"Stop {self.run_name}?", id="question")
            yield Label(f"The job finishes its step, writes {CHECKPOINT_DIR}/{LAST_CHECKPOINT} and ends with status "
                        f"'stopped'{when}. [b]y[/b] stop  ·  [b]esc[/b] cancel", id="hint")
            with Horizontal(id="buttons"):
                yield Button("Stop the job", id="yes", variant="error")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_choose(self, choice: bool) -> None:
        self.dismiss(choice)
