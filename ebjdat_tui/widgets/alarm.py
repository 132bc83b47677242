"""The alarm banner: hidden until a collapse/anomaly alarm (or a crash); then the detector,
its message and the action taken, in red across the screen."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from ..fmt import fmt
from ..reducer import RunSnapshot


def alarm_text(alarms: tuple[dict[str, Any], ...], end: dict[str, Any] | None) -> Text | None:
    status = (end or {}).get("status")
    if status == "crashed":
        text = Text("✖ CRASHED", style="bold")
        text.append(f" at step {end.get('step', '?')}: {end.get('error', '')}")
        return text
    if not alarms:
        return None
    a = alarms[-1]
    text = Text("⚠ ALARM", style="bold")
    text.append(f" step {a.get('step', '?')}  {a.get('detector', '?')}: {a.get('message', '')}")
    action = a.get("action")
    text.append(f"  → {action}", style="bold")
    if a.get("restored_step") is not None:
        text.append(f" (restored step {a['restored_step']}, rollbacks {a.get('rollbacks_used', '?')})")
    if a.get("collapse_epoch") is not None:
        text.append(f"  collapse epoch {fmt(a['collapse_epoch'], 3)}")
    if status == "collapsed":
        text.append("  run COLLAPSED", style="bold")
    if len(alarms) > 1:
        text.append(f"  [{len(alarms)} alarms]")
    return text


class AlarmBanner(Widget):
    """Shows the latest alarm; hidden while there is none."""

    DEFAULT_CSS = """
    AlarmBanner { height: auto; max-height: 2; background: $error; color: $text; display: none; }
    AlarmBanner.-active { display: block; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.text: Text | None = None
        self._key: tuple[int, Any] = (0, None)

    def show(self, snapshot: RunSnapshot) -> None:
        key = (len(snapshot.alarms), (snapshot.end or {}).get("status"))
        if key == self._key:
            return
        self._key = key
        self.text = alarm_text(snapshot.alarms, snapshot.end)
        self.set_class(self.text is not None, "-active")
        self.refresh(layout=True)

    def render(self) -> Text:
        return self.text or Text("")
