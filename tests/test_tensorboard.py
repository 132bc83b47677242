"""TensorBoard: `ebjdat export RUN --tensorboard DIR` and the live mirror (`runtime.tensorboard`),
read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard", reason="TensorBoard is not installed (pip install 'ebjdat[tb]')")

from conftest import ebjdat, write_tiny_recipe  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ebjdat_engine.eval.evaluate import evaluate  # noqa: E402
from ebjdat_engine.export import tensorboard as tb  # noqa: E402
from ebjdat_engine.recipe import RecipeError, resolve  # noqa: E402
from ebjdat_engine.rundir.events import read_events  # noqa: E402
from ebjdat_engine.train.session import run  # noqa: E402
from ebjdat_tui.cli import app  # noqa: E402

torch.set_num_threads(1)


def _read(log_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _texts(acc: EventAccumulator, tag: str) -> list[str]:
    return [b"".join(e.tensor_proto.string_val).decode() for e in acc.Tensors(f"{tag}/text_summary")]


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> Path:
    """A short JEM digits run with runtime.tensorboard = true, then an `ebjdat eval` of it."""
    tmp = tmp_path_factory.mktemp("tbrun")
    recipe_path = write_tiny_recipe(tmp)
    recipe = resolve(recipe_path, ["method.name=jem", "train.max_steps=20", "sampler.n_steps=3",
                                   "sampler.buffer_size=128", "train.px_batch_size=32", "monitor.every=10",
                                   "monitor.samples_every=10", "monitor.gen_every=20", "runtime.tensorboard=true"])
    result = run(recipe, str(recipe_path))
    assert result.status == "finished"
    evaluate(result.run_dir, ckpt="last", n=32, attacks="apgd-ce", fid="off", n_samples=64, device="cpu")
    return result.run_dir


@pytest.mark.slow
def test_export_holds_scalars_histograms_images_and_the_protocol(mirrored, tmp_path):
    out = tmp_path / "tb"
    done = ebjdat("export", str(mirrored), "--tensorboard", str(out))
    assert done.returncode == 0, done.stderr
    assert "scalars" in done.stdout and "tensorboard --logdir" in done.stdout
    acc = _read(out)
    tags = acc.Tags()
    events = read_events(mirrored)

    # metrics as scalars, value for value
    metrics = [e for e in events if e["type"] == "metrics"]
    loss = acc.Scalars("train/loss")
    assert [s.step for s in loss] == [e["step"] for e in metrics]
    assert [s.value for s in loss] == pytest.approx([e["loss"] for e in metrics], rel=1e-6)
    assert {"train/lr", "train/terms/ce", "energy/clean/mean", "energy/gap/clean_minus_generated",
            "eval/valid/clean_acc"} <= set(tags["scalars"])

    # the generation trace beside its floor and init baseline
    gen = next(e for e in events if e["type"] == "generation")
    for tag, key in (("generation/fd_ref", "fd_ref"), ("generation/fd_ref_floor", "floor"),
                     ("generation/fd_ref_init_baseline", "init_baseline")):
        assert acc.Scalars(tag)[0].value == pytest.approx(gen[key], rel=1e-6)

    # energy histograms: the event's counts, bucket for bucket
    energy = next(e for e in events if e["type"] == "energy")
    hist = acc.Histograms("energy/clean")[0].histogram_value
    assert sum(hist.bucket) == sum(energy["populations"]["clean"]["hist"]) == hist.num
    assert {"energy/generated", "energy_eval/clean", "ebjdat_eval/energy/adversarial"} <= set(tags["histograms"])

    # sample grids and the evaluation's PNGs as images
    assert {"samples/generated", "ebjdat_eval/samples", "ebjdat_eval/energy_histogram"} <= set(tags["images"])
    assert acc.Images("samples/generated")[0].width > 8

    # `ebjdat eval` as scalars, with its whole protocol as text
    standard = [e for e in events if e["type"] == "eval" and e.get("source") == "ebjdat eval"][-1]
    for key in ("clean_acc", "pgd_acc", "aa_acc"):
        assert acc.Scalars(f"ebjdat_eval/{key}")[-1].value == pytest.approx(standard[key])
    protocol = _texts(acc, "ebjdat_eval/protocol")[-1]
    assert "8/255" in protocol and "apgd-ce" in protocol and "PGD-20" in protocol and "n = 32" in protocol
    assert "jem" in _texts(acc, "run/recipe")[0]
    assert _texts(acc, "run/end")[0].startswith("**finished** at step 20")


def test_live_mirror_matches_the_export(mirrored, tmp_path):
    out = tmp_path / "tb"
    tb.export_run(mirrored, out)
    live, exported = _read(mirrored / "tensorboard"), _read(out)
    assert set(live.Tags()["scalars"]) == set(exported.Tags()["scalars"])
    for tag in exported.Tags()["scalars"]:
        assert [(s.step, s.value) for s in live.Scalars(tag)] == [(s.step, s.value) for s in exported.Scalars(tag)], tag
    assert set(live.Tags()["histograms"]) == set(exported.Tags()["histograms"])
    assert set(live.Tags()["images"]) == set(exported.Tags()["images"])


def test_export_refuses_what_it_cannot_do(mirrored, tmp_path):
    cli = CliRunner()
    done = cli.invoke(app, ["export", str(tmp_path / "nope"), "--tensorboard", str(tmp_path / "a")])
    assert done.exit_code == 2 and "not a run directory" in done.output
    done = cli.invoke(app, ["export", str(mirrored), "--tensorboard", str(mirrored / "tensorboard")])
    assert done.exit_code == 2 and "already holds TensorBoard event files" in done.output
    (tmp_path / "file").write_text("x")
    done = cli.invoke(app, ["export", str(mirrored), "--tensorboard", str(tmp_path / "file")])
    assert done.exit_code == 2 and "not a directory" in done.output
    done = cli.invoke(app, ["export", str(mirrored), "--tensorboard", "/proc/tb"])
    assert done.exit_code == 2 and "cannot write" in done.output
    # several runs: one TensorBoard run each, under DIR/<run name>
    other = tmp_path / "runs" / "other"
    other.mkdir(parents=True)
    (other / "events.jsonl").write_text((mirrored / "events.jsonl").read_text())
    done = cli.invoke(app, ["export", str(mirrored), str(other), "--tensorboard", str(tmp_path / "many")])
    assert done.exit_code == 0, done.output
    assert (_read(tmp_path / "many" / "other").Tags()["scalars"]
            == _read(tmp_path / "many" / mirrored.name).Tags()["scalars"])


def test_export_drops_the_tail_a_resume_redid():
    events = [{"type": "start", "step": 0}, {"type": "metrics", "step": 10, "loss": 1.0},
              {"type": "metrics", "step": 20, "loss": 2.0},
              {"type": "eval", "step": 20, "source": "ebjdat eval", "clean_acc": 0.5},
              {"type": "metrics", "step": 30, "loss": 3.0},  # written after the step-20 checkpoint, then killed
              {"type": "start", "step": 20, "resumed_from": 20}, {"type": "metrics", "step": 30, "loss": 3.5}]
    kept = tb.effective_events(events)
    assert [(e["type"], e["step"], e.get("loss")) for e in kept] == [
        ("start", 0, None), ("metrics", 10, 1.0), ("metrics", 20, 2.0), ("eval", 20, None),
        ("start", 20, None), ("metrics", 30, 3.5)]


def test_live_mirror_never_blocks_the_job(tmp_path, monkeypatch):
    release = threading.Event()
    written = []

    def slow_write(self, event):  # a writer stuck on a slow disk
        release.wait(30)
        if event.get("boom"):
            raise OSError("disk trouble")
        written.append(event["step"])

    monkeypatch.setattr(tb.Mirror, "write", slow_write)
    mirror = tb.LiveMirror(tmp_path, tmp_path / "tb", max_pending=4)
    for step in range(20):  # returns at once although the writer is stuck
        mirror({"type": "metrics", "step": step, "loss": 1.0})
    assert mirror.dropped >= 20 - 4 - 1
    release.set()
    mirror.close()
    assert written and written == sorted(written)
    # an error in the writer is recorded, never raised into the job, and the next event still goes out
    written.clear()
    mirror = tb.LiveMirror(tmp_path, tmp_path / "tb2")
    mirror({"type": "metrics", "step": 1, "boom": True})
    mirror({"type": "metrics", "step": 2, "loss": 1.0})
    mirror.close()
    assert mirror.error == "OSError: disk trouble" and written == [2]


def test_tensorboard_missing_is_a_recipe_error_before_any_run_directory(tmp_path, monkeypatch):
    recipe_path = write_tiny_recipe(tmp_path)
    monkeypatch.setattr(tb, "missing_reason", lambda: "TensorBoard is not installed (test)")
    with pytest.raises(RecipeError, match=r"runtime\.tensorboard: TensorBoard is not installed"):
        run(resolve(recipe_path, ["runtime.tensorboard=true"]), str(recipe_path))
    assert not (tmp_path / "runs").exists()


def test_a_resume_hides_what_the_killed_job_mirrored_after_its_checkpoint(mirrored, tmp_path):
    import json
    import shutil

    from ebjdat_engine.train.session import resolve_for_resume

    run_dir = tmp_path / "killed"
    shutil.copytree(mirrored, run_dir)
    # the killed job had gone on past its step-20 checkpoint: step 25 in the log and in TensorBoard
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"type": "metrics", "time": 1.0, "step": 25, "epoch": 1.0, "loss": 999.0}) + "\n")
    writer = tb.summary_writer(run_dir / "tensorboard")
    writer.add_scalar("train/loss", 999.0, 25)
    writer.close()
    result = run(resolve_for_resume(run_dir, None, ["train.max_steps=30"]), None, resume=run_dir)
    assert result.status == "finished"
    out = tmp_path / "export"
    tb.export_run(run_dir, out)
    for log_dir in (run_dir / "tensorboard", out):
        loss = _read(log_dir).Scalars("train/loss")
        steps = [s.step for s in loss]
        assert steps == sorted(set(steps)) and 25 in steps and 30 in steps, (log_dir, steps)
        assert 999.0 not in [s.value for s in loss], log_dir


def test_a_mirror_that_cannot_start_does_not_stop_training(tmp_path, monkeypatch, caplog):
    recipe_path = write_tiny_recipe(tmp_path)

    def unwritable(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tb, "summary_writer", unwritable)
    result = run(resolve(recipe_path, ["runtime.tensorboard=true", "train.max_steps=2"]), str(recipe_path))
    assert result.status == "finished"
    assert "; the run goes on without the live mirror" in caplog.text
