"""`ebjdat ls` and `ebjdat export`: the run directories listed, or exported to TensorBoard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from ebjdat_engine.rundir import NO_RUN_MARKERS, RunDir

from ._common import UserError


def export(runs: List[Path] = typer.Argument(...,
                                             help="Run directories (several: one TensorBoard run each, "
                                                  "DIR/<run name>)."),
           tensorboard: Path = typer.Option(..., "--tensorboard",
                                            help="Write TensorBoard event files here (a new or empty directory); then: "
                                                 "tensorboard --logdir DIR.")) -> None:
    """Export runs to TensorBoard: metrics as scalars, energy histograms as histograms, sample grids as
    images, evaluations as scalars with their protocol as text.

    Reads the run directory only (a live run can be exported while it trains); needs the tb
    extra (pip install tensorboard). runtime.tensorboard = true mirrors the same live into
    RUN/tensorboard."""
    from ebjdat_engine.export.tensorboard import export_run, missing_reason

    if (reason := missing_reason()) is not None:
        raise UserError(reason)
    for run in runs:
        if not RunDir(run).is_run():
            raise UserError(f"{run} is not a run directory ({NO_RUN_MARKERS}); "
                            f"give a directory under runs/ (ebjdat ls lists them)")
    names = [run.resolve().name for run in runs]
    if len(set(names)) != len(names):
        raise UserError(f"several runs are named {', '.join(sorted({n for n in names if names.count(n) > 1}))}; "
                        f"export them into separate directories")
    targets = [tensorboard] if len(runs) == 1 else [tensorboard / name for name in names]
    for target in targets:
        if target.exists() and not target.is_dir():
            raise UserError(f"{target} exists and is not a directory; name a new directory")
        if target.is_dir() and any(target.glob("events.out.tfevents.*")):
            raise UserError(f"{target} already holds TensorBoard event files (an earlier export?); "
                            f"TensorBoard would show both. Export into a new or empty directory")
    for run, target in zip(runs, targets):
        try:
            target.mkdir(parents=True, exist_ok=True)
            counts = export_run(run, target)
        except OSError as e:  # (a missing TensorBoard is a UserError of its own)
            raise UserError(f"cannot write {target} ({e.strerror or e}); choose a writable directory") from None
        typer.echo(f"{run} -> {target}: "
                   + ", ".join(f"{counts[k]} {k}" for k in ("scalars", "histograms", "images", "texts")))
    typer.echo(f"view: tensorboard --logdir {tensorboard}")


def ls_(runs_dir: Path = typer.Argument(Path("runs"), help="Directory of runs (or one run directory).")) -> None:
    """List runs: method, status, step, last loss, last clean / AutoAttack accuracy, age of the last event."""
    from ..fmt import fmt, fmt_age
    from ..runs import find_runs, summarize

    if not runs_dir.is_dir():
        raise UserError(f"no runs directory at {runs_dir}")
    summaries = sorted((summarize(p) for p in find_runs(runs_dir)),
                       key=lambda r: (r.started if r.started is not None else float("inf"), r.name))
    if not summaries:
        typer.echo(f"no runs in {runs_dir}")
        return
    header = ("run", "method", "status", "step", "loss", "clean", "AA", "age")
    rows = [(r.name, r.method, r.status, f"{r.step}/{r.total}" if r.total else str(r.step), fmt(r.loss),
             fmt(r.clean_acc, 3), fmt(r.aa_acc, 3), fmt_age(r.age_s)) for r in summaries]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        colors = {"running": "green", "finished": "cyan", "stopped": "yellow", "collapsed": "red",
                  "crashed": "red", "died": "red"}
        table = Table(box=None, header_style="bold", pad_edge=False)
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if i >= 3 else "left", no_wrap=i == 0)
        for row in rows:
            table.add_row(*row[:2], f"[{colors.get(row[2], 'default')}]{row[2]}[/]", *row[3:])
        Console().print(table)
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        for row in (header, *rows):
            typer.echo("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))).rstrip())
