"""The `ebjdat` command line (Typer). Heavy imports (torch) happen inside the commands, so
`ebjdat --help` answers at once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ebjdat_engine.rundir import CHECKPOINT_DIR, LAST_CHECKPOINT, NO_RUN_MARKERS, RESULTS_FILE, RESULTS_MD, RunDir

app = typer.Typer(
    name="ebjdat",
    help="Train and evaluate classifiers that are accurate, robust and generative (EB-JDAT and family).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SET_HELP = "Override a recipe value: section.key=value (value parsed as TOML; repeatable)."
EXIT_BAD_INPUT = 2
#: how `ebjdat study` starts each of its runs: this command line, with this interpreter
EBJDAT_COMMAND = (sys.executable, "-m", "ebjdat_tui.cli")
#: most samples `ebjdat sample` puts in one PNG grid
MAX_SAMPLES = 10_000


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _names_in_doc(command):
    """A command whose help (its docstring) names run and study files by their constants."""
    command.__doc__ = command.__doc__.format(RESULTS_FILE=RESULTS_FILE, RESULTS_MD=RESULTS_MD)
    return command


#: recipe errors printed at most (a generated recipe can have thousands of unknown keys)
MAX_ERRORS_SHOWN = 50


def _fail_recipe(errors: list[str], source: str | None = None) -> None:
    where = f"{source}: " if source else ""
    _err(f"{where}{len(errors)} error{'s' if len(errors) != 1 else ''} in recipe:")
    _print_errors(errors)
    raise typer.Exit(EXIT_BAD_INPUT)


def _print_errors(errors: list[str]) -> None:
    for line in errors[:MAX_ERRORS_SHOWN]:
        _err(f"  {line}")
    if len(errors) > MAX_ERRORS_SHOWN:
        _err(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more")


def _device(device: Optional[str], command: str):
    """--device checked against this machine (None: CUDA when present), or a message and exit 2."""
    from ebjdat_engine.train.runtime import DeviceError, pick_device

    try:
        return pick_device(device)
    except DeviceError as e:
        _err(f"ebjdat {command}: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)


def _resolved(recipe: Path, set_: List[str]):
    """The resolved recipe, or the recipe errors and exit 2."""
    from ebjdat_engine.recipe import RecipeError, resolve

    try:
        return resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe))


@app.command()
def validate(recipes: List[Path] = typer.Argument(..., help="Recipe files to check."),
             set_: List[str] = typer.Option([], "--set", help=SET_HELP)) -> None:
    """Check recipes; exit 0 when all are valid, 2 otherwise (every error is counted, the first 50 listed)."""
    from ebjdat_engine.recipe import RecipeError, resolve

    bad = 0
    for path in recipes:
        try:
            resolve(path, set_)
        except RecipeError as e:
            bad += 1
            _err(f"{path}: {len(e.errors)} error{'s' if len(e.errors) != 1 else ''}:")
            _print_errors(e.errors)
        else:
            typer.echo(f"{path}: ok")
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def show(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (absent: the defaults)."),
         set_: List[str] = typer.Option([], "--set", help=SET_HELP),
         doc: bool = typer.Option(False, "--doc", help="Annotate every key with its documentation.")) -> None:
    """Print the resolved recipe as TOML (extends and --set applied, defaults filled in)."""
    from ebjdat_engine.recipe import RecipeError, resolve, to_toml
    from ebjdat_engine.recipe.docs import documented_toml

    try:
        resolved = resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe) if recipe else None)
    typer.echo(documented_toml(resolved) if doc else to_toml(resolved), nl=False)


@app.command()
def run(recipe: Optional[Path] = typer.Argument(None, help="Recipe file (optional with --resume)."),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write the run here (must be new or empty)."),
        resume: Optional[Path] = typer.Option(None, "--resume",
                                              help=f"Continue this run directory from "
                                                   f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}."),
        plain: bool = typer.Option(False, "--plain", help="Plain progress lines even on a terminal.")) -> None:
    """Train headless; progress on stdout, everything in the run directory."""
    from ebjdat_engine.recipe import RecipeError, resolve

    if recipe is None and resume is None:
        _err("ebjdat run: give a RECIPE, or --resume RUN_DIR")
        raise typer.Exit(EXIT_BAD_INPUT)
    if resume is not None and run_dir is not None:
        _err("ebjdat run: --run-dir and --resume exclude each other (a resumed run stays in its directory)")
        raise typer.Exit(EXIT_BAD_INPUT)

    from ebjdat_engine.data import DataError
    from ebjdat_engine.rundir import RunDirError
    from ebjdat_engine.rundir.checkpoint import DiskFullError
    from ebjdat_engine.train.runtime import DeviceError
    from ebjdat_engine.train.session import Interrupted, StoppedBeforeStart, resolve_for_resume
    from ebjdat_engine.train.session import run as run_training

    from .progress import make_progress

    try:
        if resume is not None:
            resolved = resolve_for_resume(resume, str(recipe) if recipe else None, set_)
        else:
            resolved = resolve(recipe, set_)
    except RecipeError as e:
        _fail_recipe(e.errors, str(recipe) if recipe else str(resume / "recipe.toml"))
    except RunDirError as e:
        _err(f"ebjdat run: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)

    progress = make_progress(True if plain else None)
    try:
        result = run_training(resolved, str(recipe) if recipe else None, run_dir=run_dir,
                              resume=resume, listeners=[progress])
    except RecipeError as e:
        progress.close()
        _fail_recipe(e.errors, str(recipe) if recipe else None)
    except (DataError, RunDirError, DeviceError) as e:
        progress.close()
        _err(f"ebjdat run: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except (StoppedBeforeStart, Interrupted) as e:
        progress.close()
        _err(f"ebjdat run: {e}")
        raise typer.Exit(e.exit_code)
    except DiskFullError as e:  # a crash (exit 1), said plainly; the `end` event says the same
        progress.close()
        _err(f"ebjdat run: crashed: {e}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        progress.close()
        _err("ebjdat run: interrupted twice while the job was starting, before training began")
        raise typer.Exit(130)
    progress.close()
    lines = [f"{result.status}: results in {result.run_dir}",
             f"  events: {RunDir(result.run_dir).events}   checkpoint: {RunDir(result.run_dir).last_checkpoint}"]
    if result.status == "stopped":
        lines.append(f"  continue with: ebjdat run --resume {result.run_dir}")
    if result.status == "collapsed":
        lines.append(f"  collapsed (see the alarm events); last healthy state: "
                     f"{RunDir(result.run_dir).last_checkpoint}")
    from .progress import best_effort

    best_effort(lambda: [typer.echo(line) for line in lines] and sys.stdout.flush())
    raise typer.Exit(result.exit_code)


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


@app.command("eval")
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
    from ebjdat_engine.eval.loading import LoadError
    from ebjdat_engine.eval.robustness import EvalError
    from ebjdat_engine.recipe.fields import CheckError, parse_budget

    if norm not in ("linf", "l2"):
        _err(f"ebjdat eval: --norm {norm}: use 'linf' or 'l2'")
        raise typer.Exit(EXIT_BAD_INPUT)
    if samples not in ("auto", "buffer", "fresh"):
        _err(f"ebjdat eval: --samples {samples}: use 'auto', 'buffer' or 'fresh'")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        budget = float(parse_budget(eps))
    except CheckError as e:
        _err(f"ebjdat eval: --eps {eps}: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if norm == "linf" and not 0 < budget <= 1:
        _err(f"ebjdat eval: --eps {eps}: an l-inf budget in pixel units of [0, 1] images lies in (0, 1] (8/255 is the "
             f"standard one)")
        raise typer.Exit(EXIT_BAD_INPUT)
    if norm == "l2" and budget <= 0:
        _err(f"ebjdat eval: --eps {eps}: give a positive l2 budget (0.5 is DAT's)")
        raise typer.Exit(EXIT_BAD_INPUT)
    if n < 0 or n_samples < 0:
        bad = f"--n {n}" if n < 0 else f"--n-samples {n_samples}"
        _err(f"ebjdat eval: {bad}: give 0 (all / the default) or a positive number")
        raise typer.Exit(EXIT_BAD_INPUT)
    if pgd_steps < 1:
        _err(f"ebjdat eval: --pgd-steps {pgd_steps}: give at least 1")
        raise typer.Exit(EXIT_BAD_INPUT)
    lengths: tuple[int, ...] = ()
    if chain_lengths is not None:
        try:
            lengths = tuple(int(k) for k in chain_lengths.split(","))
        except ValueError:
            lengths = (-1,)
        if not lengths or any(k < 0 for k in lengths):
            _err(f"ebjdat eval: --chain-lengths {chain_lengths}: give a comma list of steps >= 0, "
                 f"e.g. 0,5,10,20,50,100")
            raise typer.Exit(EXIT_BAD_INPUT)
        if robust_only:
            _err("ebjdat eval: --chain-lengths measures generation; it cannot go with --robust-only")
            raise typer.Exit(EXIT_BAD_INPUT)
    dev = _device(device, "eval")

    def log(text: str) -> None:
        typer.echo(f"eval: {text}", err=True)

    try:
        result = evaluate(run_dir, ckpt=ckpt, n=n, attacks=attacks, eps=eps, norm=norm,
                          fid={None: "auto", True: "on", False: "off"}[fid],
                          inception_weights=inception_weights, samples=samples, n_samples=n_samples, device=dev,
                          seed=seed, pgd_steps=pgd_steps, robust_only=robust_only, weights=weights, log=log,
                          out_dir=out, chain_lengths=lengths)
    except (LoadError, EvalError, ValueError) as e:
        _err(f"ebjdat eval: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        _show_eval(result, json_out, robust_only)
    finally:
        if result.get("write_error"):  # the numbers are above; the files could not be written
            _err(f"ebjdat eval: {result['write_error']}")
            raise typer.Exit(EXIT_BAD_INPUT)


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


@app.command()
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
    from ebjdat_engine.eval.loading import LoadError, load_run
    from ebjdat_engine.rundir.events import EventWriter

    if source not in ("fresh", "buffer"):
        _err(f"ebjdat sample: --source {source}: use 'fresh' or 'buffer'")
        raise typer.Exit(EXIT_BAD_INPUT)
    if not 1 <= n <= MAX_SAMPLES:
        _err(f"ebjdat sample: --n {n}: give a number of samples from 1 to {MAX_SAMPLES}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if steps is not None and steps < 0:
        _err(f"ebjdat sample: --steps {steps}: give 0 or more chain steps")
        raise typer.Exit(EXIT_BAD_INPUT)
    dev = _device(device, "sample")
    try:
        run = load_run(run_dir, ckpt, dev, weights)
        if run.recipe.runtime.threads:
            torch.set_num_threads(run.recipe.runtime.threads)
        n_classes = int(run.checkpoint["n_classes"])
        if klass is not None and not 0 <= klass < n_classes:
            raise ValueError(f"--class {klass}: the model has classes 0..{n_classes - 1}")
        if source == "buffer":
            if klass is not None:
                raise ValueError("--class works with fresh chains only")
            x, info = draw_buffer(run, n, seed)
        else:
            x, info = fresh_chains(run, n, dev, steps=steps, klass=klass, seed=seed)
    except (LoadError, ValueError) as e:
        _err(f"ebjdat sample: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = run.run_dir if run.run_dir is not None else Path(".")
    target = out or base / "samples" / f"{stamp}.png"
    try:
        path = save_grid(x, target)
    except (OSError, ValueError) as e:  # an unwritable place, a directory, an unknown image suffix
        _err(f"ebjdat sample: could not write {target} ({getattr(e, 'strerror', None) or e}); "
             f"pass --out FILE.png somewhere writable")
        raise typer.Exit(EXIT_BAD_INPUT)
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
            _err(f"ebjdat sample: note: no sample event in {run.run_dir} ({e.strerror or e})")
    typer.echo(f"wrote {path} ({info['source']}, {len(x)} samples, {run.weights} weights)")


@app.command()
def bench(recipe: Path = typer.Argument(..., help="Recipe file."),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          steps: int = typer.Option(5, "--steps", help="Timed iterations."),
          warmup: Optional[int] = typer.Option(None, "--warmup",
                                               help="Untimed iterations first (default: 3 on a GPU, 1 on a CPU)."),
          json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Measure one training iteration: time per phase, images/s, FLOPs per image in F, MFU."""
    import json as _json

    resolved = _resolved(recipe, set_)
    if steps < 1:
        _err("ebjdat bench: --steps must be >= 1")
        raise typer.Exit(EXIT_BAD_INPUT)
    import torch

    from ebjdat_engine.recipe import RecipeError
    from ebjdat_engine.train.bench import bench as run_bench
    from ebjdat_engine.train.runtime import DeviceError, resolve_device

    try:
        device = resolve_device(resolved.runtime)
        warm = warmup if warmup is not None else (3 if device.type == "cuda" else 1)
        report = run_bench(resolved, steps=steps, warmup=warm,
                           log=None if json_out else (lambda t: typer.echo(f"bench: {t}", err=True)))
    except (RecipeError, DeviceError) as e:
        _err(f"ebjdat bench: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
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


@app.command()
def tui(recipe: Optional[Path] = typer.Argument(None,
                                                help="Recipe to validate and start (a run directory is attached to)."),
        set_: List[str] = typer.Option([], "--set", help=SET_HELP),
        attach: Optional[Path] = typer.Option(None, "--attach",
                                              help="Watch this run directory (running or finished) "
                                                   "instead of starting a job.")) -> None:
    """Start a job and watch it in a terminal dashboard, or --attach to a run.

    The job runs detached (it survives the TUI and the SSH session); quitting asks whether to
    stop it (checkpoint, status 'stopped') or leave it running."""
    if recipe is not None and attach is None and recipe.is_dir():
        recipe, attach = None, recipe
    if (recipe is None) == (attach is None):
        _err("ebjdat tui: give a RECIPE to start, or --attach RUN to watch a run")
        raise typer.Exit(EXIT_BAD_INPUT)
    if attach is not None and set_:
        _err("ebjdat tui: --set applies to a new job, not to --attach")
        raise typer.Exit(EXIT_BAD_INPUT)
    if attach is not None and not attach.is_dir():
        _err(f"ebjdat tui --attach {attach}: no such run directory (`ebjdat ls` lists the runs)")
        raise typer.Exit(EXIT_BAD_INPUT)
    from .app import create_app  # textual is imported only here

    app_ = create_app(recipe=recipe, sets=set_, attach=attach)
    result = app_.run()
    if result is not None:
        if result.message:
            typer.echo(result.message, err=result.code != 0)
        raise typer.Exit(result.code)
    if app_.return_code:  # the TUI itself crashed (Textual printed why): not a success
        raise typer.Exit(app_.return_code)


@app.command()
@_names_in_doc
def study(study_file: Path = typer.Argument(..., help="Study file (TOML: \\[study], \\[protocol], \\[\\[arm]])."),
          jobs: Optional[int] = typer.Option(None, "--jobs",
                                             help="Runs trained and evaluated at once (default: the study's jobs)."),
          plain: bool = typer.Option(False, "--plain", help="Plain progress lines even on a terminal."),
          check: bool = typer.Option(False, "--check",
                                     help="Validate the study (every arm x seed) and print its plan; "
                                          "run nothing.")) -> None:
    """Run a study: arms x seeds as runs, each evaluated by one protocol, then tabled and plotted.

    Each run is an ordinary run directory under <study file's folder>/<name>/runs/; the study
    writes {RESULTS_FILE}, {RESULTS_MD}, trilemma.png and energies.png beside them.

    Running it again skips finished runs, resumes stopped ones and re-evaluates only what changed.
    Ctrl-C stops cleanly (the running jobs checkpoint); run it again to continue."""
    from ebjdat_engine.recipe import RecipeError
    from ebjdat_engine.study import StudyError, load_study, run_study
    from ebjdat_engine.study.runner import run_dir_for

    from .study_progress import make_study_progress

    if jobs is not None and jobs < 1:
        _err(f"ebjdat study: --jobs {jobs}: give at least 1")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        loaded = load_study(study_file, jobs)
    except RecipeError as e:
        _err(f"{study_file}: {len(e.errors)} error{'s' if len(e.errors) != 1 else ''} in study:")
        _print_errors(e.errors)
        raise typer.Exit(EXIT_BAD_INPUT)
    if check:
        typer.echo(f"{study_file}: ok; {len(loaded.arms)} arms x {len(loaded.seeds)} seeds -> {loaded.out_dir}")
        for arm in loaded.arms:
            for seed in loaded.seeds:
                path, action = run_dir_for(loaded, arm, seed)
                typer.echo(f"  {path.relative_to(loaded.out_dir)}  {action}")
        return
    listener = make_study_progress(True if plain else None)
    try:
        code = run_study(loaded, EBJDAT_COMMAND, listener)
    except StudyError as e:
        listener.close()
        _err(f"ebjdat study: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
    listener.close()
    raise typer.Exit(code)


@app.command()
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

    from ebjdat_engine.study import CompareError
    from ebjdat_engine.study.compare import HEADERS, protocol_note, table_rows, to_csv, to_markdown
    from ebjdat_engine.study.compare import compare as build

    if sum((md, csv_out, json_out)) > 1:
        _err("ebjdat compare: choose one of --md, --csv, --json")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        comparison = build(runs)
    except CompareError as e:
        _err(f"ebjdat compare: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)
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
        _err("ebjdat compare: protocol mismatch: " + "; ".join(
            f"{e['run']}: " + ", ".join(f"{k} {v['this']} vs {v['reference']}" for k, v in e["mismatch"].items())
            for e in comparison["entries"] if e["mismatch"]))


@app.command()
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
    from ebjdat_engine.export.tensorboard import TensorBoardMissing, export_run, missing_reason

    if (reason := missing_reason()) is not None:
        _err(f"ebjdat export: {reason}")
        raise typer.Exit(EXIT_BAD_INPUT)
    for run in runs:
        if not RunDir(run).is_run():
            _err(f"ebjdat export: {run} is not a run directory ({NO_RUN_MARKERS}); "
                 f"give a directory under runs/ (ebjdat ls lists them)")
            raise typer.Exit(EXIT_BAD_INPUT)
    names = [run.resolve().name for run in runs]
    if len(set(names)) != len(names):
        _err(f"ebjdat export: several runs are named {', '.join(sorted({n for n in names if names.count(n) > 1}))}; "
             f"export them into separate directories")
        raise typer.Exit(EXIT_BAD_INPUT)
    targets = [tensorboard] if len(runs) == 1 else [tensorboard / name for name in names]
    for target in targets:
        if target.exists() and not target.is_dir():
            _err(f"ebjdat export: {target} exists and is not a directory; name a new directory")
            raise typer.Exit(EXIT_BAD_INPUT)
        if target.is_dir() and any(target.glob("events.out.tfevents.*")):
            _err(f"ebjdat export: {target} already holds TensorBoard event files (an earlier export?); "
                 f"TensorBoard would show both. Export into a new or empty directory")
            raise typer.Exit(EXIT_BAD_INPUT)
    for run, target in zip(runs, targets):
        try:
            target.mkdir(parents=True, exist_ok=True)
            counts = export_run(run, target)
        except TensorBoardMissing as e:
            _err(f"ebjdat export: {e}")
            raise typer.Exit(EXIT_BAD_INPUT)
        except OSError as e:
            _err(f"ebjdat export: cannot write {target} ({e.strerror or e}); choose a writable directory")
            raise typer.Exit(EXIT_BAD_INPUT)
        typer.echo(f"{run} -> {target}: "
                   + ", ".join(f"{counts[k]} {k}" for k in ("scalars", "histograms", "images", "texts")))
    typer.echo(f"view: tensorboard --logdir {tensorboard}")


@app.command("ls")
def ls_(runs_dir: Path = typer.Argument(Path("runs"), help="Directory of runs (or one run directory).")) -> None:
    """List runs: method, status, step, last loss, last clean / AutoAttack accuracy, age of the last event."""
    from .fmt import fmt, fmt_age
    from .runs import find_runs, summarize

    if not runs_dir.is_dir():
        _err(f"ebjdat ls: no runs directory at {runs_dir}")
        raise typer.Exit(EXIT_BAD_INPUT)
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


data_app = typer.Typer(help="Datasets: decode image folders into ebjdat's shard cache.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(recipe: Path = typer.Argument(..., help="Recipe whose \\[data] names an image folder."),
                 set_: List[str] = typer.Option([], "--set", help=SET_HELP),
                 workers: int = typer.Option(0, "--workers", help="Decoding processes (0: min(8, CPUs))."),
                 force: bool = typer.Option(False, "--force",
                                            help="Rebuild the cache even when it is up to date.")) -> None:
    """Decode and resize an image folder once into a uint8 shard cache (data.cache) that training reads.

    Also prepares sampler.seed_folder (DAT's out-of-distribution seeds) when the recipe names one.
    Run it again after the folder changes: training refuses a cache whose folder has changed."""
    resolved = _resolved(recipe, set_)
    if workers < 0:
        _err("ebjdat data prepare: --workers must be >= 0")
        raise typer.Exit(EXIT_BAD_INPUT)
    data = resolved.data
    seed_folder = resolved.sampler.seed_folder
    if data.name != "imagefolder" and not seed_folder:
        _err(f"ebjdat data prepare: {recipe} reads data.name = {data.name!r}, which needs no preparing; "
             f"prepare is for data.name = \"imagefolder\" (and sampler.seed_folder)")
        raise typer.Exit(EXIT_BAD_INPUT)
    from ebjdat_engine.data import DataError
    from ebjdat_engine.data import imagefolder as folder

    say = lambda t: _err(f"prepare: {t}")  # noqa: E731
    try:
        if data.name == "imagefolder":
            classes = folder.listed_classes(data.classes, data.classes_file)
            if force:
                _forget(folder.cache_path(data.cache, data.root, classes, data.resolution))
            path, index, _built = folder.prepare(data.root, classes, data.resolution, data.cache,
                                                 workers=workers, log=say)
            if index.get("missing_classes"):
                _err(f"prepare: warning: {len(index['missing_classes'])} of the listed classes are not in "
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
    except DataError as e:
        _err(f"ebjdat data prepare: {e}")
        raise typer.Exit(EXIT_BAD_INPUT)


def _forget(cache: Path) -> None:
    """--force: move an existing cache's index aside so that prepare rebuilds it."""
    index = cache / "index.json"
    if index.exists():
        index.replace(cache / "index.json.old")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ebjdat")


if __name__ == "__main__":
    sys.exit(main())
