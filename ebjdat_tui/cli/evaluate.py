"""`ebjdat eval` and `ebjdat sample`: a trained run measured by the standard protocol, or sampled
into a PNG grid."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import UserError, say_err, value_errors_said

#: most samples `ebjdat sample` puts in one PNG grid
MAX_SAMPLES = 10_000


def _beside_text(metric: dict, key: str, spec: str, beats: str = "beats_init") -> str:
    """'(floor 0.50 held-out test n=300, init 1.79 class_gaussian n=1000; beats init)' for a
    generation metric of `ebjdat eval`, or '' when it has no floor and baseline."""
    floor, init = metric.get("floor") or {}, metric.get("init_baseline") or {}
    parts = []
    if floor.get(key) is not None:
        parts.append(f"floor {floor[key]:{spec}} held-out test n={floor.get('n', '?')}")
    if init.get(key) is not None:
        parts.append(f"init {init[key]:{spec}} {init.get('init', '?')} n={init.get('n', '?')}")
    if not parts:
        return ""
    verdict = {True: "; beats init", False: "; NOT better than init"}.get(metric.get(beats), "")
    return f"({', '.join(parts)}{verdict})"


def eval_(run_dir: Path = typer.Argument(..., help="Run directory (or a checkpoint file)."),
          ckpt: str = typer.Option("best", "--ckpt",
                                   help="'best' (falls back to 'last'), 'last' or a checkpoint path."),
          n: int = typer.Option(1000, "--n", help="Test points (0: the whole test set)."),
          attacks: str = typer.Option("standard", "--attacks",
                                      help="'standard' AutoAttack, or a comma list: "
                                           "apgd-ce,apgd-t,fab-t,square,apgd-dlr,fab."),
          eps: str = typer.Option("8/255", "--eps", help="Budget in pixel units of [0, 1] images."),
          norm: str = typer.Option("linf", "--norm", help="'linf' or 'l2'."),
          fid: Optional[bool] = typer.Option(None, "--fid/--no-fid",
                                             help="FID/KID with torch-fidelity, for the samples, the floor and the "
                                                  "init baseline (default: on a GPU only; Inception costs "
                                                  "~0.2 s/image on a CPU)."),
          inception_weights: Optional[str] = typer.Option(None, "--inception-weights",
                                                          help="torch-fidelity Inception weights file (offline)."),
          n_samples: int = typer.Option(0, "--n-samples",
                                        help="Generated samples (and init-baseline draws) for fd_ref / FID (0: 1000); "
                                             "the energy landscape uses the first --n of them."),
          samples: str = typer.Option("auto", "--samples",
                                      help="Generated samples from 'buffer', 'fresh' chains, or 'auto' "
                                           "(buffer when the run has one)."),
          device: Optional[str] = typer.Option(None, "--device",
                                               help="'cpu', 'cuda', ... (default: cuda when present)."),
          pgd_steps: int = typer.Option(20, "--pgd-steps", help="PGD steps (step eps/4, random start)."),
          robust_only: bool = typer.Option(False, "--robust-only",
                                           help="Clean, PGD and AutoAttack only: no energy landscape, "
                                                "no generation metrics."),
          weights: str = typer.Option("auto", "--weights",
                                      help="'auto' (the EMA copy when the run was trained with train.ema), "
                                           "'ema' or 'raw'."),
          json_out: bool = typer.Option(False, "--json", help="Print the full result as JSON on stdout."),
          out: Optional[Path] = typer.Option(None, "--out",
                                             help="Write the result files here instead of RUN/eval "
                                                  "(e.g. a read-only run)."),
          seed: int = typer.Option(0, "--seed",
                                   help="Seed of the attacks' random starts, of the samples and of the init "
                                        "baseline's draws."),
          chain_lengths: Optional[str] = typer.Option(None, "--chain-lengths",
                                                      help="Comma list of chain lengths, e.g. 0,5,10,20,50,100: fd_ref "
                                                           "of --n-samples fresh chains of each length from the init "
                                                           "(0: the init draws), and whether the model generates or "
                                                           "only refines its init (digits, Fashion-MNIST).")) -> None:
    """Evaluate a run by the standard protocol: clean, PGD-20, AutoAttack, energy landscape, fd_ref/FID.

    Each generation metric stands beside its floor (held-out test images) and its init baseline (fresh draws from the sampler's init distribution): same metric, same reference set."""  # noqa: E501 (typer prints this docstring as --help and keeps its line breaks)

    from ebjdat_engine.eval.evaluate import evaluate
    from ebjdat_engine.recipe.fields import CheckError, parse_budget
    from ebjdat_engine.train.runtime import pick_device

    if norm not in ("linf", "l2"):
        raise UserError(f"--norm {norm}: use 'linf' or 'l2'")
    if samples not in ("auto", "buffer", "fresh"):
        raise UserError(f"--samples {samples}: use 'auto', 'buffer' or 'fresh'")
    try:
        budget = float(parse_budget(eps))
    except CheckError as e:
        raise UserError(f"--eps {eps}: {e}") from None
    if norm == "linf" and not 0 < budget <= 1:
        raise UserError(f"--eps {eps}: an l-inf budget in pixel units of [0, 1] images lies in (0, 1] (8/255 is the "
                        f"standard one)")
    if norm == "l2" and budget <= 0:
        raise UserError(f"--eps {eps}: give a positive l2 budget (0.5 is DAT's)")
    if n < 0 or n_samples < 0:
        bad = f"--n {n}" if n < 0 else f"--n-samples {n_samples}"
        raise UserError(f"{bad}: give 0 (all / the default) or a positive number")
    if pgd_steps < 1:
        raise UserError(f"--pgd-steps {pgd_steps}: give at least 1")
    lengths: tuple[int, ...] = ()
    if chain_lengths is not None:
        try:
            lengths = tuple(int(k) for k in chain_lengths.split(","))
        except ValueError:
            lengths = (-1,)
        if not lengths or any(k < 0 for k in lengths):
            raise UserError(f"--chain-lengths {chain_lengths}: give a comma list of steps >= 0, "
                            f"e.g. 0,5,10,20,50,100")
        if robust_only:
            raise UserError("--chain-lengths measures generation; it cannot go with --robust-only")
    dev = pick_device(device)

    def log(text: str) -> None:
        typer.echo(f"eval: {text}", err=True)

    with value_errors_said():
        result = evaluate(run_dir, ckpt=ckpt, n=n, attacks=attacks, eps=eps, norm=norm,
                          fid={None: "auto", True: "on", False: "off"}[fid],
                          inception_weights=inception_weights, samples=samples, n_samples=n_samples, device=dev,
                          seed=seed, pgd_steps=pgd_steps, robust_only=robust_only, weights=weights, log=log,
                          out_dir=out, chain_lengths=lengths)
    try:
        _show_eval(result, json_out, robust_only)
    finally:
        if result.get("write_error"):  # the numbers are above; the files could not be written
            raise UserError(result["write_error"])


def _show_eval(result: dict, json_out: bool, robust_only: bool) -> None:
    import json as _json

    if json_out:
        typer.echo(_json.dumps(result, indent=2))
        return
    p = result["protocol"]
    typer.echo(f"{result['method']} ({result['profile']} profile) on {result['dataset']}, checkpoint "
               f"{result['checkpoint']['kind']} step {result['checkpoint']['step']} ({result['checkpoint']['weights']} "
               f"weights), {result['n']} test points")
    typer.echo(f"  clean       {result['clean_acc']:.4f}")
    typer.echo(f"  {'PGD-' + str(p['pgd']['steps']):<12}{result['pgd_acc']:.4f}   "
               f"({p['pgd']['norm']} eps {p['pgd']['eps_text']} pixel, step eps/4, random start)")
    typer.echo(f"  AutoAttack  {result['aa_acc']:.4f}   "
               f"({p['autoattack']['version']}: {', '.join(p['autoattack']['attacks'])}; {p['autoattack']['package']})")
    if robust_only:
        if "files" in result:
            typer.echo(f"  results     {result['files']['json']}")
        return
    e = result["energy"]
    typer.echo("  energy      " + "  ".join(f"{k} {e[k]['mean']:.3f}" for k in ("clean", "adversarial", "generated")))
    typer.echo("  gaps        " + "  ".join(f"{k} {v:.3f}" for k, v in e["gaps"].items()))
    gen = result["generation"]
    if "fd_ref" in gen:
        fd = gen["fd_ref"]
        typer.echo(f"  fd_ref      {fd['fd_ref']:.4f}   {_beside_text(fd, 'fd_ref', '.4f')}")
        typer.echo(f"              {gen['samples']['source']} vs {fd.get('reference_set', 'train split')}; "
                   f"{fd['feature_network']}")
    chains = gen.get("chain_lengths")
    if chains:
        curve = "  ".join(f"{pt['steps']}: {pt['fd_ref']:.3f}" for pt in chains["points"])
        typer.echo(f"  chains      fd_ref by steps  {curve}")
        typer.echo(f"              {chains.get('verdict')}: {chains.get('why')} ({chains['sampler']}, from "
                   f"{chains['n']} {chains['init']} draws)")
    fid_block = gen.get("fid", {})
    if fid_block.get("fid") is not None:
        typer.echo(f"  FID         {fid_block['fid']:.3f}   {_beside_text(fid_block, 'fid', '.3f')}")
        typer.echo(f"  KID         {fid_block['kid_mean']:.5f}   "
                   f"{_beside_text(fid_block, 'kid_mean', '.5f', 'kid_beats_init')}")
    else:
        typer.echo(f"  FID         not computed: {fid_block.get('skipped') or fid_block.get('unavailable')}")
    if "files" in result:
        typer.echo(f"  results     {result['files']['json']}")


def sample(run_dir: Path = typer.Argument(..., help="Run directory (or a checkpoint file)."),
           n: int = typer.Option(64, "--n", help="Number of samples."),
           klass: Optional[int] = typer.Option(None, "--class",
                                               help="Sample class K (class-conditional f(x, K) = l_K(x))."),
           steps: Optional[int] = typer.Option(None, "--steps",
                                               help="Chain steps (default: the run's sampler.n_steps, "
                                                    "the short run it was trained with)."),
           source: str = typer.Option("fresh", "--source", help="'fresh' chains or the run's replay 'buffer'."),
           ckpt: str = typer.Option("best", "--ckpt", help="'best', 'last' or a checkpoint path."),
           out: Optional[Path] = typer.Option(None, "--out", help="PNG path (default RUN/samples/<time>.png)."),
           device: Optional[str] = typer.Option(None, "--device", help="'cpu', 'cuda', ..."),
           weights: str = typer.Option("auto", "--weights",
                                       help="'auto' (the EMA copy when the run was trained with train.ema), "
                                            "'ema' or 'raw'."),
           seed: int = typer.Option(0, "--seed", help="Seed of the chains.")) -> None:
    """Draw samples from a trained run and write a PNG grid."""
    import datetime as _dt

    import torch

    from ebjdat_engine.eval.generation import draw_buffer, fresh_chains
    from ebjdat_engine.eval.grid import save_grid
    from ebjdat_engine.eval.loading import load_run
    from ebjdat_engine.rundir.events import EventWriter
    from ebjdat_engine.train.runtime import pick_device

    if source not in ("fresh", "buffer"):
        raise UserError(f"--source {source}: use 'fresh' or 'buffer'")
    if not 1 <= n <= MAX_SAMPLES:
        raise UserError(f"--n {n}: give a number of samples from 1 to {MAX_SAMPLES}")
    if steps is not None and steps < 0:
        raise UserError(f"--steps {steps}: give 0 or more chain steps")
    dev = pick_device(device)
    with value_errors_said():
        run = load_run(run_dir, ckpt, dev, weights)
        if run.recipe.runtime.threads:
            torch.set_num_threads(run.recipe.runtime.threads)
        n_classes = int(run.checkpoint["n_classes"])
        if klass is not None and not 0 <= klass < n_classes:
            raise UserError(f"--class {klass}: the model has classes 0..{n_classes - 1}")
        if source == "buffer":
            if klass is not None:
                raise UserError("--class works with fresh chains only")
            x, info = draw_buffer(run, n, seed)
        else:
            x, info = fresh_chains(run, n, dev, steps=steps, klass=klass, seed=seed)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = run.run_dir if run.run_dir is not None else Path(".")
    target = out or base / "samples" / f"{stamp}.png"
    try:
        path = save_grid(x, target)
    except (OSError, ValueError) as e:  # an unwritable place, a directory, an unknown image suffix
        raise UserError(f"could not write {target} ({getattr(e, 'strerror', None) or e}); "
                        f"pass --out FILE.png somewhere writable") from None
    if run.run_dir is not None:
        try:
            rel = str(path.resolve().relative_to(run.run_dir.resolve()))
        except ValueError:
            rel = str(path.resolve())  # written outside the run (--out): absolute
        try:
            events = EventWriter(run.run_dir)
            try:
                events.emit("sample", run.step, float(run.checkpoint.get("epoch", 0.0)), path=rel,
                            weights=run.weights, **info)
            finally:
                events.close()
        except OSError as e:  # a read-only run with --out elsewhere: the grid is written
            say_err(f"ebjdat sample: note: no sample event in {run.run_dir} ({e.strerror or e})")
    typer.echo(f"wrote {path} ({info['source']}, {len(x)} samples, {run.weights} weights)")
