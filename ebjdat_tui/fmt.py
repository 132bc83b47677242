"""Formatting for the TUI and `ebjdat ls`: numbers, durations, ages and budgets, and one human
line per event for the log tail. Pure functions of values and events (no files, no processes).
"""

from __future__ import annotations

import math
from typing import Any

from .progress import event_line

#: populations of the energy monitor, in drawing order
POPULATIONS = ("clean", "adversarial", "generated")
SHORT_POP = {"clean": "clean", "adversarial": "adv", "generated": "gen"}
SHORT_GAP = {"clean_minus_adversarial": "c−a", "clean_minus_generated": "c−g",
             "adversarial_minus_generated": "a−g"}


def eval_block(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """The eval-mode probe of an `energy` event (its ``eval_mode`` block), or None (an older run,
    or a run with monitor.probe_n = 0: only the train-mode statistics)."""
    block = (event or {}).get("eval_mode")
    if isinstance(block, dict) and isinstance(block.get("populations"), dict) and block["populations"]:
        return block
    return None


def as_float(value: Any) -> float | None:
    """A JSON number (or the "nan"/"inf" strings the event log writes) as a float; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def fmt(value: Any, digits: int = 4) -> str:
    """A compact number: 4 significant digits, '—' when absent, 'nan'/'inf' as such."""
    v = as_float(value)
    if v is None:
        return "—"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_age(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def fmt_budget(eps: Any) -> str:
    """0.0313... -> '8/255' (budgets are written in 255ths of the pixel range)."""
    v = as_float(eps)
    if v is None:
        return "?"
    k = v * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-3 else f"{v:.4g}"


def describe(event: dict[str, Any]) -> str | None:
    """One human line for the log tail (ebjdat_tui.progress's lines, plus the events it skips)."""
    kind = event.get("type")
    step = event.get("step", "?")
    try:
        if kind == "eval":
            parts = [f"eval  step {step}: {event.get('split', '?')}"]
            for key, label in (("clean_acc", "clean"), ("pgd_acc", "PGD"), ("aa_acc", "AA"),
                               ("fd_ref", "fd_ref"), ("fid", "FID")):
                if event.get(key) is not None:
                    parts.append(f"{label} {fmt(event[key])}")
            parts.append(f"(n={event.get('n', '?')})")
            if event.get("source"):
                parts.append(f"[{event['source']}]")
            return " ".join(parts)
        if kind == "energy":  # the eval-mode probe when there is one, else the train-mode window
            block = eval_block(event) or event
            pops = block.get("populations") or {}
            means = "  ".join(f"{SHORT_POP.get(p, p)} {fmt(v.get('mean'), 3)}" for p, v in pops.items()
                              if isinstance(v, dict))
            gaps = "  ".join(f"{SHORT_GAP.get(k, k)} {fmt(v, 3)}" for k, v in (block.get("gaps") or {}).items())
            mode = "eval mode" if block is not event else "train mode"
            return f"energy step {step} ({mode}): {means}" + (f"  gaps {gaps}" if gaps else "")
        if kind == "generation":
            line = (f"generation step {step}: fd_ref {fmt(event.get('fd_ref'), 4)} (init "
                    f"{fmt(event.get('init_baseline'), 4)}, floor {fmt(event.get('floor'), 4)}; "
                    f"n={event.get('n', '?')}, {event.get('source', '?')})")
            ref = event.get("reference")
            if isinstance(ref, dict) and ref.get("trained_now"):
                line += f"; reference CNN trained in {fmt(ref.get('seconds'), 3)} s"
            return line
        if kind == "checkpoint":
            return f"checkpoint {event.get('kind', '?')} at step {step} -> {event.get('path', '?')}"
        if kind == "sample":
            return f"sample step {step}: {event.get('source', '')} {event.get('n', '')} -> {event.get('path', '?')}"
        if kind in ("metrics", "start", "alarm", "end"):
            return event_line(event)
    except Exception:  # noqa: BLE001 - a malformed event gets the generic line, never a crash
        pass
    return f"{kind} step {step}"  # an event type this TUI does not know: shown, not fatal
