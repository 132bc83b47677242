"""The generation trace: is the generator learning? fd_ref of the current generated samples over
training, beside what no learning gives and what real images give.

Every `monitor.gen_every` steps (and at the end) the loop asks for a `generation` event:

* ``fd_ref``: the Fréchet distance, in the features of the dataset's reference classifier
  (`eval/fd_ref.py`), between `n` current generated samples (fixed replay-buffer slots, the
  slots `ebjdat eval` draws; DAT: its latest negatives) and the training split — what
  `ebjdat eval` reports as fd_ref;
* ``init_baseline``: the same for `n` fresh draws of the sampler's init distribution (the
  no-learning baseline: a generator that learnt nothing stays there), computed once;
* ``floor``: the same for `n` held-out real images (`monitor.probe_split`: the first test images,
  as `ebjdat eval`'s floor; 'valid': the validation split, else test), computed once.

All three use the same `n` (`monitor.gen_n`, capped by the held-out images and the generated
samples available): a Fréchet distance depends on the sample size. Only for the datasets fd_ref
is defined for (digits, fashion-mnist) and methods that generate; elsewhere the trace is off.
The reference classifier is trained on first use (digits: seconds; Fashion-MNIST: minutes on a
CPU) and cached (`$EBJDAT_CACHE`); the first event says so. Runs on rank 0 only, with forked RNGs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..eval.fd_ref import FD_REF_DATASETS
from ..recipe import MonitorConfig
from ..recipe.schema import DataConfig
from .probe import heldout_split
from .sample_source import GeneratedSource, seeded


class GenerationTrace:
    """fd_ref of the current generated samples against the training split, with its baseline and floor."""

    def __init__(self, cfg: MonitorConfig, data_cfg: DataConfig, splits: Any, source: GeneratedSource,
                 device: torch.device):
        self.cfg = cfg
        self.data_cfg = data_cfg
        self.splits = splits
        self.source = source
        self.device = device
        self.enabled = cfg.gen_every > 0 and data_cfg.name in FD_REF_DATASETS and source.generates
        self.last_step = -1
        self._clf: torch.nn.Module | None = None
        self._real: tuple[np.ndarray, np.ndarray] | None = None
        self._baseline: dict[int, tuple[float | None, str]] = {}
        self._floor: dict[int, float] = {}
        self._heldout_name, self._heldout = heldout_split(cfg, splits)

    def due(self, step: int) -> bool:
        return self.enabled and step % self.cfg.gen_every == 0 and step != self.last_step

    def _stats(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        from ..eval.fd_ref import reference_features
        from ..eval.frechet import feature_stats

        assert self._clf is not None
        return feature_stats(reference_features(images, self._clf))

    def _fd(self, images: torch.Tensor) -> float:
        from ..eval.frechet import frechet_distance

        assert self._real is not None
        return frechet_distance(*self._stats(images), *self._real)

    def measure(self, step: int, latest: torch.Tensor | None) -> dict[str, Any] | None:
        """The `generation` event's fields, or None when there is nothing to measure."""
        if not self.enabled:
            return None
        n = min(self.cfg.gen_n, self.source.available(latest), len(self._heldout))
        if n < 2:
            return None
        self.last_step = step
        start = time.perf_counter()
        reference: dict[str, Any] | None = None
        with seeded(self.device):
            if self._clf is None:
                from ..eval.fd_ref import reference_classifier

                self._clf = reference_classifier(self.data_cfg, self.device)
                info = self._clf.fd_ref_info
                reference = {"trained_now": info["trained_now"], "seconds": round(info["seconds"], 2),
                             "test_acc": info["test_acc"], "path": info["path"]}
                self._real = self._stats(self.splits.train.images)
            taken = self.source.take(n, latest)
            if taken is None:
                return None
            fake, info = taken
            n = int(fake.shape[0])
            value = self._fd(fake)
            if n not in self._baseline:
                drawn = self.source.init_draws(n, fake)
                self._baseline[n] = (self._fd(drawn[0]), drawn[1]) if drawn is not None else (None, "none")
            if n not in self._floor:
                self._floor[n] = self._fd(self._heldout.images[:n])
        baseline, baseline_source = self._baseline[n]
        clf_info = self._clf.fd_ref_info
        event: dict[str, Any] = {
            "metric": "fd_ref", "fd_ref": value, "n": n, "source": info["source"],
            "init_baseline": baseline, "floor": self._floor[n],
            "baseline_source": baseline_source,
            "floor_source": f"the first {n} images of the {self._heldout_name} split",
            "reference_set": f"{self.data_cfg.name} train split ({len(self.splits.train)} images)",
            "feature_network": (f"ebjdat reference CNN (cnn w2 bn) trained on {clf_info['dataset']}, "
                                f"test acc {clf_info['test_acc']:.4f}"),
            "samples": info,
        }
        if reference is not None:
            event["reference"] = reference
        event["seconds"] = round(time.perf_counter() - start, 3)
        return event


__all__ = ["GenerationTrace"]
