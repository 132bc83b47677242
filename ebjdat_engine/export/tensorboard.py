"""A run's record as TensorBoard sees it: metrics as scalars, energy histograms as histograms,
sample grids as images, evaluations as scalars with their protocol as text.

One translation (`Mirror`) serves both ways in: `export_run` replays a finished (or running)
run's event log after the fact, and `LiveMirror` is an event listener that mirrors a job's
events while it trains. The live one only puts each event on a queue; a background thread does
the decoding and writing, so the training step never waits for TensorBoard. The run directory
stays the record: TensorBoard files can always be rebuilt from it with `ebjdat export`.

Needs the `tensorboard` package (`pip install 'ebjdat[tb]'`); the writer is torch's
`SummaryWriter`.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..rundir.events import canonical_terms, read_events
from ..rundir.layout import RECIPE_FILE, TENSORBOARD_DIR

log = logging.getLogger("ebjdat")

INSTALL_HINT = "pip install 'ebjdat[tb]' (or pip install tensorboard)"
#: seconds between flushes of the event file, so that a TensorBoard watching a live run keeps up
FLUSH_SECS = 5
#: the text tags the mirror writes, and where their content comes from
TEXT_TAGS = ("run/start", "run/recipe", "run/end", "alarms", "eval/<split>/protocol", "ebjdat_eval/protocol")


class TensorBoardMissing(UserError, RuntimeError):
    """The tensorboard package is not installed."""


def summary_writer(log_dir: str | Path, purge_step: int | None = None):
    """torch's SummaryWriter on `log_dir`; `purge_step` hides earlier files' events at or after
    that step (a resumed run re-does the steps after its checkpoint)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise TensorBoardMissing(f"TensorBoard is not installed ({e}); {INSTALL_HINT}") from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step, flush_secs=FLUSH_SECS)


def missing_reason() -> str | None:
    """Why TensorBoard cannot be written here, or None when it can."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        return f"TensorBoard is not installed ({e}); {INSTALL_HINT}"
    return None


def _number(value: Any) -> float | None:
    """A scalar TensorBoard can plot: numbers, and the log's "nan"/"inf" strings; not bools."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def _scalars(prefix: str, fields: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, float]:
    """Numeric leaves of `fields` (nested dicts joined with '/') under `prefix`."""
    out: dict[str, float] = {}
    for key, value in fields.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            out.update(_scalars(f"{prefix}/{key}", value))
        elif (number := _number(value)) is not None:
            out[f"{prefix}/{key}"] = number
    return out


def _code(value: Any) -> str:
    """A block of JSON as TensorBoard's (markdown) text plugin shows it: indented as code."""
    text = json.dumps(value, indent=2, default=str) if not isinstance(value, str) else value
    return "\n".join("    " + line for line in text.splitlines())


def _histogram_parts(counts: list[int], lo: float, hi: float) -> dict[str, Any] | None:
    """TensorBoard's histogram from a fixed-range histogram: right bucket limits of the bins
    that hold the support (and one empty bin on its left, as torch's own make_histogram does)."""
    counts_a = np.asarray(counts, dtype=np.float64)
    if counts_a.size == 0 or counts_a.sum() <= 0:
        return None
    edges = np.linspace(lo, hi, counts_a.size + 1)
    nonzero = np.flatnonzero(counts_a)
    start, end = int(nonzero[0]), int(nonzero[-1]) + 1
    if start > 0:
        bucket, limits = counts_a[start - 1:end], edges[start:end + 1]
    else:  # the empty bin on the left has edges[0] for its right limit
        bucket, limits = np.concatenate([[0.0], counts_a[:end]]), edges[:end + 1]
    return {"min": float(edges[start]), "max": float(edges[end]), "bucket_limits": limits.tolist(),
            "bucket_counts": bucket.tolist()}


class Mirror:
    """Writes run events into a SummaryWriter, one handler per event type; unknown types are
    skipped. `counts` says how many scalars, histograms, images and texts went out."""

    def __init__(self, writer, run_dir: str | Path):
        self.writer = writer
        self.run_dir = Path(run_dir)
        self.counts: Counter[str] = Counter()
        self._protocols: dict[str, str] = {}  # the last protocol text per eval tag (written on change)

    def write(self, event: dict[str, Any]) -> None:
        handler = getattr(self, f"_on_{event.get('type')}", None)
        step = event.get("step")
        if handler is None or not isinstance(step, int):
            return
        handler(event, step, _number(event.get("time")))

    # -- the writer's calls, counted -----------------------------------------------------------
    def scalars(self, values: dict[str, float], step: int, walltime: float | None) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step, walltime=walltime)
        self.counts["scalars"] += len(values)

    def histogram(self, tag: str, stats: dict[str, Any], lo: float, hi: float, step: int,
                  walltime: float | None) -> None:
        parts = _histogram_parts(stats.get("hist") or [], lo, hi)
        n, mean, std = _number(stats.get("n")), _number(stats.get("mean")), _number(stats.get("std"))
        if parts is None or not n or mean is None or std is None or not (math.isfinite(mean) and math.isfinite(std)):
            return
        self.writer.add_histogram_raw(tag, num=int(n), sum=mean * n, sum_squares=n * (std * std + mean * mean),
                                      global_step=step, walltime=walltime, **parts)
        self.counts["histograms"] += 1

    def values_histogram(self, tag: str, values: list[Any], step: int, walltime: float | None) -> None:
        array = np.asarray([v for v in (_number(x) for x in values) if v is not None and math.isfinite(v)])
        if array.size:
            self.writer.add_histogram(tag, array, step, walltime=walltime)
            self.counts["histograms"] += 1

    def image(self, tag: str, relative: str | None, step: int, walltime: float | None) -> None:
        if not relative:
            return
        path = Path(relative)
        path = path if path.is_absolute() else self.run_dir / path
        try:
            from PIL import Image

            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
        except (OSError, ValueError):  # a PNG removed or half-written: the scalars still go out
            return
        self.writer.add_image(tag, pixels, step, walltime=walltime, dataformats="HWC")
        self.counts["images"] += 1

    def text(self, tag: str, text: str, step: int, walltime: float | None) -> None:
        self.writer.add_text(tag, text, step, walltime=walltime)
        self.counts["texts"] += 1

    # -- one handler per event type ------------------------------------------------------------
    def _on_start(self, e: dict[str, Any], step: int, t: float | None) -> None:
        keep = ("method", "profile", "populations", "labels", "weights", "device", "total_steps",
                "batch_size", "n_train", "n_valid", "n_test", "placement", "data_source",
                "resumed_from", "init_from")
        heading = "resumed" if e.get("resumed_from") is not None else "started"
        self.text("run/start", f"**{heading}** at step {step}\n\n" + _code({k: e.get(k) for k in keep if k in e}),
                  step, t)
        try:
            recipe = (self.run_dir / RECIPE_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        self.text("run/recipe", _code(recipe), step, t)

    def _on_metrics(self, e: dict[str, Any], step: int, t: float | None) -> None:
        e = {**e, "terms": canonical_terms(e.get("terms"))}  # old runs' term names, today's tags
        values = _scalars("train", e, skip=("type", "time", "step", "weights", "window_steps"))
        self.scalars(values, step, t)

    def _on_energy(self, e: dict[str, Any], step: int, t: float | None) -> None:
        self._energy("energy", e, step, t)
        if isinstance(e.get("eval_mode"), dict):
            self._energy("energy_eval", e["eval_mode"], step, t)

    def _energy(self, prefix: str, block: dict[str, Any], step: int, t: float | None) -> None:
        lo, hi = (_number(v) for v in ((block.get("range") or [None, None]) + [None, None])[:2])
        values: dict[str, float] = {}
        for pop, stats in (block.get("populations") or {}).items():
            if not isinstance(stats, dict):
                continue
            if lo is not None and hi is not None and hi > lo:  # the event's fixed histogram range
                self.histogram(f"{prefix}/{pop}", stats, lo, hi, step, t)
            values.update(_scalars(f"{prefix}/{pop}", {k: stats.get(k) for k in ("mean", "std")}))
            values.update(_scalars(f"{prefix}/{pop}", stats.get("quantiles") or {}))
        values.update(_scalars(f"{prefix}/gap", block.get("gaps") or {}))
        self.scalars(values, step, t)

    def _on_eval(self, e: dict[str, Any], step: int, t: float | None) -> None:
        if e.get("source") == "ebjdat eval":
            self._standard_eval(e, step, t)
            return
        prefix = f"eval/{e.get('split', 'valid')}"
        self.scalars(_scalars(prefix, e, skip=("type", "time", "step", "epoch", "n", "split", "protocol")), step, t)
        self._protocol(f"{prefix}/protocol", e.get("protocol"), e, step, t)

    def _standard_eval(self, e: dict[str, Any], step: int, t: float | None) -> None:
        """An `ebjdat eval` result: the event's numbers, and from its JSON the whole protocol,
        the energy values and the PNGs."""
        result = self._eval_json(e.get("path"))
        self.scalars(_scalars("ebjdat_eval", e, skip=("type", "time", "step", "epoch", "n", "protocol", "path")),
                     step, t)
        if result is None:
            self._protocol("ebjdat_eval/protocol", e.get("protocol"), e, step, t)
            return
        self._protocol("ebjdat_eval/protocol", {"protocol": result.get("protocol"),
                                                "checkpoint": result.get("checkpoint"),
                                                "options": result.get("options")}, e, step, t)
        for pop, values in ((result.get("energy") or {}).get("values") or {}).items():
            if isinstance(values, list):
                self.values_histogram(f"ebjdat_eval/energy/{pop}", values, step, t)
        files = result.get("files") or {}
        for name in ("samples", "energy_histogram"):
            self.image(f"ebjdat_eval/{name}", files.get(name), step, t)

    def _eval_json(self, relative: str | None) -> dict[str, Any] | None:
        if not relative:
            return None
        path = Path(relative)
        try:
            result = json.loads((path if path.is_absolute() else self.run_dir / path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) else None

    def _protocol(self, tag: str, protocol: Any, e: dict[str, Any], step: int, t: float | None) -> None:
        if protocol is None:
            return
        where = f"n = {e.get('n')}, split {e.get('split', 'test')}, checkpoint {e.get('checkpoint', 'current')}"
        text = f"{where}\n\n{_code(protocol)}"
        if self._protocols.get(tag) != text:  # a training eval repeats its protocol every epoch
            self._protocols[tag] = text
            self.text(tag, text, step, t)

    def _on_generation(self, e: dict[str, Any], step: int, t: float | None) -> None:
        metric = e.get("metric") or "fd_ref"
        values = {f"generation/{metric}": _number(e.get(metric)),
                  f"generation/{metric}_floor": _number(e.get("floor")),
                  f"generation/{metric}_init_baseline": _number(e.get("init_baseline"))}
        self.scalars({k: v for k, v in values.items() if v is not None}, step, t)

    def _on_sample(self, e: dict[str, Any], step: int, t: float | None) -> None:
        self.image(f"samples/{e.get('kind', 'generated')}", e.get("path"), step, t)

    def _on_alarm(self, e: dict[str, Any], step: int, t: float | None) -> None:
        fields = {k: v for k, v in e.items() if k not in ("type", "time", "step", "epoch")}
        self.text("alarms", f"**{e.get('detector', 'alarm')}** at step {step}\n\n{_code(fields)}", step, t)

    def _on_end(self, e: dict[str, Any], step: int, t: float | None) -> None:
        line = f"**{e.get('status')}** at step {step}: {e.get('reason') or e.get('error') or ''}"
        self.text("run/end", line.rstrip(": "), step, t)


def effective_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's history as it stands: when a resume restarts at step r, the events a killed
    job wrote after r are dropped (the resumed job does those steps again). `ebjdat eval`
    results are measurements of a checkpoint on disk and always stay."""
    kept: list[dict[str, Any]] = []
    for event in events:
        resumed = event.get("resumed_from") if event.get("type") == "start" else None
        if isinstance(resumed, int):
            kept = [e for e in kept if e.get("source") == "ebjdat eval" or not isinstance(e.get("step"), int)
                    or e["step"] <= resumed]
        kept.append(event)
    return kept


def export_run(run_dir: str | Path, log_dir: str | Path) -> Counter[str]:
    """Write a run's whole record as a TensorBoard event file in `log_dir`; returns the counts."""
    writer = summary_writer(log_dir)
    mirror = Mirror(writer, run_dir)
    try:
        for event in effective_events(read_events(run_dir)):
            mirror.write(event)
    finally:
        writer.close()
    return mirror.counts


_CLOSE = object()


class LiveMirror:
    """An EventWriter listener that mirrors a job's events into TensorBoard as they happen.

    Calling it costs a queue put; a daemon thread decodes PNGs and writes. A full queue (the
    writer stalled on a slow disk) drops events rather than block the job, and counts them; an
    error in the writer is logged once and mirroring goes on with the next event."""

    def __init__(self, run_dir: str | Path, log_dir: str | Path, purge_step: int | None = None,
                 max_pending: int = 10_000):
        self.log_dir = Path(log_dir)
        self.writer = summary_writer(self.log_dir, purge_step)
        self.mirror = Mirror(self.writer, run_dir)
        self.dropped = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._work, name="ebjdat-tensorboard", daemon=True)
        self._thread.start()

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        while (event := self._queue.get()) is not _CLOSE:
            try:
                self.mirror.write(event)
            except Exception as e:  # TensorBoard is a mirror: its trouble never stops training
                if self.error is None:
                    self.error = f"{type(e).__name__}: {e}"
                    log.warning("tensorboard: could not write a %s event (%s); the run directory "
                                "has it, `ebjdat export` can rebuild %s", event.get("type"), self.error,
                                self.log_dir)

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued (for at most `timeout` seconds), then close the event file."""
        try:
            self._queue.put(_CLOSE, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self.dropped:
            log.warning("tensorboard: %d events were dropped (the writer fell behind); `ebjdat export` "
                        "rebuilds %s from the run directory", self.dropped, self.log_dir)
        try:
            self.writer.close()
        except Exception as e:  # noqa: BLE001 - a mirror's close never fails the run
            log.warning("tensorboard: closing %s failed: %s", self.log_dir, e)


def mirror_into_run(run_dir: str | Path, purge_step: int | None = None) -> "LiveMirror | None":
    """A LiveMirror into RUN/tensorboard (runtime.tensorboard), or None when TensorBoard is not
    installed here or the folder cannot be written: a copy of the record never stops its writer,
    and `ebjdat export` can write it later."""
    if missing_reason() is not None:
        return None
    log_dir = Path(run_dir) / TENSORBOARD_DIR
    try:
        return LiveMirror(run_dir, log_dir, purge_step=purge_step)
    except OSError as e:
        log.warning("tensorboard: cannot write %s (%s); the run goes on without the live mirror "
                    "(ebjdat export RUN --tensorboard DIR writes it later)", log_dir, e.strerror or e)
        return None


__all__ = ["LiveMirror", "Mirror", "TensorBoardMissing", "effective_events", "export_run", "mirror_into_run",
           "missing_reason", "summary_writer"]
