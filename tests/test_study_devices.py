"""`[study] devices`: each running arm gets its own GPU as CUDA_VISIBLE_DEVICES; a CPU study as before."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_RECIPE

from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.study import load_study, run_study
from ebjdat_engine.study.devices import DevicePool, resolve_devices, visible_device
from ebjdat_engine.study.runner import StudyRunner

STUDY = """
[study]
recipe = "tiny.toml"
seeds = [0]
jobs = 2
{devices}
set = ["train.max_steps=3", "monitor.every=0", "monitor.gen_every=0", "eval.every_epochs=0",
       'runtime.device="cpu"']

[protocol]
n = 16
eps = "0.1"
attacks = "apgd-ce"
n_samples = 16

[[arm]]
label = "a"
set = ["method.name=standard"]

[[arm]]
label = "b"
set = ["method.name=standard", "optim.lr=0.01"]
"""

#: a stand-in for the `ebjdat` command: notes the device it was given, then runs the real one
WRAPPER = """
import os, runpy, sys
with open(os.environ["DEVICE_LOG"], "a") as f:
    f.write(f"{os.environ.get('CUDA_VISIBLE_DEVICES', '-')} {' '.join(sys.argv[1:3])}\\n")
sys.argv = ["ebjdat", *sys.argv[1:]]
runpy.run_module("ebjdat_tui.cli", run_name="__main__")
"""


def write_study(folder: Path, devices: str = "") -> Path:
    (folder / "tiny.toml").write_text(TINY_RECIPE.format(out_dir=(folder / "unused").as_posix()))
    path = folder / "study.toml"
    path.write_text(STUDY.format(devices=devices))
    return path


def test_the_pool_gives_each_running_arm_its_own_device_and_waits_for_a_free_one():
    pool = DevicePool([0, 1])
    first, second = pool.acquire(), pool.acquire()
    assert {first, second} == {0, 1}
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire()))
    waiter.start()
    time.sleep(0.3)
    assert got == []                     # both devices busy: the third arm waits
    pool.release(second)
    waiter.join(timeout=5)
    assert got == [second]
    shared = DevicePool([0, 1], per_device=2)
    assert [shared.acquire() for _ in range(4)] == [0, 1, 0, 1]   # least loaded first
    assert DevicePool([]).acquire() is None                         # a CPU study: no device, no wait
    busy = DevicePool([0])
    busy.acquire()
    assert busy.acquire(cancelled=lambda: True) is None            # a stop while waiting gives up


def test_auto_takes_every_visible_gpu_and_none_on_a_cpu_machine():
    assert resolve_devices(None, count=lambda: 2) == (0, 1)
    assert resolve_devices(None, count=lambda: 0) == ()
    assert resolve_devices((3, 1), count=lambda: 0) == (3, 1)      # a list is used as given


def test_indices_count_the_devices_the_study_sees():
    assert visible_device(0, None) == "0" and visible_device(1, "") == "1"
    assert visible_device(0, "2,3") == "2" and visible_device(1, "2, 3") == "3"   # a restricted study
    assert visible_device(0, "GPU-5f2a") == "GPU-5f2a"                           # UUIDs pass through


def test_a_cpu_study_starts_its_children_as_before(tmp_path: Path):
    study = load_study(write_study(tmp_path))                      # devices = "auto" (the default)
    probe = "import os, sys; open(sys.argv[-1], 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', '-'))"
    runner = StudyRunner(study, (sys.executable, "-c", probe), device_count=lambda: 0)
    assert runner.devices.devices == ()
    out = tmp_path / "env.txt"
    runner._wait(runner._spawn([str(out)], tmp_path / "log.txt"))
    assert out.read_text() == "-"                                  # no variable set
    with_gpus = StudyRunner(study, (sys.executable, "-c", probe), device_count=lambda: 2)
    assert with_gpus.devices.devices == (0, 1)                     # 'auto' on a 2-GPU box


@pytest.mark.slow
def test_two_arms_on_two_devices_train_and_evaluate_each_on_its_own(tmp_path: Path, monkeypatch):
    """devices = [0, 1] with a test double for the GPUs: the runs train on the CPU (the recipe says
    so) while the study hands each its device; train and eval of one run share it."""
    study = load_study(write_study(tmp_path, "devices = [0, 1]"))
    wrapper = tmp_path / "fake_ebjdat.py"
    wrapper.write_text(WRAPPER)
    log = tmp_path / "devices.log"
    monkeypatch.setenv("DEVICE_LOG", str(log))
    assert run_study(study, (sys.executable, str(wrapper))) == 0
    calls = [line.split() for line in log.read_text().splitlines()]
    by_run: dict[str, set[str]] = {}
    for device, command, target in calls:
        run = Path(target).name if command == "eval" else None
        if run is None:  # `run RECIPE`: find its run dir among the study's
            continue
        by_run.setdefault(run, set()).add(device)
    doc = json.loads((study.out_dir / "results.json").read_text())
    records = {r["run_dir"]: r for arm in doc["arms"] for r in arm["runs"]}
    assert {r["device"] for r in records.values()} == {"cuda:0", "cuda:1"}
    for rel, record in records.items():
        run_dir = study.out_dir / rel
        start = next(e for e in read_events(run_dir) if e["type"] == "start")
        assert f"cuda:{start['visible_devices']}" == record["device"]          # training saw it
        assert by_run[run_dir.name] == {start["visible_devices"]}              # so did every eval
    assert sorted(d for d, c, _ in calls if c == "run") == ["0", "1"]
