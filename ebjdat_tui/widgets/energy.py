"""The three energy histograms (clean, adversarial, generated) overlaid, their means marked,
the gaps over time and, below them, the generation trace (fd_ref against its baseline and floor).

The panel draws the energy event's eval-mode probe (BatchNorm running statistics, a fixed probe
set: what `ebjdat eval` measures) and says "eval mode" in its title; runs without the probe
(older runs, monitor.probe_n = 0) show the train-mode window, titled "train mode".

Each cell holds two vertical sub-pixels (▀ with a foreground and a background colour); a
sub-pixel covered by several populations gets the additive mix of their colours, so overlap
reads as in an RGB plot: clean+adv yellow, clean+gen cyan, adv+gen magenta, all three white.
"""

from __future__ import annotations

import math
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from ..fmt import POPULATIONS, SHORT_GAP, SHORT_POP, as_float, fmt
from ..reducer import RunSnapshot
from .generation import generation_line
from .sparkline import sparkline

POP_BIT = {"clean": 1, "adversarial": 2, "generated": 4}
#: colour of a sub-pixel by the set (bit mask) of populations covering it
MIX = {1: "#3fd35f", 2: "#ff5f5f", 4: "#5f9fff", 3: "#f0d040", 5: "#40d8d8", 6: "#d070f0", 7: "#f0f0f0"}
POP_COLOR = {p: MIX[b] for p, b in POP_BIT.items()}
MIN_BINS = 8


def visible_bins(hists: list[list[float]], bins: int) -> tuple[int, int]:
    """[first, last) bins worth drawing: the occupied ones with a margin, at least MIN_BINS."""
    used = [i for h in hists for i, c in enumerate(h) if c > 0]
    if not used:
        return 0, bins
    first, last = max(min(used) - 1, 0), min(max(used) + 2, bins)
    while last - first < min(MIN_BINS, bins):
        if first > 0:
            first -= 1
        if last - first < MIN_BINS and last < bins:
            last += 1
    return first, last


def histogram_lines(energy: dict[str, Any] | None, gaps: dict[str, tuple[float, ...]],
                    width: int, height: int, generation: Text | None = None) -> list[Text]:
    """The panel's rows: histogram, axis with the means, legend, gap sparklines and, when given,
    the `generation` row (dropped first, then gaps, legend, axis as the height shrinks)."""
    if not energy or not isinstance(energy.get("populations"), dict):
        lines = [Text("no energy statistics yet (monitor.every)", style="dim")]
        return lines + ([generation] if generation is not None and height >= 2 else [])
    pops = {p: v for p, v in energy["populations"].items() if isinstance(v, dict) and v.get("hist")}
    order = [p for p in POPULATIONS if p in pops] + [p for p in pops if p not in POPULATIONS]
    bins = len(pops[order[0]]["hist"]) if order else 0
    lo, hi = (energy.get("range") or [None, None])[:2]
    lo, hi = as_float(lo), as_float(hi)
    if not order or bins == 0 or lo is None or hi is None or hi <= lo:
        return [Text("energy event without histograms", style="dim")]
    wanted = (("axis", 2), ("legend", 3), ("gaps", 4)) + ((("gen", 5),) if generation is not None else ())
    extra_rows = [r for r, need in wanted if height >= need + 2]
    plot_h = max(height - len(extra_rows), 1)
    hists = {p: [float(c) for c in pops[p]["hist"]] for p in order}
    first, last = visible_bins(list(hists.values()), bins)
    bin_w = (hi - lo) / bins
    x_lo, x_hi = lo + first * bin_w, lo + last * bin_w
    span = last - first
    # densities per column: each population normalised by its count, on a shared scale
    cols: dict[str, list[float]] = {}
    for p, h in hists.items():
        n = sum(h) or 1.0
        cols[p] = [h[first + min(c * span // width, span - 1)] / n for c in range(width)]
    top = max((v for col in cols.values() for v in col), default=0.0) or 1.0
    levels = plot_h * 2
    heights = {p: [(math.ceil(v / top * levels) if v > 0 else 0) for v in col] for p, col in cols.items()}

    def mask(col: int, level: int) -> int:
        return sum(POP_BIT.get(p, 0) for p in order if heights[p][col] >= level)

    lines: list[Text] = []
    for row in range(plot_h):
        upper, lower = levels - 2 * row, levels - 2 * row - 1
        line = Text(no_wrap=True, overflow="crop")
        for c in range(width):
            a, b = mask(c, upper), mask(c, lower)
            if a and b:
                line.append("▀", Style(color=MIX[a], bgcolor=MIX[b]))
            elif a:
                line.append("▀", Style(color=MIX[a]))
            elif b:
                line.append("▄", Style(color=MIX[b]))
            else:
                line.append(" ")
        lines.append(line)
    means = {p: as_float(pops[p].get("mean")) for p in order}
    if "axis" in extra_rows:
        # the engine clamps energies into the range: an occupied edge bin holds everything beyond it
        at_lo = first == 0 and any(h[0] > 0 for h in hists.values())
        at_hi = last == bins and any(h[-1] > 0 for h in hists.values())
        left, right = ("≤" if at_lo else "") + f"{x_lo:.3g}", ("≥" if at_hi else "") + f"{x_hi:.3g}"
        cells: list[tuple[str, str | None]] = [(ch, "grey50") for ch in left.ljust(width - len(right)) + right][:width]
        marks: dict[int, int] = {}
        for p, m in means.items():
            if m is not None and math.isfinite(m):
                c = min(max(int((m - x_lo) / (x_hi - x_lo) * width), 0), width - 1)
                marks[c] = marks.get(c, 0) | POP_BIT.get(p, 0)
        for c, bits in marks.items():
            cells[c] = ("▲", MIX.get(bits, "white"))
        axis = Text(no_wrap=True, overflow="crop")
        for ch, style in cells:
            axis.append(ch, style or "")
        lines.append(axis)
    if "legend" in extra_rows:
        legend = Text(no_wrap=True, overflow="ellipsis")
        for p in order:
            legend.append("■", POP_COLOR.get(p, "white"))
            legend.append(f"{SHORT_POP.get(p, p)} {fmt(means[p], 3)} ")
        legend.truncate(width)
        lines.append(legend)
    if "gaps" in extra_rows:
        lines.append(gap_line(energy, gaps, width))
    if "gen" in extra_rows and generation is not None:
        lines.append(generation)
    return lines


def gap_line(energy: dict[str, Any], gaps: dict[str, tuple[float, ...]], width: int) -> Text:
    names = [n for n in ("clean_minus_adversarial", "clean_minus_generated") if n in gaps] or list(gaps)[:2]
    line = Text(no_wrap=True, overflow="crop")
    if not names:
        return line
    part_w = width // len(names)
    latest = energy.get("gaps") or {}
    for name in names:
        label, value = SHORT_GAP.get(name, name) + " ", fmt(latest.get(name), 3)
        spark_w = max(part_w - len(label) - len(value) - 2, 3)
        line.append(label, "bold")
        line.append(sparkline(gaps[name], spark_w), "grey70")
        line.append(f" {value} ")
    line.truncate(width)
    return line


MODE_TITLE = {"eval": "energy E(x), eval mode", "train": "energy E(x), train mode"}


class EnergyHistogram(Widget):
    """Energies E(x) = -logsumexp l(x) of the latest energy event, per population: its eval-mode
    probe when present, else its train-mode window; and the generation trace below."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.snapshot: RunSnapshot | None = None
        self.border_title = "energy E(x)"

    def show(self, snapshot: RunSnapshot) -> None:
        old = self.snapshot
        changed = (old is None or snapshot.energy is not old.energy
                   or snapshot.generation is not old.generation)
        self.snapshot = snapshot
        if changed:
            if snapshot.energy:
                _, _, mode = snapshot.energy_view()
                self.border_title = MODE_TITLE[mode]
                self.border_subtitle = f"step {snapshot.energy.get('step', '?')}"
            self.refresh()

    def render(self) -> Text:
        s = self.snapshot
        width, height = max(self.size.width, 8), max(self.size.height, 1)
        if s is None:
            return Text("\n").join(histogram_lines(None, {}, width, height))
        energy, gaps, _ = s.energy_view()
        gen = generation_line(s.generation, s.fd_ref, width)
        return Text("\n").join(histogram_lines(energy, gaps, width, height, gen))
