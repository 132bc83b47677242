"""`ebjdat bench`: one training iteration measured (time per phase, images/s, FLOPs, MFU)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import SET_HELP, UserError, resolved_recipe


def bench(recipe: Path = typer.Argument(..., help="Recipe file."),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          steps: Optional[int] = typer.Option(None, "--steps",
                                              help="Timed iterations (default: 5 on a GPU, 2 on a CPU)."),
          warmup: Optional[int] = typer.Option(None, "--warmup",
                                               help="Untimed iterations first (default: 3 on a GPU, 1 on a CPU)."),
          json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Measure one training iteration: time per phase, images/s, FLOPs per image in F, MFU."""
    import json as _json

    resolved = resolved_recipe(recipe, set_)
    if steps is not None and steps < 1:
        raise UserError("--steps must be >= 1")
    if warmup is not None and warmup < 0:
        raise UserError("--warmup must be >= 0")
    import torch

    from ebjdat_engine.train.bench import bench as run_bench
    from ebjdat_engine.train.runtime import resolve_device

    device = resolve_device(resolved.runtime)
    gpu = device.type == "cuda"
    warm = warmup if warmup is not None else (3 if gpu else 1)
    steps = steps if steps is not None else (5 if gpu else 2)
    report = run_bench(resolved, steps=steps, warmup=warm,
                       log=None if json_out else (lambda t: typer.echo(f"bench: {t}", err=True)))
    del torch
    if json_out:
        typer.echo(_json.dumps(report, indent=2))
        return
    ph = report["phases_s"]
    typer.echo(f"{report['recipe_method']}" + (f" on {report['base']}" if report["base"] else "") +
               f", {report['model']}, batch {report['batch_size']} (p(x) {report['px_batch_size']}), "
               f"{report['device_name']}, amp {report['amp']}, torch {report['torch']}")
    typer.echo(f"  data                {report['data']}")
    typer.echo(f"  per iteration       {report['seconds_per_iteration'] * 1e3:.1f} ms   "
               f"({report['images_per_s']:.1f} images/s)")
    typer.echo(f"  phases              generative {ph['generative_sampler'] * 1e3:.1f} ms, "
               f"adversarial {ph['adversarial_sampler'] * 1e3:.1f} ms, update {ph['update'] * 1e3:.1f} ms")
    typer.echo(f"  FLOPs per image     {report['flops_per_image_F']:.1f} F   (F = {report['F_flops'] / 1e6:.2f} MFLOP)")
    mfu = report["mfu"]
    typer.echo(f"  achieved            {report['achieved_flops_per_s'] / 1e12:.3f} TFLOP/s" +
               (f", MFU {mfu * 100:.1f} % of {report['peak_flops_per_s'] / 1e12:.0f} TFLOP/s bf16 peak" if mfu else ""))
