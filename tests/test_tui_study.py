"""The study view of the TUI (`ebjdat tui --attach studies/NAME`): the arms × seeds with their
state and numbers at 80×24, enter opens a run's dashboard and escape comes back, a pending run
and a garbage results.json give a message, not a crash. The study directory is synthetic: a
results.json as `ebjdat study` writes it, beside copies of the recorded run (tests/data/tui_run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tui_helpers import copy_run, fake_job, run_app, screen_text, set_job, shown, wait_for

from ebjdat_tui.app import StudyApp, create_app
from ebjdat_tui.screens.dashboard import DashboardScreen
from ebjdat_tui.screens.study import StudyScreen
from ebjdat_tui.study_view import is_study_dir, load_study

FAST = dict(poll_interval=0.05, redraw_hz=20.0, study_interval=0.1)


def _run(seed: int, state: str, run_dir: str | None, metrics: dict | None = None, **kw) -> dict:
    return {"seed": seed, "run_dir": run_dir, "state": state, "status": kw.pop("status", None),
            "step": kw.pop("step", None), "total_steps": kw.pop("total_steps", None), "eval": kw.pop("eval", None),
            "metrics": metrics, "curve": {}, "error": kw.pop("error", None), **kw}


def make_study(root: Path, *, live: bool = False) -> Path:
    """studies/trilemma: 'standard' (seed 0 done, seed 1 training), 'ebjdat-sada' (seed 0
    failed, seed 1 pending). runs/standard-s0 is the recorded finished run; runs/standard-s1 the
    same run cut at step 30, without its end (a job still going)."""
    study = root / "studies" / "trilemma"
    (study / "runs").mkdir(parents=True)
    copy_run(study / "runs" / "standard-s0")
    training = copy_run(study / "runs" / "standard-s1", drop_end=True)
    path = training / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(e) + "\n" for e in events if e.get("step", 0) <= 30))
    meta = json.loads((training / "meta.json").read_text())
    (training / "meta.json").write_text(json.dumps({**meta, "host": "another-host"}))  # alive? cannot tell
    done = {"clean": 0.905, "pgd": 0.77, "aa": 0.765, "fd_ref": 6.48, "fd_ref_floor": 0.913,
            "fd_ref_init": 3.03, "beats_init": False, "gap_clean_adv": -0.09, "gap_clean_gen": -0.06,
            "train_s": 20.1, "images_per_s": 440.0}
    results = {
        "format": 1, "study": "trilemma", "study_file": "studies/trilemma.toml",
        "updated": "2026-11-23T12:00:00+00:00", "state": "running",
        "protocol": {"ckpt": "last", "n": 300, "eps": "8/255", "norm": "linf", "attacks": "standard",
                     "pgd_steps": 20, "n_samples": 1000, "samples": "auto", "fid": "auto", "seed": 0},
        "seeds": [0, 1],
        "arms": [
            {"label": "standard", "recipe": "../recipes/quickstart.toml", "overrides": [],
             "runs": [_run(0, "done", "runs/standard-s0", done, status="finished", step=60, total_steps=60,
                           eval="runs/standard-s0/eval/20261123-120000.json"),
                      _run(1, "training", "runs/standard-s1", step=10, total_steps=60)],
             "summary": {"clean": {"mean": 0.905, "std": None, "n": 1}, "aa": {"mean": 0.765, "std": None, "n": 1},
                         "pgd": {"mean": 0.77, "std": None, "n": 1}, "fd_ref": {"mean": 6.48, "std": None, "n": 1},
                         "fd_ref_init": {"mean": 3.03, "std": None, "n": 1}}},
            {"label": "ebjdat-sada", "recipe": "../recipes/quickstart.toml", "overrides": ["method.base=sada"],
             "runs": [_run(0, "failed", None, error="RuntimeError: CUDA out of memory\nTraceback ..."),
                      _run(1, "pending", "runs/ebjdat-sada-s1")],
             "summary": {}},
        ],
    }
    (study / "results.json").write_text(json.dumps(results, indent=1))
    return study


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path)


def row_line(text: str, *starts: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:len(starts)] == list(starts))


# --- reading the study directory, no App ------------------------------------------------------

def test_load_study_rows(study: Path):
    assert is_study_dir(study) and not is_study_dir(study / "runs" / "standard-s0")
    view = load_study(study)
    assert (view.name, view.state, view.counts) == ("trilemma", "running", "1/4 runs done, 1 failed")
    by = {(r.label, r.seed): r for r in view.rows}
    done = by["standard", "0"]
    assert (done.state_text, done.clean, done.aa, done.fd_ref, done.pgd) == ("done", "90.5", "76.5", "6.48/3.03",
                                                                             "77.0")
    training = by["standard", "1"]
    assert training.state_text == "training 30/60"  # from the run directory, not results.json's step 10
    assert training.provisional and training.clean == "60.0"  # the run's own latest in-training eval
    assert by["standard", "mean"].summary and by["standard", "mean"].state_text == "1/2 done"
    assert by["ebjdat-sada", "0"].state_text == "failed" and "CUDA out of memory" in by["ebjdat-sada", "0"].detail[1]
    assert by["ebjdat-sada", "1"].run_dir is None and not by["ebjdat-sada", "1"].openable
    # the study still says training, but the run's job is gone without an end event
    job = fake_job()
    set_job(study / "runs" / "standard-s1", job.pid)
    job.kill()
    job.wait()
    by = {(r.label, r.seed): r for r in load_study(study).rows}
    assert by["standard", "1"].state_text == "died 30/60" and by["standard", "1"].state == "died"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"format": 1}', '{"arms": [3, {"runs": "x"}]}'])
def test_bad_results_do_not_raise(tmp_path: Path, content: str):
    (tmp_path / "results.json").write_text(content)
    assert is_study_dir(tmp_path)
    view = load_study(tmp_path)
    assert view.error or view.rows == ()


# --- the screen ---------------------------------------------------------------------------------

def test_study_lists_its_runs_at_80x24(study: Path):
    app = create_app(attach=study, **FAST)
    assert isinstance(app, StudyApp)

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "trilemma", "training 30/60", "Open run"), what="the study list")
        text = screen_text(pilot.app)
        lines = text.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert "RUNNING" in lines[0] and "1/4 runs done, 1 failed" in lines[0]
        assert "linf 8/255" in lines[1] and "PGD-20" in lines[1]
        assert row_line(text, "arm").split() == ["arm", "seed", "state", "clean%", "AA%", "fd_ref/init", "PGD%"]
        assert row_line(text, "standard", "0").split() == ["standard", "0", "done", "90.5", "76.5", "6.48/3.03", "77.0"]
        assert row_line(text, "standard", "1").split()[:4] == ["standard", "1", "training", "30/60"]
        assert row_line(text, "standard", "mean").split() == ["standard", "mean", "1/2", "done", "90.5", "76.5",
                                                              "6.48/3.03", "77.0"]
        assert row_line(text, "ebjdat-sada", "0").split() == ["ebjdat-sada", "0", "failed", "—", "—", "—", "—"]
        assert row_line(text, "ebjdat-sada", "1").split()[:3] == ["ebjdat-sada", "1", "pending"]
        assert "⏎ Open run" in lines[-1] and "q Quit" in lines[-1]
        assert "Stop" not in lines[-1] and "Dash" not in lines[-1]  # no run keys on the list

    run_app(app, script, size=(80, 24))


def test_enter_opens_the_runs_dashboard_and_escape_comes_back(study: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "training 30/60"))
        app = pilot.app
        await pilot.press("up")  # the cursor starts on the training run; above it: seed 0, finished
        await pilot.press("enter")
        await wait_for(pilot, shown(pilot, "FINISHED", "step 60/60", "losses", "esc Study"), what="the run's dashboard")
        assert isinstance(app.screen, DashboardScreen) and app.run_dir == study / "runs" / "standard-s0"
        text = screen_text(app)
        assert "standard-s0" in text.splitlines()[0] and "esc Study" in text.splitlines()[-1]
        await pilot.press("2")
        await wait_for(pilot, shown(pilot, "[data]"), what="the run's recipe")
        await pilot.press("escape")
        await wait_for(pilot, shown(pilot, "fd_ref/init", "training 30/60"), what="back to the list")
        assert isinstance(app.screen, StudyScreen) and app.run_dir is None and app.watcher is None
        # another run: the training one (its snapshot, not the finished run's)
        await pilot.press("down", "enter")
        await wait_for(pilot, shown(pilot, "step 30/60"), what="the training run's dashboard")
        assert "standard-s1" in screen_text(app).splitlines()[0] and "FINISHED" not in screen_text(app)
        await pilot.press("backspace")
        await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen))
        await pilot.press("q")

    result = run_app(create_app(attach=study, **FAST), script)
    assert result.code == 0 and result.message.startswith("study trilemma: running, 1/4 runs done")


def test_pending_and_mean_rows_give_a_notice(study: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "pending"))
        app = pilot.app
        await pilot.press("down", "down", "down", "enter")  # from the training run to ebjdat-sada seed 1, pending
        await wait_for(pilot, lambda: any("no run directory yet" in str(n.message) for n in app._notifications),
                       what="the notice")
        assert isinstance(app.screen, StudyScreen) and app.run_dir is None
        assert "pending: no run directory to open yet" in screen_text(app)
        await pilot.press("up", "enter")  # failed, without a run directory
        await pilot.press("up", "enter")  # standard's mean row
        await wait_for(pilot, lambda: any("the mean of its seeds" in str(n.message) for n in app._notifications))
        assert isinstance(app.screen, StudyScreen) and app.run_dir is None

    run_app(create_app(attach=study, **FAST), script)


def test_control_keys_of_a_dashboard_opened_from_the_study_write_that_run(study: Path):
    run = study / "runs" / "standard-s1"
    job = fake_job()
    set_job(run, job.pid)
    try:
        async def script(pilot):
            await wait_for(pilot, shown(pilot, "training 30/60"))
            await pilot.press("up", "down", "enter")
            await wait_for(pilot, shown(pilot, "RUNNING", "step 30/60"))
            await pilot.press("c")
            assert (run / "control" / "checkpoint").is_file()
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, StudyScreen))
            await pilot.press("c")  # no run open: the key does nothing
            assert not (study / "control").exists()

        run_app(create_app(attach=study, **FAST), script)
    finally:
        job.kill()
        job.wait()


def test_the_list_follows_results_json(study: Path):
    async def script(pilot):
        await wait_for(pilot, shown(pilot, "pending"))
        data = json.loads((study / "results.json").read_text())
        data["arms"][1]["runs"][1].update(state="evaluating", run_dir=None)
        data["state"] = "finished"
        (study / "results.json").write_text(json.dumps(data))
        await wait_for(pilot, shown(pilot, "evaluating", "FINISHED"), what="the updated list")

    run_app(create_app(attach=study, **FAST), script)


@pytest.mark.parametrize("content", ["{garbage", None])
def test_garbage_or_missing_results_json_shows_a_message(tmp_path: Path, content):
    study = tmp_path / "studies" / "broken"
    study.mkdir(parents=True)
    if content is None:
        (study / "study.lock").write_text("")  # a study that has just started
    else:
        (study / "results.json").write_text(content)

    async def script(pilot):
        await wait_for(pilot, shown(pilot, "Cannot show this study", "q Quit"), what="the message")
        text = screen_text(pilot.app)
        assert ("not valid JSON" if content else "no results.json") in text
        assert "Open run" not in text and "q Quit" in text.splitlines()[-1]
        await pilot.press("enter")  # nothing to open: no crash
        # it recovers once results.json becomes readable
        make = make_study(tmp_path / "other")
        (study / "results.json").write_text((make / "results.json").read_text())
        await wait_for(pilot, shown(pilot, "standard", "ebjdat-sada", "Open run"), what="the list after the fix")
        assert "Cannot show this study" not in screen_text(pilot.app)

    app = create_app(attach=study, **FAST)
    assert isinstance(app, StudyApp)
    run_app(app, script)
