"""What every training method gives the loop: samples, named loss terms, their weights.

One iteration (ALGORITHMS.md §11.2) is, for every method:

    samples = method.draw(model, batch)        # negatives x_q, adversarial x̃ (no parameter grads)
    out     = method.terms(model, batch, samples)
    loss    = sum(weights[name] * out.terms[name])

and, for SAM-based methods, `terms` again at the perturbed weights with the same samples
(`second_pass=True`). The loop never needs to know which method it runs. Methods keep their
own state (a replay buffer, a curriculum) and expose it via `state_dict` for checkpoints.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import attrs
import torch
from torch import nn

from ..models import energy


@attrs.frozen
class Batch:
    """One iteration's data: a labelled batch (x, y) and, for generative methods, the p(x)
    stream's batch `x_px`; with decoupled augmentation the same images' classifier-stream view
    `x_clf`; with a seed folder, seed images `x_seed` (all [0, 1] images)."""

    x: torch.Tensor
    y: torch.Tensor
    x_px: torch.Tensor | None = None
    x_clf: torch.Tensor | None = None    # the classifier stream (DAT's AutoAugment + Cutout view)
    x_seed: torch.Tensor | None = None   # out-of-distribution seed images (DAT's negatives)


@attrs.frozen
class StepOutput:
    """A method's answer for one iteration.

    terms:     unweighted scalar loss terms, by name (e.g. ``ce``, ``px``, ``h2``, ``ce_adv``);
    stats:     detached scalar diagnostics (e.g. ``acc``), averaged over the logging window;
    energies:  detached per-sample energies E(x) = -logsumexp l(x) by population
               (``clean``, ``adversarial``, ``generated``) for the energy monitor;
    generative_loss: the generative term alone (for the divergence guard), if any.
    """

    terms: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = attrs.field(factory=dict)
    energies: dict[str, torch.Tensor] = attrs.field(factory=dict)
    generative_loss: torch.Tensor | None = None


@attrs.frozen
class MethodContext:
    """What a method may know besides its own config sections: numerics and data facts."""

    device: torch.device
    n_classes: int
    image_shape: tuple[int, int, int]
    input_std: float                      # the model's input normalisation (sampler units)
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    train_images: torch.Tensor | None = None   # uint8, for buffer inits fitted on data
    train_labels: torch.Tensor | None = None


class Method:
    """Base class: stateless, no samples, no SAM. Subclasses override what they need."""

    name = "method"
    #: energy populations this method reports (subset of clean, adversarial, generated)
    populations: tuple[str, ...] = ("clean",)
    needs_px = False      # draws a p(x) batch each iteration
    uses_sam = False      # two passes with SAM
    labels: dict[str, str] = {}

    weights: dict[str, float]

    def draw(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Samples for this iteration (no parameter gradients); none by default."""
        return {}

    def terms(self, model: nn.Module, batch: Batch, samples: dict[str, torch.Tensor],
              second_pass: bool = False) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def on_rollback(self) -> None:
        """Called after a collapse rollback (e.g. re-initialise the replay buffer)."""

    def host_check(self) -> dict[str, Any]:
        """Called at logging time (a host sync is allowed here); returns extra metrics."""
        return {}

    #: steps between calls of :meth:`on_cadence` (0: never); a method's own clock, independent
    #: of train.log_every (DAT's AUC curriculum: sampler.auc_every)
    cadence: int = 0

    def on_cadence(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any] | None:
        """Called every `cadence` steps on every rank (a host sync is allowed; `reduce` is the mean
        over ranks, so all ranks decide alike); returns the fields of an event, or None."""
        return None


def clean_forward(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits on the labelled batch, its CE and accuracy (CE in fp32 whatever autocast did)."""
    logits = model(batch.x)
    ce = nn.functional.cross_entropy(logits.float(), batch.y)
    acc = (logits.detach().argmax(1) == batch.y).float().mean()
    return logits, ce, acc


def energies_of(logits: torch.Tensor) -> torch.Tensor:
    """Detached per-sample energies E(x) = -logsumexp l(x) for the energy monitor."""
    return energy(logits.detach())
