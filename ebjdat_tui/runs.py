"""Reading a run directory (DESIGN.md §3) for the TUI and `ebjdat ls`: the event log folded into
a `RunState`, the job's process state, and one-line run summaries.

Files only: nothing here imports torch or textual, so the TUI stays a light reader beside the job.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ebjdat_engine.rundir.events import read_events
from ebjdat_engine.rundir import META_FILE, RECIPE_FILE

from .progress import event_line

#: statuses of an `end` event: the job is over
TERMINAL = frozenset({"finished", "stopped", "collapsed", "crashed"})
#: statuses under which a front end may still send control requests
LIVE = frozenset({"starting", "running", "running?"})
#: populations of the energy monitor, in drawing order
POPULATIONS = ("clean", "adversarial", "generated")
SHORT_POP = {"clean": "clean", "adversarial": "adv", "generated": "gen"}
SHORT_GAP = {"clean_minus_adversarial": "c−a", "clean_minus_generated": "c−g",
             "adversarial_minus_generated": "a−g"}


def eval_block(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """The eval-mode probe of an `energy` event (its ``eval_mode`` block), or None (an older run,
    or a run with monitor.probe_n = 0: only the train-mode statistics)."""
    block = (event or {}).get("eval_mode")
    if isinstance(block, dict) and isinstance(block.get("populations"), dict) and block["populations"]:
        return block
    return None


def as_float(value: Any) -> float | None:
    """A JSON number (or the "nan"/"inf" strings the event log writes) as a float; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def fmt(value: Any, digits: int = 4) -> str:
    """A compact number: 4 significant digits, '—' when absent, 'nan'/'inf' as such."""
    v = as_float(value)
    if v is None:
        return "—"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_age(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def fmt_budget(eps: Any) -> str:
    """0.0313... -> '8/255' (budgets are written in 255ths of the pixel range)."""
    v = as_float(eps)
    if v is None:
        return "?"
    k = v * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-3 else f"{v:.4g}"


class Series:
    """A bounded time series: at most `cap` points; when full, neighbours are merged pairwise
    (their mean), so the whole run stays visible at a coarser stride."""

    def __init__(self, cap: int = 256):
        self.cap = cap
        self.stride = 1
        self._values: list[float] = []
        self._pending: list[float] = []
        self._frozen: tuple[float, ...] | None = ()

    def add(self, value: float) -> None:
        self._pending.append(value)
        if len(self._pending) < self.stride:
            return
        self._values.append(sum(self._pending) / len(self._pending))
        self._pending.clear()
        if len(self._values) > self.cap:
            v = self._values
            self._values = [(v[i] + v[i + 1]) / 2 for i in range(0, len(v) - 1, 2)] + \
                ([v[-1]] if len(v) % 2 else [])
            self.stride *= 2
        self._frozen = None

    def clear(self) -> None:
        self._values.clear()
        self._pending.clear()
        self.stride = 1
        self._frozen = ()

    def values(self) -> tuple[float, ...]:
        if self._frozen is None:
            self._frozen = tuple(self._values)
        return self._frozen


def describe(event: dict[str, Any]) -> str | None:
    """One human line for the log tail (ebjdat_tui.progress's lines, plus the events it skips)."""
    kind = event.get("type")
    step = event.get("step", "?")
    try:
        if kind == "eval":
            parts = [f"eval  step {step}: {event.get('split', '?')}"]
            for key, label in (("clean_acc", "clean"), ("pgd_acc", "PGD"), ("aa_acc", "AA"),
                               ("fd_ref", "fd_ref"), ("fid", "FID")):
                if event.get(key) is not None:
                    parts.append(f"{label} {fmt(event[key])}")
            parts.append(f"(n={event.get('n', '?')})")
            if event.get("source"):
                parts.append(f"[{event['source']}]")
            return " ".join(parts)
        if kind == "energy":  # the eval-mode probe when there is one, else the train-mode window
            block = eval_block(event) or event
            pops = block.get("populations") or {}
            means = "  ".join(f"{SHORT_POP.get(p, p)} {fmt(v.get('mean'), 3)}" for p, v in pops.items()
                              if isinstance(v, dict))
            gaps = "  ".join(f"{SHORT_GAP.get(k, k)} {fmt(v, 3)}" for k, v in (block.get("gaps") or {}).items())
            mode = "eval mode" if block is not event else "train mode"
            return f"energy step {step} ({mode}): {means}" + (f"  gaps {gaps}" if gaps else "")
        if kind == "generation":
            line = (f"generation step {step}: fd_ref {fmt(event.get('fd_ref'), 4)} (init "
                    f"{fmt(event.get('init_baseline'), 4)}, floor {fmt(event.get('floor'), 4)}; "
                    f"n={event.get('n', '?')}, {event.get('source', '?')})")
            ref = event.get("reference")
            if isinstance(ref, dict) and ref.get("trained_now"):
                line += f"; reference CNN trained in {fmt(ref.get('seconds'), 3)} s"
            return line
        if kind == "checkpoint":
            return f"checkpoint {event.get('kind', '?')} at step {step} -> {event.get('path', '?')}"
        if kind == "sample":
            return f"sample step {step}: {event.get('source', '')} {event.get('n', '')} -> {event.get('path', '?')}"
        if kind in ("metrics", "start", "alarm", "end"):
            return event_line(event)
    except Exception:  # noqa: BLE001 - a malformed event gets the generic line, never a crash
        pass
    return f"{kind} step {step}"  # an event type this TUI does not know: shown, not fatal


@dataclass(frozen=True)
class RunSnapshot:
    """Everything the screens draw, immutable, built by the watcher thread."""

    run_dir: Path
    status: str = "unknown"
    detail: str = ""
    start: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    series: dict[str, tuple[float, ...]] = field(default_factory=dict)
    step: int = 0
    total: int | None = None
    epoch: float | None = None
    steps_per_s: float | None = None
    energy: dict[str, Any] | None = None
    gaps: dict[str, tuple[float, ...]] = field(default_factory=dict)       # train mode, per event
    eval_gaps: dict[str, tuple[float, ...]] = field(default_factory=dict)  # eval-mode probe, per event
    generation: dict[str, Any] | None = None                               # the latest `generation` event
    fd_ref: tuple[float, ...] = ()                                         # its fd_ref over the run
    evals: tuple[dict[str, Any], ...] = ()
    alarms: tuple[dict[str, Any], ...] = ()
    end: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    sample_path: Path | None = None
    log: tuple[str, ...] = ()
    recipe_text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    first_time: float | None = None
    last_time: float | None = None
    n_events: int = 0
    unknown_types: tuple[str, ...] = ()

    @property
    def eta_s(self) -> float | None:
        if self.status not in ("running", "running?") or not self.steps_per_s or self.total is None:
            return None
        return max(self.total - self.step, 0) / self.steps_per_s

    @property
    def elapsed_s(self) -> float | None:
        """Training wall time: from the (latest) start event to the end event, else to the last event."""
        t0 = as_float((self.start or {}).get("time"))
        t1 = as_float((self.end or {}).get("time")) if self.end else self.last_time
        return t1 - t0 if t0 is not None and t1 is not None else None

    def energy_view(self) -> tuple[dict[str, Any] | None, dict[str, tuple[float, ...]], str]:
        """(statistics, gap series, 'eval' | 'train') the energy panel draws: the latest event's
        eval-mode probe when it has one, else its train-mode window (older runs, probe off)."""
        block = eval_block(self.energy)
        if block is not None:
            merged = {"range": (self.energy or {}).get("range"), **block}
            return merged, self.eval_gaps, "eval"
        return self.energy, self.gaps, "train"


#: events whose step is the training loop's current step
STEP_TYPES = frozenset({"start", "metrics", "energy", "generation", "checkpoint", "end"})
KNOWN_TYPES = frozenset({"start", "metrics", "energy", "generation", "eval", "checkpoint", "alarm", "sample",
                         "end"})


class RunState:
    """The event log folded into what a front end shows; `apply` one event at a time."""

    def __init__(self, run_dir: str | Path, series_cap: int = 256, log_lines: int = 200):
        self.run_dir = Path(run_dir)
        self.series_cap = series_cap
        self.start: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        self.series: dict[str, Series] = {}
        self.energy: dict[str, Any] | None = None
        self.gaps: dict[str, Series] = {}
        self.eval_gaps: dict[str, Series] = {}
        self.generation: dict[str, Any] | None = None
        self.fd_ref = Series(series_cap)
        self.evals: list[dict[str, Any]] = []
        self.alarms: list[dict[str, Any]] = []
        self.end: dict[str, Any] | None = None
        self.checkpoint: dict[str, Any] | None = None
        self.sample_event: dict[str, Any] | None = None
        self.step = 0
        self.epoch: float | None = None
        self.log: deque[str] = deque(maxlen=log_lines)
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.n_events = 0
        self.unknown_types: set[str] = set()
        self._clock: deque[tuple[float, int]] = deque(maxlen=12)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        self.n_events += 1
        t = as_float(event.get("time"))
        if t is not None:
            self.first_time = t if self.first_time is None else self.first_time
            self.last_time = t
        if kind in STEP_TYPES:  # not eval/sample: `ebjdat eval`/`sample` stamp their checkpoint's step
            step = event.get("step")
            if isinstance(step, int) and not isinstance(step, bool):
                self.step = step
            epoch = as_float(event.get("epoch"))
            if epoch is not None:
                self.epoch = epoch
        handler = getattr(self, f"_on_{kind}", None) if kind in KNOWN_TYPES else None
        if handler is None:
            self.unknown_types.add(str(kind))
        else:
            try:
                handler(event)
            except Exception:  # noqa: BLE001 - a malformed event of a known type: skip its numbers
                pass
        line = describe(event)
        if line:
            self.log.append(line)

    def apply_all(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    # --- per type -----------------------------------------------------------------------

    def _on_start(self, event: dict[str, Any]) -> None:
        self.start = event
        self.end = None  # a resumed run starts again
        self._clock.clear()
        if event.get("resumed_from") is None:  # a fresh start: forget series of a previous life
            for s in (*self.series.values(), *self.gaps.values(), *self.eval_gaps.values(), self.fd_ref):
                s.clear()

    def _on_metrics(self, event: dict[str, Any]) -> None:
        self.metrics = event
        values: dict[str, Any] = {"loss": event.get("loss")}
        terms = event.get("terms")
        values.update(terms if isinstance(terms, dict) else {})
        for key in ("acc", "acc_adv", "lr"):
            if key in event:
                values[key] = event[key]
        for name, value in values.items():
            v = as_float(value)
            if v is None:
                continue
            self.series.setdefault(name, Series(self.series_cap)).add(v)
        t = as_float(event.get("time"))
        if t is not None:
            self._clock.append((t, int(event.get("step", 0))))

    def _on_energy(self, event: dict[str, Any]) -> None:
        self.energy = event
        for name, value in (event.get("gaps") or {}).items():
            v = as_float(value)
            if v is not None:
                self.gaps.setdefault(name, Series(self.series_cap)).add(v)
        block = eval_block(event)
        for name, value in ((block or {}).get("gaps") or {}).items():
            v = as_float(value)
            if v is not None:
                self.eval_gaps.setdefault(name, Series(self.series_cap)).add(v)

    def _on_generation(self, event: dict[str, Any]) -> None:
        v = as_float(event.get("fd_ref"))
        if v is None:
            return
        self.generation = event
        self.fd_ref.add(v)

    def _on_eval(self, event: dict[str, Any]) -> None:
        self.evals.append(event)

    def _on_alarm(self, event: dict[str, Any]) -> None:
        self.alarms.append(event)

    def _on_end(self, event: dict[str, Any]) -> None:
        self.end = event

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        self.checkpoint = event

    def _on_sample(self, event: dict[str, Any]) -> None:
        self.sample_event = event

    # --- derived ------------------------------------------------------------------------

    @property
    def total(self) -> int | None:
        total = (self.start or {}).get("total_steps")
        return total if isinstance(total, int) else None

    @property
    def steps_per_s(self) -> float | None:
        """Wall-clock step rate over the last few metrics events (evaluations included)."""
        if len(self._clock) < 2:
            m = self.metrics or {}
            ips, batch = as_float(m.get("images_per_s")), (self.start or {}).get("batch_size")
            return ips / batch if ips and isinstance(batch, int) and batch > 0 else None
        (t0, s0), (t1, s1) = self._clock[0], self._clock[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def end_status(self) -> str | None:
        status = (self.end or {}).get("status")
        return status if isinstance(status, str) else None

    def snapshot(self, status: str, detail: str = "", *, sample_path: Path | None = None,
                 recipe_text: str | None = None, meta: dict[str, Any] | None = None,
                 log_lines: int = 60) -> RunSnapshot:
        log = tuple(self.log)[-log_lines:]
        return RunSnapshot(
            run_dir=self.run_dir, status=status, detail=detail, start=self.start,
            metrics=self.metrics, series={k: s.values() for k, s in self.series.items()},
            step=self.step, total=self.total, epoch=self.epoch, steps_per_s=self.steps_per_s,
            energy=self.energy, gaps={k: s.values() for k, s in self.gaps.items()},
            eval_gaps={k: s.values() for k, s in self.eval_gaps.items()},
            generation=self.generation, fd_ref=self.fd_ref.values(),
            evals=tuple(self.evals), alarms=tuple(self.alarms), end=self.end,
            checkpoint=self.checkpoint, sample_path=sample_path, log=log,
            recipe_text=recipe_text, meta=dict(meta or {}), first_time=self.first_time,
            last_time=self.last_time, n_events=self.n_events,
            unknown_types=tuple(sorted(self.unknown_types)))


# --- the job's process --------------------------------------------------------------------

def read_meta(run_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((Path(run_dir) / META_FILE).read_text(encoding="utf-8"))
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
    """When the job (the last resume, if any) wrote meta.json, in unix seconds."""
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
    job's meta.json time) merely reuses the pid of a job that is gone; a zombie has exited."""
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


def read_recipe_text(run_dir: Path) -> str | None:
    try:
        return (Path(run_dir) / RECIPE_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# --- sample grids -------------------------------------------------------------------------

def resolve_sample_path(run_dir: Path, path: str) -> Path | None:
    """A `sample` event's path may be absolute, relative to the job's cwd or to the run dir."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, run_dir / p]
    candidates += [run_dir / "samples" / p.name, run_dir / "eval" / p.name]
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
            last = (run_dir / "events.jsonl").stat().st_mtime
        except OSError:
            last = None
    return RunSummary(name=run_dir.name, path=run_dir, method=method, status=status, step=state.step,
                      total=state.total, loss=loss, clean_acc=clean, aa_acc=aa,
                      age_s=None if last is None else now - last, started=state.first_time)


def find_runs(runs_dir: Path) -> list[Path]:
    """Run directories in `runs_dir` (or `runs_dir` itself when it is one), oldest first."""
    def is_run(p: Path) -> bool:
        return p.is_dir() and ((p / "events.jsonl").exists() or (p / RECIPE_FILE).exists()
                               or (p / META_FILE).exists())

    if is_run(runs_dir):
        return [runs_dir]
    runs = [p for p in runs_dir.iterdir() if is_run(p)]

    def started(p: Path) -> float:
        try:
            return p.stat().st_mtime if not (p / META_FILE).exists() else (p / META_FILE).stat().st_mtime
        except OSError:
            return 0.0

    return sorted(runs, key=lambda p: (started(p), p.name))
