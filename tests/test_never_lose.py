"""Never lose a run (issue 12): one writer per run directory, a torn log line, a broken console,
corrupt checkpoints, non-UTF-8 recipes, unwritable places, unbounded sizes, double Ctrl-C,
signals while the job starts, exit 2 before a run directory exists, stale control requests,
a full disk, unchecked CLI values, run names that escape out_dir, and the smaller cases."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ebjdat

from ebjdat_engine.data import DataError
from ebjdat_engine.recipe import RecipeError, resolve
from ebjdat_engine.rundir import RunDirError, RunLock
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import resolve_for_resume, run


def _short_run(tiny_recipe, name: str, steps: int = 4):
    return run(resolve(tiny_recipe, [f"train.max_steps={steps}", f'run.name="{name}"']), None)


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder(tiny_recipe):
    first = _short_run(tiny_recipe, "locked")
    before = (first.run_dir / "events.jsonl").read_bytes()
    lock = RunLock(first.run_dir)  # as if the job were still alive
    try:
        res = ebjdat("run", "--resume", str(first.run_dir), "--set", "train.max_steps=8")
        assert res.returncode == 2, res.stderr
        assert f"pid {os.getpid()} on {socket.gethostname()}" in res.stderr and "Traceback" not in res.stderr
        with pytest.raises(RunDirError, match="one writer"):
            RunLock(first.run_dir)
    finally:
        lock.release()
    assert (first.run_dir / "events.jsonl").read_bytes() == before  # nothing written
    assert not list(first.run_dir.glob("recipe.before-resume-*"))
    again = run(resolve_for_resume(first.run_dir, None, ["train.max_steps=8"]), None, resume=first.run_dir)
    assert again.status == "finished"  # released: the next writer gets it


def test_a_torn_last_line_does_not_swallow_the_next_event(tiny_recipe):
    first = _short_run(tiny_recipe, "torn")
    log = first.run_dir / "events.jsonl"
    log.write_bytes(log.read_bytes()[:-60])  # the writer died mid-line
    run(resolve_for_resume(first.run_dir, None, ["train.max_steps=8"]), None, resume=first.run_dir)
    events = read_events(first.run_dir)
    starts = [e for e in events if e["type"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, 4]
    assert events[-1]["type"] == "end" and events[-1]["step"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("sink", ["| head -1", "> /dev/full"])
def test_a_broken_console_does_not_stop_training(tiny_recipe, tmp_path, sink):
    out = tmp_path / "console"
    cmd = (f"{sys.executable} -m ebjdat_tui.cli run {tiny_recipe} --run-dir {out} --plain "
           f"--set train.max_steps=40 {sink}; echo rc=${{PIPESTATUS[0]}}")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert "rc=0" in res.stdout, res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
    end = read_events(out)[-1]
    assert end["type"] == "end" and end["status"] == "finished" and end["step"] == 40


@pytest.mark.slow
def test_batches_larger_than_the_data_fail_before_a_run_directory_exists(tiny_recipe, tmp_path):
    with pytest.raises(DataError, match=r"^train.px_batch_size=5000 is larger"):
        run(resolve(tiny_recipe, ['method.name="jem"', "train.px_batch_size=5000"]), None)
    res = ebjdat("run", str(tiny_recipe), "--set", "train.batch_size=5000")
    assert res.returncode == 2 and "train.batch_size=5000 is larger than" in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_stale_stop_request_does_not_stop_the_resumed_run(tiny_recipe):
    first = _short_run(tiny_recipe, "stale")
    stop = first.run_dir / "control" / "stop"
    stop.write_text("left by a dead job\n")  # written the instant before the resume starts
    res = ebjdat("run", "--resume", str(first.run_dir), "--set", "train.max_steps=8")
    assert res.returncode == 0, res.stderr
    end = read_events(first.run_dir)[-1]
    assert end["status"] == "finished" and end["step"] == 8
    assert not stop.exists() and list((first.run_dir / "control" / "handled").glob("stop-stale-*"))


def test_the_process_start_time_is_exact_to_a_tick(tmp_path):
    stamp = tmp_path / "stamp"
    for _ in range(5):  # a file written just before a process starts is older than its start
        stamp.write_text("x")
        out = subprocess.run([sys.executable, "-c", "from ebjdat_engine.rundir.control import process_start_time; "
                              "import time; print(process_start_time(), time.time())"],
                             capture_output=True, text=True, check=True).stdout.split()
        started, now = float(out[0]), float(out[1])
        assert stamp.stat().st_mtime < started <= now


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", "..", "x" * 300])
def test_run_names_stay_inside_out_dir(name):
    with pytest.raises(RecipeError, match=r"\$\.run\.name: "):
        resolve(None, [f'run.name="{name}"'])


@pytest.mark.slow
def test_sigterm_while_the_job_starts_leaves_a_resumable_run(tiny_recipe, tmp_path):
    import signal

    out = tmp_path / "early"
    proc = subprocess.Popen([sys.executable, "-m", "ebjdat_tui.cli", "run", str(tiny_recipe), "--run-dir",
                             str(out), "--plain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "meta.json").exists():  # the directory, not yet a step
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    end = read_events(out)[-1]
    assert end["type"] == "end" and end["status"] == "stopped"
    assert (out / "checkpoints" / "last.pt").exists()
    res = ebjdat("run", "--resume", str(out), "--set", "train.max_steps=3")
    assert res.returncode == 0, res.stderr
    assert read_events(out)[-1]["status"] == "finished"


@pytest.mark.slow
def test_broken_checkpoints_are_clear_errors_and_resume_leaves_the_run_untouched(tiny_recipe, tmp_path):
    first = _short_run(tiny_recipe, "corrupt")
    last = first.run_dir / "checkpoints" / "last.pt"
    good = last.read_bytes()
    recipe_before = (first.run_dir / "recipe.toml").read_bytes()
    meta_before = (first.run_dir / "meta.json").read_bytes()
    import torch

    for bad in (good[: len(good) // 2], os.urandom(4096), None):
        if bad is None:
            torch.save({"weights": torch.zeros(2)}, last)  # a dict, but not ours
        else:
            last.write_bytes(bad)
        res = ebjdat("run", "--resume", str(first.run_dir))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert str(last) in res.stderr and "checkpoint" in res.stderr
    last.write_bytes(good[:1000])
    for cmd in (("eval", str(first.run_dir), "--ckpt", "last", "--n", "5"),
                ("sample", str(first.run_dir), "--ckpt", "last", "--n", "4")):
        res = ebjdat(*cmd)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (cmd, res.stderr)
        assert "not a readable ebjdat checkpoint: a torch archive that cannot be read, truncated" in res.stderr
    assert (first.run_dir / "recipe.toml").read_bytes() == recipe_before
    assert (first.run_dir / "meta.json").read_bytes() == meta_before
    assert not list(first.run_dir.glob("recipe.before-resume-*"))
    res = ebjdat("eval", str(tiny_recipe))  # a recipe is not a checkpoint, and is told so
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "it is a text file (a recipe?); give a run directory" in res.stderr and "weights_only" not in res.stderr


@pytest.mark.slow
def test_recipes_that_are_not_utf8_and_runs_without_a_readable_recipe(tiny_recipe, tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    for cmd in (("validate", str(bad)), ("run", str(bad))):
        res = ebjdat(*cmd)
        assert res.returncode == 2 and "not UTF-8" in res.stderr and "Traceback" not in res.stderr
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + tiny_recipe.read_bytes())
    assert ebjdat("validate", str(bom)).returncode == 0
    first = _short_run(tiny_recipe, "norecipe", steps=2)
    (first.run_dir / "recipe.toml").write_bytes(b"\x00\xff garbage")
    res = ebjdat("run", "--resume", str(first.run_dir))
    assert res.returncode == 2 and "recipe.toml is not a valid recipe" in res.stderr, res.stderr
    (first.run_dir / "recipe.toml").unlink()
    res = ebjdat("run", "--resume", str(first.run_dir))
    assert res.returncode == 2 and "recipe.toml is missing" in res.stderr, res.stderr
    assert "ebjdat run RECIPE --resume" in res.stderr


@pytest.mark.slow
def test_unwritable_run_locations_are_clear_errors(tiny_recipe):
    for args in (("--run-dir", "/proc/ebjdat-x"), ("--set", 'run.out_dir="/proc"')):
        res = ebjdat("run", str(tiny_recipe), *args)
        assert res.returncode == 2 and "cannot create the run directory" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_sizes_and_cli_values_are_checked(tiny_recipe, tmp_path):
    with pytest.raises(RecipeError, match=r"\$\.sampler\.buffer_size: 2000000000 images .* GiB"):
        run(resolve(tiny_recipe, ['method.name="jem"', "sampler.buffer_size=2000000000"]), None)
    assert not (tmp_path / "runs").exists()
    nowhere = str(tmp_path / "no-run")
    for args, message in ((("sample", nowhere, "--n", "-3"), "--n -3"), (("sample", nowhere, "--n", "0"), "--n 0"),
                          (("eval", nowhere, "--n", "-5"), "--n -5"),
                          (("eval", nowhere, "--eps", "300/255"), "(0, 1]")):
        res = ebjdat(*args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    from ebjdat_engine.eval.loading import LoadError, find_checkpoint

    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "epoch_3.pt").write_bytes(b"x")
    assert find_checkpoint(tmp_path / "r", "epoch_3")[:2] == (tmp_path / "r" / "checkpoints" / "epoch_3.pt", "epoch_3")
    with pytest.raises(LoadError, match="it has: epoch_3"):
        find_checkpoint(tmp_path / "r", "epoch_4")


def test_a_full_disk_is_named_as_such(tiny_recipe, monkeypatch):
    import errno

    import torch

    from ebjdat_engine.rundir import checkpoint

    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *a, **k):  # the second checkpoint meets a full disk, as torch reports it
        calls["n"] += 1
        if calls["n"] >= 2:
            f.write(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 64 vs 0")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    monkeypatch.setattr(checkpoint.os, "statvfs", lambda _p: type("S", (), {"f_bavail": 0, "f_frsize": 4096})())
    with pytest.raises(checkpoint.DiskFullError) as info:
        run(resolve(tiny_recipe, ["train.max_steps=50", 'run.name="full"']), None)
    assert info.value.errno == errno.ENOSPC and "disk full (ENOSPC) writing" in str(info.value)
    run_dir = info.value.path.parent.parent
    end = read_events(run_dir)[-1]
    assert end["status"] == "crashed" and "disk full (ENOSPC) writing" in end["error"]
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # the partial temp file is gone


def test_resume_refuses_what_would_break_it_and_cleans_up_after_a_killed_save(tiny_recipe):
    first = _short_run(tiny_recipe, "smaller", steps=6)
    with pytest.raises(RecipeError, match=r"\$\.train\.batch_size: cannot change on --resume"):
        resolve_for_resume(first.run_dir, None, ["train.batch_size=16"])
    recipe_before = (first.run_dir / "recipe.toml").read_bytes()
    with pytest.raises(RecipeError, match=r"at step 6, past the 3 steps"):
        run(resolve_for_resume(first.run_dir, None, ["train.max_steps=3"]), None, resume=first.run_dir)
    assert (first.run_dir / "recipe.toml").read_bytes() == recipe_before
    dead = first.run_dir / "checkpoints" / ".last.pt.abc123.tmp"  # a save killed midway
    dead.write_bytes(b"\0" * 1000)
    run(resolve_for_resume(first.run_dir, None, ["train.max_steps=8"]), None, resume=first.run_dir)
    assert not dead.exists() and (first.run_dir / "checkpoints" / "last.pt").exists()
    umask = os.umask(0)
    os.umask(umask)
    for f in ("recipe.toml", "meta.json", "checkpoints/last.pt"):  # readable by a shared group
        assert (first.run_dir / f).stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_a_dumb_terminal_gets_progress_lines(monkeypatch):
    from ebjdat_tui import progress

    monkeypatch.setattr(progress.sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(progress.make_progress(), progress.PlainProgress)


def test_thousands_of_errors_are_counted_not_all_printed_and_attach_needs_a_run(tmp_path):
    many = tmp_path / "many.toml"
    many.write_text("[run]\n" + "\n".join(f"key{i} = 1" for i in range(3000)) + "\n")
    res = ebjdat("validate", str(many))
    assert res.returncode == 2 and "3000 errors" in res.stderr and "... and 2950 more" in res.stderr
    assert len(res.stderr.splitlines()) < 60
    res = ebjdat("tui", "--attach", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "no such run directory" in res.stderr


@pytest.mark.slow
def test_evaluation_results_survive_unwritable_places(tiny_recipe, tmp_path):
    first = _short_run(tiny_recipe, "evalro", steps=4)
    from ebjdat_engine.eval.evaluate import evaluate

    result = evaluate(first.run_dir, ckpt="last", n=20, attacks="apgd-ce", robust_only=True, device="cpu",
                      out_dir="/proc/ebjdat-no-such-place")
    assert "could not write the results into /proc/ebjdat-no-such-place" in result["write_error"]
    assert 0 <= result["clean_acc"] <= 1 and "files" not in result
    res = ebjdat("eval", str(first.run_dir), "--ckpt", "last", "--n", "20", "--attacks", "apgd-ce", "--robust-only",
                 "--out", "/proc/ebjdat-no-such-place")
    assert res.returncode == 2 and "clean" in res.stdout and "pass --out DIR" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    out = tmp_path / "elsewhere"
    res = ebjdat("eval", str(first.run_dir), "--ckpt", "last", "--n", "20", "--attacks", "apgd-ce", "--robust-only",
                 "--out", str(out))
    assert res.returncode == 0 and len(list(out.glob("*.json"))) == 1, res.stderr
    # a sample grid that cannot be written is a message, not a traceback
    res = ebjdat("sample", str(first.run_dir), "--ckpt", "last", "--n", "4", "--out", "/proc/ebjdat-x.png")
    assert res.returncode == 2 and "could not write /proc/ebjdat-x.png" in res.stderr, res.stderr
    from ebjdat_engine.eval.fd_ref import reference_classifier

    model = reference_classifier(resolve(tiny_recipe).data, "cpu", "/proc/ebjdat-no-cache")  # a cache it cannot write
    assert model.fd_ref_info["path"].startswith("not cached") and model.fd_ref_info["test_acc"] > 0.8


def test_the_run_directory_contract_lives_in_its_own_package():
    """eval/ and the TUI read and write run directories through ebjdat_engine.rundir, never
    through the training package; the old train/ modules are gone."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"(ebjdat_engine\.train|\.\.train)\.(rundir|events|checkpoint|control)\b"
                         r"|from (ebjdat_engine\.train|\.\.train) import (rundir|events|checkpoint|control)\b")
    offenders = [f"{p.relative_to(root)}:{i}" for folder in ("ebjdat_engine/eval", "ebjdat_tui", "ebjdat_engine/study")
                 for p in (root / folder).rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
    for name in ("rundir", "events", "checkpoint", "control"):
        assert not (root / "ebjdat_engine" / "train" / f"{name}.py").exists(), name


@pytest.mark.slow
def test_a_finished_run_is_not_finished_again_by_a_plain_resume(tiny_recipe):
    first = _short_run(tiny_recipe, "twice", steps=4)
    again = run(resolve_for_resume(first.run_dir, None, ["train.max_steps=6"]), None, resume=first.run_dir)
    assert again.status == "finished"
    before = (first.run_dir / "events.jsonl").read_bytes()
    res = ebjdat("run", "--resume", str(first.run_dir))  # max_steps=6 is in recipe.toml now
    assert res.returncode == 2 and "already finished at step 6" in res.stderr, res.stderr
    assert (first.run_dir / "events.jsonl").read_bytes() == before  # no second `end`


@pytest.mark.slow
def test_double_ctrl_c_20_ms_apart_ends_once_as_stopped(tiny_recipe, tmp_path):
    import signal

    from ebjdat_tui.runs import summarize

    out = tmp_path / "twice"
    proc = subprocess.Popen([sys.executable, "-m", "ebjdat_tui.cli", "run", str(tiny_recipe), "--run-dir",
                             str(out), "--plain", "--set", "train.epochs=50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["type"] == "metrics" for e in read_events(out)):
        time.sleep(0.02)  # training, past the first steps
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    ends = [e for e in read_events(out) if e["type"] == "end"]
    assert [e["status"] for e in ends] == ["stopped"], ends
    assert summarize(out).status == "stopped"  # what `ebjdat ls` shows
    res = ebjdat("run", "--resume", str(out), "--set", f"train.max_steps={ends[0]['step'] + 2}")
    assert res.returncode == 0, res.stderr
    assert read_events(out)[-1]["status"] == "finished"


def test_a_second_ctrl_c_interrupts_a_step_but_not_a_stop(tiny_recipe, monkeypatch):
    import signal

    from ebjdat_engine.rundir.control import StopFlag
    from ebjdat_engine.train.loop import Trainer
    from ebjdat_engine.train.session import Interrupted

    with StopFlag() as flag:  # before the stop: the second Ctrl-C interrupts at once
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    with StopFlag() as flag:  # once the job settles (stopping, or its end written): ignored
        os.kill(os.getpid(), signal.SIGINT)
        flag.settle()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert flag.ignored == 1 and flag.requested

    original = Trainer.train_step

    def interrupted_at_step_3(self, batch):  # the second Ctrl-C landing inside a step
        if self.step == 3:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_step_3)
    with pytest.raises(Interrupted, match="at step 3, before the stop's checkpoint; checkpoints/last.pt holds step 0"):
        _short_run(tiny_recipe, "interrupted", steps=8)
    run_dir = tiny_recipe.parent / "runs" / "interrupted"
    ends = [e for e in read_events(run_dir) if e["type"] == "end"]
    assert len(ends) == 1 and ends[0]["status"] == "stopped" and ends[0]["checkpoint_step"] == 0


def test_resume_of_a_missing_directory_says_so(tmp_path):
    with pytest.raises(RunDirError, match="no such directory"):
        resolve_for_resume(tmp_path / "nope", None, [])
    with pytest.raises(RunDirError, match=r"not a run directory \(no recipe.toml\)"):
        resolve_for_resume(tmp_path, None, [])


def test_device_names_are_checked_against_this_machine():
    import torch

    from ebjdat_engine.train.runtime import DeviceError, pick_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="'banana' is not a device"):
        pick_device("banana")
    with pytest.raises(DeviceError, match="runs on 'cpu' or 'cuda'"):
        pick_device("meta")
    with pytest.raises(DeviceError, match="CUDA device"):  # none here, or not that many
        pick_device("cuda:99")
