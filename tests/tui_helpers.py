"""Helpers of the TUI tests (a module, not a test file): a recorded run directory, a fake live
job, running an App headless and comparing screen text."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

from rich.console import Console

DATA = Path(__file__).resolve().parent / "data"
RECORDED = DATA / "tui_run"
ALARMS = DATA / "tui_alarm_events.jsonl"
SNAPSHOTS = DATA / "tui_snapshots"


def copy_run(dest: Path, *, drop_end: bool = False) -> Path:
    """A copy of the recorded run; `drop_end` removes its `end` event and moves its clock so that
    the last event is from now (a run still going)."""
    shutil.copytree(RECORDED, dest)
    if drop_end:
        path = dest / "events.jsonl"
        events = [json.loads(line) for line in path.read_text().splitlines()]
        events = [e for e in events if e["type"] != "end"]
        shift = time.time() - events[-1]["time"]
        for e in events:
            e["time"] = round(e["time"] + shift, 3)
        path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    return dest


def fake_job() -> subprocess.Popen:
    """A live process standing in for a running job (`set_job` records it in meta.json)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "ebjdat-fake-job"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def set_job(run_dir: Path, pid: int) -> None:
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(pid=pid, host=socket.gethostname(),
                start_time=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    meta_path.write_text(json.dumps(meta))


def append(run_dir: Path, *events: dict | str) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        for e in events:
            f.write(e if isinstance(e, str) else json.dumps(e) + "\n")


def screen_text(app) -> str:
    """The current screen as plain text (what a terminal of app.size would show, colours dropped)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=False,
                      color_system=None, record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def shown(pilot, *words: str) -> Callable[[], bool]:
    """A condition: every phrase is on screen, wherever the terminal wrapped it (whitespace,
    line breaks included, compares as one space; a path in a message moves the wrap)."""
    def condition() -> bool:
        text = " ".join(screen_text(pilot.app).split())
        return all(" ".join(w.split()) in text for w in words)
    return condition


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def run_app(app, script: Callable[..., Awaitable[None]], size=(80, 24)):
    """Run `app` headless at `size`, drive it with `script(pilot)`, return the App's result."""
    async def main():
        async with app.run_test(size=size) as pilot:
            await script(pilot)
        return app.return_value

    return asyncio.run(main())


def check_snapshot(name: str, text: str) -> None:
    """Compare with tests/data/tui_snapshots/NAME.txt (EBJDAT_UPDATE_SNAPSHOTS=1 rewrites it)."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("EBJDAT_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        if os.environ.get("EBJDAT_UPDATE_SNAPSHOTS") != "1":
            raise AssertionError(f"wrote the missing snapshot {path}; check it and run again")
        return
    expected = path.read_text(encoding="utf-8").rstrip("\n")
    assert text == expected, f"screen differs from {path}:\n{text}"
