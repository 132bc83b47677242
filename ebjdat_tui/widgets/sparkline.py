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
    """`values` drawn left to right across `width` cells."""
    points = resample(values, width)
    finite = [v for v in points if math.isfinite(v)]
    if not finite:
        return (NONFINITE * len(points)).ljust(width)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    chars = []
    for v in points:
        if not math.isfinite(v):
            chars.append(NONFINITE)
        elif span <= 1e-12 * max(abs(hi), 1.0):
            chars.append(BLOCKS[3])
        else:
            chars.append(BLOCKS[min(int((v - lo) / span * len(BLOCKS)), len(BLOCKS) - 1)])
    return "".join(chars).ljust(width)
