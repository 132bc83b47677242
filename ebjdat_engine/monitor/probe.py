"""The eval-mode energy probe: energies measured during training the way `ebjdat eval` measures them.

The per-step energies of `EnergyMonitor` come from the methods' training forwards, with
BatchNorm in train mode: each population (clean, adversarial, generated) is normalised by its
own batch statistics, which hides shifts of one population's mean against another's. The probe
measures, every `monitor.every` steps (with the energy event), in eval mode (BatchNorm running
statistics, no autocast, fp32, parameters frozen during the attack, no gradients for the
energies) a fixed set:

* clean:       the first `monitor.probe_n` images of `monitor.probe_split`: 'test' (default) is
               exactly the images `ebjdat eval --n probe_n` takes, so the gaps agree with its
               report; 'valid' keeps test images out of training (the validation split, else test),
               at the price of sampling noise between the two sets of images;
* adversarial: their PGD examples by `ebjdat eval`'s protocol (`eval/robustness.py`
               `pgd_examples`: eval.eps, `monitor.probe_attack_steps` steps (20), step eps/4,
               random start from a fixed seed, linf), made afresh at every probe;
* generated:   `probe_n` current generated samples (fixed replay-buffer slots, the slots
               `ebjdat eval` draws; DAT: its latest negatives; none without a generator).

Statistics and gaps are those of `ebjdat eval`'s energy landscape (`eval/landscape.py`), plus
the monitor's fixed-bin histogram. The probe runs between steps on rank 0 only, on the bare
model (no DDP wrapper, no collectives), and leaves the training state untouched: training mode
and parameter flags are restored and the RNGs are forked (`generated.seeded`).

Cost: probe_n * (3 * steps + 3) forward-equivalents (F) per energy event, in fp32.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..eval.landscape import energies as eval_energies
from ..eval.landscape import energy_landscape
from ..eval.robustness import pgd_examples, pgd_protocol
from ..recipe import MonitorConfig
from ..samplers import bn_mode
from .sample_source import PROBE_SEED, GeneratedSource, seeded

BATCH = 500  # the batch of `ebjdat eval`'s energies and PGD
NORM = "linf"


def histogram(e: torch.Tensor, lo: float, hi: float, bins: int) -> list[int]:
    """The monitor's fixed-range histogram (values beyond the range fall in the edge bins)."""
    return [int(c) for c in torch.histc(e.float().clamp(lo, hi), bins=bins, min=lo, max=hi).tolist()]


def heldout_split(cfg: MonitorConfig, splits: Any) -> tuple[str, Any]:
    """(name, split) of the held-out images `monitor.probe_split` names: the test split, or the
    validation split when asked for and the run has one (else the test split)."""
    if cfg.probe_split == "valid" and splits.valid is not None and len(splits.valid) > 0:
        return "valid", splits.valid
    return "test", splits.test


class EnergyProbe:
    """A fixed probe set measured in eval mode; `measure` returns the `eval_mode` block."""

    def __init__(self, cfg: MonitorConfig, images: torch.Tensor, labels: torch.Tensor, split: str, *,
                 eps: float, eps_text: str):
        n = min(cfg.probe_n, len(labels))
        self.cfg = cfg
        self.split = split
        self.x = images[:n].float().div(255.0) if images.dtype == torch.uint8 else images[:n].float()
        self.y = labels[:n]
        self.eps, self.eps_text = eps, eps_text
        self.lo, self.hi = cfg.energy_range

    @classmethod
    def for_splits(cls, cfg: MonitorConfig, splits: Any, *, eps: float, eps_text: str) -> "EnergyProbe | None":
        """The probe of a run's data (None when `probe_n` is 0)."""
        if cfg.probe_n <= 0:
            return None
        name, split = heldout_split(cfg, splits)
        return cls(cfg, split.images, split.labels, name, eps=eps, eps_text=eps_text)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def attack(self) -> str:
        return f"PGD-{self.cfg.probe_attack_steps} eps {self.eps_text} {NORM}"

    def measure(self, model: nn.Module, generated: tuple[torch.Tensor, dict[str, Any]] | None) -> dict[str, Any]:
        """Energies of the probe set, its PGD examples and `generated` (samples, their source)
        under `model` in eval mode; every flag and RNG as before afterwards."""
        start = time.perf_counter()
        with seeded(self.x.device), bn_mode(model, "eval"):
            # ebjdat eval: torch.manual_seed(seed), then pgd_examples (the only RNG consumer)
            x_adv = pgd_examples(model, self.x, self.y, eps=self.eps, steps=self.cfg.probe_attack_steps,
                                 norm=NORM, batch_size=BATCH)
            pops = {"clean": eval_energies(model, self.x), "adversarial": eval_energies(model, x_adv)}
            if generated is not None:
                pops["generated"] = eval_energies(model, generated[0])
        landscape = energy_landscape(pops)
        populations = {}
        for name, e in pops.items():
            populations[name] = {**landscape[name], "hist": histogram(e, self.lo, self.hi, self.cfg.bins)}
        probe: dict[str, Any] = {
            "n": self.n, "split": self.split, "images": f"the first {self.n} of the {self.split} split",
            "attack": self.attack,
            "attack_protocol": pgd_protocol(self.eps, self.eps_text, self.cfg.probe_attack_steps, NORM, self.n),
            "seed": PROBE_SEED, "model_mode": "eval", "precision": "fp32",
        }
        if generated is not None:
            probe["generated"] = generated[1]
        probe["seconds"] = round(time.perf_counter() - start, 3)
        return {"mode": "eval", "populations": populations, "gaps": landscape["gaps"],
                "range": [self.lo, self.hi], "bins": self.cfg.bins, "probe": probe,
                "definition": landscape["definition"]}


__all__ = ["EnergyProbe", "GeneratedSource", "heldout_split", "histogram"]
