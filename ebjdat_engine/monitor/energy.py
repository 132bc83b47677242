"""Energy statistics per population (clean, adversarial, generated), gathered on the device.

These are *train-mode* energies: the ones the methods compute in their training forwards, with
BatchNorm in train mode, so each population is normalised by its own batch statistics (a shift
of one population's mean against another's is partly hidden). The `energy` event labels them
``"mode": "train"``; the eval-mode probe (`probe.py`, the event's ``eval_mode`` block) measures
what `ebjdat eval` measures.

`update` runs every step and only adds into device tensors (a fixed-range histogram and the
count, sum and sum of squares); `flush` copies everything out in one transfer every
`monitor.every` steps. Quantiles are those of the latest batch (a window of samples would need
a host sync or a large buffer; the histogram covers the whole window).
"""

from __future__ import annotations

from typing import Any

import torch

from ..recipe import MonitorConfig

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
GAPS = {"clean_minus_adversarial": ("clean", "adversarial"),
        "clean_minus_generated": ("clean", "generated")}


class EnergyMonitor:
    """Accumulates E(x) = -logsumexp l(x) per population between flushes."""

    def __init__(self, cfg: MonitorConfig, device: torch.device):
        self.cfg = cfg
        self.lo, self.hi = cfg.energy_range
        self.device = device
        self._hist: dict[str, torch.Tensor] = {}
        self._moments: dict[str, torch.Tensor] = {}
        self._latest: dict[str, torch.Tensor] = {}

    def due(self, step: int) -> bool:
        return self.cfg.every > 0 and step % self.cfg.every == 0

    def update(self, energies: dict[str, torch.Tensor]) -> None:
        if self.cfg.every == 0:
            return
        for pop, e in energies.items():
            e = e.detach().float().flatten()
            hist = torch.histc(e.clamp(self.lo, self.hi), bins=self.cfg.bins, min=self.lo, max=self.hi)
            moments = torch.stack([torch.tensor(float(e.numel()), device=e.device), e.sum(), (e * e).sum()])
            if pop in self._hist:
                self._hist[pop] += hist
                self._moments[pop] += moments
            else:
                self._hist[pop], self._moments[pop] = hist, moments
            self._latest[pop] = e

    def flush(self) -> dict[str, Any] | None:
        """Statistics of the window since the last flush (one host transfer), then reset."""
        if not self._hist:
            return None
        pops = list(self._hist)
        q = torch.tensor(QUANTILES, device=self.device)
        packed = torch.cat([torch.cat([self._moments[p], self._hist[p],
                                       torch.quantile(self._latest[p], q.to(self._latest[p].device))])
                            for p in pops]).cpu().tolist()
        width = 3 + self.cfg.bins + len(QUANTILES)
        populations: dict[str, Any] = {}
        for i, pop in enumerate(pops):
            row = packed[i * width:(i + 1) * width]
            n, s, ss = row[:3]
            mean = s / n
            var = max(ss / n - mean * mean, 0.0)
            populations[pop] = {
                "n": int(n), "mean": mean, "std": var ** 0.5,
                "quantiles": dict(zip([f"q{int(p * 100):02d}" for p in QUANTILES], row[3 + self.cfg.bins:])),
                "hist": [int(c) for c in row[3:3 + self.cfg.bins]],
            }
        gaps = {name: populations[a]["mean"] - populations[b]["mean"]
                for name, (a, b) in GAPS.items() if a in populations and b in populations}
        self._hist.clear()
        self._moments.clear()
        self._latest.clear()
        return {"populations": populations, "gaps": gaps, "range": [self.lo, self.hi],
                "bins": self.cfg.bins}
