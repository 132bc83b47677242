"""Device, seeding and numerics, from `[runtime]` and `[run].seed` only."""

from __future__ import annotations

import contextlib
import functools
import random
import sys

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


#: What bf16 autocast cost on a CPU without native bf16, measured with oneDNN and ATen held to
#: AVX2 on a Sapphire Rapids core (torch 2.14, 2 threads), forward + backward at batch 4 against
#: fp32: a 6-layer conv net ~8x, WRN-16-2 ~10x, WRN-28-10 ~39x (0.9 s -> 34 s).
EMULATED_BF16_SLOWDOWN = "10-40x (WRN-28-10 at batch 4: ~39x)"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles); without it torch's
    bf16 autocast runs emulated, many times slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def device_has_native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_amp(amp: str, device: torch.device) -> str:
    """runtime.amp as this run uses it: 'auto' -> 'bf16' where `device` has native bf16, else
    'off'; any other value as given."""
    if amp == "auto":
        return "bf16" if device_has_native_bf16(device) else "off"
    return amp


@functools.lru_cache(maxsize=None)
def _resolved(amp: str, device: torch.device) -> str:
    return resolve_amp(amp, device)


def amp_of(cfg: RuntimeConfig, device: torch.device) -> str:
    """The resolved runtime.amp, computed once per (value, device) in this process."""
    return _resolved(cfg.amp, device)


def amp_warning(cfg: RuntimeConfig, device: torch.device) -> str | None:
    """The warning for an explicit 'bf16' on a CPU without native bf16 (honoured, but slow)."""
    if amp_of(cfg, device) != "bf16" or device.type != "cpu" or cpu_has_native_bf16():
        return None
    return ("warning: runtime.amp = \"bf16\" on a CPU without native bf16 (no AVX512-BF16/AMX): "
            f"autocast is emulated, {EMULATED_BF16_SLOWDOWN} slower than fp32; "
            "use runtime.amp = \"auto\" or \"off\" on this machine")


def warn_amp(cfg: RuntimeConfig, device: torch.device) -> None:
    message = amp_warning(cfg, device)
    if message:
        print(message, file=sys.stderr, flush=True)


def autocast(cfg: RuntimeConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast of the network's forward; samples and parameters stay fp32 (DESIGN.md §10)."""
    amp = amp_of(cfg, device)
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(cfg: RuntimeConfig, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_of(cfg, device) == "fp16")
