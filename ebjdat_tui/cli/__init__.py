"""The `ebjdat` command line (Typer): the app, built here from one module per command group.

* `recipes`  — validate, show
* `train`    — run (and --resume)
* `evaluate` — eval, sample
* `bench`    — bench
* `tui`      — tui
* `study`    — study, compare
* `runs`     — ls, export
* `data`     — data prepare

Every command goes through one handler of user errors (`reporting`): a `UserError` escaping it
(the engine's errors are UserErrors; the commands raise their own for a bad argument) is printed
on stderr, as 'ebjdat <command>: <message>' or as the lines it stands for, and the command exits
with its `exit_code` (2 for a bad recipe, argument, file or directory), never with a traceback.

Heavy imports (torch, textual, most of the engine) happen inside the commands, so `ebjdat --help`
answers at once; `tests/test_cli_lazy.py` holds the line. `EBJDAT_COMMAND` is how `ebjdat study`
starts each of its runs (the engine's study runner gets it passed in).
"""

from __future__ import annotations

import functools
from typing import Callable

import typer

from ebjdat_engine.errors import UserError

from . import bench, data, evaluate, recipes, runs, study, train, tui
from ._common import EBJDAT_COMMAND

__all__ = ["EBJDAT_COMMAND", "app", "main"]


def reporting(speaker: str, command: Callable) -> Callable:
    """`command` under the one handler of user errors: a UserError escaping it prints its lines
    (its message after `speaker`, e.g. 'ebjdat run: ...') on stderr and exits with its exit_code."""

    @functools.wraps(command)
    def reported(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as e:
            for line in e.lines(speaker):
                typer.echo(line, err=True)
            raise typer.Exit(e.exit_code) from None

    return reported


app = typer.Typer(
    name="ebjdat",
    help="Train and evaluate classifiers that are accurate, robust and generative (EB-JDAT and family).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# in the order of the help's command list
for _name, _command in [("validate", recipes.validate), ("show", recipes.show), ("run", train.run),
                        ("eval", evaluate.eval_), ("sample", evaluate.sample), ("bench", bench.bench),
                        ("tui", tui.tui), ("study", study.study), ("compare", study.compare),
                        ("export", runs.export), ("ls", runs.ls_)]:
    app.command(_name)(reporting(f"ebjdat {_name}", _command))

data_app = typer.Typer(help="Datasets: decode image folders into ebjdat's shard cache.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
data_app.command("prepare")(reporting("ebjdat data prepare", data.data_prepare))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ebjdat")

