"""Evaluation numbers as they arrive, each with its protocol: clean, PGD, AutoAttack, fd_ref, FID
(the generation metrics beside their floor, held-out test images, and their init baseline)."""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual.widget import Widget

from ..fmt import as_float, fmt, fmt_budget
from ..reducer import RunSnapshot


def _latest(evals: Iterable[dict[str, Any]], key: str) -> dict[str, Any] | None:
    for event in reversed(list(evals)):
        if key in event and (event[key] is not None or key == "fid"):
            return event
    return None


def _protocol(event: dict[str, Any]) -> dict[str, Any]:
    p = event.get("protocol")
    return p if isinstance(p, dict) else {}


def pgd_text(event: dict[str, Any]) -> tuple[str, str]:
    p = _protocol(event).get("pgd") or {}
    label = str(p.get("attack") or "PGD")
    eps = p.get("eps_text") or fmt_budget(p.get("eps"))
    return label, f"{p.get('norm', 'linf')} {eps} n={event.get('n', p.get('points', '?'))}"


def aa_text(event: dict[str, Any]) -> str:
    p = _protocol(event)
    aa = p.get("autoattack") or {}
    version = aa.get("version", "?")
    attacks = aa.get("attacks") or []
    which = "standard" if version == "standard" else ",".join(attacks) or str(version)
    eps = fmt_budget(aa["eps"]) if "eps" in aa else (p.get("pgd") or {}).get("eps_text", "?")
    return f"{which} {eps} n={event.get('n', aa.get('points', '?'))}"


def clean_text(event: dict[str, Any]) -> str:
    parts = [str(event.get("split", "?")), f"n={event.get('n', '?')}"]
    ckpt = event.get("checkpoint") or _protocol(event).get("checkpoint")
    if ckpt and ckpt != "current":
        parts.append(str(ckpt))
    weights = event.get("weights") or _protocol(event).get("weights")
    if weights and weights != "raw":  # train.ema: the averaged weights were evaluated
        parts.append(str(weights))
    return " ".join(parts)


def baseline_text(event: dict[str, Any], key: str, digits: int = 3) -> str | None:
    """'init 1.79 floor 0.5 (init class_gaussian)' for a generation metric `key` ('fd_ref', 'fid')
    of an `ebjdat eval` event: the value of draws from the run's init distribution and of held-out
    test images (the order of the generation trace); None when the event carries neither (older
    events)."""
    floor, init = as_float(event.get(f"{key}_floor")), as_float(event.get(f"{key}_init"))
    if floor is None and init is None:
        return None
    what = [f"(init {event['gen_init']})"] if event.get("gen_init") else []
    return " ".join([f"init {fmt(init, digits)}", f"floor {fmt(floor, digits)}"] + what)


def eval_rows(evals: tuple[dict[str, Any], ...]) -> list[tuple[str, str, str, int | None]]:
    """(label, value, protocol, step) for the latest of each number."""
    rows = []
    e = _latest(evals, "clean_acc")
    if e:
        rows.append(("clean", fmt(e["clean_acc"], 3), clean_text(e), e.get("step")))
    e = _latest(evals, "pgd_acc")
    if e:
        label, text = pgd_text(e)
        rows.append((label, fmt(e["pgd_acc"], 3), text, e.get("step")))
    e = _latest(evals, "aa_acc")
    if e:
        rows.append(("AA", fmt(e["aa_acc"], 3), aa_text(e), e.get("step")))
    e = _latest(evals, "fd_ref")
    if e:
        rows.append(("fd_ref", fmt(e["fd_ref"], 3), baseline_text(e, "fd_ref") or "ref-CNN feats, not FID",
                     e.get("step")))
    e = _latest(evals, "fid")
    if e:
        value = as_float(e.get("fid"))
        protocol = (baseline_text(e, "fid") or "Inception") if value is not None else "not computed"
        rows.append(("FID", fmt(value, 4) if value is not None else "—", protocol, e.get("step")))
    return rows


def _fit(text: str, room: int) -> str:
    """`text` in `room` cells, cut after a whole word with '…' (never inside a number)."""
    if len(text) <= room:
        return text
    if room <= 1:
        return "…"[:max(room, 0)]
    cut = text[:room - 1]
    if " " in cut and text[room - 1] != " ":
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip() + "…"


def eval_lines(evals: tuple[dict[str, Any], ...], width: int, height: int) -> list[Text]:
    rows = eval_rows(evals)
    if not rows:
        return [Text("no evaluations yet", style="dim")]
    label_w = max(len(r[0]) for r in rows) + 1
    lines = []
    for label, value, protocol, step in rows[:max(height, 1)]:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(label.ljust(label_w), "bold")
        line.append(value.rjust(6) + "  ", "bold green" if value != "—" else "dim")
        at = f" @{step}" if step is not None else ""
        room = width - line.cell_len - len(at)
        if len(protocol) > room and at:  # the numbers of a long protocol before the step marker
            room, at = room + len(at), ""
        line.append(_fit(protocol, room).ljust(max(room, 0)), "grey70")
        line.append(at, "grey50")
        line.truncate(width)
        lines.append(line)
    return lines


class EvalTable(Widget):
    """The latest evaluation numbers with their protocols."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.evals: tuple[dict[str, Any], ...] = ()
        self.border_title = "eval"

    def show(self, snapshot: RunSnapshot) -> None:
        if len(snapshot.evals) != len(self.evals) or snapshot.evals[-1:] != self.evals[-1:]:
            self.evals = snapshot.evals
            self.refresh()

    def render(self) -> Text:
        return Text("\n").join(eval_lines(self.evals, max(self.size.width, 10), self.size.height))
