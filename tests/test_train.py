"""Headless training on digits: the run directory, falling loss, exact resume, graceful stops."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ebjdat

from ebjdat_engine.recipe import from_toml_text, resolve
from ebjdat_engine.rundir.checkpoint import load_checkpoint
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import resolve_for_resume, run


def metrics(run_dir: Path) -> dict[int, dict]:
    return {e["step"]: e for e in read_events(run_dir) if e["type"] == "metrics"}


def test_run_writes_the_run_directory_and_loss_falls(tiny_recipe):
    recipe = resolve(tiny_recipe)
    result = run(recipe, str(tiny_recipe))
    d = result.run_dir
    assert result.status == "finished" and result.exit_code == 0
    assert from_toml_text((d / "recipe.toml").read_text()) == recipe
    meta = json.loads((d / "meta.json").read_text())
    assert meta["torch"] == torch.__version__ and meta["device"] == "cpu"
    for sub in ("checkpoints", "samples", "eval", "control"):
        assert (d / sub).is_dir()
    events = read_events(d)
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert events[-1]["status"] == "finished"
    assert all({"type", "time", "step", "epoch"} <= e.keys() for e in events)
    losses = [e["loss"] for e in events if e["type"] == "metrics"]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3  # training works
    final = [e for e in events if e["type"] == "eval" and e["split"] == "test"]
    assert final and final[-1]["clean_acc"] > 0.6  # chance is 0.1
    energy = [e for e in events if e["type"] == "energy"]
    assert energy and "clean" in energy[0]["populations"]
    assert sum(energy[0]["populations"]["clean"]["hist"]) == energy[0]["populations"]["clean"]["n"]
    ckpt = load_checkpoint(d / "checkpoints" / "last.pt")
    assert ckpt["step"] == events[-1]["step"]
    assert {"model", "optimizer", "schedule", "scaler", "method", "rng", "recipe"} <= ckpt.keys()
    assert (d / "checkpoints" / "best.pt").exists()  # a validation split exists


def test_resume_continues_to_the_same_losses(tiny_recipe):
    # straight to 60 steps (crosses the epoch end at step 43: eval + checkpoint in between)
    straight = run(resolve(tiny_recipe, ["train.max_steps=60", "run.name=straight"]), str(tiny_recipe))
    first = run(resolve(tiny_recipe, ["train.max_steps=25", "run.name=split"]), str(tiny_recipe))
    assert first.status == "finished"
    again = resolve_for_resume(first.run_dir, None, ["train.max_steps=60"])
    second = run(again, None, resume=first.run_dir)
    assert second.run_dir == first.run_dir and second.status == "finished"
    a, b = metrics(straight.run_dir), metrics(first.run_dir)
    for step in (30, 45, 60):
        assert abs(a[step]["loss"] - b[step]["loss"]) < 1e-6, step
    wa = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")["model"]
    for key in wa:
        assert torch.allclose(wa[key].float(), wb[key].float(), atol=1e-6), key
    starts = [e for e in read_events(first.run_dir) if e["type"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, 25]
    assert list(first.run_dir.glob("recipe.before-resume-*.toml"))  # nothing overwritten unseen


def test_resume_refuses_a_changed_model(tiny_recipe):
    first = run(resolve(tiny_recipe, ["train.max_steps=5"]), str(tiny_recipe))
    from ebjdat_engine.recipe import RecipeError

    with pytest.raises(RecipeError) as info:
        resolve_for_resume(first.run_dir, None, ["model.width=2"])
    assert info.value.errors[0].startswith("$.model: cannot change on --resume")


def test_control_stop_file_stops_gracefully(tiny_recipe):
    from ebjdat_engine.rundir import control

    recipe = resolve(tiny_recipe)
    seen = {}

    def listener(event):
        if event["type"] == "metrics" and "asked" not in seen:
            control.request(Path(event.get("run_dir", seen["dir"])), "stop")
            seen["asked"] = event["step"]

    def on_dir(path):
        seen["dir"] = path

    from ebjdat_engine.train.session import run as run_training

    result = run_training(recipe, None, listeners=[listener], on_run_dir=on_dir)
    assert result.status == "stopped" and result.exit_code == 0  # asked for: not an error
    events = read_events(result.run_dir)
    assert events[-1]["type"] == "end" and events[-1]["reason"] == "control/stop"
    assert events[-1]["step"] == seen["asked"]  # served right after that step (control_every = 1)
    assert load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["step"] == events[-1]["step"]
    assert list((result.run_dir / "control" / "handled").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2])  # USR2: a scheduler's warning
def test_sigterm_checkpoints_and_ends_stopped(tiny_recipe, tmp_path, signum):
    out = tmp_path / "sig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ebjdat_tui.cli", "run", str(tiny_recipe), "--run-dir", str(out),
         "--set", "train.epochs=200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["type"] == "metrics" for e in read_events(out)):
        time.sleep(0.2)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    events = read_events(out)
    assert events[-1]["type"] == "end" and events[-1]["status"] == "stopped"
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == events[-1]["step"] > 0
    assert "ebjdat run --resume" in stdout
    # and the run continues from there
    res = ebjdat("run", "--resume", str(out), "--set", f"train.max_steps={ckpt['step'] + 5}")
    assert res.returncode == 0, res.stderr
    assert read_events(out)[-1]["status"] == "finished"
