"""The event reducer: a run's event log folded, one event at a time, into a `RunState`, and
the immutable `RunSnapshot` of it that the screens draw. No files and no processes here: the
watcher reads the log and asks `liveness` about the job.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ebjdat_engine.rundir.events import canonical_terms

from .fmt import as_float, describe, eval_block


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
        terms = event.get("terms")
        # runs recorded before the terms took the paper's names read under today's names
        event = {**event, "terms": canonical_terms(terms if isinstance(terms, dict) else {})}
        self.metrics = event
        values: dict[str, Any] = {"loss": event.get("loss")}
        values.update(event["terms"])
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
