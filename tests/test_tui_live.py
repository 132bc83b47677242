"""A real tiny run through the TUI: launch it, see its metrics arrive, leave it running (it goes
on without the TUI), attach again, and stop it from the quit dialog (status 'stopped', a
checkpoint on disk)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import REPO
from tui_helpers import run_app, screen_text, wait_for

from ebjdat_engine.rundir.events import read_events
from ebjdat_tui.app import create_app
from ebjdat_tui.liveness import read_meta

QUICKSTART = REPO / "recipes" / "quickstart.toml"


@pytest.fixture
def launched():
    """Apps that launched a job; whatever happens in the test, their job does not outlive it."""
    apps = []
    yield apps
    for app in apps:
        process = app.launched.process if app.launched else None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_launch_leave_attach_and_stop_a_real_run(tmp_path: Path, launched):
    sets = ["train.max_steps=3000", "runtime.threads=1", "runtime.device=\"cpu\"", "monitor.every=5",
            "train.log_every=5", "train.control_every=2", "eval.every_epochs=0",
            f"run.out_dir=\"{(tmp_path / 'runs').as_posix()}\"", "run.name=\"live\""]
    run_dir = tmp_path / "runs" / "live"

    async def watch_then_leave(pilot):
        app = pilot.app
        assert app.run_dir == run_dir and (run_dir / "stdout.log").exists()
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.metrics is not None,
                       timeout=90, what="the first metrics of the job")
        # progress, loss terms and the energy populations on screen
        await wait_for(pilot, lambda: all(w in screen_text(app) for w in ("RUNNING", "img/s", "h3_ce_adv", "■clean")))
        await pilot.press("q")
        await wait_for(pilot, lambda: "Leave it running" in screen_text(app))
        await pilot.press("l")

    launcher_app = create_app(recipe=QUICKSTART, sets=sets, poll_interval=0.1)
    launched.append(launcher_app)
    result = run_app(launcher_app, watch_then_leave, size=(100, 30))
    assert result.message.startswith(f"left running: {run_dir}")
    pid = read_meta(run_dir)["pid"]
    os.kill(pid, 0)  # the job outlived the TUI ...
    size = (run_dir / "events.jsonl").stat().st_size
    deadline = time.monotonic() + 30
    while (run_dir / "events.jsonl").stat().st_size == size:  # ... and keeps writing events
        assert time.monotonic() < deadline, "events.jsonl stopped growing after the TUI quit"
        time.sleep(0.1)

    async def attach_and_stop(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: "RUNNING" in screen_text(app), timeout=20)
        step = app.snapshot.step
        await wait_for(pilot, lambda: app.snapshot.step > step, what="new metrics after attaching")
        await pilot.press("q")
        await wait_for(pilot, lambda: "is still running" in screen_text(app))
        await pilot.press("s")  # stop the job: the App waits for its end event, then exits
        await wait_for(pilot, lambda: not app.is_running, timeout=60, what="the job to stop")

    result = run_app(create_app(attach=run_dir, poll_interval=0.1), attach_and_stop)
    assert result.message.startswith(f"stopped: {run_dir}"), result.message
    events = read_events(run_dir)
    assert events[-1]["type"] == "end" and events[-1]["status"] == "stopped"
    assert events[-1]["reason"] == "control/stop"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert [p.name.split("-")[0] for p in (run_dir / "control" / "handled").iterdir()] == ["stop"]
    # the job process exits on its own (this test process is its parent: reap it)
    launcher_app.launched.process.wait(timeout=30)
