"""Reading a run directory (DESIGN.md §3) for the TUI and `ebjdat ls`: its recipe text, sample
grids, and one-line run summaries. The pieces live beside it: `fmt` (formatting), `reducer`
(the event log folded into a RunState) and `liveness` (the job's process).

Files only: nothing here imports torch or textual, so the TUI stays a light reader beside the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ebjdat_engine.rundir import RunDir, is_run_dir
from ebjdat_engine.rundir.events import read_events

from .fmt import as_float
from .liveness import job_status, process_alive, read_meta
from .reducer import RunState


def read_recipe_text(run_dir: Path) -> str | None:
    try:
        return RunDir(run_dir).recipe.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# --- sample grids -------------------------------------------------------------------------

def resolve_sample_path(run_dir: Path, path: str) -> Path | None:
    """A `sample` event's path may be absolute, relative to the job's cwd or to the run dir."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, run_dir / p]
    candidates += [RunDir(run_dir).samples / p.name, RunDir(run_dir).eval_dir / p.name]
    for c in candidates:
        if c.is_file():
            return c
    return None


def newest_sample(run_dir: Path) -> Path | None:
    """The newest sample grid in the run: samples/*.png or eval/*-samples.png."""
    found: list[tuple[float, Path]] = []
    for pattern in ("samples/*.png", "eval/*-samples.png"):
        for p in run_dir.glob(pattern):
            try:
                found.append((p.stat().st_mtime, p))
            except OSError:
                continue
    return max(found)[1] if found else None


# --- ebjdat ls ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    """One line of `ebjdat ls`."""

    name: str
    path: Path
    method: str
    status: str
    step: int
    total: int | None
    loss: float | None
    clean_acc: float | None
    aa_acc: float | None
    age_s: float | None
    started: float | None


def summarize(run_dir: Path, now: float | None = None) -> RunSummary:
    now = time.time() if now is None else now
    state = RunState(run_dir)
    state.apply_all(read_events(run_dir))
    meta = read_meta(run_dir)
    status, _ = job_status(state.end_status(), state.start is not None, process_alive(meta),
                           state.last_time, now)
    start = state.start or {}
    method = str(start.get("method") or "?")
    base = (start.get("labels") or {}).get("base")
    if base and method == "ebjdat":
        method = f"ebjdat/{base}"
    if start.get("profile") == "reference":
        method += " (ref)"
    m = state.metrics or {}
    loss = as_float(m.get("loss_avg", m.get("loss")))
    clean = next((as_float(e.get("clean_acc")) for e in reversed(state.evals) if e.get("clean_acc") is not None), None)
    aa = next((as_float(e.get("aa_acc")) for e in reversed(state.evals) if e.get("aa_acc") is not None), None)
    last = state.last_time
    if last is None:
        try:
            last = RunDir(run_dir).events.stat().st_mtime
        except OSError:
            last = None
    return RunSummary(name=run_dir.name, path=run_dir, method=method, status=status, step=state.step,
                      total=state.total, loss=loss, clean_acc=clean, aa_acc=aa,
                      age_s=None if last is None else now - last, started=state.first_time)


def find_runs(runs_dir: Path) -> list[Path]:
    """Run directories in `runs_dir` (or `runs_dir` itself when it is one), oldest first."""
    if is_run_dir(runs_dir):
        return [runs_dir]
    runs = [p for p in runs_dir.iterdir() if is_run_dir(p)]

    def started(p: Path) -> float:
        meta = RunDir(p).meta
        try:
            return p.stat().st_mtime if not meta.exists() else meta.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(runs, key=lambda p: (started(p), p.name))
