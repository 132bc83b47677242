"""Where the monitor finds a method's current generated samples, and a private RNG for measuring.

JEM-family methods (and EB-JDAT) keep a replay buffer: `ebjdat eval` draws its generated samples
from it (`eval/generation.py` `draw_buffer`: ``randperm(buffer_size, seed 0)[:n]``), so the
monitor reads the *same* fixed slots of the live buffer, and a gap on screen and a gap in a
report are measured on the same kind of samples. DAT keeps no buffer: its generated samples are
the latest negatives ``x_neg`` of the training step. Methods without a generator have none.

Measurements run between steps and must not change the training run: :func:`seeded` forks the
CPU and device RNGs, seeds them, and restores them afterwards, so a run with the probe on takes
exactly the same steps as a run with it off.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from ..eval.generation import buffer_slots
from ..samplers import ReplayBuffer

#: `ebjdat eval`'s default --seed: the buffer slots and the PGD random start it uses
PROBE_SEED = 0


@contextlib.contextmanager
def seeded(device: torch.device, seed: int = PROBE_SEED) -> Iterator[None]:
    """Within the block the global CPU RNG (and `device`'s CUDA RNG) start from `seed`, as after
    ``torch.manual_seed(seed)``; both are restored afterwards. No other device is touched."""
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[] if index is None else [index], device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if index is not None:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def fixed_slots(size: int, n: int, seed: int = PROBE_SEED) -> torch.Tensor:
    """The buffer slots `ebjdat eval` draws (`eval.generation.buffer_slots`); the same on every call."""
    return buffer_slots(size, n, seed)


def replay_buffer(method: Any) -> ReplayBuffer | None:
    """The method's replay buffer (JEM family, EB-JDAT: ``method.sampler.buffer``), if any."""
    buffer = getattr(getattr(method, "sampler", None), "buffer", None)
    return buffer if isinstance(buffer, ReplayBuffer) else None


class GeneratedSource:
    """A method's current generated samples: fixed replay-buffer slots, else the latest
    negatives of the training step (`latest`), else none."""

    def __init__(self, method: Any):
        self.method = method
        self.buffer = replay_buffer(method)
        self.generates = self.buffer is not None or "generated" in tuple(getattr(method, "populations", ()))
        self._slots: dict[int, torch.Tensor] = {}

    def available(self, latest: torch.Tensor | None) -> int:
        """How many generated samples can be taken now."""
        if self.buffer is not None:
            return self.buffer.size
        if self.generates and latest is not None:
            return int(latest.shape[0])
        return 0

    def take(self, n: int, latest: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, Any]] | None:
        """Up to `n` current generated samples (fp32 [0, 1]) and where they come from."""
        if self.buffer is not None:
            n = min(n, self.buffer.size)
            if n not in self._slots:
                self._slots[n] = fixed_slots(self.buffer.size, n).to(self.buffer.device)
            x = self.buffer.buffer[self._slots[n]].float()
            return x, {"source": "replay buffer", "n": n, "buffer_size": self.buffer.size,
                       "slots": f"fixed: randperm(buffer_size, seed {PROBE_SEED})[:{n}], "
                                "the slots `ebjdat eval` draws"}
        if self.generates and latest is not None:
            x = latest[:n].detach().float()
            return x, {"source": "latest training negatives", "n": int(x.shape[0])}
        return None

    def init_draws(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, str] | None:
        """`n` fresh draws from the sampler's init distribution (the no-learning baseline)."""
        if self.buffer is not None:
            return self.buffer.init_draws(n), f"fresh draws of the buffer's init distribution ({self.buffer.init})"
        if getattr(self.method, "name", "") == "dat":
            return (torch.rand((n, *like.shape[1:]), device=like.device),
                    "uniform noise (the seeds of DAT's generative PGD)")
        return None
