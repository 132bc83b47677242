"""Checkpoint I/O of a training run: atomic writes by rank 0, each rank's method state beside it.

Rank 0 writes the whole training state to `checkpoints/<kind>.pt` (atomically: a killed job
leaves the previous file) and emits a `checkpoint` event; under torchrun every rank also writes
its own method state (its slice of the replay buffer) and RNG to `<kind>.rank<r>.pt`, then all
ranks meet at a barrier. Reading gives the checkpoint and, under torchrun, this rank's own file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..rundir import RunDir
from ..rundir.checkpoint import TRAINING_KEYS, load_checkpoint, rng_state, save_atomic
from . import distributed


class Checkpointer:
    """Writes and reads the checkpoints of the run at `run_dir` for this rank."""

    def __init__(self, run_dir: Path, dist: distributed.DistInfo, emit: Callable[..., Any]):
        self.run_dir = run_dir
        self.dist = dist
        self.emit = emit
        self.last_saved_step: int | None = None  # the step the last checkpoint holds

    def save(self, kind: str, step: int, state: Callable[[], dict[str, Any]],
             method_state: Callable[[], dict[str, Any]]) -> Path:
        """Write checkpoint `kind` (rank 0: `state()`; every rank under torchrun: `method_state()`)."""
        path = RunDir(self.run_dir).checkpoint(kind)
        if self.dist.is_main:
            save_atomic(state(), path)
            if kind == "last":
                self.last_saved_step = step
            self.emit("checkpoint", kind=kind, path=str(path.relative_to(self.run_dir)))
        if self.dist.enabled:
            save_atomic({"method": method_state(), "rng": rng_state()},
                        RunDir(self.run_dir).checkpoint(f"{kind}.rank{self.dist.rank}"))
            distributed.barrier(self.dist)
        return path

    def load(self, path: Path, state: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The checkpoint at `path` (`state` when the caller has loaded it already; RNG states stay
        on the CPU) and this rank's own file under torchrun (None otherwise or when absent)."""
        ckpt = state if state is not None else load_checkpoint(path, map_location="cpu", required=TRAINING_KEYS)
        rank_file = path.with_name(f"{path.stem}.rank{self.dist.rank}.pt")
        rank_state = load_checkpoint(rank_file) if self.dist.enabled and rank_file.exists() else None
        return ckpt, rank_state


__all__ = ["Checkpointer"]
