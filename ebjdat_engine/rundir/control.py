"""Stopping a job gracefully: signals and requests written into `run_dir/control/`.

SIGINT / SIGTERM, the schedulers' warning signals SIGUSR1 / SIGUSR2 (SLURM's `--signal`,
submitit's time-limit warning: SLURM sends them to every process of the job, and their default
action would kill the run on the spot) and a `control/stop` file all mean the same: finish the
current step, write a checkpoint, end with status "stopped". A `control/checkpoint` file asks for a checkpoint now and
`control/eval` for an evaluation now. Handled requests are moved to `control/handled/`, so a
front end can see they were taken.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

REQUESTS = ("stop", "checkpoint", "eval")
#: the signals that stop a run gracefully
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class StopFlag:
    """Set by SIGINT/SIGTERM/SIGUSR1/SIGUSR2; a second SIGINT interrupts at once (KeyboardInterrupt), unless the
    job has `settle`d: once its stop (checkpoint, then the `end` event) is underway or its end
    is written, a second Ctrl-C would only tear that apart, so it is counted and ignored."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.settled = False
        self.ignored = 0  # second Ctrl-Cs that arrived after settle()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            if self.settled:
                self.ignored += 1
                return
            raise KeyboardInterrupt
        self.signum = signum

    def settle(self) -> None:
        """The job is stopping or has ended: from now on a second Ctrl-C does not interrupt."""
        self.settled = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGTERM)


def pending_requests(control_dir: Path) -> list[str]:
    """Names of the requests waiting in control/ (cheap: one directory listing)."""
    try:
        return [p.name for p in control_dir.iterdir() if p.is_file() and p.name in REQUESTS]
    except FileNotFoundError:
        return []


def _move_to_handled(control_dir: Path, name: str, label: str) -> bool:
    """control/NAME -> control/handled/NAME-LABEL-<time>; False when it is gone already."""
    handled = control_dir / "handled"
    handled.mkdir(exist_ok=True)
    try:
        (control_dir / name).rename(handled / f"{name}-{label}-{int(time.time())}")
        return True
    except FileNotFoundError:
        return False


def mark_handled(control_dir: Path, name: str, step: int) -> None:
    _move_to_handled(control_dir, name, f"step{step}")


def request(run_dir: Path, name: str) -> Path:
    """Write a request for the job running in `run_dir` (used by front ends)."""
    if name not in REQUESTS:
        raise ValueError(f"unknown control request {name!r}; one of {REQUESTS}")
    path = Path(run_dir) / "control" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time()}\n")
    return path


def set_aside_stale(control_dir: Path, before: float) -> list[str]:
    """Move requests written before `before` (unix time: an earlier job's, e.g. a dead run's
    stop) to control/handled/ as '<name>-stale-<time>', so a resumed run does not act on them.
    Requests written since (a front end that asked right after launching) stay."""
    stale = []
    for name in pending_requests(control_dir):
        try:
            if (control_dir / name).stat().st_mtime >= before:
                continue
        except FileNotFoundError:
            continue
        if _move_to_handled(control_dir, name, "stale"):
            stale.append(name)
    return stale


def process_start_time() -> float:
    """Unix time at which this process started, to one clock tick (Linux: /proc; elsewhere: now).

    /proc gives the start in ticks since boot; the boot clock (not /proc/stat's whole-second
    btime) turns it into unix time. Rounded up by one tick: a request written in the instant
    before this process existed is an earlier job's, never this one's."""
    import os

    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        hz = os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / hz
        return time.time() - age + 1.0 / hz
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()
