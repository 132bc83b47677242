"""Evaluation during training: clean accuracy on the validation split and a cheap robustness trace.

Each result is an `eval` event with its protocol (split, points, attack, which weights), emitted
through the callback the Trainer passes in; the Trainer decides when (epoch ends, a control
request, the end of the run) and which model (the EMA copy when `train.ema` is on). The final,
standard-protocol evaluation is `ebjdat eval` (eval/evaluate.py), not this.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..data import DataSplits
from ..eval.clean import clean_accuracy
from ..recipe.schema import EvalConfig
from ..samplers import AutocastFactory

Emit = Callable[..., Any]


class TrainingEval:
    """Clean and robust accuracy of the model being trained, as `eval` events."""

    def __init__(self, cfg: EvalConfig, splits: DataSplits, autocast: AutocastFactory, seed: int, emit: Emit):
        self.cfg = cfg
        self.splits = splits
        self.autocast = autocast
        self.seed = seed
        self.emit = emit

    def clean(self, model: nn.Module, weights: str, final: bool) -> dict[str, float]:
        """Clean accuracy on the validation split (else the test split) and, when `final`, test."""
        results: dict[str, float] = {}
        splits = [("valid", self.splits.valid)] if self.splits.valid is not None else []
        if not splits or final:
            splits.append(("test", self.splits.test))
        for name, split in splits:
            acc, n = clean_accuracy(model, split, self.cfg.batch_size, self.cfg.n, self.autocast())
            results[f"{name}_acc"] = acc
            self.emit("eval", split=name, clean_acc=acc, n=n,
                      protocol={"attack": "none", "checkpoint": "current", "points": n,
                                "split": name, "input_noise": 0.0, "weights": weights})
        return results

    def robust(self, model: nn.Module, weights: str) -> dict[str, float]:
        """PGD-20 and an AutoAttack subset on a few validation (else test) points."""
        from ..eval.robustness import robust_accuracies

        cfg = self.cfg
        name, split = ("valid", self.splits.valid) if self.splits.valid is not None else ("test", self.splits.test)
        n = min(cfg.robust_n, len(split))
        x, y = split.images[:n].float().div(255.0), split.labels[:n]
        was_training = model.training
        model.eval()
        try:
            results, _ = robust_accuracies(model, x, y, eps=cfg.eps.value, eps_text=str(cfg.eps),
                                           attacks=cfg.attacks, seed=self.seed)
        finally:
            model.train(was_training)
        results["protocol"]["checkpoint"] = "current"
        results["protocol"]["weights"] = weights
        self.emit("eval", split=name, n=n, **results)
        return {"pgd_acc": results["pgd_acc"], "aa_acc": results["aa_acc"]}


__all__ = ["TrainingEval"]
