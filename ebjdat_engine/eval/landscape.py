"""The energy landscape (the paper's Tab. 1 / Fig. 2): E(x) = -logsumexp l(x) for clean test
images, their PGD adversarial versions and generated samples — means, stds, mean differences,
and one histogram with the three populations overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import energy

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@torch.no_grad()
def energies(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([energy(model(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]).cpu()


def summary(e: torch.Tensor) -> dict[str, Any]:
    q = torch.quantile(e.double(), torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
    return {"n": len(e), "mean": e.double().mean().item(), "std": e.double().std().item(),
            "quantiles": {f"q{int(p * 100):02d}": v for p, v in zip(QUANTILES, q)}}


def energy_landscape(pops: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Statistics per population and the gaps (mean E(clean) minus the others)."""
    out: dict[str, Any] = {name: summary(e) for name, e in pops.items()}
    gaps = {}
    for other in ("adversarial", "generated"):
        if "clean" in pops and other in pops:
            gaps[f"clean_minus_{other}"] = out["clean"]["mean"] - out[other]["mean"]
    if "adversarial" in pops and "generated" in pops:
        gaps["adversarial_minus_generated"] = out["adversarial"]["mean"] - out["generated"]["mean"]
    out["gaps"] = gaps
    out["definition"] = "E(x) = -logsumexp_y l_y(x) (lower = more likely under the model)"
    return out


def plot_histogram(pops: dict[str, torch.Tensor], path: Path, title: str = "") -> Path:
    """One PNG with the populations' energy histograms overlaid and their means marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"clean": "tab:blue", "adversarial": "tab:red", "generated": "tab:green"}
    values = torch.cat(list(pops.values()))
    lo, hi = values.min().item(), values.max().item()
    if hi <= lo:
        hi = lo + 1.0
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for name, e in pops.items():
        ax.hist(e.numpy(), bins=50, range=(lo, hi), alpha=0.45, density=True,
                color=colors.get(name), label=f"{name} (mean {e.mean():.2f})")
        ax.axvline(e.mean().item(), color=colors.get(name), linestyle="--", linewidth=1)
    ax.set_xlabel("energy E(x) = -logsumexp l(x)")
    ax.set_ylabel("density")
    ax.set_title(title or "energy landscape", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
