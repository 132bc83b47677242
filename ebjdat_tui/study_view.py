"""Reading a study directory (studies/<name>/, written by `ebjdat study`) for the TUI.

Files only: the results file (`StudyDir.results`) gives the arms, their runs and their evaluated
numbers; a run still training is read from its own run directory (`runs.summarize`, cached on the
size and mtime of its event log). Nothing here imports textual, so it is tested without an App; the study screen turns
a `StudyView` into its header, table and detail lines.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebjdat_engine.rundir import RESULTS_FILE, RunDir, StudyDir, is_run_dir
from ebjdat_engine.study.table import finite_number

from .fmt import fmt_age
from .runs import RunSummary, summarize

#: the colour of a run's (or a study's) state, like `ebjdat ls` colours a run's status
STATE_STYLE = {
    "pending": "dim", "training": "green", "running": "green", "evaluating": "green",
    "done": "cyan", "finished": "cyan", "stopped": "yellow",
    "failed": "red", "collapsed": "red", "crashed": "red", "died": "red", "unreadable": "red",
    "waiting": "yellow", "requeued": "yellow",
}

#: a training run's own status (from its run directory) that says more than "training"
RUN_ENDED = frozenset({"stopped", "collapsed", "crashed", "died"})


def read_results(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the results file as a dict with an "arms" list, None) or (None, why it cannot be read)."""
    file = StudyDir(path).results
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"no {RESULTS_FILE} in {path} yet"
    except OSError as e:
        return None, f"cannot read {file}: {e.strerror or e}"
    try:
        data = json.loads(text)
    except ValueError as e:
        return None, f"{file} is not valid JSON ({e})"
    if not isinstance(data, dict) or not isinstance(data.get("arms"), list):
        return None, f"{file} holds no \"arms\" list: not the results of a study"
    return data, None


def is_study_dir(path: str | Path) -> bool:
    """A study directory: a results file with an "arms" list; or, not being a run directory, one
    with a results file (unreadable for now) or a study lock (a study that has just started)."""
    p = Path(path)
    if not p.is_dir():
        return False
    data, _ = read_results(p)
    if data is not None:
        return True
    return not is_run_dir(p) and (StudyDir(p).results.exists() or StudyDir(p).lock.exists())


# --- numbers ------------------------------------------------------------------------------------

num = finite_number  # one definition of "a finite number from JSON", shared with the study's tables


def fmt_acc(value: Any) -> str:
    """An accuracy in %, as the study's results.md writes it: 0.973 -> '97.3'."""
    v = num(value)
    return "—" if v is None else f"{100 * v:.1f}"


def fmt_fd(value: Any) -> str:
    v = num(value)
    if v is None:
        return "—"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def fmt_fd_init(fd: Any, init: Any) -> str:
    """fd_ref beside its init baseline: '1.73/4.13' ('—' when there is no fd_ref)."""
    if num(fd) is None:
        return "—"
    return f"{fmt_fd(fd)}/{fmt_fd(init)}" if num(init) is not None else fmt_fd(fd)


def fmt_pm(stat: Any, fmt=fmt_acc) -> str:
    """'97.3±0.4' from a summary {"mean", "std", "n"}."""
    if not isinstance(stat, dict) or num(stat.get("mean")) is None:
        return "—"
    std = num(stat.get("std"))
    if std is None:
        return fmt(stat["mean"])
    return f"{fmt(stat['mean'])}±{fmt(std)}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- the view -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyRow:
    """One line of the study table: a run (an arm at one seed), or an arm's mean over its seeds."""

    key: str
    label: str
    seed: str
    state: str            # pending | training | evaluating | done | failed | stopped (+ died... of the run)
    state_text: str       # "training 120/240"
    clean: str
    aa: str
    fd_ref: str           # "fd_ref/init"
    pgd: str
    run_dir: Path | None = None
    beats_init: bool | None = None
    provisional: bool = False   # numbers from the run's own in-training evals, not the study's
    summary: bool = False
    detail: tuple[str, ...] = ()

    @property
    def openable(self) -> bool:
        return self.run_dir is not None and not self.summary


@dataclass(frozen=True)
class StudyView:
    """What the study screen draws, built from files only."""

    path: Path
    name: str
    state: str                      # running | finished | stopped | failed; "unreadable" / "waiting"
    done: int = 0
    failed: int = 0
    total: int = 0
    rows: tuple[StudyRow, ...] = ()
    protocol: str = ""
    updated_age_s: float | None = None
    error: str | None = None        # why the results file cannot be shown

    @property
    def counts(self) -> str:
        text = f"{self.done}/{self.total} runs done"
        return text + (f", {self.failed} failed" if self.failed else "")


class SummaryCache:
    """`runs.summarize` of a run directory, re-read when its event log changes (or every
    `max_age_s`, for the liveness of its job)."""

    def __init__(self, max_age_s: float = 5.0):
        self.max_age_s = max_age_s
        self._cache: dict[Path, tuple[tuple[int, int] | None, float, RunSummary]] = {}

    def get(self, run_dir: Path) -> RunSummary | None:
        if not run_dir.is_dir():
            return None
        try:
            st = RunDir(run_dir).events.stat()
            key: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        now = time.monotonic()
        hit = self._cache.get(run_dir)
        if hit is not None and hit[0] == key and now - hit[1] < self.max_age_s:
            return hit[2]
        try:
            summary = summarize(run_dir)
        except Exception:  # noqa: BLE001 - a half-written run directory must not break the list
            return hit[2] if hit else None
        self._cache[run_dir] = (key, now, summary)
        return summary


def protocol_line(results: dict[str, Any]) -> str:
    """'eval: last ckpt · linf 8/255 · AA standard · PGD-20 · n=300 · gen n=1000 · seeds 0,1,2'."""
    p = _dict(results.get("protocol"))
    parts = []
    if p.get("ckpt"):
        parts.append(f"{p['ckpt']} ckpt")
    if p.get("eps") is not None:
        parts.append(f"{p.get('norm') or ''} {p['eps']}".strip())
    if p.get("attacks"):
        parts.append(f"AA {p['attacks']}")
    if p.get("pgd_steps"):
        parts.append(f"PGD-{p['pgd_steps']}")
    if p.get("n"):
        parts.append(f"n={p['n']}")
    if p.get("n_samples"):
        parts.append(f"gen n={p['n_samples']}")
    seeds = [str(s) for s in _list(results.get("seeds"))]
    if seeds:
        parts.append(f"seed{'s' if len(seeds) > 1 else ''} {','.join(seeds)}")
    return "eval: " + " · ".join(parts) if parts else ""


def _age(updated: Any, now: float) -> float | None:
    if not isinstance(updated, str):
        return None
    try:
        t = dt.datetime.fromisoformat(updated.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.astimezone()
    return max(now - t.timestamp(), 0.0)


def _steps(step: Any, total: Any) -> str:
    step, total = _int(step), _int(total)
    if step is None:
        return ""
    return f"{step}/{total}" if total else str(step)


def run_row(study_dir: Path, label: str, run: dict[str, Any], summaries: SummaryCache | None) -> StudyRow:
    seed = run.get("seed")
    state = str(run.get("state") or "pending")
    rel = run.get("run_dir")
    run_dir = study_dir / rel if isinstance(rel, str) and rel else None
    if run_dir is not None and not run_dir.is_dir():
        run_dir = None  # not created yet (pending) or gone
    m = _dict(run.get("metrics"))
    step, total = run.get("step"), run.get("total_steps")
    summary = summaries.get(run_dir) if (summaries is not None and run_dir is not None
                                         and state == "training") else None
    shown_state, provisional = state, False
    clean, aa = m.get("clean"), m.get("aa")
    if summary is not None:
        step, total = summary.step, summary.total or total
        if summary.status in RUN_ENDED:
            shown_state = summary.status  # the study still says training, the job is over
        if clean is None and aa is None and (summary.clean_acc is not None or summary.aa_acc is not None):
            clean, aa, provisional = summary.clean_acc, summary.aa_acc, True
    steps = _steps(step, total)
    status = run.get("status")
    if shown_state in ("training", *RUN_ENDED) and steps:
        state_text = f"{shown_state} {steps}"
    elif state == "stopped" and steps:
        state_text = f"stopped {steps}"
    elif state == "done" and isinstance(status, str) and status not in ("finished", ""):
        state_text = f"done ({status})"  # e.g. evaluated, but training collapsed
        shown_state = status if status in STATE_STYLE else state
    else:
        state_text = state
    beats = m.get("beats_init")

    detail = []
    where = rel if isinstance(rel, str) and rel else "no run directory"
    line = f"{where}" + ("" if run_dir is not None or not rel else " (not created yet)")
    if isinstance(status, str) and status:
        line += f" · training {status}"
    if steps:
        line += f" · step {steps}"
    if num(m.get("train_s")) is not None:
        line += f" · {num(m.get('train_s')):.0f} s"
    if num(m.get("images_per_s")) is not None:
        line += f" · {num(m.get('images_per_s')):.0f} img/s"
    if run.get("slurm_job"):  # `--executor slurm`: the job this run is (or was) in
        line += f" · SLURM job {run['slurm_job']}" + (f" on {run['node']}" if run.get("node") else "")
    if run.get("device"):
        line += f" · {run['device']}"
    detail.append(line)
    error = run.get("error")
    if error:
        detail.append(f"error: {str(error).splitlines()[0] if str(error).strip() else error}")
    elif provisional:
        detail.append("clean/AA (dim): the run's own in-training eval, until the study evaluates it")
    else:
        extra = []
        if num(m.get("fd_ref")) is not None:
            extra.append(f"fd_ref {fmt_fd(m.get('fd_ref'))} init {fmt_fd(m.get('fd_ref_init'))} "
                         f"floor {fmt_fd(m.get('fd_ref_floor'))}")
        if num(m.get("gap_clean_adv")) is not None or num(m.get("gap_clean_gen")) is not None:
            extra.append(f"E gaps c−a {fmt_fd(m.get('gap_clean_adv'))} c−g {fmt_fd(m.get('gap_clean_gen'))}")
        if run.get("eval"):
            extra.append(f"eval {Path(str(run['eval'])).name}")
        if extra:
            detail.append(" · ".join(extra))
    return StudyRow(key=f"{label}\x00{seed}", label=label, seed=str(seed) if seed is not None else "?",
                    state=shown_state, state_text=state_text, clean=fmt_acc(clean), aa=fmt_acc(aa),
                    fd_ref=fmt_fd_init(m.get("fd_ref"), m.get("fd_ref_init")), pgd=fmt_acc(m.get("pgd")),
                    run_dir=run_dir, beats_init=beats if isinstance(beats, bool) else None,
                    provisional=provisional, detail=tuple(detail))


def arm_rows(study_dir: Path, arm: dict[str, Any], summaries: SummaryCache | None) -> list[StudyRow]:
    label = str(arm.get("label") or "?")
    runs = [r for r in _list(arm.get("runs")) if isinstance(r, dict)]
    rows = [run_row(study_dir, label, r, summaries) for r in runs]
    if len(runs) > 1:
        s = _dict(arm.get("summary"))
        done = sum(1 for r in runs if r.get("state") == "done")
        fd, init = _dict(s.get("fd_ref")).get("mean"), _dict(s.get("fd_ref_init")).get("mean")
        stats = [f"{name} {fmt_pm(s.get(key))}" for key, name in (("clean", "clean"), ("aa", "AA"),
                                                                   ("pgd", "PGD"))]
        n = max((_int(_dict(v).get("n")) or 0 for v in s.values()), default=0)
        detail = (f"{label}: mean ± std over {n} of {len(runs)} seeds",
                  " · ".join(stats) + f" · fd_ref {fmt_pm(s.get('fd_ref'), fmt_fd)}")
        rows.append(StudyRow(key=f"{label}\x00mean", label=label, seed="mean", state="done" if done == len(runs)
                             else "", state_text=f"{done}/{len(runs)} done",
                             clean=fmt_acc(_dict(s.get("clean")).get("mean")),
                             aa=fmt_acc(_dict(s.get("aa")).get("mean")),
                             fd_ref=fmt_fd_init(fd, init), pgd=fmt_acc(_dict(s.get("pgd")).get("mean")),
                             summary=True, detail=detail))
    return rows


def load_study(path: str | Path, summaries: SummaryCache | None = None, now: float | None = None) -> StudyView:
    """The study in `path` as the screen shows it; never raises on a bad results file."""
    path = Path(path)
    now = time.time() if now is None else now
    summaries = SummaryCache() if summaries is None else summaries
    data, error = read_results(path)
    if data is None:
        state = "waiting" if not StudyDir(path).results.exists() else "unreadable"
        return StudyView(path=path, name=path.name, state=state, error=error)
    try:
        rows: list[StudyRow] = []
        runs = 0
        done = failed = 0
        for arm in data["arms"]:
            if not isinstance(arm, dict):
                continue
            for r in _list(arm.get("runs")):
                if isinstance(r, dict):
                    runs += 1
                    done += r.get("state") == "done"
                    failed += r.get("state") == "failed"
            rows.extend(arm_rows(path, arm, summaries))
        return StudyView(path=path, name=str(data.get("study") or path.name), state=str(data.get("state") or "?"),
                         done=done, failed=failed, total=runs, rows=tuple(rows), protocol=protocol_line(data),
                         updated_age_s=_age(data.get("updated"), now))
    except Exception as e:  # noqa: BLE001 - a results file of an unexpected shape: say so, do not crash
        return StudyView(path=path, name=path.name, state="unreadable",
                         error=f"{StudyDir(path).results} has an unexpected shape ({type(e).__name__}: {e})")


def updated_text(view: StudyView) -> str:
    return "" if view.updated_age_s is None else f"updated {fmt_age(view.updated_age_s)} ago"


__all__ = ["RESULTS_FILE", "STATE_STYLE", "StudyRow", "StudyView", "SummaryCache", "fmt_acc", "fmt_fd_init",
           "is_study_dir", "load_study", "read_results", "updated_text"]
