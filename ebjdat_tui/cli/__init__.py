"""The `ebjdat` command line (Typer): the app, built here from one module per command group.

* `recipes`  — validate, show
* `train`    — run (and --resume)
* `evaluate` — eval, sample
* `bench`    — bench
* `tui`      — tui
* `study`    — study, compare
* `runs`     — ls, export
* `data`     — data prepare

Heavy imports (torch, textual, most of the engine) happen inside the commands, so `ebjdat --help`
answers at once; `tests/test_cli_lazy.py` holds the line. `EBJDAT_COMMAND` is how `ebjdat study`
starts each of its runs (the engine's study runner gets it passed in).
"""

from __future__ import annotations

import typer

from . import bench, data, evaluate, recipes, runs, study, train, tui
from ._common import EBJDAT_COMMAND

__all__ = ["EBJDAT_COMMAND", "app", "main"]

app = typer.Typer(
    name="ebjdat",
    help="Train and evaluate classifiers that are accurate, robust and generative (EB-JDAT and family).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the order of the help's command list
app.command()(recipes.validate)
app.command()(recipes.show)
app.command()(train.run)
app.command("eval")(evaluate.eval_)
app.command()(evaluate.sample)
app.command()(bench.bench)
app.command()(tui.tui)
app.command()(study.study)
app.command()(study.compare)
app.command()(runs.export)
app.command("ls")(runs.ls_)

data_app = typer.Typer(help="Datasets: decode image folders into ebjdat's shard cache.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
data_app.command("prepare")(data.data_prepare)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ebjdat")

