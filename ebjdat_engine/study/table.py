"""Rows of numbers from evaluations, and the protocol each was measured under.

One place turns an `ebjdat eval` result (RUN/eval/<time>.json) into a table row (clean, PGD,
AutoAttack, generation beside its floor and init baseline, energy gaps, training wall time and
images/s) and into its protocol (checkpoint kind, weights (raw or EMA), points, ε, norm, attacks,
PGD steps, generated samples, seed). `ebjdat compare` and `ebjdat study` both use it, so a study's table and a
comparison of the same runs show the same numbers, and two numbers measured differently are
never put side by side without a flag.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..recipe.fields import CheckError, parse_budget
from ..rundir import RunDir
from ..rundir.events import read_events

#: The protocol fields that must agree for two evaluations to be compared, in display order.
PROTOCOL_FIELDS = ("checkpoint", "weights", "points", "eps", "norm", "attacks", "pgd_steps", "generated",
                   "seed")

#: Row columns: key, header, kind ("acc" in %, "num", "s" seconds, "rate")
COLUMNS = (
    ("clean", "clean", "acc"), ("pgd", "PGD", "acc"), ("aa", "AA", "acc"),
    ("fd_ref", "fd_ref", "num"), ("fd_ref_init", "init", "num"), ("fd_ref_floor", "floor", "num"),
    ("gap_clean_adv", "c−a", "num"), ("gap_clean_gen", "c−g", "num"),
    ("train_s", "train", "s"), ("images_per_s", "img/s", "rate"),
)


def finite_number(value: Any) -> float | None:
    """A JSON value as a finite float; None for absent, booleans, text and nan/inf."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def eps_value(text: Any) -> float | None:
    try:
        return float(parse_budget(str(text)))
    except (CheckError, ValueError):
        return None


def protocol_of(result: dict[str, Any]) -> dict[str, Any]:
    """The protocol of an evaluation result, as comparable values (ε as its text; compared by
    value by `protocol_differences`)."""
    p = result.get("protocol", {})
    pgd, aa = p.get("pgd", {}), p.get("autoattack", {})
    options = result.get("options", {})
    attacks = aa.get("version")
    if attacks == "custom":
        attacks = ",".join(aa.get("attacks", []))
    gen = (result.get("generation") or {}).get("samples") or {}
    generated = None
    if gen:
        generated = f"{gen.get('n', '?')} {'buffer' if 'buffer' in str(gen.get('source', '')) else 'fresh'}"
    return {"checkpoint": (result.get("checkpoint") or {}).get("kind"),
            "weights": (result.get("checkpoint") or {}).get("weights", "raw"),  # older evals: raw
            "points": result.get("n"),
            "eps": pgd.get("eps_text", options.get("eps")), "norm": pgd.get("norm", options.get("norm")),
            "attacks": attacks, "pgd_steps": pgd.get("steps", options.get("pgd_steps")),
            "generated": generated if not options.get("robust_only") else "none",
            "seed": aa.get("seed", options.get("seed"))}


def _same(field: str, a: Any, b: Any) -> bool:
    if field == "eps":
        va, vb = eps_value(a), eps_value(b)
        return va is not None and vb is not None and abs(va - vb) < 1e-9
    return a == b


def protocol_differences(protocols: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per protocol, the fields where it differs from the reference protocol (the most common
    one; ties go to the first): ``{field: (its value, the reference's)}``; empty when it agrees."""
    if not protocols:
        return []
    groups: list[tuple[dict[str, Any], int]] = []
    for p in protocols:
        for i, (q, count) in enumerate(groups):
            if all(_same(f, p.get(f), q.get(f)) for f in PROTOCOL_FIELDS):
                groups[i] = (q, count + 1)
                break
        else:
            groups.append((p, 1))
    reference = max(groups, key=lambda g: g[1])[0]
    return [{f: (p.get(f), reference.get(f)) for f in PROTOCOL_FIELDS if not _same(f, p.get(f), reference.get(f))}
            for p in protocols]


def training_stats(run_dir: Path) -> dict[str, Any]:
    """Training wall time (the sum of every session's start to its last event, so a resumed run
    counts each piece once), the median images/s of its `metrics` events, its method and base,
    and its end status."""
    events = read_events(run_dir)
    wall, seg_start, seg_last = 0.0, None, None
    rates: list[float] = []
    status, step, total, method = None, None, None, None
    for ev in events:
        t = finite_number(ev.get("time"))
        kind = ev.get("type")
        if kind == "start":
            if seg_start is not None and seg_last is not None:
                wall += seg_last - seg_start
            seg_start, seg_last = t, t
            total, method, status = ev.get("total_steps"), ev.get("method"), None
            continue
        if t is not None and seg_start is not None and kind not in ("eval", "sample"):
            seg_last = t  # `ebjdat eval` appends events after the end; they are not training
        if kind == "metrics":
            rate = finite_number(ev.get("images_per_s"))
            if rate is not None:
                rates.append(rate)
        if kind == "end":
            status = ev.get("status")
        if isinstance(ev.get("step"), int) and kind not in ("eval", "sample"):
            step = ev["step"]
    if seg_start is not None and seg_last is not None:
        wall += seg_last - seg_start
    rates.sort()
    return {"train_s": round(wall, 1) if events else None,
            "images_per_s": rates[len(rates) // 2] if rates else None,
            "status": status, "step": step, "total_steps": total, "method": method}


def row_of(result: dict[str, Any], run_dir: Path | None = None) -> dict[str, Any]:
    """The numbers of one evaluation (and of its run's training, when `run_dir` is given)."""
    gen = result.get("generation") or {}
    fd = gen.get("fd_ref") or {}
    gaps = (result.get("energy") or {}).get("gaps") or {}
    row = {"clean": finite_number(result.get("clean_acc")), "pgd": finite_number(result.get("pgd_acc")),
           "aa": finite_number(result.get("aa_acc")),
           "fd_ref": finite_number(fd.get("fd_ref")),
           "fd_ref_init": finite_number((fd.get("init_baseline") or {}).get("fd_ref")),
           "fd_ref_floor": finite_number((fd.get("floor") or {}).get("fd_ref")),
           "beats_init": fd.get("beats_init"),
           "gap_clean_adv": finite_number(gaps.get("clean_minus_adversarial")),
           "gap_clean_gen": finite_number(gaps.get("clean_minus_generated")),
           "train_s": None, "images_per_s": None}
    fid = gen.get("fid") or {}
    if finite_number(fid.get("fid")) is not None:
        row.update(fid=finite_number(fid.get("fid")),
                   fid_init=finite_number((fid.get("init_baseline") or {}).get("fid")),
                   fid_floor=finite_number((fid.get("floor") or {}).get("fid")))
    chains = gen.get("chain_lengths") or {}
    if chains.get("points"):
        row["chains"] = {str(pt["steps"]): finite_number(pt.get("fd_ref")) for pt in chains["points"]}
        row["chain_verdict"] = chains.get("verdict")
    if run_dir is not None and RunDir(run_dir).has_events():
        stats = training_stats(Path(run_dir))
        row["train_s"], row["images_per_s"] = stats["train_s"], stats["images_per_s"]
    return row


def eval_results(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable evaluation JSON of a run, oldest first (by its `time`, then its name)."""
    out = []
    folder = RunDir(run_dir).eval_dir
    if not folder.is_dir():
        return []
    for path in folder.glob("*.json"):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and "clean_acc" in result:
            out.append((path, result))
    out.sort(key=lambda pr: (str(pr[1].get("time", "")), pr[0].name))
    return out


def latest_eval(run_dir: Path, full: bool = True) -> tuple[Path, dict[str, Any]] | None:
    """The latest evaluation of a run; with `full`, the latest that is not robust-only (a
    study's robustness-curve evaluations), falling back to the latest of any kind."""
    results = eval_results(run_dir)
    if full:
        complete = [r for r in results if not r[1].get("options", {}).get("robust_only")]
        results = complete or results
    return results[-1] if results else None


def mean_std(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean and sample std (n − 1) of the finite values; std None for one value."""
    xs = [v for v in (finite_number(v) for v in values) if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return {"mean": mean, "std": std, "n": len(xs)}


def fmt_value(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "acc":
        return f"{100 * value:.1f}"
    if kind == "s":
        return f"{value:.0f} s" if value < 600 else f"{value / 60:.1f} min"
    if kind == "rate":
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def fmt_mean_std(stat: dict[str, Any], kind: str) -> str:
    """'97.3 ± 0.4' (accuracies in %), '1.25 ± 0.05', or one value when there is one."""
    mean, std = stat.get("mean"), stat.get("std")
    if mean is None:
        return "—"
    if std is None or kind in ("s", "rate"):
        return fmt_value(mean, kind)
    return f"{fmt_value(mean, kind)} ± {fmt_value(std, kind).removesuffix(' s')}"


def fmt_protocol(p: dict[str, Any]) -> str:
    """'last, 300 pts, linf 0.1, standard AA, PGD-20, 1000 buffer samples, seed 0'."""
    gen = p.get("generated")
    weights = p.get("weights") or "raw"
    checkpoint = p.get("checkpoint") if weights == "raw" else f"{p.get('checkpoint')} ({weights})"
    return (f"{checkpoint}, {p.get('points')} pts, {p.get('norm')} {p.get('eps')}, "
            f"{p.get('attacks')} AA, PGD-{p.get('pgd_steps')}, "
            f"{'no generation' if gen in (None, 'none') else gen + ' samples'}, seed {p.get('seed')}")
