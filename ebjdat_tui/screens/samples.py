"""The latest sample grid at full size beside every evaluation and its protocol."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer

from ..reducer import RunSnapshot
from ..widgets.eval_history import EvalHistory
from ..widgets.header import RunHeader
from ..widgets.sample_grid import SampleGrid
from .base import RunScreen


class SamplesScreen(RunScreen):
    """Samples and evaluations in detail."""

    AUTO_FOCUS = "#eval-scroll"

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="samples-body"):
            yield SampleGrid(id="big-samples", classes="panel")
            with VerticalScroll(id="eval-scroll", classes="panel") as scroll:
                scroll.border_title = "evaluations"
                yield EvalHistory(id="eval-history")
        yield Footer()

    def update_view(self, snapshot: RunSnapshot | None, status: str, title: str = "") -> None:
        self.query_one(RunHeader).show(snapshot, status, title)
        if snapshot is not None:
            self.query_one(SampleGrid).show(snapshot)
            self.query_one(EvalHistory).show(snapshot)
