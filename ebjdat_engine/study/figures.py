"""A study's figures: the trilemma (robust accuracy against generation quality, one marker per
arm, clean accuracy in its label) and the energy landscape per arm (clean / adversarial /
generated energy histograms in eval mode, the paper's Fig. 2 for every arm at once)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SHORT = {"clean": "clean", "adversarial": "adv", "generated": "gen"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def trilemma_figure(doc: dict[str, Any], path: Path) -> Path | None:
    """x: fd_ref (log scale, lower is better), y: AutoAttack accuracy; one marker per arm (mean
    over seeds, error bars the std), named in the legend with its clean accuracy. A thin line
    from each marker to a tick at that arm's init baseline shows how far generation moved from
    where its sampler starts; the floor (held-out real images) is a vertical line."""
    points = [(a, a["summary"]) for a in doc["arms"]
              if a["summary"]["aa"]["mean"] is not None and a["summary"]["fd_ref"]["mean"] is not None]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 5.0), dpi=120)
    cmap = plt.get_cmap("tab10" if len(points) <= 10 else "tab20")
    markers = "osD^vPX*h<>p"
    for i, (arm, s) in enumerate(points):
        color, marker = cmap(i % cmap.N), markers[i % len(markers)]
        x, y = s["fd_ref"]["mean"], 100 * s["aa"]["mean"]
        init = s["fd_ref_init"]["mean"]
        if init is not None:
            ax.plot([init, x], [y, y], color=color, linewidth=0.8, linestyle=":", alpha=0.8)
            ax.plot([init], [y], marker="|", ms=9, color=color, alpha=0.8)
        clean = s["clean"]["mean"]
        label = f"{arm['label']}: clean {100 * clean:.1f}%" if clean is not None else arm["label"]
        ax.errorbar([x], [y], xerr=[s["fd_ref"]["std"] or 0.0], yerr=[100 * (s["aa"]["std"] or 0.0)],
                    fmt=marker, ms=7, capsize=3, color=color, label=label)
    floors = [s["fd_ref_floor"]["mean"] for _, s in points if s["fd_ref_floor"]["mean"] is not None]
    if floors:
        ax.axvline(sum(floors) / len(floors), color="grey", linestyle="--", linewidth=1,
                   label="floor: held-out real images")
    ax.plot([], [], marker="|", ms=9, linestyle=":", color="grey", label="init baseline of each arm's sampler")
    ax.set_xscale("log")
    ax.set_xlabel("fd_ref of generated samples (log scale; lower = better generation)")
    ax.set_ylabel(f"AutoAttack accuracy (%), {doc['protocol']['norm']} ε = {doc['protocol']['eps']}")
    ax.set_title(f"{doc['study']}: robustness vs generation, mean ± std over {len(doc['seeds'])} seed(s)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
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
                    label=f"{SHORT.get(name, name)} {sum(vs) / len(vs):.2f}")
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


def chains_figure(doc: dict[str, Any], path: Path) -> Path | None:
    """fd_ref of fresh chains against their length (symlog x: 0 is the init itself), one line per
    arm (mean over seeds, error bars the std); the floor (held-out real images) as a dashed line.
    A line that falls and stays low is a generator; one that dips then climbs past its start is a
    short-run refiner."""
    arms = [a for a in doc["arms"] if a.get("chains") and any(v["mean"] is not None for v in a["chains"].values())]
    if not arms:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 5.0), dpi=120)
    cmap = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")
    markers = "osD^vPX*h<>p"
    for i, arm in enumerate(arms):
        pts = sorted((int(k), v) for k, v in arm["chains"].items() if v["mean"] is not None)
        xs, ys = [k for k, _ in pts], [v["mean"] for _, v in pts]
        err = [v["std"] or 0.0 for _, v in pts]
        ax.errorbar(xs, ys, yerr=err, marker=markers[i % len(markers)], ms=4, capsize=2, linewidth=1.2,
                    color=cmap(i % cmap.N), label=arm["label"])
    floors = [a["summary"]["fd_ref_floor"]["mean"] for a in arms if a["summary"]["fd_ref_floor"]["mean"] is not None]
    if floors:
        ax.axhline(sum(floors) / len(floors), color="grey", linestyle="--", linewidth=1,
                   label="floor: held-out real images")
    ax.set_xscale("symlog", linthresh=5)
    ax.set_yscale("log")
    ax.set_xlabel("chain length (steps from the init; symlog scale, 0 = the init draws)")
    ax.set_ylabel("fd_ref of the chains' samples (log; lower = better)")
    ax.set_title(f"{doc['study']}: does the model generate, or only refine its init? "
                 f"mean ± std over {len(doc['seeds'])} seed(s)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
