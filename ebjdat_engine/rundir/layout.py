"""The run directory, the one contract between the engine and every front end (DESIGN.md §3).

```
runs/<name>/
  recipe.toml   meta.json   events.jsonl
  checkpoints/  samples/    eval/    control/    .lock
```
(the names are the constants below: `RECIPE_FILE`, `META_FILE`, `EVENTS_FILE`, ...; `RunDir`
in `dirs` puts them together for one run).
`.lock` holds the one writer's OS lock (`RunLock`): a second `run --resume` on the directory is
refused while the first lives.
Nothing here ever deletes or overwrites a run: a new run gets a fresh directory (a suffix is
added when the name is taken), and only `--resume` writes into an existing one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from .scheduler import slurm_info

# --- every file name of a run directory (nothing outside rundir/ spells one) -------------------
RECIPE_FILE = "recipe.toml"
META_FILE = "meta.json"
#: the event log (written and read by `events`)
EVENTS_FILE = "events.jsonl"
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
EVAL_DIR = "eval"
CONTROL_DIR = "control"
#: checkpoint kinds, each `CHECKPOINT_DIR/<kind>.pt`
LAST = "last"
BEST = "best"
CHECKPOINT_SUFFIX = ".pt"
LAST_CHECKPOINT = LAST + CHECKPOINT_SUFFIX
BEST_CHECKPOINT = BEST + CHECKPOINT_SUFFIX
#: a launcher's (the TUI's) capture of the job's stdout and stderr
STDOUT_LOG = "stdout.log"
SUBDIRS = (CHECKPOINT_DIR, SAMPLES_DIR, EVAL_DIR, CONTROL_DIR)
#: files a launcher (the TUI) may put into a --run-dir before the job starts
LAUNCHER_FILES = (STDOUT_LOG,)
#: where `runtime.tensorboard = true` mirrors the events (a copy: the event log is the record)
TENSORBOARD_DIR = "tensorboard"
#: the files that make a directory a run directory (any one of them; see `is_run_dir`)
RUN_MARKERS = (EVENTS_FILE, META_FILE, RECIPE_FILE)
#: what a directory that is not a run lacks, for messages: "no events.jsonl, meta.json or recipe.toml"
NO_RUN_MARKERS = f"no {', '.join(RUN_MARKERS[:-1])} or {RUN_MARKERS[-1]}"


class RunDirError(UserError):
    """A run directory cannot be used as asked; the message says what to do instead."""


def default_name(recipe_path: str | Path | None) -> str:
    stem = Path(recipe_path).stem if recipe_path else "run"
    return f"{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def is_run_dir(path: str | Path) -> bool:
    """The one rule of "is this a run directory": a directory holding its event log, its meta or
    its recipe (a job writes its recipe and meta before its first event; a run of an older
    version may lack meta)."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKERS)


def create_run_dir(out_dir: str | Path, name: str, explicit: str | Path | None = None) -> Path:
    """Make a new run directory. `explicit` (``--run-dir``) must be absent or empty (but for a
    launcher's stdout.log); otherwise
    `out_dir/name`, with ``-2``, ``-3``, ... appended when taken."""
    if explicit is not None:
        path = Path(explicit)
        if path.exists() and (not path.is_dir() or any(p.name not in LAUNCHER_FILES for p in path.iterdir())):
            hint = " (use --resume to continue it)" if path.is_dir() and is_run_dir(path) else ""
            raise RunDirError(f"--run-dir {path}: exists and is not empty{hint}")
        candidates = [path]
    else:
        base = Path(out_dir) / name
        candidates = [base] + [base.with_name(f"{base.name}-{i}") for i in range(2, 1000)]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=explicit is not None)
        except FileExistsError:
            continue
        except OSError as e:  # read-only file system, no permission, /proc, a name too long
            where = "--run-dir" if explicit is not None else "run.out_dir / run.name"
            raise RunDirError(f"{path}: cannot create the run directory ({e.strerror or e}); choose "
                              f"another {where}") from None
        try:
            for sub in SUBDIRS:
                (path / sub).mkdir(exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{path}: cannot write in the run directory ({e.strerror or e}); choose "
                              f"another location") from None
        return path
    raise RunDirError(f"{Path(out_dir) / name}: too many runs with this name; set run.name")


LOCK_FILE = ".lock"


class RunLock:
    """One writer per run directory: an exclusive OS lock (flock) on `RUN/.lock`, held for the
    writer's lifetime and released by the OS when the process dies (a SIGKILL leaves no stale
    lock). The file records the holder's pid, host and start time, for the refusal message."""

    def __init__(self, run_dir: Path) -> None:
        import fcntl

        self.path = Path(run_dir) / LOCK_FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"{run_dir}: cannot create its lock file ({exc.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder()
            os.close(self._fd)
            raise RunDirError(
                f"{run_dir} is being written by another ebjdat process (pid {holder.get('pid', '?')} "
                f"on {holder.get('host', '?')}, since {holder.get('since', '?')}); a run directory has "
                f"one writer. Wait for it to end, or stop it (`kill {holder.get('pid', 'PID')}` or the "
                f"TUI's s key), then try again") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(os.pread(self._fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        """Give the directory up (closing the descriptor drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def shared_mode(fd: int) -> None:
    """Give a temp file (mkstemp makes them 0600) the permissions of an ordinary new file
    (0666 less the umask), so a shared group can read the run."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    shared_mode(fd)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_dead_temp_files(run_dir: Path) -> list[Path]:
    """Remove the hidden temp files (`.<name>.<random>.tmp`) an atomic write killed midway left
    in the run directory and checkpoints/. Call only while holding the run's lock: then no
    writer is alive to own them. Checkpoints themselves are never touched."""
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINT_DIR):
        for tmp in folder.glob(".*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def git_sha() -> str | None:
    """The git commit of the ebjdat source tree, when it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def collect_meta(device: str) -> dict[str, Any]:
    """Versions, device and host: what a reader needs to trust or reproduce the numbers.

    Under SLURM also `slurm`: the job, array task, node, partition and restart count
    (`scheduler.slurm_info`)."""
    import torch

    from .._version import __version__

    meta: dict[str, Any] = {
        "ebjdat": __version__,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "device_name": (torch.cuda.get_device_name(device) if device.startswith("cuda")
                        else platform.processor() or platform.machine()),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv,
        "start_time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    slurm = slurm_info()
    if slurm is not None:  # only under SLURM: other runs' meta keeps its keys
        meta["slurm"] = slurm
    return meta


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    write_text_atomic(run_dir / META_FILE, json.dumps(meta, indent=2) + "\n")


def read_meta(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / META_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
