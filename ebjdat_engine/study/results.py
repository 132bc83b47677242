"""A study's results: results.json (every run's numbers and where they came from), results.md
(the table, mean ± std over seeds, beside the protocol, the command, the machine and the wall
time) and the figures (figures.py).

results.json, format 1 (paths relative to the study directory)::

    {"format": 1, "study": name, "study_file": path, "updated": iso time,
     "state": "running" | "finished" | "stopped" | "failed",
     "protocol": {...the [protocol] table...}, "seeds": [...], "machine": {...},
     "wall_s": seconds this study has run, all invocations together,
     "arms": [{"label", "recipe", "overrides", "method", "base",
               "runs": [{"seed", "run_dir", "state", "status", "step", "total_steps", "eval",
                         "metrics": {clean, pgd, aa, fd_ref, fd_ref_init, fd_ref_floor, beats_init,
                                     gap_clean_adv, gap_clean_gen, train_s, images_per_s},
                         "curve": {eps: {clean, pgd, aa}}, "error"}],
               "summary": {metric: {"mean", "std", "n"}}, "curve": {eps: {"mean", "std", "n"}}}]}

`state` of a run: pending, training, evaluating, done, failed or stopped; `status` is its
training run's end status (finished, collapsed, stopped, crashed).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

from ..rundir import write_text_atomic
from .schema import Study, as_dict
from .table import COLUMNS, fmt_mean_std, mean_std

FORMAT = 1
METRICS = tuple(key for key, _, _ in COLUMNS)


def machine() -> dict[str, Any]:
    """What the study ran on (its CPU count and model, the torch version and the device)."""
    info: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        pass
    return info


def build(study: Study, tasks: Sequence[Any], state: str, wall_s: float) -> dict[str, Any]:
    """The results document of a study from its tasks (runner.RunTask)."""
    arms = []
    for arm in study.arms:
        runs = [t.record for t in tasks if t.arm.label == arm.label]
        done = [r for r in runs if r.get("state") == "done" and r.get("metrics")]
        summary = {m: mean_std(r["metrics"].get(m) for r in done) for m in METRICS}
        curve = {}
        for eps in study.protocol.curve.eps:
            curve[eps.text] = mean_std((r.get("curve") or {}).get(eps.text, {}).get("aa") for r in done)
        recipe = arm.recipes[study.seeds[0]]
        try:
            recipe_rel = os.path.relpath(arm.recipe_path, study.out_dir)
        except ValueError:
            recipe_rel = str(arm.recipe_path)
        arms.append({"label": arm.label, "recipe": recipe_rel, "overrides": list(arm.overrides),
                     "method": recipe.method.name,
                     "base": recipe.method.base if recipe.method.name == "ebjdat" else None,
                     "runs": runs, "summary": summary, "curve": curve})
    protocol = as_dict(study.protocol)
    runs = [t.record for t in tasks if t.record.get("state") == "done"]
    compute_s = sum(float((r.get("metrics") or {}).get("train_s") or 0.0) + float(r.get("eval_s") or 0.0)
                    for r in runs)
    return {"format": FORMAT, "compute_s": round(compute_s, 1), "study": study.name, "study_file": str(study.path),
            "updated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "state": state, "protocol": protocol, "seeds": list(study.seeds), "jobs": study.jobs,
            "machine": machine(),
            "wall_s": round(wall_s, 1), "arms": arms}


def _what(arm: dict[str, Any]) -> str:
    return f"{arm['method']} on {arm['base']}" if arm.get("base") else str(arm["method"])


def markdown(doc: dict[str, Any]) -> str:
    """results.md: the study's table(s) with its protocol, command, machine and wall time."""
    p = doc["protocol"]
    seeds = doc["seeds"]
    lines = [f"# Study `{doc['study']}`", ""]
    lines.append(f"`ebjdat study {doc['study_file']}`: {len(doc['arms'])} arms × {len(seeds)} seed"
                 f"{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}); state **{doc['state']}**, "
                 f"updated {doc['updated']}.")
    lines.append("")
    m = doc.get("machine", {})
    lines.append(f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, device {m.get('device', '?')}, "
                 f"torch {m.get('torch', '?')}. Wall time of the study: {doc['wall_s'] / 60:.1f} min "
                 f"({doc.get('jobs', 1)} runs at a time); its runs' training and evaluation took "
                 f"{doc.get('compute_s', 0) / 60:.1f} min in all.")
    lines.append("")
    gen = f"{p['n_samples']} generated samples ({p['samples']})"
    lines.append(f"Protocol: checkpoint `{p['ckpt']}`, the first {p['n'] or 'all'} test images, "
                 f"{p['norm']} ε = {p['eps']} (pixel units of [0, 1] images), PGD-{p['pgd_steps']} "
                 f"(step ε/4, random start), AutoAttack `{p['attacks']}`, seed {p['seed']}; fd_ref of "
                 f"{gen} against the train split, beside the init baseline (as many draws from the "
                 f"run's init distribution) and the floor (held-out test images). Accuracies in %, "
                 f"mean ± std over seeds (sample std).")
    lines.append("")
    header = ["arm", "method", "clean", f"PGD-{p['pgd_steps']}", "AutoAttack", "fd_ref ↓", "init", "floor",
              "E gap c−a", "E gap c−g", "train time", "img/s", "runs"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    kinds = {key: kind for key, _, kind in COLUMNS}
    for arm in doc["arms"]:
        s = arm["summary"]
        n_done = sum(1 for r in arm["runs"] if r.get("state") == "done")
        cells = [f"`{arm['label']}`", _what(arm)] + [fmt_mean_std(s[k], kinds[k]) for k in METRICS]
        collapsed = sum(1 for r in arm["runs"] if r.get("status") == "collapsed")
        runs = f"{n_done}/{len(arm['runs'])}" + (f" ({collapsed} collapsed)" if collapsed else "")
        lines.append("| " + " | ".join(cells + [runs]) + " |")
    lines.append("")
    lines.append("E gaps: mean energy of clean test images minus that of their PGD examples (c−a) and "
                 "of the generated samples (c−g), in eval mode (E = −logsumexp of the logits). "
                 "Train time: the run's training wall time (its monitors included), not the evaluation.")
    curve_eps = list(p.get("curve", {}).get("eps") or [])
    if curve_eps:
        c = p["curve"]
        lines += ["", f"Robust accuracy (%) over ε, AutoAttack subset `{c['attacks']}`, "
                      f"{c['n'] or p['n'] or 'all'} test points, {p['norm']}:", ""]
        header = ["arm"] + [f"ε = {e}" for e in curve_eps]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for arm in doc["arms"]:
            lines.append("| " + " | ".join([f"`{arm['label']}`"] + [fmt_mean_std(arm["curve"].get(e, {}), "acc")
                                                                    for e in curve_eps]) + " |")
    failed = [(arm["label"], r) for arm in doc["arms"] for r in arm["runs"] if r.get("state") == "failed"]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- `{r['run_dir']}`: {r.get('error')}" for _, r in failed]
    return "\n".join(lines) + "\n"


def write(study: Study, tasks: Sequence[Any], state: str, wall_s: float, figures: bool = False) -> dict[str, Any]:
    """Write results.json and results.md (atomically); the figures too when `figures`."""
    doc = build(study, tasks, state, wall_s)
    study.out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(study.out_dir / "results.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(study.out_dir / "results.md", markdown(doc))
    if figures:
        from .figures import energies_figure, trilemma_figure

        trilemma_figure(doc, study.out_dir / "trilemma.png")
        energies_figure(doc, study.out_dir, study.out_dir / "energies.png")
    return doc


def previous_wall(path: Path) -> float:
    """The wall time earlier invocations of the study recorded; 0 when none, or when none of its
    runs is on disk (results.json shipped in a fresh clone: that time was spent elsewhere)."""
    runs = path.parent / "runs"
    if not runs.is_dir() or not any(runs.iterdir()):
        return 0.0
    try:
        return float(json.loads(path.read_text(encoding="utf-8")).get("wall_s") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0
