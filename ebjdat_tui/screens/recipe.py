"""The resolved recipe of the run (RUN/recipe.toml: exactly what runs), syntax-highlighted."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from ..reducer import RunSnapshot
from ..widgets.header import RunHeader
from .base import RunScreen


class RecipeScreen(RunScreen):
    """recipe.toml of the run (before the job writes it: the recipe as resolved by the TUI)."""

    AUTO_FOCUS = "#recipe-scroll"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._shown: str | None | bool = False  # False: nothing drawn yet

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with VerticalScroll(id="recipe-scroll"):
            yield Static(id="recipe")
        yield Footer()

    def update_view(self, snapshot: RunSnapshot | None, status: str, title: str = "") -> None:
        self.query_one(RunHeader).show(snapshot, status, title)
        text = (snapshot.recipe_text if snapshot else None) or self.app.recipe_text  # type: ignore[attr-defined]
        if text == self._shown:
            return
        self._shown = text
        static = self.query_one("#recipe", Static)
        if text:
            static.update(Syntax(text, "toml", theme="ansi_dark", word_wrap=False,
                                 background_color="default"))
        else:
            static.update(Text("no recipe.toml in the run directory yet", style="dim"))
