"""Whether a run's job is alive: its pid, host and start time from the run's meta, checked against
the process table (a reused pid or a zombie is not the job), and the run status that follows
(running, starting, died, ...). Linux /proc where there is one; kill(0) elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ebjdat_engine.rundir import RunDir

#: statuses of an `end` event: the job is over
TERMINAL = frozenset({"finished", "stopped", "collapsed", "crashed"})
#: statuses under which a front end may still send control requests
LIVE = frozenset({"starting", "running", "running?"})


def read_meta(run_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads(RunDir(run_dir).meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def job_pid(meta: dict[str, Any]) -> int | None:
    """The pid of the job that writes the run now (after a resume: the last resume's)."""
    pid = _last_launch(meta).get("pid")
    return pid if isinstance(pid, int) and pid > 0 else None


def _last_launch(meta: dict[str, Any]) -> dict[str, Any]:
    resumes = meta.get("resumes")
    if isinstance(resumes, list) and resumes and isinstance(resumes[-1], dict):
        return {**meta, **resumes[-1]}
    return meta


def job_host(meta: dict[str, Any]) -> str | None:
    return _last_launch(meta).get("host")


def job_start_time(meta: dict[str, Any]) -> float | None:
    """When the job (the last resume, if any) wrote its meta, in unix seconds."""
    text = _last_launch(meta).get("start_time")
    try:
        return dt.datetime.fromisoformat(text).timestamp() if isinstance(text, str) else None
    except ValueError:
        return None


def _proc_state_and_start(pid: int) -> tuple[str, float] | None:
    """(state letter, start time in unix seconds) of a process, from Linux's /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return fields[0], btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def pid_alive(pid: int, started_by: float | None = None) -> bool:
    """Whether the job with this pid still runs. A process that started after `started_by` (the
    job's meta start time) merely reuses the pid of a job that is gone; a zombie has exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    except OSError:
        return False
    info = _proc_state_and_start(pid)
    if info is None:
        return True  # no /proc (macOS): trust kill(0)
    state, started = info
    if state == "Z":
        return False
    return started_by is None or started <= started_by + 2.0


def process_alive(meta: dict[str, Any]) -> bool | None:
    """True / False when the job's pid can be checked from here; None when it cannot (no pid
    recorded, or the job runs on another host)."""
    pid = job_pid(meta)
    host = job_host(meta)
    if pid is None or (host and host != socket.gethostname()):
        return None
    return pid_alive(pid, job_start_time(meta))


def job_status(end_status: str | None, started: bool, alive: bool | None,
               last_time: float | None, now: float | None = None) -> tuple[str, str]:
    """(status, detail) of a run: the `end` event's status when there is one; otherwise from the
    process: running, starting, died (gone without an end event), or unknown."""
    if end_status:
        return end_status, ""
    if alive is True:
        return ("running", "") if started else ("starting", "waiting for the job's first event")
    if alive is False:
        return "died", ("the job's process is gone and wrote no end event (killed?); "
                        "continue with: ebjdat run --resume RUN")
    now = time.time() if now is None else now
    if last_time is not None and now - last_time < 600:
        return "running?", "no end event yet; the job's process cannot be checked from this host"
    return "unknown", "no end event, and the job's process cannot be checked from this host"
