"""Shared fixtures: tiny recipes on digits that train in seconds on a 2-core CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# caches (the fd_ref classifier, converted Inception weights) go to a fresh directory, not ~
os.environ.setdefault("EBJDAT_CACHE", tempfile.mkdtemp(prefix="ebjdat-test-cache-"))

TINY_RECIPE = """
[run]
seed = 3
out_dir = "{out_dir}"

[data]
name = "digits"
n_valid = 100
crop_padding = 1
hflip = false
noise_std = 0.01

[model]
arch = "cnn"
width = 1
norm = "batch"

[optim]
name = "sgd"
lr = 0.05
warmup_steps = 5
decay_epochs = [2]

[train]
epochs = 3
batch_size = 32
log_every = 5
control_every = 1

[monitor]
every = 5
probe_n = 32           # the eval-mode probe: small, to keep tests fast

[eval]
every_epochs = 1

[runtime]
device = "cpu"
amp = "off"
threads = 1
"""


def trained_bn_net(shape=(1, 8, 8), **model):
    """A BatchNorm network (eval mode) whose running statistics and affine parameters are away
    from their init, so that folding them is a real test; `model` are ModelConfig fields."""
    import torch

    from ebjdat_engine.models import build_model
    from ebjdat_engine.recipe.schema import ModelConfig

    torch.manual_seed(0)
    net = build_model(ModelConfig(norm="batch", **model), shape, 10)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, *shape) * 2)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


def write_tiny_recipe(folder: Path) -> Path:
    """folder/tiny.toml: the tiny digits recipe, writing its runs under folder/runs."""
    path = folder / "tiny.toml"
    path.write_text(TINY_RECIPE.format(out_dir=(folder / "runs").as_posix()))
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """A recipe file for a few-second digits run writing under tmp_path/runs."""
    return write_tiny_recipe(tmp_path)


def ebjdat(*args: str, cwd: Path | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the real `ebjdat` console entry point in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "ebjdat_tui.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)
