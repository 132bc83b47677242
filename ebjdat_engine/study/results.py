"""A study's results: `RESULTS_FILE` (every run's numbers and where they came from), `RESULTS_MD`
(the table, mean ± std over seeds, beside the protocol, the command, the machine and the wall
time) and the figures (figures.py).

The results file, format 1 (paths relative to the study directory)::

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

from ..rundir import StudyDir, write_text_atomic
from .schema import Study, as_dict
from .table import COLUMNS, fmt_mean_std, fmt_value, mean_std

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
        entry = {"label": arm.label, "recipe": recipe_rel, "overrides": list(arm.overrides),
                 "method": recipe.method.name,
                 "base": recipe.method.base if recipe.method.name == "ebjdat" else None,
                 "runs": runs, "summary": summary, "curve": curve}
        if recipe.method.name == "ebjdat":
            entry["ebjdat"] = ebjdat_settings(recipe)
        lengths = sorted(set(study.protocol.chain_lengths))
        if lengths:
            entry["chains"] = {str(k): mean_std((r["metrics"].get("chains") or {}).get(str(k)) for r in done)
                               for k in lengths}
            entry["chain_verdicts"] = [r["metrics"].get("chain_verdict") for r in done]
        if arm.label in study.protocol.check.arms:
            checked = [r for r in done if r.get("check")]
            entry["check"] = {"attacks": study.protocol.check.attacks,
                              "aa": mean_std(r["check"].get("aa") for r in checked),
                              "protocol_aa": mean_std(r["metrics"].get("aa") for r in checked),
                              "per_seed": [{"seed": r["seed"], "aa": r["check"].get("aa"),
                                            "protocol_aa": r["metrics"].get("aa")} for r in checked]}
        arms.append(entry)
    protocol = as_dict(study.protocol)
    runs = [t.record for t in tasks if t.record.get("state") == "done"]
    compute_s = sum(float((r.get("metrics") or {}).get("train_s") or 0.0) + float(r.get("eval_s") or 0.0)
                    for r in runs)
    return {"format": FORMAT, "compute_s": round(compute_s, 1), "study": study.name, "study_file": str(study.path),
            "updated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "state": state, "protocol": protocol, "seeds": list(study.seeds), "jobs": study.jobs,
            "machine": machine(),
            "wall_s": round(wall_s, 1), "arms": arms}


#: EB-JDAT's inner objectives as the tables write them (E = -logsumexp l, D the logit-cosine term)
OBJECTIVE_TEXT = {"logit_cosine": "l_y + D", "ce_cosine": "CE + D", "ce": "CE", "energy": "E(x̃)"}


def ebjdat_settings(recipe) -> dict[str, Any]:
    """The EB-JDAT pieces an ablation varies, 'auto' resolved (what the run's `start` event says)."""
    from ..recipe import resolved_h2, resolved_objective

    m, a = recipe.method, recipe.adversary
    return {"profile": m.profile, "objective": resolved_objective(a.objective, m.profile),
            "h2": resolved_h2(m.h2, m.profile) if m.w2 > 0 else "none", "w_ce": m.w_ce, "w2": m.w2,
            "w3": m.w3, "noise": a.noise, "steps": a.steps}


def _runs_at_a_time(jobs: int) -> str:
    return "one run at a time" if jobs == 1 else f"{jobs} runs at a time"


def _what(arm: dict[str, Any]) -> str:
    if not arm.get("base"):
        return str(arm["method"])
    e = arm.get("ebjdat")
    if not e:
        return f"{arm['method']} on {arm['base']}"
    extra = ""  # what differs from EB-JDAT's own values (K = 5, w2 = w3 = 1), when it does
    if e["h2"] != "none" and e.get("w2", 1.0) != 1.0:
        extra += f", w2 {e['w2']:g}"
    if e.get("w3", 1.0) != 1.0:
        extra += f", w3 {e['w3']:g}"
    if e.get("steps", 5) != 5:
        extra += f", K {e['steps']}"
    if e.get("noise"):
        extra += f", noise {e['noise']:g}"
    return (f"{arm['method']} on {arm['base']}: {OBJECTIVE_TEXT.get(e['objective'], e['objective'])}, "
            f"h2 {e['h2']}, w_ce {e['w_ce']:g}{extra}")


def _pick(arms: list[dict[str, Any]], methods: tuple[str, ...], key: str, best) -> dict[str, Any] | None:
    """Of the arms of these methods with a value of `key`, the best by `best` (min or max)."""
    found = [a for a in arms if a["method"] in methods and a["summary"][key]["mean"] is not None]
    return best(found, key=lambda a: a["summary"][key]["mean"]) if found else None


def _distance_table(doc: dict[str, Any]) -> list[str]:
    """Per arm, the distance on each leg to the best single-purpose method of the study: clean vs
    standard training, AutoAttack vs adversarial training (PGD-AT), fd_ref vs the best JEM (and
    vs the arm's own init)."""
    arms = doc["arms"]
    std = _pick(arms, ("standard",), "clean", max)
    at = _pick(arms, ("pgd_at",), "aa", max)
    jem = _pick(arms, ("jem", "jempp", "sadajem"), "fd_ref", min)
    if not (std or at or jem):
        return []
    ref = lambda a, k: a["summary"][k]["mean"] if a else None  # noqa: E731
    lines = ["", "Distance to the best single-purpose method on each leg (points of accuracy, fd_ref "
             "units; negative = worse on that leg): clean − " + (f"`{std['label']}`" if std else "—") +
             ", AutoAttack − " + (f"`{at['label']}`" if at else "—") + ", fd_ref of " +
             (f"`{jem['label']}` (the best JEM)" if jem else "—") + " − fd_ref, and the arm's init − fd_ref "
             "(> 0: beats its init).", ""]
    header = ["arm", "Δ clean", "Δ AA", "Δ fd_ref vs JEM", "Δ fd_ref vs init", "legs held"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in arms:
        s = a["summary"]
        cells = [f"`{a['label']}`"]
        held = []
        for key, other, scale, name in (("clean", std, 100, "acc"), ("aa", at, 100, "robust")):
            mine, theirs = s[key]["mean"], ref(other, key)
            if mine is None or theirs is None:
                cells.append("—")
                continue
            d = scale * (mine - theirs)
            cells.append(f"{d:+.1f}")
            if d >= -3.0:
                held.append(name)
        fd, best_jem, init = s["fd_ref"]["mean"], ref(jem, "fd_ref"), s["fd_ref_init"]["mean"]
        cells.append(f"{best_jem - fd:+.2f}" if fd is not None and best_jem is not None else "—")
        cells.append(f"{init - fd:+.2f}" if fd is not None and init is not None else "—")
        if fd is not None and best_jem is not None and init is not None and fd <= best_jem + 0.05 and fd < init:
            held.append("gen")
        cells.append(", ".join(held) or "none")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "A leg is held when the arm is within 3 points of the best single-purpose method's "
              "accuracy (clean, AutoAttack), or, for generation, within 0.05 of the best JEM's fd_ref and "
              "below its own init. One-seed noise on 200 points is about ±3 points."]
    return lines


def _chains_table(doc: dict[str, Any]) -> list[str]:
    lengths = [str(k) for k in doc["protocol"].get("chain_lengths") or []]
    arms = [a for a in doc["arms"] if a.get("chains")]
    if not lengths or not arms:
        return []
    p = doc["protocol"]
    lines = ["", f"fd_ref of {p['n_samples']} fresh chains by their length in steps, from the run's init "
             "(0: the init draws themselves), each run's own sampler in eval mode; the verdict per seed: "
             "*generator* (the longest chain within 10 % of the best length and below the init), "
             "*short-run refiner* (short chains beat the init, longer ones get worse), *none* (no length "
             "beats the init).", ""]
    header = ["arm"] + [f"{k} steps" for k in lengths] + ["verdict (per seed)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in arms:
        verdicts = [v or "—" for v in a.get("chain_verdicts") or []]
        tally = ", ".join(f"{v} ×{verdicts.count(v)}" for v in dict.fromkeys(verdicts)) or "—"
        lines.append("| " + " | ".join([f"`{a['label']}`"] + [fmt_mean_std(a["chains"].get(k, {}), "num")
                                                             for k in lengths] + [tally]) + " |")
    return lines


def _check_table(doc: dict[str, Any]) -> list[str]:
    arms = [a for a in doc["arms"] if a.get("check")]
    if not arms:
        return []
    p = doc["protocol"]
    attacks = arms[0]["check"]["attacks"]
    lines = ["", f"Gradient masking check: AutoAttack `{attacks}` (with FAB-T and Square when standard) on "
             f"the same {p['n'] or 'all'} points and ε, per seed, beside the protocol's `{p['attacks']}`:", ""]
    header = ["arm", f"AA `{p['attacks']}`", f"AA `{attacks}`", "per seed (protocol → check)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in arms:
        c = a["check"]
        per = ", ".join(f"s{r['seed']}: {fmt_value(r['protocol_aa'], 'acc')} → {fmt_value(r['aa'], 'acc')}"
                        for r in c["per_seed"])
        lines.append(f"| `{a['label']}` | {fmt_mean_std(c['protocol_aa'], 'acc')} | "
                     f"{fmt_mean_std(c['aa'], 'acc')} | {per} |")
    return lines


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
                 f"({_runs_at_a_time(doc.get('jobs', 1))}); its runs' training and evaluation took "
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
    lines += _distance_table(doc) + _chains_table(doc) + _check_table(doc)
    failed = [(arm["label"], r) for arm in doc["arms"] for r in arm["runs"] if r.get("state") == "failed"]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- `{r['run_dir']}`: {r.get('error')}" for _, r in failed]
    return "\n".join(lines) + "\n"


def write(study: Study, tasks: Sequence[Any], state: str, wall_s: float, figures: bool = False) -> dict[str, Any]:
    """Write the results file and its markdown table (atomically); the figures too when `figures`."""
    doc = build(study, tasks, state, wall_s)
    study.out_dir.mkdir(parents=True, exist_ok=True)
    folder = StudyDir(study.out_dir)
    write_text_atomic(folder.results, json.dumps(doc, indent=1) + "\n")
    write_text_atomic(folder.results_md, markdown(doc))
    if figures:
        from .figures import chains_figure, energies_figure, trilemma_figure

        trilemma_figure(doc, study.out_dir / "trilemma.png")
        energies_figure(doc, study.out_dir, study.out_dir / "energies.png")
        if doc["protocol"].get("chain_lengths"):
            chains_figure(doc, study.out_dir / "chains.png")
    return doc


def previous_wall(path: Path) -> float:
    """The wall time earlier invocations of the study recorded; 0 when none, or when none of its
    runs is on disk (a results file shipped in a fresh clone: that time was spent elsewhere)."""
    runs = StudyDir.of_results(path).runs
    if not runs.is_dir() or not any(runs.iterdir()):
        return 0.0
    try:
        return float(json.loads(path.read_text(encoding="utf-8")).get("wall_s") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0
