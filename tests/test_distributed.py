"""Data-parallel training with torchrun on the CPU (gloo): 2 processes match 1 for the same
global batch (also when each rank streams its share), rank 0 alone writes the run, every rank checkpoints its
buffer slice, resume works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ebjdat_engine.recipe import resolve
from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.train.session import run

# no BatchNorm (per-rank batch statistics would differ from the global batch's), no augmentation
EXACT = ["model.norm=\"none\"", "data.crop_padding=0", "data.noise_std=0.0", "train.batch_size=32",
         "train.max_steps=10", "train.log_every=5", "eval.every_epochs=0", "monitor.every=5"]


def torchrun(*args: str, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", "-m", "ebjdat_tui.cli", "run", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def sets(values: list[str]) -> list[str]:
    return [a for v in values for a in ("--set", v)]


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["device", "stream"])
def test_two_processes_match_one_for_the_same_global_batch(tiny_recipe, tmp_path, placement):
    # streamed, each rank reads only its share of every global batch; the single run is on the device
    single = run(resolve(tiny_recipe, EXACT + ["run.name=single"]), str(tiny_recipe))
    out = tmp_path / "ddp"
    res = torchrun(str(tiny_recipe), "--run-dir", str(out), "--plain",
                   *sets(EXACT + [f'data.placement="{placement}"']))
    assert res.returncode == 0, res.stderr[-3000:]
    one = {e["step"]: e for e in read_events(single.run_dir) if e["type"] == "metrics"}
    two = {e["step"]: e for e in read_events(out) if e["type"] == "metrics"}
    assert sorted(two) == [5, 10]
    for step in (5, 10):
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], rel=1e-4, abs=1e-5)
    events = read_events(out)
    assert [e["type"] for e in events].count("start") == 1  # rank 0 alone writes events
    assert events[0]["placement"] == placement
    assert events[-1]["status"] == "finished"


@pytest.mark.slow
def test_ebjdat_under_torchrun_checkpoints_each_buffer_slice_and_resumes(tiny_recipe, tmp_path):
    out = tmp_path / "ddp-ebjdat"
    common = ["method.name=ebjdat", "method.base=jem", "sampler.n_steps=2", "sampler.buffer_size=64",
              "adversary.steps=2", "train.batch_size=16", "train.log_every=2", "eval.every_epochs=0"]
    res = torchrun(str(tiny_recipe), "--run-dir", str(out), "--plain", *sets(common + ["train.max_steps=4"]))
    assert res.returncode == 0, res.stderr[-3000:]
    ckpts = out / "checkpoints"
    assert (ckpts / "last.pt").exists() and (ckpts / "last.rank0.pt").exists() and (ckpts / "last.rank1.pt").exists()
    import torch

    slice0 = torch.load(ckpts / "last.rank1.pt", weights_only=True)["method"]["sampler"]["buffer"]["buffer"]
    assert slice0.shape[0] == 32  # buffer_size 64 split over 2 ranks
    res = torchrun("--resume", str(out), "--plain", *sets(["train.max_steps=6"]))
    assert res.returncode == 0, res.stderr[-3000:]
    events = read_events(out)
    assert [e["resumed_from"] for e in events if e["type"] == "start"] == [None, 4]
    metrics = [e for e in events if e["type"] == "metrics"]
    assert metrics[-1]["step"] == 6 and all(isinstance(m["loss"], float) for m in metrics)
