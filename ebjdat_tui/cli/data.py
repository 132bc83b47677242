"""`ebjdat data prepare`: an image folder decoded once into the shard cache that training reads."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from ._common import SET_HELP, UserError, resolved_recipe, say_err


def data_prepare(recipe: Path = typer.Argument(..., help="Recipe whose \\[data] names an image folder."),
                 set_: List[str] = typer.Option([], "--set", help=SET_HELP),
                 workers: int = typer.Option(0, "--workers", help="Decoding processes (0: min(8, CPUs))."),
                 force: bool = typer.Option(False, "--force",
                                            help="Rebuild the cache even when it is up to date.")) -> None:
    """Decode and resize an image folder once into a uint8 shard cache (data.cache) that training reads.

    Also prepares sampler.seed_folder (DAT's out-of-distribution seeds) when the recipe names one.
    Run it again after the folder changes: training refuses a cache whose folder has changed."""
    resolved = resolved_recipe(recipe, set_)
    if workers < 0:
        raise UserError("--workers must be >= 0")
    data = resolved.data
    seed_folder = resolved.sampler.seed_folder
    if data.name != "imagefolder" and not seed_folder:
        raise UserError(f"{recipe} reads data.name = {data.name!r}, which needs no preparing; "
                        f"prepare is for data.name = \"imagefolder\" (and sampler.seed_folder)")
    from ebjdat_engine.data import imagefolder as folder

    say = lambda t: say_err(f"prepare: {t}")  # noqa: E731
    if data.name == "imagefolder":
        classes = folder.listed_classes(data.classes, data.classes_file)
        if force:
            _forget(folder.cache_path(data.cache, data.root, classes, data.resolution))
        path, index, _built = folder.prepare(data.root, classes, data.resolution, data.cache,
                                             workers=workers, log=say)
        if index.get("missing_classes"):
            say_err(f"prepare: warning: {len(index['missing_classes'])} of the listed classes are not in "
                    f"{data.root}/train and are left out: {', '.join(index['missing_classes'])}")
        shape = (3, data.resolution, data.resolution)
        typer.echo(f"{path}: {len(index['classes'])} classes, " +
                   ", ".join(f"{s} {v['n']}" for s, v in index["splits"].items()) + " images")
    else:
        from ebjdat_engine.train.bench import data_shape

        shape = data_shape(data)[0]
    if seed_folder:
        c, h, _ = shape
        if force:
            _forget(folder.seed_cache_path(data.cache, seed_folder, h, c))
        path, index, _built = folder.prepare_seeds(seed_folder, h, c, data.cache, workers=workers, log=say)
        typer.echo(f"{path}: {index['splits']['seeds']['n']} seed images at {h}x{h}, {c} channel(s)")


def _forget(cache: Path) -> None:
    """--force: move an existing cache's index aside so that prepare rebuilds it."""
    index = cache / "index.json"
    if index.exists():
        index.replace(cache / "index.json.old")
