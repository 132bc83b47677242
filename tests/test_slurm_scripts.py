"""scripts/slurm/train_multinode.sbatch: the command it launches for a 2-node allocation.

Run with EBJDAT_DRY_RUN=1 inside a fake allocation (SLURM's variables set, a stand-in
`scontrol` on PATH that expands the node list), the script prints the `srun torchrun ... ebjdat
run` line it would start; the test parses it and checks every piece a multi-node run needs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "scripts" / "slurm" / "train_multinode.sbatch"
FAKE_SCONTROL = """#!/bin/sh
# stands in for `scontrol show hostnames node[01-02]`
if [ "$1 $2" = "show hostnames" ]; then printf 'node01\\nnode02\\n'; exit 0; fi
echo "fake scontrol: $*" >&2; exit 1
"""


def dry_run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    allocation = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ebjdat", "SLURM_JOB_NUM_NODES": "2",
                  "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_GPUS_ON_NODE": "8", "EBJDAT_DRY_RUN": "1"}
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, **allocation, **env,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=full, capture_output=True,
                          text=True, timeout=30)


def test_a_two_node_allocation_gets_one_torchrun_per_node_meeting_at_the_first_node(tmp_path: Path):
    proc = dry_run(tmp_path, "recipes/cifar10.toml", "--set", "train.epochs=2")
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd[:3] == ["srun", "--kill-on-bad-exit=1", "torchrun"]
    opt = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--") and "=" not in cmd[i]}
    assert opt["--nnodes"] == "2" and opt["--nproc-per-node"] == "8"
    assert opt["--rdzv-backend"] == "c10d" and opt["--rdzv-id"] == "4242"
    assert opt["--rdzv-endpoint"] == f"node01:{29500 + 4242 % 1000}"
    ebjdat = cmd[cmd.index("--no-python") + 1:]
    assert ebjdat == ["ebjdat", "run", "recipes/cifar10.toml", "--set", "train.epochs=2",
                      "--run-dir", "runs/ebjdat-4242", "--plain"]


def test_a_requeued_job_resumes_its_own_run(tmp_path: Path):
    (tmp_path / "runs" / "ebjdat-4242" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "ebjdat-4242" / "checkpoints" / "last.pt").write_bytes(b"")
    cmd = shlex.split(dry_run(tmp_path, "recipes/cifar10.toml").stdout)
    assert cmd[cmd.index("--no-python") + 1:] == ["ebjdat", "run", "--resume", "runs/ebjdat-4242", "--plain"]


def test_outside_an_allocation_or_without_a_recipe_it_says_so(tmp_path: Path):
    proc = dry_run(tmp_path)
    assert proc.returncode == 2 and "usage: sbatch" in proc.stderr
    proc = dry_run(tmp_path, "recipes/cifar10.toml", SLURM_JOB_ID="")
    assert proc.returncode != 0 and "not inside a SLURM allocation" in proc.stderr
