"""The TUI's readers and renderers without a terminal: the event fold, job status, the watcher's
polls, the launcher's run directories, the charts, and `ebjdat ls` / `ebjdat tui` arguments."""

from __future__ import annotations

import datetime as dt
import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ebjdat
from tui_helpers import RECORDED, append, copy_run, fake_job, set_job

from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_tui.launch import job_argv, make_run_dir, planned_run_dir
from ebjdat_tui.liveness import job_status, process_alive
from ebjdat_tui.messages import AlarmRaised, ControlServed, RunEnded, RunUpdated
from ebjdat_tui.reducer import RunState, Series
from ebjdat_tui.runs import summarize
from ebjdat_tui.watcher import RunWatcher
from ebjdat_tui.widgets.energy import MIX, histogram_lines
from ebjdat_tui.widgets.eval_table import eval_rows
from ebjdat_tui.widgets.sparkline import BLOCKS, sparkline


def test_series_keeps_the_whole_run_within_its_cap():
    s = Series(cap=16)
    for i in range(1000):
        s.add(float(i))
    values = s.values()
    assert len(values) <= 16
    assert values[0] < 64 and values[-1] > 900  # first and last part of the run both present
    assert list(values) == sorted(values)


def test_sparkline_spans_the_width_and_marks_non_finite_values():
    line = sparkline([1.0, 2.0, 3.0, float("nan"), 5.0], 10)
    assert len(line) == 10 and line[0] == BLOCKS[0] and line[-1] == BLOCKS[-1] and "×" in line
    assert sparkline([2.0] * 50, 8) == BLOCKS[3] * 8


def test_run_state_folds_the_recorded_stream():
    state = RunState(RECORDED)
    state.apply_all(read_events(RECORDED))
    assert state.start["method"] == "ebjdat" and state.total == 60
    assert state.step == 60  # eval/sample events of `ebjdat eval`/`sample` (step 40) do not move it back
    assert state.end_status() == "finished"
    # recorded under the old term names (px, l2, h2, ce_adv), read under today's
    assert set(state.series) >= {"loss", "h1_px", "h1_l2", "ce", "h2_adv", "h3_ce_adv", "acc", "lr"}
    assert set(state.gaps) == {"clean_minus_adversarial", "clean_minus_generated"}
    assert {e.get("source") for e in state.evals} == {None, "ebjdat eval"}
    # the eval-mode probe of every energy event, and the generation trace
    assert set(state.eval_gaps) == {"clean_minus_adversarial", "clean_minus_generated",
                                    "adversarial_minus_generated"}
    assert len(state.eval_gaps["clean_minus_generated"].values()) == 6
    assert len(state.fd_ref.values()) == 6 and state.generation["step"] == 60
    snap = state.snapshot("finished")
    block, gaps, mode = snap.energy_view()
    assert mode == "eval" and block is not None and gaps is snap.eval_gaps
    assert block["populations"]["clean"]["mean"] == state.energy["eval_mode"]["populations"]["clean"]["mean"]
    assert block["range"] == state.energy["range"]


def test_the_recorded_eval_mode_gaps_are_those_ebjdat_eval_reported_at_its_checkpoint():
    """The recorded `ebjdat eval --n 200` (best.pt, step 40) and the energy event of step 40
    measured the same probe: the same 200 test images, PGD examples and buffer slots."""
    events = read_events(RECORDED)
    report = next(e for e in events if e["type"] == "eval" and e.get("source") == "ebjdat eval")
    live = next(e for e in events if e["type"] == "energy" and e["step"] == report["step"])
    assert live["eval_mode"]["probe"]["n"] == report["n"] == 200
    for name, value in report["energy_gaps"].items():
        assert live["eval_mode"]["gaps"][name] == pytest.approx(value, rel=0.1)  # the goal: within 10 %
        assert live["eval_mode"]["gaps"][name] == pytest.approx(value, rel=1e-6)  # in fact equal


def test_old_runs_fall_back_to_train_mode_energies():
    events = [e for e in read_events(RECORDED) if e["type"] != "generation"]
    for e in events:
        e.pop("eval_mode", None)
    state = RunState(Path("x"))
    state.apply_all(events)
    snap = state.snapshot("finished")
    block, gaps, mode = snap.energy_view()
    assert mode == "train" and block is state.energy and gaps is snap.gaps and not snap.eval_gaps
    assert snap.generation is None and snap.fd_ref == ()


def test_log_lines_of_energy_and_generation_events():
    events = read_events(RECORDED)
    state = RunState(Path("x"))
    state.apply_all(events)
    lines = list(state.log)
    energy = [line for line in lines if line.startswith("energy step 60")]
    assert energy == [next(line for line in lines if line.startswith("energy step 60 (eval mode): clean 0.636"))]
    gen = [line for line in lines if line.startswith("generation step")]
    assert len(gen) == 6 and "fd_ref 10.23 (init 2.105, floor 0.4958; n=300, replay buffer)" in gen[-1]
    old = dict(next(e for e in events if e["type"] == "energy"))
    old.pop("eval_mode")
    state.apply(old)
    assert state.log[-1].startswith("energy step 10 (train mode): clean")
    state.apply({"type": "generation", "time": 1.0, "step": 70, "epoch": 3.5, "fd_ref": 1.5, "n": 40,
                 "source": "latest training negatives", "init_baseline": None, "floor": 0.3,
                 "reference": {"trained_now": True, "seconds": 4.2}})
    assert state.log[-1] == ("generation step 70: fd_ref 1.5 (init —, floor 0.3; n=40, latest training "
                             "negatives); reference CNN trained in 4.2 s")


def test_run_state_tolerates_unknown_and_malformed_events():
    state = RunState(Path("x"))
    state.apply({"type": "future_thing", "time": 1.0, "step": 3, "epoch": 0.1})
    state.apply({"type": "metrics", "time": 2.0, "step": 5, "epoch": 0.2, "loss": "nan", "terms": "oops"})
    state.apply({"type": "energy", "time": 3.0, "step": 5, "epoch": 0.2, "populations": None, "gaps": []})
    assert state.unknown_types == {"future_thing"}
    assert math.isnan(state.series["loss"].values()[-1])  # "nan" from the log is a NaN, drawn as ×
    assert state.log[0] == "future_thing step 3"


def test_a_resume_clears_the_previous_end():
    state = RunState(Path("x"))
    state.apply({"type": "start", "time": 1.0, "step": 0, "epoch": 0.0, "total_steps": 10})
    state.apply({"type": "end", "time": 2.0, "step": 5, "epoch": 0.5, "status": "stopped"})
    assert state.end_status() == "stopped"
    state.apply({"type": "start", "time": 3.0, "step": 5, "epoch": 0.5, "total_steps": 10, "resumed_from": 5})
    assert state.end_status() is None


@pytest.mark.parametrize("end, started, alive, expected", [
    ("finished", True, False, "finished"), ("stopped", True, True, "stopped"),
    (None, True, True, "running"), (None, False, True, "starting"),
    (None, True, False, "died"), (None, True, None, "running?"),
])
def test_job_status(end, started, alive, expected):
    assert job_status(end, started, alive, last_time=100.0, now=110.0)[0] == expected


def test_job_status_is_unknown_for_an_old_run_without_a_pid():
    assert job_status(None, True, None, last_time=100.0, now=100000.0)[0] == "unknown"


def test_a_pid_reused_by_a_newer_process_is_not_the_job():
    job = fake_job()
    try:
        now = dt.datetime.now().astimezone()
        meta = {"pid": job.pid, "host": socket.gethostname()}
        assert process_alive({**meta, "start_time": now.isoformat(timespec="seconds")}) is True
        earlier = (now - dt.timedelta(hours=1)).isoformat(timespec="seconds")
        assert process_alive({**meta, "start_time": earlier}) is False  # started after the job's meta
        resumed = {"pid": 1, "host": "elsewhere", "start_time": earlier,
                   "resumes": [{**meta, "start_time": now.isoformat(timespec="seconds")}]}
        assert process_alive(resumed) is True  # the last resume's pid, host and time count
        assert process_alive({**meta, "host": "another-host"}) is None
    finally:
        job.kill()
        job.wait()
    assert process_alive({"pid": job.pid, "host": socket.gethostname()}) is False


def test_watcher_keeps_a_half_written_line_back(tmp_path: Path):
    run = copy_run(tmp_path / "run", drop_end=True)
    job = fake_job()
    try:
        set_job(run, job.pid)
        posted = []
        watcher = RunWatcher(run, posted.append)
        first = watcher.poll_once()
        assert isinstance(first[0], RunUpdated) and first[0].snapshot.status == "running"
        assert not any(isinstance(m, AlarmRaised) for m in first)
        line = json.dumps({"type": "alarm", "time": 1.0, "step": 61, "epoch": 3.0, "detector": "gap",
                           "message": "m", "action": "warn"})
        append(run, line[:10])
        assert watcher.poll_once() == []  # nothing new, nothing posted
        append(run, line[10:] + "\n")
        out = watcher.poll_once()
        assert [type(m) for m in out] == [RunUpdated, AlarmRaised]
        assert out[0].snapshot.alarms[-1]["detector"] == "gap"
        (run / "control" / "handled").mkdir(parents=True)
        (run / "control" / "handled" / "checkpoint-step61-1").write_text("")
        for _ in range(watcher.slow_every):
            served = [m for m in watcher.poll_once() if isinstance(m, ControlServed)]
            if served:
                break
        assert served and served[0].name == "checkpoint"
        job.kill()
        job.wait()
        ended = []
        for _ in range(watcher.slow_every + 1):
            ended += [m for m in watcher.poll_once() if isinstance(m, RunEnded)]
        assert ended and ended[0].status == "died"
    finally:
        job.kill()
        job.wait()


def test_watcher_reports_a_launch_that_failed_with_the_log_tail(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "stdout.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c",
                                 "import sys; print('ebjdat run: no dataset at /x'); sys.exit(2)"],
                                stdout=log, stderr=subprocess.STDOUT)
    proc.wait()
    out = RunWatcher(run, print, process=proc).poll_once()
    snap = out[0].snapshot
    assert snap.status == "failed" and "exited with code 2" in snap.detail and "no dataset at /x" in snap.detail


def test_watcher_on_a_missing_directory(tmp_path: Path):
    out = RunWatcher(tmp_path / "nope", print).poll_once()
    assert out[0].snapshot.status == "missing" and "no run directory at" in out[0].snapshot.detail


def test_watcher_on_the_parent_of_runs_says_it_is_not_a_run(tmp_path: Path):
    copy_run(tmp_path / "runs" / "quickstart-rec")
    snap = RunWatcher(tmp_path / "runs", print).poll_once()[0].snapshot
    assert snap.status == "missing"
    assert snap.detail.endswith("is not a run directory (no events.jsonl, meta.json or recipe.toml); "
                                "it holds runs: quickstart-rec")


def test_run_dir_names_follow_the_engine(tmp_path: Path):
    recipe = resolve(RECIPES / "quickstart.toml", [f'run.out_dir="{tmp_path.as_posix()}"'])
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    base = planned_run_dir(recipe, "recipes/quickstart.toml", when)
    assert base == tmp_path / "quickstart-20260102-030405"
    first, second = make_run_dir(base), make_run_dir(base)
    assert (first.name, second.name) == ("quickstart-20260102-030405", "quickstart-20260102-030405-2")
    assert [p.name for p in second.iterdir()] == ["stdout.log"]
    named = resolve(RECIPES / "quickstart.toml", [f'run.out_dir="{tmp_path.as_posix()}"', "run.name=mine"])
    assert planned_run_dir(named, "x.toml", when) == tmp_path / "mine"
    argv = job_argv("r.toml", first, ["a.b=1"], python="py")
    assert argv == ["py", "-m", "ebjdat_tui.cli", "run", "r.toml", "--run-dir", str(first), "--plain",
                    "--set", "a.b=1"]


RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def test_generation_row_scales_between_floor_and_baseline_and_fits_narrow_panels():
    from ebjdat_tui.widgets.generation import generation_line, scaled_sparkline

    assert scaled_sparkline([0.0, 5.0, 10.0], 3, 0.0, 10.0) == BLOCKS[0] + BLOCKS[4] + BLOCKS[-1]
    assert scaled_sparkline([20.0, -5.0], 2, 0.0, 10.0) == BLOCKS[-1] + BLOCKS[0]  # clipped
    event = {"fd_ref": 1.2, "init_baseline": 2.0, "floor": 0.5}
    row = generation_line(event, (2.0, 1.6, 1.2), 40)
    assert row.plain.startswith("fd_ref ") and row.plain.endswith("1.2 init 2 floor 0.5")
    assert row.plain[7] == BLOCKS[-1]  # the first point sits at the init baseline: the top
    assert any("green" in str(span.style) for span in row.spans)  # beats the baseline
    narrow = generation_line(event, (2.0, 1.6, 1.2), 24)
    assert len(narrow.plain) <= 24 and "i2" in narrow.plain and "f0.5" in narrow.plain
    assert generation_line(None, (), 40) is None


def test_energy_panel_drops_the_generation_row_first_when_short():
    event = {"populations": {"clean": {"hist": [0, 5, 5, 0], "mean": -1.0}},
             "gaps": {}, "range": [-4.0, 4.0]}
    gen = generation_line_for_test()
    tall = histogram_lines(event, {"clean_minus_generated": (0.1, 0.2)}, 40, 9, gen)
    assert tall[-1].plain.startswith("fd_ref") and len(tall) == 9
    short = histogram_lines(event, {"clean_minus_generated": (0.1, 0.2)}, 40, 6, gen)
    assert not any(line.plain.startswith("fd_ref") for line in short) and len(short) == 6


def generation_line_for_test():
    from ebjdat_tui.widgets.generation import generation_line

    return generation_line({"fd_ref": 1.0, "init_baseline": 2.0, "floor": 0.5}, (1.5, 1.0), 40)


def test_energy_histogram_mixes_overlapping_populations():
    hist = [0] * 10
    clean, adv, gen = list(hist), list(hist), list(hist)
    clean[4] = adv[4] = 10  # clean and adversarial overlap in bin 4
    gen[7] = 10
    event = {"populations": {"clean": {"hist": clean, "mean": -1.0}, "adversarial": {"hist": adv, "mean": -1.0},
                             "generated": {"hist": gen, "mean": 2.0}},
             "gaps": {"clean_minus_adversarial": 0.0, "clean_minus_generated": -3.0}, "range": [-5.0, 5.0]}
    lines = histogram_lines(event, {"clean_minus_adversarial": (0.0, 0.1)}, 20, 6)
    colors = {str(span.style.color.name) for line in lines[:3] for span in line.spans
              if hasattr(span.style, "color") and span.style.color}
    assert MIX[3].lower() in colors and MIX[4].lower() in colors  # clean+adv yellow, generated blue
    assert MIX[1].lower() not in colors  # no clean-only cell: clean and adv coincide
    assert "▲" in lines[3].plain and "■clean -1" in lines[4].plain and "c−a" in lines[5].plain


def test_eval_rows_carry_their_protocol():
    events = read_events(RECORDED)
    rows = {r[0]: r for r in eval_rows(tuple(e for e in events if e["type"] == "eval"))}
    assert rows["AA"][1:3] == ("0.77", "apgd-ce 8/255 n=200")
    assert rows["PGD-20"][1:3] == ("0.77", "linf 8/255 n=200")
    assert rows["fd_ref"][1] == "6.48" and rows["FID"][1:3] == ("—", "not computed")
    standard = {"type": "eval", "step": 1, "aa_acc": 0.5, "n": 200,
                "protocol": {"autoattack": {"version": "standard", "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
                                            "eps": 8 / 255}}}
    assert eval_rows((standard,))[0][2] == "standard 8/255 n=200"
    # the clean row names EMA weights when they were evaluated (train.ema), and nothing for raw
    ema = {"type": "eval", "step": 2, "split": "test", "clean_acc": 0.9, "n": 300, "checkpoint": "last",
           "weights": "ema 0.999"}
    assert eval_rows((ema,))[0][2] == "test n=300 last ema 0.999"
    during = {"type": "eval", "step": 3, "split": "valid", "clean_acc": 0.9, "n": 100,
              "protocol": {"checkpoint": "current", "weights": "raw"}}
    assert eval_rows((during,))[0][2] == "valid n=100"


def test_summarize_and_ls(tmp_path: Path):
    run = copy_run(tmp_path / "runs" / "quickstart-rec")
    s = summarize(run)
    assert ((s.method, s.status, s.step, s.total, s.clean_acc, s.aa_acc)
            == ("ebjdat/jempp", "finished", 60, 60, 0.905, 0.77))
    out = ebjdat("ls", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split() == ["run", "method", "status", "step", "loss", "clean", "AA", "age"]
    assert row.split()[:7] == ["quickstart-rec", "ebjdat/jempp", "finished", "60/60", "1.844", "0.905", "0.77"]
    missing = ebjdat("ls", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no runs directory" in missing.stderr


def test_tui_arguments_are_checked_before_anything_starts(tmp_path: Path):
    neither = ebjdat("tui")
    assert neither.returncode == 2 and "give a RECIPE" in neither.stderr
    both = ebjdat("tui", "--attach", str(tmp_path), "--set", "optim.lr=1")
    assert both.returncode == 2 and "--set applies to a new job" in both.stderr


def test_help_imports_neither_torch_nor_textual():
    code = ("import sys; from typer.testing import CliRunner; from ebjdat_tui.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert 'tui' in r.output and 'ls' in r.output; "
            "print('torch' in sys.modules, 'textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
