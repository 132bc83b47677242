"""Loss terms over time: one sparkline row per term (the whole run, squeezed to the width)
with the latest value, then training accuracy and the learning rate."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..fmt import as_float, fmt
from ..reducer import RunSnapshot
from .sparkline import sparkline

PALETTE = ("#e0e0e0", "#5fafff", "#ffaf5f", "#87d787", "#d787d7", "#ff8787", "#5fd7d7", "#d7d75f")
EXTRA = ("acc", "acc_adv", "lr")


def series_order(snapshot: RunSnapshot) -> list[str]:
    names = [n for n in snapshot.series if n not in EXTRA]
    names.sort(key=lambda n: n != "loss")
    return names + [n for n in EXTRA if n in snapshot.series]


def latest_value(snapshot: RunSnapshot, name: str) -> float | None:
    m = snapshot.metrics or {}
    if name in (m.get("terms") or {}):
        return as_float(m["terms"][name])
    return as_float(m.get(name))


def loss_lines(snapshot: RunSnapshot | None, width: int, height: int) -> list[Text]:
    if snapshot is None or not snapshot.series:
        return [Text("no metrics yet", style="dim")]
    names = series_order(snapshot)[:max(height, 1)]
    label_w = max(len(n) for n in names) + 1
    value_w = 9
    spark_w = max(width - label_w - value_w, 4)
    lines = []
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)] if name not in EXTRA else "grey70"
        value = latest_value(snapshot, name)
        line = Text(no_wrap=True, overflow="crop")
        line.append(name.ljust(label_w), style=f"bold {color}" if name == "loss" else color)
        line.append(sparkline(snapshot.series[name], spark_w), style=color)
        line.append(fmt(value).rjust(value_w), style="bold" if name == "loss" else "")
        line.truncate(width)
        lines.append(line)
    return lines


class LossChart(Widget):
    """The loss terms of the run over time."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.snapshot: RunSnapshot | None = None
        self.border_title = "losses"

    def show(self, snapshot: RunSnapshot) -> None:
        changed = self.snapshot is None or snapshot.series is not self.snapshot.series
        self.snapshot = snapshot
        if changed:
            if snapshot.series:
                m = snapshot.metrics or {}
                self.border_subtitle = f"step {m.get('step', snapshot.step)}"
            self.refresh()

    def render(self) -> Text:
        return Text("\n").join(loss_lines(self.snapshot, self.size.width, self.size.height))
