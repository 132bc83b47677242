"""`ebjdat study` and `ebjdat compare`: arms x seeds run and evaluated by one protocol, and one
table of the latest evaluation of each run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ._common import EBJDAT_COMMAND, UserError, names_in_doc, recipe_errors, say_err


@names_in_doc
def study(study_file: Path = typer.Argument(..., help="Study file (TOML: \\[study], \\[protocol], \\[\\[arm]])."),
          jobs: Optional[int] = typer.Option(None, "--jobs",
                                             help="Runs trained and evaluated at once (default: the study's jobs)."),
          plain: bool = typer.Option(False, "--plain", help="Plain progress lines even on a terminal."),
          executor: Optional[str] = typer.Option(None, "--executor",
                                                 help="'local' (child processes) or 'slurm' (one job array "
                                                      "through submitit); default: the study's [executor] kind."),
          detach: bool = typer.Option(False, "--detach",
                                      help="With --executor slurm: submit and return; the same command "
                                           "later collects what finished and submits only what is missing."),
          check: bool = typer.Option(False, "--check",
                                     help="Validate the study (every arm x seed) and print its plan; "
                                          "run nothing.")) -> None:
    """Run a study: arms x seeds as runs, each evaluated by one protocol, then tabled and plotted.

    Each run is an ordinary run directory under <study file's folder>/<name>/runs/; the study
    writes {RESULTS_FILE}, {RESULTS_MD}, trilemma.png and energies.png beside them.

    Running it again skips finished runs, resumes stopped ones and re-evaluates only what changed.
    Ctrl-C stops cleanly (the running jobs checkpoint); run it again to continue."""
    from ebjdat_engine.study import load_study, run_study
    from ebjdat_engine.study.runner import run_dir_for

    from ..study_progress import make_study_progress

    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: give at least 1")
    if executor is not None and executor not in ("local", "slurm"):
        raise UserError(f"--executor {executor}: give 'local' or 'slurm'")
    with recipe_errors(str(study_file), "study"):
        loaded = load_study(study_file, jobs)
    if check:
        typer.echo(f"{study_file}: ok; {len(loaded.arms)} arms x {len(loaded.seeds)} seeds -> {loaded.out_dir}")
        for arm in loaded.arms:
            for seed in loaded.seeds:
                path, action = run_dir_for(loaded, arm, seed)
                typer.echo(f"  {path.relative_to(loaded.out_dir)}  {action}")
        return
    listener = make_study_progress(True if plain else None)
    try:
        kind = executor or loaded.executor.kind
        if detach and kind != "slurm":
            raise UserError("--detach needs the slurm executor (--executor slurm, or [executor] kind = \"slurm\")")
        code = run_study(loaded, EBJDAT_COMMAND, listener, executor=kind, detach=detach)
    except UserError:  # the study cannot run (its directory is locked by another study, ...)
        listener.close()  # the display ends before the message
        raise
    listener.close()
    raise typer.Exit(code)


def compare(runs: List[Path] = typer.Argument(...,
                                              help="Run directories (their latest full evaluation) or evaluation "
                                                   "JSON files."),
            md: bool = typer.Option(False, "--md", help="A Markdown table."),
            csv_out: bool = typer.Option(False, "--csv", help="CSV (raw fractions)."),
            json_out: bool = typer.Option(False, "--json", help="JSON (every number and protocol).")) -> None:
    """One table of the latest evaluation of each run, protocol mismatches flagged.

    Clean, PGD, AutoAttack, fd_ref beside its init baseline and floor, energy gaps, training
    time and images/s. Runs evaluated under different protocols (eps, attacks, points,
    checkpoint, ...) are flagged, never mixed silently."""
    import json as _json

    from ebjdat_engine.study.compare import HEADERS, protocol_note, table_rows, to_csv, to_markdown
    from ebjdat_engine.study.compare import compare as build

    if sum((md, csv_out, json_out)) > 1:
        raise UserError("choose one of --md, --csv, --json")
    comparison = build(runs)
    if json_out:
        typer.echo(_json.dumps(comparison, indent=2))
    elif csv_out:
        typer.echo(to_csv(comparison), nl=False)
    elif md or not sys.stdout.isatty():
        typer.echo(to_markdown(comparison), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for i, name in enumerate(HEADERS):
            table.add_column(name, justify="right" if 3 <= i < len(HEADERS) - 1 else "left",
                             no_wrap=i < len(HEADERS) - 1)
        for row in table_rows(comparison):
            flag = row[-1]
            table.add_row(*row[:-1], f"[red]{flag}[/]" if flag != "ok" else "[green]ok[/]")
        console = Console()
        console.print(table)
        console.print(protocol_note(comparison), style="red" if not comparison["protocols_agree"] else None,
                      highlight=False)
    if not comparison["protocols_agree"]:
        say_err("ebjdat compare: protocol mismatch: " + "; ".join(
            f"{e['run']}: " + ", ".join(f"{k} {v['this']} vs {v['reference']}" for k, v in e["mismatch"].items())
            for e in comparison["entries"] if e["mismatch"]))
