"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is written to a temporary file in the same directory, fsynced, then renamed over
the target, so a crash or a kill mid-write never leaves a truncated `last.pt`. It holds the
model, optimizer, scheduler and grad-scaler states, the position (step, epoch), every RNG state,
and a `method` slot for method state such as the replay buffer.
"""

from __future__ import annotations

import errno
import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .layout import CHECKPOINT_DIR, RunDirError, shared_mode

__all__ = ["CHECKPOINT_DIR", "TRAINING_KEYS", "CheckpointError", "DiskFullError", "load_checkpoint", "rng_state",
           "save_atomic", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The RNG states that training draws from (python, torch CPU, every CUDA device)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a round trip may have turned them into lists."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


class DiskFullError(OSError):
    """No space left where a checkpoint was being written (torch reports it obscurely)."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, f"disk full (ENOSPC) writing {path}")
        self.path = path

    def __str__(self) -> str:
        return f"disk full (ENOSPC) writing {self.path}; free some space, then resume"


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space: ENOSPC itself, or torch's zip writer's
    'unexpected pos' with (almost) no space left."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if isinstance(exc, (OSError, RuntimeError)):
        try:
            st = os.statvfs(folder)
            return st.f_bavail * st.f_frsize < 64 * 2**20
        except OSError:
            return False
    return False


def save_atomic(obj: Any, path: Path) -> Path:
    """torch.save to `path` through a temp file + fsync + rename (atomic on POSIX). A full disk
    raises DiskFullError naming the file; the temp file is removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    shared_mode(fd)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)  # only our own temp file, never a checkpoint
        if _disk_full(exc, path.parent):
            raise DiskFullError(path) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


#: what a training checkpoint holds (what --resume needs)
TRAINING_KEYS = ("model", "optimizer", "schedule", "scaler", "method", "rng", "step", "recipe")


class CheckpointError(RunDirError):
    """A checkpoint file that cannot be used: truncated, not a checkpoint, or missing parts."""


def _why_unreadable(path: Path, exc: Exception) -> str:
    """What a file torch cannot load is, in words (torch's own text is long and about pickles)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if path.suffix.lower() in (".toml", ".json", ".txt", ".md", ".yaml", ".yml") or (
            head and all(32 <= b < 127 or b in (9, 10, 13) for b in head.lstrip(b"\xef\xbb\xbf"))):
        return ("it is a text file (a recipe?); give a run directory (runs/<name>) or a checkpoint "
                "file (checkpoints/*.pt)")
    if head.startswith(b"PK"):
        return ("a torch archive that cannot be read, truncated (a save killed midway?) or damaged; "
                "use another checkpoint of the run (checkpoints/)")
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # a pickle: of objects torch won't load safely
        return "a pickle of Python objects, not the tensors and plain containers ebjdat writes"
    return f"not a torch file (random bytes or another format; torch: {type(exc).__name__})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint written by `save_atomic` (weights_only: plain tensors and containers).

    A file that is not one (truncated, random bytes, a recipe, a dict without `required` keys)
    raises CheckpointError naming the file, never a torch or pickle traceback."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # its pickle-protocol note on a file that is not ours
            warnings.filterwarnings("ignore", module=r"torch\._weights_only_unpickler")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint") from None
    except Exception as exc:  # PytorchStreamReader (truncated), UnpicklingError (not a checkpoint), ...
        raise CheckpointError(f"{path}: not a readable ebjdat checkpoint: {_why_unreadable(path, exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not an ebjdat checkpoint (a {type(state).__name__}, not a dict)")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not an ebjdat training checkpoint (no {', '.join(missing)})")
    return state
