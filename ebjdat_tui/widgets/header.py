"""The run header: what runs (method, profile, device, run name), its status, and progress
(step/total, epoch, ETA, throughput) on two lines."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widget import Widget

from ..fmt import as_float, fmt_age, fmt_duration
from ..reducer import RunSnapshot

STATUS_STYLE = {
    "running": "bold black on green", "running?": "bold black on green", "starting": "bold black on yellow",
    "stopping": "bold black on yellow", "finished": "bold black on cyan", "stopped": "bold black on yellow",
    "collapsed": "bold white on red", "crashed": "bold white on red", "died": "bold white on red",
    "failed": "bold white on red", "missing": "bold white on red", "invalid": "bold white on red",
    "unknown": "bold black on grey70",
}


def method_label(start: dict | None) -> str:
    if not start:
        return ""
    method = str(start.get("method", "?"))
    base = (start.get("labels") or {}).get("base")
    return f"{method}·{base}" if base and method == "ebjdat" else method


class RunHeader(Widget):
    """Two lines: identity and status, then progress with ETA and images per second."""

    DEFAULT_CSS = "RunHeader { height: 2; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.snapshot: RunSnapshot | None = None
        self.status = "unknown"
        self.title_text = ""

    def show(self, snapshot: RunSnapshot | None, status: str | None = None, title: str = "") -> None:
        self.snapshot = snapshot
        self.status = status or (snapshot.status if snapshot else "unknown")
        self.title_text = title
        self.refresh()

    def render(self) -> Text:
        width = max(self.size.width, 20)
        s = self.snapshot
        badge = Text(f" {self.status.upper()} ", style=STATUS_STYLE.get(self.status, "reverse"))
        line1 = Text(no_wrap=True, overflow="ellipsis")
        start = s.start if s else None
        if start:
            line1.append(" " + method_label(start), style="bold")
            profile = start.get("profile")
            if profile == "reference":
                line1.append("  REFERENCE profile", style="bold yellow")
            elif profile:
                line1.append(f"  {profile}", style="dim")
            line1.append(f"  {start.get('device', '')}", style="dim")
        elif self.title_text:
            line1.append(" " + self.title_text, style="bold")
        name = s.run_dir.name if s else ""
        room = width - badge.cell_len - line1.cell_len - 2
        if name and room > 4:
            shown = name if len(name) <= room else "…" + name[-(room - 1):]
            line1.append("  " + shown.ljust(room))
        line1.truncate(max(width - badge.cell_len, 0), overflow="ellipsis", pad=True)
        line1.append_text(badge)
        return Text("\n").join([line1, self._progress_line(width)])

    def _progress_line(self, width: int) -> Text:
        s = self.snapshot
        line = Text(no_wrap=True, overflow="ellipsis")
        if s is None or (s.start is None and s.metrics is None):
            if self.status == "invalid":
                hint = "no job was started"
            elif s is not None and s.status in ("failed", "missing"):
                hint = "nothing to watch: the reason is below"  # the notice says it, once
            else:
                hint = s.detail.splitlines()[0] if s and s.detail else "waiting for the job's first event"
            line.append(f" {hint}", style="dim")
            return line
        total = s.total or 0
        step_text = f" step {s.step}/{total}" if total else f" step {s.step}"
        tail = Text()
        if s.epoch is not None:
            tail.append(f"  ep {s.epoch:.2f}")
        eta = s.eta_s
        if eta is not None:
            tail.append(f"  ETA {fmt_duration(eta)}", style="bold")
        elif s.status not in ("running", "running?", "starting") and s.elapsed_s is not None:
            tail.append(f"  took {fmt_duration(s.elapsed_s)}")
        ips = as_float((s.metrics or {}).get("images_per_s"))
        if ips:
            tail.append(f"  {ips:,.0f} img/s")
        if s.status in ("running", "running?") and s.last_time is not None:
            quiet = time.time() - s.last_time
            if quiet > 60:
                tail.append(f"  quiet {fmt_age(quiet)}", style="yellow")
        frac = min(s.step / total, 1.0) if total else 0.0
        pct = f" {frac * 100:3.0f}%" if total else ""
        bar_width = width - len(step_text) - len(pct) - tail.cell_len - 2
        line.append(step_text, style="bold")
        if bar_width >= 6 and total:
            done = int(round(frac * bar_width))
            line.append(" ")
            line.append("━" * done, style="green")
            line.append("─" * (bar_width - done), style="grey37")
            line.append(pct)
        elif total:
            line.append(pct)
        line.append_text(tail)
        line.truncate(width)
        return line
