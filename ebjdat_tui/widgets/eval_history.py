"""Every evaluation of the run, newest first, with its full protocol (the samples/eval screen)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from ..fmt import fmt
from ..reducer import RunSnapshot
from .eval_table import aa_text, clean_text, pgd_text


def baseline_lines(e: dict[str, Any], key: str) -> list[Text]:
    """The floor and init baseline of generation metric `key` under its line (none in older events)."""
    floor, init = e.get(f"{key}_floor"), e.get(f"{key}_init")
    if floor is None and init is None:
        return []
    what = str(e["gen_init"]) if e.get("gen_init") else "init distribution"
    return [Text(f"    init   {fmt(init, 4)}  {what}", style="grey70"),
            Text(f"    floor  {fmt(floor, 4)}  held-out test", style="grey70")]


def history_lines(evals: tuple[dict[str, Any], ...]) -> list[Text]:
    if not evals:
        return [Text("no evaluations yet; e asks the job for one", style="dim")]
    lines: list[Text] = []
    for e in reversed(evals):
        head = Text(f"step {e.get('step', '?')}  ", style="bold")
        head.append(f"{e.get('split', '?')}" + (f"  [{e['source']}]" if e.get("source") else ""), "grey70")
        lines.append(head)
        if e.get("clean_acc") is not None:
            lines.append(Text(f"  clean  {fmt(e['clean_acc'], 4)}  {clean_text(e)}"))
        if e.get("pgd_acc") is not None:
            label, text = pgd_text(e)
            lines.append(Text(f"  {label}  {fmt(e['pgd_acc'], 4)}  {text}"))
        if e.get("aa_acc") is not None:
            aa = (e.get("protocol") or {}).get("autoattack") or {}
            pkg = f"  ({aa['package']})" if aa.get("package") else ""
            lines.append(Text(f"  AA  {fmt(e['aa_acc'], 4)}  {aa_text(e)}{pkg}"))
        if e.get("fd_ref") is not None:
            lines.append(Text(f"  fd_ref  {fmt(e['fd_ref'], 4)}  (reference-CNN features; not FID)"))
            lines += baseline_lines(e, "fd_ref")
        if "fid" in e:
            lines.append(Text(f"  FID  {fmt(e['fid'], 4) if e['fid'] is not None else 'not computed'}"))
            if e["fid"] is not None:
                lines += baseline_lines(e, "fid")
        if e.get("energy_gaps"):
            gaps = "  ".join(f"{k.replace('_minus_', '−')} {fmt(v, 3)}" for k, v in e["energy_gaps"].items())
            lines.append(Text(f"  gaps  {gaps}", style="grey70"))
        if e.get("path"):
            lines.append(Text(f"  {e['path']}", style="grey50"))
    return lines


class EvalHistory(Widget):
    """All `eval` events, newest first."""

    DEFAULT_CSS = "EvalHistory { height: auto; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.evals: tuple[dict[str, Any], ...] = ()

    def show(self, snapshot: RunSnapshot) -> None:
        if len(snapshot.evals) != len(self.evals):
            self.evals = snapshot.evals
            self.refresh(layout=True)

    def render(self) -> Text:
        return Text("\n", no_wrap=True, overflow="ellipsis").join(history_lines(self.evals))
