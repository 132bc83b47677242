"""`ebjdat eval`: the standard numbers of a trained run, each stored with its protocol.

Clean accuracy, PGD-k (ε, step ε/4, random start, projection, eval mode), AutoAttack (fra31's
attacks on [0, 1] images -> logits, checks on), the energy landscape (clean / adversarial /
generated) and generation metrics (fd_ref for small datasets, FID/KID with torch-fidelity),
each beside its floor (held-out test images) and its no-learning baseline (the init distribution).
Results go to `RUN/eval/<time>.json` (+ an energy histogram and a sample grid as PNG) and, in
short, to an `eval` event in the run's event log (`RunDir.events`).
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import DataSplits, load_dataset
from ..recipe.fields import parse_budget
from ..rundir import write_text_atomic
from ..rundir.events import EventWriter, Listener
from .generation import buffer_of, chain_length_curve, draw_buffer, fresh_chains, init_baseline
from .grid import save_grid
from .landscape import energies, energy_landscape, plot_histogram
from .loading import load_run
from .robustness import EvalError, parse_attacks, robust_accuracies

SMALL_DATASETS = ("digits", "fashion-mnist")
#: FID reference images read from a streamed (host) training split: the usual 50k
STREAMED_REFERENCE_MAX = 50_000
#: generated samples (and init-baseline draws) for the generation metrics unless `n_samples` says
DEFAULT_GENERATED = 1000


def _say(log: Callable[[str], None] | None, text: str) -> None:
    if log is not None:
        log(text)


#: What a floor of fewer images than the generated set means for a Fréchet distance.
SMALL_FLOOR_NOTE = ("fewer real images than generated ones: a Fréchet distance is biased upward at "
                    "small n, so this floor is somewhat high")


def _beside(metric: dict[str, Any], keys: tuple[str, ...], floor: dict[str, Any],
            floor_info: dict[str, Any], init: dict[str, Any], init_info: dict[str, Any]) -> None:
    """Put the floor's and the init baseline's values of `keys` beside `metric` (in place)."""
    metric["floor"] = {**{k: floor[k] for k in keys if k in floor}, **floor_info}
    metric["init_baseline"] = {**{k: init[k] for k in keys if k in init}, **init_info}


def generation_block(run, splits: DataSplits, x_gen: torch.Tensor, gen_info: dict[str, Any],
                     device: torch.device, fid: str, inception_weights: str | None,
                     log, seed: int = 0, chain_lengths: tuple[int, ...] = ()) -> dict[str, Any]:
    """fd_ref (small datasets) and FID/KID/IS (torch-fidelity) of the generated samples, each
    beside its floor and its no-learning baseline (DESIGN.md §6), same metric, same reference set:

    * ``floor``: held-out real images (the test split's first ``min(n generated, n test)``);
    * ``init_baseline``: as many fresh draws as generated samples from the run's init
      distribution (`init_baseline`, seeded with `seed`); ``beats_init``: metric < baseline.

    `chain_lengths` (small datasets): fd_ref of as many fresh chains of each length from the
    init, under ``chain_lengths`` with a verdict (generator / short-run refiner / none).
    """
    from .fd_ref import fd_ref, reference_classifier, reference_features
    from .fid import generation_metrics
    from .fid import inception_weights as find_weights

    data = run.recipe.data
    out: dict[str, Any] = {"samples": gen_info}
    run_fid = fid == "on" or (fid == "auto" and device.type == "cuda")
    skipped = {"fid": None, "skipped": "--no-fid" if fid == "off" else
               "on the CPU Inception costs ~0.2 s per image; pass --fid to compute it anyway"}
    if data.name not in SMALL_DATASETS and not run_fid:
        out["fid"] = skipped
        return out  # no metric: no floor, no baseline draws
    real = splits.train.images
    reference_set = f"{data.name} train split ({len(real)} images)"
    if splits.train.streamed and len(real) > STREAMED_REFERENCE_MAX:  # a host split: read a subset
        import numpy as np

        rows = np.linspace(0, len(real) - 1, STREAMED_REFERENCE_MAX).round().astype(np.int64)
        reference_set = (f"{data.name} train split: {STREAMED_REFERENCE_MAX} evenly spaced of its "
                         f"{len(real)} images")
        real = real[rows]
    elif splits.train.streamed:
        real = real.to("cpu")
    n_gen = int(x_gen.shape[0])
    test = splits.test
    n_floor = min(n_gen, len(test))
    x_floor = test.images[:n_floor]
    floor_info: dict[str, Any] = {
        "n": n_floor,
        "source": f"held-out real images: the first {n_floor} of the {len(test)} images of the "
                  f"{data.name} test split"}
    if n_floor < n_gen:
        floor_info["note"] = SMALL_FLOOR_NOTE
    x_init, init_info = init_baseline(run, n_gen, device, seed=seed, splits=splits)
    init_info = {"n": init_info["n"], "source": init_info["source"], "init": init_info["init"],
                 "seed": init_info["seed"]}
    if data.name in SMALL_DATASETS:
        _say(log, "fd_ref: reference classifier features (generated, floor, init baseline)")
        clf = reference_classifier(data, device, None)
        real_features = reference_features(real, clf)
        metric = fd_ref(x_gen.to(device), real, clf, real_features=real_features)
        metric["reference_set"] = reference_set
        floor = fd_ref(x_floor, real, clf, real_features=real_features)
        init = fd_ref(x_init, real, clf, real_features=real_features)
        _beside(metric, ("fd_ref",), floor, floor_info, init, init_info)
        metric["beats_init"] = bool(metric["fd_ref"] < init["fd_ref"])
        out["fd_ref"] = metric
        if chain_lengths:
            _say(log, f"fd_ref of fresh chains of {', '.join(map(str, chain_lengths))} steps")
            out["chain_lengths"] = chain_length_curve(
                run, list(chain_lengths), n_gen, device,
                lambda x: fd_ref(x, real, clf, real_features=real_features)["fd_ref"], seed=seed, splits=splits)
    if not run_fid:
        out["fid"] = skipped
        return out
    weights = find_weights(inception_weights, None)
    _say(log, "FID/KID: Inception features (torch-fidelity)")
    with tempfile.TemporaryDirectory(prefix="ebjdat-fid-") as cache:  # real features, computed once
        metrics = generation_metrics(x_gen, real, weights=weights, device=device, real_cache_dir=cache)
        metrics["reference_set"] = reference_set
        if metrics.get("fid") is not None:
            _say(log, f"FID/KID floor: {n_floor} held-out test images")
            floor = generation_metrics(x_floor, real, weights=weights, device=device, real_cache_dir=cache)
            _say(log, f"FID/KID init baseline: {n_gen} {init_info['init']} draws")
            init = generation_metrics(x_init, real, weights=weights, device=device, real_cache_dir=cache)
            keys = ("fid", "kid_mean", "kid_std", "kid_subset_size", "is_mean", "is_std", "seconds")
            _beside(metrics, keys, floor, floor_info, init, init_info)
            metrics["beats_init"] = bool(metrics["fid"] < init["fid"])
            metrics["kid_beats_init"] = bool(metrics["kid_mean"] < init["kid_mean"])
    out["fid"] = metrics
    return out


def evaluate(path: str | Path, *, ckpt: str = "best", n: int = 1000, attacks: str = "standard",
             eps: str = "8/255", norm: str = "linf", pgd_steps: int = 20, fid: str = "auto",
             inception_weights: str | None = None, samples: str = "auto", n_samples: int = 0,
             device: str | torch.device | None = None, seed: int = 0, write: bool = True,
             out_dir: str | Path | None = None,
             robust_only: bool = False, weights: str = "auto", chain_lengths: tuple[int, ...] = (),
             log: Callable[[str], None] | None = None,
             listeners: "list[Listener] | None" = None) -> dict[str, Any]:
    """Evaluate a run (or checkpoint) on the first `n` test images; returns the result dict.

    `robust_only`: clean, PGD and AutoAttack only (no energy landscape, no generation), e.g. for
    a robustness curve over several ε. `weights`: 'auto' (the EMA copy when the run kept one),
    'ema' or 'raw'; the result's checkpoint block and protocol say which. The call's options are
    stored under ``options`` (the protocol `ebjdat study` and `ebjdat compare` match evaluations
    by) and the checkpoint's file identity (size, mtime) under ``checkpoint``, so a changed
    checkpoint is noticed. `chain_lengths`: fd_ref of fresh chains of these lengths (small
    datasets; `generation.chain_lengths`)."""
    options = {"ckpt": ckpt, "n": n, "attacks": attacks, "eps": eps, "norm": norm, "pgd_steps": pgd_steps,
               "fid": fid, "samples": samples, "n_samples": n_samples or DEFAULT_GENERATED, "seed": seed,
               "robust_only": robust_only, "weights": weights}
    chain_lengths = tuple(sorted(set(int(k) for k in chain_lengths)))
    if any(k < 0 for k in chain_lengths):
        raise ValueError(f"chain lengths must be >= 0 steps, got {list(chain_lengths)}")
    if chain_lengths and not robust_only:  # only when asked: earlier evaluations stay reusable
        options["chain_lengths"] = list(chain_lengths)
    started = time.time()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    eps_value = float(parse_budget(eps))
    parse_attacks(attacks)  # a bad list fails before anything is loaded
    run = load_run(path, ckpt, device, weights)
    recipe, model = run.recipe, run.model
    if recipe.runtime.threads:  # the run's CPU thread count (tiny models: 1 is fastest)
        torch.set_num_threads(recipe.runtime.threads)
    splits = load_dataset(recipe.data, device, recipe.run.seed)
    test = splits.test
    n = min(n, len(test)) if n > 0 else len(test)
    x = test.images[:n].float().div(255.0)
    y = test.labels[:n]
    torch.manual_seed(seed)

    robust, x_pgd = robust_accuracies(model, x, y, eps=eps_value, eps_text=eps, attacks=attacks,
                                      norm=norm, pgd_steps=pgd_steps, seed=seed, log=log)
    stat = run.checkpoint_path.stat()
    result: dict[str, Any] = {
        "run": str(run.run_dir) if run.run_dir else None,
        "checkpoint": {"kind": run.checkpoint_kind, "path": str(run.checkpoint_path), "step": run.step,
                       "weights": run.weights, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "method": recipe.method.name, "profile": recipe.method.profile,
        "dataset": recipe.data.name, "split": "test", "n": n,
        "clean_acc": robust["clean_acc"], "pgd_acc": robust["pgd_acc"], "aa_acc": robust["aa_acc"],
        "protocol": {"clean": {"split": "test", "points": n, "input_noise": 0.0, "model_mode": "eval"},
                     "weights": run.weights, **robust["protocol"]},
        "options": options,
    }
    if robust_only:
        return _finish(result, run, started, device, write, pops=None, x_gen=None, out_dir=out_dir,
                       listeners=listeners)

    # generation metrics use 1,000 samples by default whatever n is (a Fréchet distance is biased
    # and noisy at a few hundred); the energy landscape uses the first n of them, so that every
    # population has n points and the gaps are those of the training monitor's eval-mode probe
    n_gen = n_samples or DEFAULT_GENERATED
    source = samples if samples != "auto" else ("buffer" if buffer_of(run) is not None else "fresh")
    _say(log, f"generated samples: {n_gen} from {source}")
    if source == "buffer":
        x_gen, gen_info = draw_buffer(run, n_gen, seed)
    else:
        x_gen, gen_info = fresh_chains(run, n_gen, device, seed=seed, splits=splits)
    pops = {"clean": energies(model, x), "adversarial": energies(model, x_pgd),
            "generated": energies(model, x_gen[:n].to(device))}
    landscape = energy_landscape(pops)
    landscape["adversarial_source"] = f"PGD-{pgd_steps} examples of the clean images"
    landscape["generated_source"] = gen_info
    # the raw energies (4 decimals), so a study can draw every arm's histograms in one figure
    landscape["values"] = {k: [round(float(v), 4) for v in e.tolist()] for k, e in pops.items()}
    result["energy"] = landscape
    result["generation"] = generation_block(run, splits, x_gen, gen_info, device, fid,
                                            inception_weights, log, seed=seed, chain_lengths=chain_lengths)
    return _finish(result, run, started, device, write, pops=pops, x_gen=x_gen, out_dir=out_dir,
                   listeners=listeners)


def _eval_stamp(out_dir: Path) -> str:
    """A time stamp naming a new evaluation's files, unique within `out_dir` (two evaluations
    in the same second, as a robustness curve makes, get -2, -3, ...)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    k, unique = 1, stamp
    while (out_dir / f"{unique}.json").exists():
        k += 1
        unique = f"{stamp}-{k}"
    return unique


def _finish(result: dict[str, Any], run, started: float, device: torch.device, write: bool, *,
            pops: dict[str, torch.Tensor] | None, x_gen: torch.Tensor | None,
            out_dir: str | Path | None = None, listeners: "list[Listener] | None" = None) -> dict[str, Any]:
    """Time the evaluation and, with `write`, store it: the JSON first (atomically), then the
    energy histogram and sample grid of a full evaluation, and an `eval` event in the run.

    Files go to `out_dir` (`--out`) or RUN/eval. Nothing computed is lost to a file that cannot
    be written: the JSON is written before the figures, each figure is optional, and a folder
    that cannot be written is recorded in ``result["write_error"]`` (the CLI prints the numbers
    and says so) instead of raising after the attacks have run."""
    recipe = run.recipe
    result["device"] = str(device)
    result["duration_s"] = round(time.time() - started, 2)
    result["time"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    if not write or (run.run_dir is None and out_dir is None):
        return result
    folder = Path(out_dir) if out_dir is not None else run.run_dir / "eval"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _eval_stamp(folder)
        json_path = folder / f"{stamp}.json"
        result["files"] = {"json": str(json_path)}
        write_text_atomic(json_path, json.dumps(result, indent=2) + "\n")
    except OSError as e:
        result.pop("files", None)
        result["write_error"] = (f"could not write the results into {folder} ({e.strerror or e}); "
                                 f"pass --out DIR to write them elsewhere")
        return result
    if pops is not None and x_gen is not None:
        title = f"{recipe.method.name} ({recipe.data.name}), checkpoint {run.checkpoint_kind} step {run.step}"
        figures = {"energy_histogram": lambda: plot_histogram(pops, folder / f"{stamp}-energy.png", title=title),
                   "samples": lambda: save_grid(x_gen[:64], folder / f"{stamp}-samples.png")}
        for name, draw in figures.items():
            try:
                result["files"][name] = str(draw())
            except OSError as e:
                result["files"][f"{name}_error"] = f"not written: {e.strerror or e}"
        write_text_atomic(json_path, json.dumps(result, indent=2) + "\n")  # now naming the figures
    if run.run_dir is not None:
        try:
            append_eval_event(run, result, listeners)
        except OSError as e:  # a read-only run directory with --out elsewhere: the JSON is there
            result["files"]["event_error"] = f"no eval event in {run.run_dir}: {e.strerror or e}"
    return result


def _relative(path: str | None, run_dir: Path) -> str | None:
    """Paths in events are relative to the run directory, like checkpoint paths."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:
        return str(Path(path).resolve())


def append_eval_event(run, result: dict[str, Any], listeners: "list[Listener] | None" = None) -> None:
    """A compact `eval` event (the numbers and where the full JSON is) in the run's log, handed
    also to `listeners` (the training job's, for a final evaluation)."""
    own = []  # listeners opened here for this one event (closed below), not the caller's
    if listeners is None and run.recipe.runtime.tensorboard:  # the run mirrors into RUN/tensorboard
        from ..export.tensorboard import mirror_into_run

        mirror = mirror_into_run(run.run_dir)
        listeners = own = [mirror] if mirror is not None else []
    events = EventWriter(run.run_dir, listeners)
    try:
        gen = result.get("generation", {})
        fd, fi = gen.get("fd_ref") or {}, gen.get("fid") or {}
        events.emit("eval", run.step, float(run.checkpoint.get("epoch", 0.0)), split="test", source="ebjdat eval",
                    clean_acc=result["clean_acc"], pgd_acc=result["pgd_acc"], aa_acc=result["aa_acc"],
                    n=result["n"], checkpoint=result["checkpoint"]["kind"],
                    weights=result["checkpoint"]["weights"],
                    protocol={"pgd": {k: result["protocol"]["pgd"][k] for k in ("attack", "eps_text", "norm")},
                              "autoattack": {k: result["protocol"]["autoattack"][k]
                                             for k in ("package", "version", "attacks")}},
                    energy_means={k: v["mean"] for k, v in result.get("energy", {}).items()
                                  if isinstance(v, dict) and "mean" in v},
                    energy_gaps=result.get("energy", {}).get("gaps"),
                    robust_only=bool(result.get("options", {}).get("robust_only")),
                    fd_ref=fd.get("fd_ref"), fd_ref_floor=(fd.get("floor") or {}).get("fd_ref"),
                    fd_ref_init=(fd.get("init_baseline") or {}).get("fd_ref"),
                    fid=fi.get("fid"), fid_floor=(fi.get("floor") or {}).get("fid"),
                    fid_init=(fi.get("init_baseline") or {}).get("fid"),
                    gen_init=(fd.get("init_baseline") or fi.get("init_baseline") or {}).get("init"),
                    path=_relative(result.get("files", {}).get("json"), run.run_dir))
    finally:
        events.close()
        for listener in own:
            listener.close()


__all__ = ["EvalError", "evaluate"]
