"""The TUI on a recorded event stream (tests/data/tui_run): what the dashboard shows, keys,
screens, control requests, the quit dialog, and screen snapshots at a fixed size."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tui_helpers import (
    ALARMS,
    append,
    check_snapshot,
    copy_run,
    fake_job,
    run_app,
    screen_text,
    set_job,
    shown,
    wait_for,
)

from ebjdat_tui.app import create_app
from ebjdat_tui.messages import RunUpdated
from ebjdat_tui.reducer import RunState
from ebjdat_tui.widgets.alarm import AlarmBanner

FAST = dict(poll_interval=0.05, redraw_hz=20.0)


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    return copy_run(tmp_path / "quickstart-rec")


@pytest.fixture
def live_run(tmp_path: Path):
    """The recorded run without its end event, 'written' by a live fake job."""
    run = copy_run(tmp_path / "quickstart-rec", drop_end=True)
    job = fake_job()
    set_job(run, job.pid)
    yield run
    job.kill()
    job.wait()


# --- what the dashboard shows ---------------------------------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_dashboard_shows_the_recorded_run(finished_run: Path, size):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED"), what="status")
        text = screen_text(pilot.app)
        assert "step 60/60" in text and "100%" in text and "440 img/s" in text
        assert "ebjdat·jempp" in text and "standard" in text
        for term in ("loss", "h1_px", "h1_l2", "ce", "h2_adv", "h3_ce_adv", "acc"):  # the loss terms (recorded
            # under their old names px, l2, h2, ce_adv: old runs read under today's), with values
            assert f"\n{term} " in text
        assert "1.697" in text  # latest loss
        # the energy panel: the eval-mode probe of the last energy event (means, latest gaps)
        assert "energy E(x), eval mode" in text
        assert "■clean 0.636" in text and "■adv 0.729" in text and "■gen 0.7" in text
        assert "c−a" in text and " -0.093 " in text and "c−g" in text and " -0.0641" in text
        # the generation trace beside them: fd_ref, its init baseline and its floor
        assert "fd_ref ▂" in text and "10.2 init 2.1 floor 0.496" in text
        # eval numbers with their protocols
        assert "PGD-20   0.77  linf 8/255 n=200" in text
        assert "AA       0.77  apgd-ce 8/255 n=200" in text
        assert "fd_ref   6.48" in text and "not computed" in text
        assert "end: finished at step 60" in text or size == (80, 24)
        assert not pilot.app.query_one(AlarmBanner).display

    run_app(create_app(attach=finished_run, **FAST), script, size=size)


def test_an_older_run_shows_train_mode_energies_and_no_generation_trace(tmp_path: Path):
    run = copy_run(tmp_path / "old")
    path = run / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for e in events:
        e.pop("eval_mode", None)
    path.write_text("".join(json.dumps(e) + "\n" for e in events if e["type"] != "generation"))
    train = next(e for e in reversed(events) if e["type"] == "energy")["populations"]

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED"))
        text = screen_text(pilot.app)
        assert "energy E(x), train mode" in text and "eval mode" not in text
        assert f"■clean {train['clean']['mean']:.3g}" in text  # the train-mode window's means
        assert "fd_ref ▂" not in text and "init 2.1" not in text

    run_app(create_app(attach=run, **FAST), script, size=(100, 30))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_the_generation_trace_follows_new_events(live_run: Path, size):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING", "10.2 init 2.1 floor 0.496"))
        append(live_run, {"type": "generation", "time": 1795352999.0, "step": 70, "epoch": 3.5,
                          "metric": "fd_ref", "fd_ref": 1.25, "n": 300, "source": "replay buffer",
                          "init_baseline": 2.1046771944926377, "floor": 0.49584618481429743})
        await wait_for(pilot, shown(pilot, "1.25 init 2.1 floor 0.496"), what="the new fd_ref")
        assert "generation step 70: fd_ref 1.25" in screen_text(pilot.app) or size == (80, 24)

    run_app(create_app(attach=live_run, **FAST), script, size=size)


def test_alarm_banner_appears_when_the_stream_has_an_alarm(finished_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED"))
        banner = pilot.app.query_one(AlarmBanner)
        assert not banner.display
        append(finished_run, *ALARMS.read_text().splitlines(keepends=True))
        await wait_for(pilot, lambda: banner.display, what="the alarm banner")
        text = screen_text(pilot.app)
        assert "⚠ ALARM step 30  gap: max |mean E(clean) - mean E(generated)| = 0.642 >\ngap_limit 0.05" in text
        assert "→ warn  [2 alarms]" in text  # the detector, its message and the action, on two lines
        assert any(n.title == "ALARM" for n in pilot.app._notifications)  # a live alarm also notifies

    run_app(create_app(attach=finished_run, **FAST), script)


def test_tolerates_half_written_line_and_unknown_event_types(live_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING", "step 60/60"))
        append(live_run, {"type": "telemetry", "time": 1.0, "step": 61, "epoch": 3.05, "gpu": 0.9})
        half = json.dumps({"type": "metrics", "time": 2.0, "step": 65, "epoch": 3.25, "loss": 9.876,
                           "terms": {"px": 1.0}, "lr": 0.05})
        append(live_run, half[:25])  # the job is writing this line right now
        await wait_for(pilot, shown(pilot, "telemetry step 61"), what="the unknown event in the log")
        assert "9.876" not in screen_text(pilot.app)
        append(live_run, half[25:] + "\n")
        await wait_for(pilot, shown(pilot, "9.876", "step 65/60"), what="the completed line")
        assert pilot.app.snapshot.unknown_types == ("telemetry",)

    run_app(create_app(attach=live_run, **FAST), script)


def test_missing_run_directory_gives_a_clear_message(tmp_path: Path):
    missing = tmp_path / "runs" / "nope"

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "No run directory to watch"))
        text = screen_text(pilot.app)
        assert "MISSING" in text and "no run directory at" in text and "nope" in text
        await pilot.press("q")

    result = run_app(create_app(attach=missing, **FAST), script)
    assert result.code == 2 and "no run directory" in result.message


def test_a_run_that_crashed_shows_its_error(finished_run: Path, tmp_path: Path):
    run = copy_run(tmp_path / "crashed", drop_end=True)
    append(run, {"type": "end", "time": 1795352900.0, "step": 60, "epoch": 3.0, "status": "crashed",
                 "error": "RuntimeError: CUDA out of memory", "traceback": "..."})

    async def script(pilot):
        # the header's CRASHED can render a frame before the alarm line: wait for the line itself
        await wait_for(pilot, shown(pilot, "✖ CRASHED at step 60: RuntimeError: CUDA out of memory"))

    run_app(create_app(attach=run, **FAST), script)


def test_a_job_gone_without_an_end_event_is_reported_died(tmp_path: Path):
    run = copy_run(tmp_path / "died", drop_end=True)
    job = fake_job()
    job.kill()
    job.wait()
    set_job(run, job.pid)

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "DIED"))
        text = screen_text(pilot.app)
        assert "q Quit" in text and "Stop" not in text and "Ckpt" not in text and "Eval" not in text

    run_app(create_app(attach=run, **FAST), script)


# --- keys and control requests ----------------------------------------------------------------

def test_keys_write_control_requests(live_run: Path):
    control = live_run / "control"

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING"))
        assert shown(pilot, "s Stop", "c Ckpt", "e Eval")()  # offered while the job lives
        await pilot.press("c")
        assert (control / "checkpoint").is_file()
        await pilot.press("e")
        assert (control / "eval").is_file()
        await pilot.press("s")
        await wait_for(pilot, shown(pilot, "Stop quickstart-rec?"), what="the stop dialog")
        assert not (control / "stop").exists()  # nothing before the confirmation
        await pilot.press("y")
        assert (control / "stop").is_file()
        await wait_for(pilot, shown(pilot, "STOPPING"))
        # the job serves the request: control/stop moves to handled/, the end event arrives
        (control / "handled").mkdir(exist_ok=True)
        (control / "stop").rename(control / "handled" / "stop-step60-1")
        append(live_run, {"type": "end", "time": 1795352999.0, "step": 60, "epoch": 3.0,
                          "status": "stopped", "reason": "control/stop"})
        await wait_for(pilot, shown(pilot, "STOPPED"))

    run_app(create_app(attach=live_run, **FAST), script)


def test_stop_dialog_cancel_writes_nothing(live_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING"))
        await pilot.press("s")
        await wait_for(pilot, shown(pilot, "Stop quickstart-rec?"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not shown(pilot, "Stop quickstart-rec?")())
        assert not (live_run / "control" / "stop").exists()

    run_app(create_app(attach=live_run, **FAST), script)


def test_control_keys_do_nothing_on_a_finished_run(finished_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED"))
        text = screen_text(pilot.app)  # a finished run offers no stop, checkpoint or eval key
        assert "q Quit" in text and "s Stop" not in text and "c Ckpt" not in text and "e Eval" not in text
        for key in ("c", "e", "s"):
            await pilot.press(key)
        await pilot.pause(0.2)
        assert not list((finished_run / "control").glob("*"))
        await pilot.press("q")  # a finished run: quit at once, no dialog

    result = run_app(create_app(attach=finished_run, **FAST), script)
    assert result.code == 0 and result.message.startswith("finished:")


def test_screens_switch_with_number_keys_and_tab(finished_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED"))
        await pilot.press("2")
        await wait_for(pilot, shown(pilot, "[data]"), what="the recipe screen")
        assert 'name = "digits"' in screen_text(pilot.app)
        await pilot.press("3")
        await wait_for(pilot, shown(pilot, "evaluations", "[ebjdat eval]"), what="the samples screen")
        await pilot.press("tab")
        await wait_for(pilot, shown(pilot, "losses"), what="back to the dashboard")
        await pilot.press("tab")
        await wait_for(pilot, shown(pilot, "[data]"))
        await pilot.press("1")
        await wait_for(pilot, shown(pilot, "losses"))

    run_app(create_app(attach=finished_run, **FAST), script)


# --- quitting -------------------------------------------------------------------------------

def test_quit_leave_running_writes_no_stop(live_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING"))
        await pilot.press("q")
        await wait_for(pilot, shown(pilot, "is still running", "Leave it running"), what="the quit dialog")
        await pilot.press("l")

    result = run_app(create_app(attach=live_run, **FAST), script)
    assert result.message.startswith(f"left running: {live_run}")
    assert f"ebjdat tui --attach {live_run}" in result.message
    assert not (live_run / "control" / "stop").exists()


def test_quit_cancel_keeps_watching(live_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING"))
        await pilot.press("q")
        await wait_for(pilot, shown(pilot, "is still running"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not shown(pilot, "is still running")())
        assert pilot.app.is_running and not (live_run / "control" / "stop").exists()
        await pilot.press("ctrl+c")  # Ctrl-C asks too; it never kills the job
        await wait_for(pilot, shown(pilot, "is still running"))
        await pilot.press("l")

    run_app(create_app(attach=live_run, **FAST), script)


def test_quit_stop_requests_a_stop_and_waits_for_the_end(live_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING"))
        await pilot.press("q")
        await wait_for(pilot, shown(pilot, "is still running"))
        await pilot.press("s")
        assert (live_run / "control" / "stop").is_file()
        await wait_for(pilot, shown(pilot, "STOPPING"))
        assert pilot.app.is_running  # waiting for the job's checkpoint
        append(live_run, {"type": "checkpoint", "time": 1795352998.0, "step": 60, "epoch": 3.0,
                          "kind": "last", "path": "checkpoints/last.pt"},
               {"type": "end", "time": 1795352999.0, "step": 60, "epoch": 3.0, "status": "stopped",
                "reason": "control/stop"})
        await wait_for(pilot, lambda: not pilot.app.is_running, what="the App to exit")

    result = run_app(create_app(attach=live_run, **FAST), script)
    assert result.message.startswith(f"stopped: {live_run}")
    assert "ebjdat run --resume" in result.message


# --- launching --------------------------------------------------------------------------------

def test_recipe_errors_are_shown_and_nothing_is_started(tmp_path: Path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'[run]\nout_dir = "{(tmp_path / "runs").as_posix()}"\n[optim]\nlrr = 0.1\n')

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "error in the recipe; nothing was started"))
        text = screen_text(pilot.app)
        assert "$.optim.lrr: unknown key (did you mean 'lr'?)" in text
        assert "INVALID" in text
        await pilot.press("q")

    result = run_app(create_app(recipe=recipe, **FAST), script)
    assert result.code == 2 and "lrr" in result.message
    assert not (tmp_path / "runs").exists()


def test_a_recipe_that_is_not_utf8_is_an_invalid_recipe_not_a_crash(tmp_path: Path):
    recipe = tmp_path / "latin1.toml"
    recipe.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "error in the recipe; nothing was started"))
        assert "not UTF-8" in screen_text(pilot.app)
        await pilot.press("q")

    result = run_app(create_app(recipe=recipe, **FAST), script)
    assert result.code == 2 and "not UTF-8" in result.message


@pytest.mark.slow
def test_a_job_that_fails_before_its_first_event_shows_stdout_log(tmp_path: Path):
    recipe = tmp_path / "fm.toml"
    recipe.write_text(f'[run]\nout_dir = "{(tmp_path / "runs").as_posix()}"\n'
                      f'[data]\nname = "fashion-mnist"\nroot = "{(tmp_path / "nowhere").as_posix()}"\n')

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "The job failed before it started"), timeout=30,
                       what="the failed job's notice")
        text = " ".join(screen_text(pilot.app).split())
        assert "exited with code 2" in text and "nowhere" in text  # the job's own message
        assert text.count("exited with code 2") == 1  # once: the header does not repeat it
        assert "Stop" not in text and "Ckpt" not in text  # a failed job: nothing to control
        await pilot.press("q")

    result = run_app(create_app(recipe=recipe, **FAST), script)
    assert result.code == 2
    # after the screen is gone: the job's own message, once, and where its whole output is
    assert result.message.startswith("the job failed before it started: ")
    assert result.message.count("fashion-mnist files not found") == 1 and result.message.endswith("stdout.log")


# --- bounded redraws ----------------------------------------------------------------------------

def test_snapshots_coalesce_and_redraws_are_bounded(finished_run: Path):
    state = RunState(finished_run)
    events = [json.loads(line) for line in (finished_run / "events.jsonl").read_text().splitlines()]

    async def script(pilot):
        app = pilot.app
        await wait_for(pilot, shown(pilot, "FINISHED"))
        start = app.redraws

        def flood():  # a producer far faster than any terminal: 600 snapshots at once
            for i in range(600):
                state.apply(events[i % len(events)])
                app.post_message(RunUpdated(state.snapshot("finished")))

        thread = threading.Thread(target=flood)
        thread.start()
        thread.join()
        await pilot.pause(1.0)
        assert app.snapshot.n_events == 600  # the newest snapshot won
        assert app.redraws - start <= 6  # 4 Hz for ~1 s, whatever the message rate

    run_app(create_app(attach=finished_run, poll_interval=0.05, redraw_hz=4.0), script)


def test_the_tui_process_does_not_import_torch(finished_run: Path):
    code = f"""
import asyncio, sys
from ebjdat_tui.app import create_app
async def main():
    app = create_app(attach={str(finished_run)!r}, poll_interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        assert app.snapshot is not None and app.snapshot.status == "finished"
asyncio.run(main())
print("torch" in sys.modules, "textual" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "True"]


# --- snapshots at a fixed size ----------------------------------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
def test_snapshot_dashboard(finished_run: Path, size):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED", "samples"))
        await pilot.pause(0.2)
        check_snapshot(f"dashboard_{size[0]}x{size[1]}", screen_text(pilot.app))

    run_app(create_app(attach=finished_run, **FAST), script, size=size)


def test_snapshot_recipe_and_samples_screens(finished_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "FINISHED"))
        await pilot.press("2")
        await wait_for(pilot, shown(pilot, "[run]"))
        check_snapshot("recipe_80x24", screen_text(pilot.app))
        await pilot.press("3")
        await wait_for(pilot, shown(pilot, "evaluations"))
        await pilot.pause(0.2)
        check_snapshot("samples_80x24", screen_text(pilot.app))

    run_app(create_app(attach=finished_run, **FAST), script)


def test_snapshot_quit_dialog(live_run: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "RUNNING"))
        await pilot.press("q")
        await wait_for(pilot, shown(pilot, "is still running"))
        await pilot.pause(0.3)
        check_snapshot("quit_dialog_80x24", screen_text(pilot.app))
        await pilot.press("l")

    run_app(create_app(attach=live_run, **FAST), script)


def test_a_run_directory_that_cannot_be_made_is_a_notice_not_a_crash(tmp_path: Path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[run]\nout_dir = "/proc/ebjdat-zz"\n')

    def launcher(*_args, **_kw):
        raise FileNotFoundError(2, "No such file or directory", "/proc/ebjdat-zz")

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "could not start the job: No such file or directory (/proc/ebjdat-zz)",
                                    "run.out_dir"))
        assert "Stop" not in screen_text(pilot.app)
        await pilot.press("q")

    result = run_app(create_app(recipe=recipe, launcher=launcher, **FAST), script)
    assert result.code == 2 and "run.out_dir" in result.message and "q quits" not in result.message
