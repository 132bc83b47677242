"""A one-row sparkline (▁▂▃▄▅▆▇█) of a whole series squeezed into a given width."""

from __future__ import annotations

import math
from typing import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
NONFINITE = "×"


def resample(values: Sequence[float], width: int) -> list[float]:
    """Exactly `width` points for a series of at least two: bucket means when longer (non-finite
    buckets stay non-finite), each point repeated when shorter."""
    n = len(values)
    if width <= 0 or n == 0:
        return []
    if n == 1:
        return list(values)
    if n <= width:
        return [values[c * n // width] for c in range(width)]
    out = []
    for i in range(width):
        lo, hi = i * n // width, max((i + 1) * n // width, i * n // width + 1)
        bucket = values[lo:hi]
        out.append(sum(bucket) / len(bucket))
    return out


def sparkline(values: Sequence[float], width: int) -> str:
    """`values` drawn left to right across `width` cells, scaled to their own range."""
    points = resample(values, width)
    finite = [v for v in points if math.isfinite(v)]
    if not finite:
        return (NONFINITE * len(points)).ljust(width)
    return _draw(points, width, min(finite), max(finite))


def scaled_sparkline(values: Sequence[float], width: int, lo: float, hi: float) -> str:
    """`values` across `width` cells on the fixed scale [lo, hi] (values outside are clipped)."""
    return _draw(resample(values, width), width, lo, hi)


def _draw(points: Sequence[float], width: int, lo: float, hi: float) -> str:
    """One block per point on the scale [lo, hi]; a flat scale draws a middle block."""
    span = hi - lo
    chars = []
    for v in points:
        if not math.isfinite(v):
            chars.append(NONFINITE)
        elif span <= 1e-12 * max(abs(hi), 1.0):
            chars.append(BLOCKS[3])
        else:
            level = int((v - lo) / span * len(BLOCKS))
            chars.append(BLOCKS[min(max(level, 0), len(BLOCKS) - 1)])
    return "".join(chars).ljust(width)
