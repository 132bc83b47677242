"""Device, seeding and numerics, from `[runtime]` and `[run].seed` only."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ..recipe import RuntimeConfig


class RuntimeError_(Exception):
    """The runtime section asks for something this machine cannot do."""


def resolve_device(cfg: RuntimeConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError_(f"runtime.device = {cfg.device!r}, but no CUDA device is available "
                            "(use --set runtime.device=\"cpu\" or \"auto\")")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure(cfg: RuntimeConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def autocast(cfg: RuntimeConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast of the network's forward; samples and parameters stay fp32 (DESIGN.md §10)."""
    if cfg.amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(cfg: RuntimeConfig, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 needs none)."""
    return torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
