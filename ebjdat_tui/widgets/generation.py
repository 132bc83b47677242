"""The generation trace in one row: fd_ref of the generated samples over training, beside its
no-learning baseline (the sampler's init distribution) and its floor (held-out real images).

    fd_ref ▇▆▅▃▂▂ 1.62 init 2.42 floor 1.14

The sparkline is drawn on a fixed scale whose top is the init baseline (or the worst value, if
worse) and whose bottom is the floor (or the best value): a full block means "no better than
never learning", the lowest block "as close as real images get". The latest value is green when
it beats the baseline, red when it does not.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.text import Text

from ..fmt import as_float, fmt
from .sparkline import scaled_sparkline


def generation_line(generation: dict[str, Any] | None, trace: Sequence[float], width: int) -> Text | None:
    """The row, or None before the first `generation` event (older runs, datasets without fd_ref)."""
    if not generation or not trace:
        return None
    value = as_float(generation.get("fd_ref"))
    init, floor = as_float(generation.get("init_baseline")), as_float(generation.get("floor"))
    finite = [v for v in trace if math.isfinite(v)]
    refs = [r for r in (init, floor) if r is not None and math.isfinite(r)]
    lo = min(finite + refs, default=0.0)
    hi = max(finite + refs, default=1.0)
    label, shown = "fd_ref ", fmt(value, 3)
    tail = "".join(f" {name} {fmt(v, 3)}" for name, v in (("init", init), ("floor", floor)) if v is not None)
    spark_w = width - len(label) - len(shown) - len(tail) - 1
    if spark_w < 4:  # narrow: drop the words, keep the numbers
        tail = "".join(f" {name[0]}{fmt(v, 3)}" for name, v in (("init", init), ("floor", floor)) if v is not None)
        spark_w = max(width - len(label) - len(shown) - len(tail) - 1, 3)
    line = Text(no_wrap=True, overflow="crop")
    line.append(label, "bold")
    line.append(scaled_sparkline(trace, spark_w, lo, hi), "grey70")
    beats = value is not None and init is not None and value < init
    line.append(" " + shown, "bold green" if beats else ("bold red" if init is not None else "bold"))
    line.append(tail, "grey62")
    line.truncate(width)
    return line
