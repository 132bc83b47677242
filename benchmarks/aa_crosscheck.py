"""Cross-check a study's AutoAttack numbers against the attack authors' own code.

    python benchmarks/aa_crosscheck.py studies/<name> [--runs arm-s0,...] [--threads 1] [--jobs N]

`ebjdat study` evaluates every run with `ebjdat eval`, which calls AutoAttack through ebjdat's
wrapper (ebjdat_engine/eval/robustness.py). This script recomputes each run's AutoAttack robust
accuracy *without* that wrapper, so a reader can verify the study's AA numbers for themselves:

1. the model comes from the public `ebjdat_engine.load_classifier` (an `nn.Module` in eval mode
   from [0, 1] images to logits), from the checkpoint the study's protocol names
   (`protocol.ckpt`: "last" -> the run's last checkpoint; "best" -> its best one, else the last);
2. the points are the first `protocol.n` images of the dataset's test split (0: all of it),
   loaded from the run's own recipe.toml;
3. AutoAttack is fra31's code, called directly: `autoattack` (fra31's git package) when it is
   importable, else `pyautoattack` (its PyPI packaging), with the protocol's norm, eps, attacks
   ("standard", or a comma list run as version="custom") and seed;
4. robust accuracy is counted here: the argmax of the model's logits on the adversarial images
   that AutoAttack returns, against the labels (the perturbations are checked against eps too).

It prints one row per run (study AA, independent AA, the difference in percentage points and
OK, or MISMATCH when they differ by more than 2 points) and writes the table as JSON to
studies/<name>/aa_crosscheck.json (--out). Exit status: 0 when every run agrees, 1 when any
run disagrees or fails, 2 for bad input (no study directory, no results file, unknown run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ebjdat_engine.rundir import RESULTS_FILE, RunDir, StudyDir

TOLERANCE_POINTS = 2.0
NORMS = {"linf": "Linf", "l2": "L2"}
ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


class BadInput(Exception):
    """The study or the options cannot be checked; the message says why (exit status 2)."""


# --- AutoAttack, the authors' code --------------------------------------------------------------

def autoattack_module() -> tuple[str, str, Any]:
    """(package name, version, module): fra31's `autoattack` if importable, else `pyautoattack`."""
    from importlib import metadata

    try:
        import autoattack  # type: ignore[import-not-found]

        try:
            version = metadata.version("autoattack")
        except metadata.PackageNotFoundError:
            version = getattr(autoattack, "__version__", "git")
        return "autoattack", version, autoattack
    except ImportError:
        pass
    try:
        import pyautoattack  # type: ignore[import-not-found]
    except ImportError:
        raise BadInput("no AutoAttack installed: pip install pyautoattack "
                       "(or fra31's: pip install git+https://github.com/fra31/auto-attack)") from None
    try:
        version = metadata.version("pyautoattack")
    except metadata.PackageNotFoundError:
        version = getattr(pyautoattack, "__version__", "?")
    return "pyautoattack", version, pyautoattack


def parse_attacks(text: str) -> tuple[str, list[str]]:
    """'standard' -> ('standard', []); 'apgd-ce,apgd-t' -> ('custom', ['apgd-ce', 'apgd-t'])."""
    if text.strip() == "standard":
        return "standard", []
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ATTACKS]
    if not names or unknown:
        raise BadInput(f"protocol.attacks {text!r}: expected 'standard' or a comma list of {', '.join(ATTACKS)}")
    return "custom", names


def run_autoattack(model: Any, x: Any, y: Any, *, eps: float, norm: str, version: str,
                   attacks: list[str], seed: int, device: Any, batch_size: int) -> tuple[Any, list[str]]:
    """fra31's AutoAttack on (x, y): the adversarial images and the warnings its checks raised."""
    import logging
    import warnings

    package, _, module = autoattack_module()
    messages: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Capture(logging.WARNING)
    logger = logging.getLogger("auto-attack")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if package == "pyautoattack":  # keyword-only constructor; returns (x_adv, y_adv)
                kwargs: dict[str, Any] = dict(eps=eps, norm=norm, seed=seed, version=version, device=device)
                if version == "custom":
                    kwargs["attacks"] = attacks
                aa = module.AutoAttack(model, **kwargs)
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch_size)
            else:  # fra31's git package
                kwargs = dict(norm=norm, eps=eps, seed=seed, version=version, device=device, verbose=False)
                if version == "custom":
                    kwargs["attacks_to_run"] = attacks
                aa = module.AutoAttack(model, **kwargs)
                x_adv = aa.run_standard_evaluation(x, y, bs=batch_size)
        messages += [str(w.message) for w in caught]
    finally:
        logger.removeHandler(handler)
    return x_adv.detach(), messages


# --- one run (in this process or a worker) -------------------------------------------------------

def checkpoint_file(run_dir: Path, ckpt: str) -> Path:
    """The checkpoint the protocol names: 'last' -> the last one; 'best' -> the best, else the last."""
    files = RunDir(run_dir)
    if ckpt == "last":
        candidates = [files.last_checkpoint]
    elif ckpt == "best":
        candidates = [files.best_checkpoint, files.last_checkpoint]
    else:
        candidates = [Path(ckpt) if Path(ckpt).is_absolute() else run_dir / ckpt]
    for file in candidates:
        if file.is_file():
            return file
    raise FileNotFoundError(f"no checkpoint for ckpt={ckpt!r}: looked for "
                            f"{', '.join(str(c) for c in candidates)}")


def check_run(job: dict[str, Any]) -> dict[str, Any]:
    """Independent AutoAttack accuracy of one run; never raises (errors go in the row)."""
    start = time.perf_counter()
    row: dict[str, Any] = {"run": job["label"], "run_dir": job["run_dir"], "study_aa": job["study_aa"]}
    try:
        import torch

        from ebjdat_engine import load_classifier
        from ebjdat_engine.data import load_dataset
        from ebjdat_engine.recipe import from_toml_text

        torch.set_num_threads(job["threads"])
        device = torch.device(job["device"])
        run_dir = Path(job["run_dir"])
        file = checkpoint_file(run_dir, job["ckpt"])
        row["checkpoint"] = str(file)
        model = load_classifier(file, device=device)
        model.eval()

        recipe_file = run_dir / "recipe.toml"
        if not recipe_file.is_file():
            raise FileNotFoundError(f"{recipe_file}: missing (the run's resolved recipe)")
        recipe = from_toml_text(recipe_file.read_text())
        test = load_dataset(recipe.data, device, recipe.run.seed).test
        n = min(job["n"], len(test)) if job["n"] > 0 else len(test)
        x = test.images[:n].to(device).float().div(255.0)
        y = test.labels[:n].to(device).long()
        row.update(dataset=recipe.data.name, n=n)

        x_adv, checks = run_autoattack(model, x, y, eps=job["eps"], norm=job["norm"],
                                       version=job["version"], attacks=job["attacks"],
                                       seed=job["seed"], device=device, batch_size=job["batch_size"])
        with torch.no_grad():
            clean = robust = 0
            for i in range(0, n, job["batch_size"]):
                sl = slice(i, i + job["batch_size"])
                clean += (model(x[sl]).argmax(1) == y[sl]).sum().item()
                robust += (model(x_adv[sl]).argmax(1) == y[sl]).sum().item()
            delta = (x_adv - x).reshape(n, -1)
            size = delta.abs().amax(1) if job["norm"] == "Linf" else delta.norm(dim=1)
        max_pert = float(size.max()) if n else 0.0
        row.update(clean=clean / max(n, 1), independent_aa=robust / max(n, 1), max_perturbation=max_pert,
                   in_budget=max_pert <= job["eps"] + 1e-5,
                   in_range=bool(n == 0 or (x_adv.min() >= 0 and x_adv.max() <= 1)), checks=checks,
                   error=None)
    except Exception as e:  # a broken run is a row, not a crash of the whole check
        row.update(independent_aa=None, error=f"{type(e).__name__}: {e}")
    row["elapsed_s"] = round(time.perf_counter() - start, 1)
    return row


def verdict(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("error"):
        return {**row, "diff_points": None, "status": "ERROR"}
    if row["study_aa"] is None:
        return {**row, "diff_points": None, "status": "NO STUDY AA"}
    diff = round((row["independent_aa"] - row["study_aa"]) * 100, 6)
    bad = abs(diff) > TOLERANCE_POINTS or not row["in_budget"] or not row["in_range"]
    return {**row, "diff_points": diff, "status": "MISMATCH" if bad else "OK"}


# --- the study ---------------------------------------------------------------------------------

def read_study(study: Path, wanted: list[str] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The study's protocol and its evaluated runs (label, run dir, study AA)."""
    if not study.is_dir():
        raise BadInput(f"{study}: no such study directory")
    results = StudyDir(study).results
    if not results.is_file():
        raise BadInput(f"{results}: missing (is {study} a study directory? `ebjdat study` writes it)")
    try:
        data = json.loads(results.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadInput(f"{results}: not readable JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("arms"), list) \
            or not isinstance(data.get("protocol"), dict):
        raise BadInput(f"{results}: not a study's results (no 'arms' list or 'protocol')")
    runs, all_labels = [], []
    for arm in data["arms"]:
        for run in arm.get("runs", []):
            label = f"{arm.get('label')}-s{run.get('seed')}"
            all_labels.append(label)
            if not run.get("eval") or not run.get("run_dir"):
                continue
            names = {label, Path(run["run_dir"]).name}
            if wanted is not None and not names & set(wanted):
                continue
            runs.append({"label": label, "run_dir": str(study / run["run_dir"]),
                         "study_aa": (run.get("metrics") or {}).get("aa"), "eval": run["eval"]})
    if wanted is not None:
        found = {r["label"] for r in runs} | {Path(r["run_dir"]).name for r in runs}
        missing = [w for w in wanted if w not in found]
        if missing:
            raise BadInput(f"--runs {', '.join(missing)}: not an evaluated run of this study "
                           f"(runs: {', '.join(all_labels) or 'none'})")
    if not runs:
        raise BadInput(f"{results}: no run has an eval yet (nothing to check)")
    return data["protocol"], runs


def table(rows: list[dict[str, Any]]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 100:.1f}"

    head = ["run", "n", "study AA %", "independent AA %", "diff (points)", "status"]
    body = [[r["run"], str(r.get("n", "?")), pct(r["study_aa"]), pct(r.get("independent_aa")),
             "n/a" if r["diff_points"] is None else f"{r['diff_points']:+.1f}",
             r["status"] + (f" ({r['error']})" if r.get("error") else "")] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help=f"study directory (holds {RESULTS_FILE})")
    parser.add_argument("--runs", help="comma list of runs to check (arm-sSEED or run dir name); default all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs checked in parallel processes (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=500, help="AutoAttack batch size (default 500)")
    parser.add_argument("--out", type=Path, help="JSON table (default STUDY/aa_crosscheck.json)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.threads < 1 or args.jobs < 1 or args.batch_size < 1:
            raise BadInput("--threads, --jobs and --batch-size must be >= 1")
        wanted = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
        protocol, runs = read_study(args.study, wanted)
        from ebjdat_engine.recipe.fields import parse_budget

        eps_text = str(protocol.get("eps", "8/255"))
        try:
            eps = float(parse_budget(eps_text))
        except Exception as e:
            raise BadInput(f"protocol.eps {eps_text!r}: {e}") from None
        norm_text = str(protocol.get("norm", "linf")).lower()
        if norm_text not in NORMS:
            raise BadInput(f"protocol.norm {norm_text!r}: expected one of {', '.join(NORMS)}")
        version, attacks = parse_attacks(str(protocol.get("attacks", "standard")))
        n, ckpt, seed = int(protocol.get("n", 0)), str(protocol.get("ckpt", "best")), int(protocol.get("seed", 0))
        package, package_version, _ = autoattack_module()
    except BadInput as e:
        print(f"aa_crosscheck: {e}", file=sys.stderr)
        return 2

    print(f"AutoAttack: {package} {package_version} (called directly, not through ebjdat's wrapper)")
    print(f"protocol: eps {eps_text} = {eps:.6g} ({NORMS[norm_text]}), attacks {version}"
          f"{': ' + ','.join(attacks) if attacks else ''}, n {n or 'all'} (first test images), "
          f"ckpt {ckpt}, seed {seed}")
    print(f"checking {len(runs)} run(s) with {args.jobs} job(s) x {args.threads} thread(s) on {args.device}",
          flush=True)
    jobs = [{**r, "ckpt": ckpt, "n": n, "eps": eps, "norm": NORMS[norm_text], "version": version,
             "attacks": attacks, "seed": seed, "threads": args.threads, "device": args.device,
             "batch_size": args.batch_size} for r in runs]

    def report(row: dict[str, Any]) -> dict[str, Any]:
        row = verdict(row)
        aa = "n/a" if row.get("independent_aa") is None else f"{row['independent_aa'] * 100:.1f} %"
        print(f"  {row['run']}: independent AA {aa}, {row['status']} ({row['elapsed_s']:.0f} s)", flush=True)
        return row

    if args.jobs == 1 or len(jobs) == 1:
        rows = [report(check_run(job)) for job in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(args.jobs, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(check_run, job) for job in jobs]
            done = {id(f): report(f.result()) for f in as_completed(futures)}
        rows = [done[id(f)] for f in futures]

    elapsed = time.perf_counter() - started
    agree = all(r["status"] == "OK" for r in rows)
    print()
    print(table(rows))
    print()
    bad = sum(r["status"] != "OK" for r in rows)
    summary = (f"all {len(rows)} run(s) agree within {TOLERANCE_POINTS:g} points" if agree else
               f"{bad} of {len(rows)} run(s) differ by more than {TOLERANCE_POINTS:g} points or failed")
    print(f"{summary}; {package} {package_version}, eps {eps_text}, n {n or 'all'}; elapsed {elapsed:.1f} s")
    for r in rows:
        for message in r.get("checks") or []:
            print(f"  {r['run']}: AutoAttack check: {message}")
        if r.get("error") is None and not (r["in_budget"] and r["in_range"]):
            print(f"  {r['run']}: adversarial images outside the budget or [0, 1] "
                  f"(max {NORMS[norm_text]} perturbation {r['max_perturbation']:.6g})")

    out = args.out or args.study / "aa_crosscheck.json"
    record = {"study": str(args.study), "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "package": package, "package_version": package_version, "eps": eps, "eps_text": eps_text,
              "norm": NORMS[norm_text], "version": version, "attacks": attacks or "standard", "n": n,
              "ckpt": ckpt, "seed": seed, "tolerance_points": TOLERANCE_POINTS, "device": args.device,
              "threads": args.threads, "jobs": args.jobs, "elapsed_s": round(elapsed, 1), "agree": agree,
              "rows": rows}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
    except OSError as e:
        print(f"aa_crosscheck: could not write {out}: {e}", file=sys.stderr)
        return 1
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
