"""Device, seeding and numerics, from `[runtime]` and `[run].seed` only."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ..errors import UserError
from ..recipe import RuntimeConfig


class DeviceError(UserError):
    """The runtime section asks for something this machine cannot do."""


def resolve_device(cfg: RuntimeConfig) -> torch.device:
    return pick_device(cfg.device, "runtime.device", 'use --set runtime.device="cpu" or "auto"')


def pick_device(text: str | None, what: str = "--device", instead: str = "use --device cpu") -> torch.device:
    """The device `text` names ('auto' or None: CUDA when present), checked against this
    machine: a name torch does not know, or CUDA (device N) that is not here, raises
    DeviceError saying `what` to change."""
    if text in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise DeviceError(f"{what} = {text!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{what} = {text!r}, but no CUDA device is available ({instead})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{what} = {text!r}, but this machine has {torch.cuda.device_count()} "
                                f"CUDA device(s): cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise DeviceError(f"{what} = {text!r}: ebjdat runs on 'cpu' or 'cuda' devices")
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
