"""The dashboard: progress, losses, energies, evaluations, samples and the log on one screen
(fits 80×24; more room goes to the charts)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from ..reducer import RunSnapshot
from ..widgets.alarm import AlarmBanner
from ..widgets.energy import EnergyHistogram
from ..widgets.eval_table import EvalTable
from ..widgets.header import RunHeader
from ..widgets.log_tail import LogTail
from ..widgets.loss_chart import LossChart
from ..widgets.notice import Notice
from ..widgets.sample_grid import SampleGrid
from .base import RunScreen


class DashboardScreen(RunScreen):
    """Everything about the running job at a glance."""

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield AlarmBanner(id="alarm")
        yield Notice(id="notice")
        with Vertical(id="body"):
            with Horizontal(id="top"):
                yield LossChart(id="losses", classes="panel")
                yield EnergyHistogram(id="energy", classes="panel")
            with Horizontal(id="middle"):
                yield EvalTable(id="evals", classes="panel")
                yield SampleGrid(id="samples", classes="panel")
            yield LogTail(id="log", classes="panel")
        yield Footer()

    def update_view(self, snapshot: RunSnapshot | None, status: str, title: str = "") -> None:
        self.query_one(RunHeader).show(snapshot, status, title)
        notice = self.query_one(Notice)
        body = self.query_one("#body")
        blocking = self.app.notice  # type: ignore[attr-defined]
        if blocking:
            notice.show(*blocking)
        elif snapshot is not None and snapshot.status in ("missing", "failed"):
            title_text = ("No run directory to watch" if snapshot.status == "missing"
                          else "The job failed before it started")
            notice.show(title_text, snapshot.detail)
        else:
            notice.clear()
        body.display = not notice.has_class("-active")
        if snapshot is None:
            return
        self.query_one(AlarmBanner).show(snapshot)
        for widget in (self.query_one(LossChart), self.query_one(EnergyHistogram), self.query_one(EvalTable),
                       self.query_one(SampleGrid), self.query_one(LogTail)):
            widget.show(snapshot)
