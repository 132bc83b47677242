"""Which GPU each running arm of a study gets: `[study] devices` and `per_device`.

A study runs its arm × seed runs as child processes, `jobs` at a time. On a machine with several
GPUs every child would otherwise open the same default device; the pool hands each running arm a
device of its own (or `per_device` arms per device), passed to the child as
``CUDA_VISIBLE_DEVICES``, so inside the child that GPU is ``cuda:0``. Indices count the devices
the study process sees (under ``CUDA_VISIBLE_DEVICES=2,3`` index 0 is device 2). The child's
training and its evaluations use the same device. A run waits for a free slot, so at most
``len(devices) * per_device`` arms run at once whatever `jobs` says.

``devices = "auto"`` (the default) takes every CUDA device torch sees in the study process; on a
CPU-only machine that is none, and children start exactly as before (no variable set, the
recipe's `runtime.device` decides). A list (``[0, 1]``) is used as given, without asking torch.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence


def cuda_device_count() -> int:
    """CUDA devices visible to this process (0 without torch's CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver reads as no GPU: the study then runs as on a CPU
        return 0


def visible_device(index: int, visible: str | None) -> str:
    """The CUDA_VISIBLE_DEVICES value that shows a child the study's device `index`: indices count
    the devices the study itself sees, so under a study started with CUDA_VISIBLE_DEVICES=2,3 (or
    inside a SLURM allocation) index 0 is device "2", not the machine's device 0."""
    ids = [v.strip() for v in (visible or "").split(",") if v.strip()]
    return ids[index] if index < len(ids) else str(index)


def resolve_devices(spec: Sequence[int] | None, count: Callable[[], int] = cuda_device_count) -> tuple[int, ...]:
    """The device indices a study hands out: `spec` itself, or (None: 'auto') every visible one."""
    return tuple(spec) if spec is not None else tuple(range(count()))


class DevicePool:
    """Slots of `per_device` runs on each device; `acquire` blocks until one is free.

    With no devices the pool hands out None at once (no limit: the CPU case, as before)."""

    def __init__(self, devices: Sequence[int], per_device: int = 1):
        self.devices = tuple(devices)
        self._load = {d: 0 for d in self.devices}
        self._per_device = per_device
        self._free = threading.Condition()

    def acquire(self, cancelled: Callable[[], bool] = lambda: False) -> int | None:
        """The least-loaded device with a free slot (None when the pool has no devices, or when
        `cancelled()` turns true while waiting)."""
        if not self.devices:
            return None
        with self._free:
            while True:
                if cancelled():
                    return None
                device = min(self.devices, key=lambda d: (self._load[d], self.devices.index(d)))
                if self._load[device] < self._per_device:
                    self._load[device] += 1
                    return device
                self._free.wait(timeout=0.2)

    def release(self, device: int | None) -> None:
        if device is None:
            return
        with self._free:
            self._load[device] -= 1
            self._free.notify_all()


__all__ = ["DevicePool", "cuda_device_count", "resolve_devices", "visible_device"]
