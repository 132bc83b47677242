"""A study's figures: the trilemma (robust accuracy against generation quality, one marker per
arm, clean accuracy in its label) and the energy landscape per arm (clean / adversarial /
generated energy histograms in eval mode, the paper's Fig. 2 for every arm at once)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def trilemma_figure(doc: dict[str, Any], path: Path) -> Path | None:
    """x: fd_ref (log scale, lower is better), y: AutoAttack accuracy; error bars are the std over
    seeds; the init baseline and the floor (means over arms) as vertical lines."""
    points = [(a, a["summary"]) for a in doc["arms"]
              if a["summary"]["aa"]["mean"] is not None and a["summary"]["fd_ref"]["mean"] is not None]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    cmap = plt.get_cmap("tab10")
    for i, (arm, s) in enumerate(points):
        x, y = s["fd_ref"]["mean"], 100 * s["aa"]["mean"]
        xerr = s["fd_ref"]["std"] or 0.0
        yerr = 100 * (s["aa"]["std"] or 0.0)
        ax.errorbar([x], [y], xerr=[xerr], yerr=[yerr], fmt="o", ms=7, capsize=3, color=cmap(i % 10))
        clean = s["clean"]["mean"]
        ax.annotate(f"{arm['label']} (clean {100 * clean:.1f}%)" if clean is not None else arm["label"],
                    (x, y), textcoords="offset points", xytext=(6, 5), fontsize=7.5, color=cmap(i % 10))
    for key, style, name in (("fd_ref_init", "--", "init baseline"), ("fd_ref_floor", ":", "floor (held-out real)")):
        vals = [s[key]["mean"] for _, s in points if s[key]["mean"] is not None]
        if vals:
            ax.axvline(sum(vals) / len(vals), color="grey", linestyle=style, linewidth=1, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("fd_ref of generated samples (log scale; lower = better generation)")
    ax.set_ylabel(f"AutoAttack accuracy (%), {doc['protocol']['norm']} ε = {doc['protocol']['eps']}")
    ax.set_title(f"{doc['study']}: robustness vs generation ({len(doc['seeds'])} seeds, mean ± std)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _energies(out_dir: Path, run: dict[str, Any]) -> dict[str, list[float]] | None:
    if not run.get("eval"):
        return None
    try:
        result = json.loads((out_dir / run["eval"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    values = (result.get("energy") or {}).get("values")
    return values if isinstance(values, dict) and values else None


def energies_figure(doc: dict[str, Any], out_dir: Path, path: Path) -> Path | None:
    """One panel per arm: the energy histograms of its first evaluated seed (eval mode)."""
    panels = []
    for arm in doc["arms"]:
        for run in arm["runs"]:
            values = _energies(out_dir, run) if run.get("state") == "done" else None
            if values:
                panels.append((arm["label"], run["seed"], values))
                break
    if not panels:
        return None
    plt = _plt()
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=110, squeeze=False)
    colors = {"clean": "tab:blue", "adversarial": "tab:red", "generated": "tab:green"}
    for ax, (label, seed, values) in zip(axes.flat, panels):
        allv = [v for vs in values.values() for v in vs]
        lo, hi = min(allv), max(allv)
        hi = hi if hi > lo else lo + 1.0
        for name, vs in values.items():
            ax.hist(vs, bins=40, range=(lo, hi), alpha=0.45, density=True, color=colors.get(name),
                    label=f"{name[:3]} {sum(vs) / len(vs):.1f}")
        ax.set_title(f"{label} (seed {seed})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5.5, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{doc['study']}: energy E(x) = −logsumexp l(x), eval mode — clean test images, their "
                 f"PGD examples (ε = {doc['protocol']['eps']}) and generated samples; legend: mean", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
