"""Warm start (`model.init_from`): a new run's weights from another run or checkpoint.

Only weights travel (the optimizer, schedule, buffer and RNGs start fresh; continuing a run is
`--resume`). Three cases:

* same normalisation on both sides: the state dict is copied as it is;
* the source has BatchNorm and this recipe has `model.norm = "none"` (DAT's stage 1 → stage 2):
  every BatchNorm is folded into its convolution (`models.fold`), so the new network computes the
  source's eval-mode function exactly; with `model.norm = "affine"` every BatchNorm becomes a
  per-channel affine layer instead (exact in any architecture, the pre-activation WRN included);
* anything else that does not fit (another width, depth, class count or architecture): an error
  naming the tensors, before a run directory is made.

The source's EMA weights are used when it kept them (`model.init_weights = "auto"`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.fold import FoldError, affine_state_dict, folded_state_dict
from ..recipe import RecipeError
from ..recipe.schema import ModelConfig


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def mismatches(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `theirs` from loading into a model whose state dict is `ours`, tensor by tensor."""
    problems = [f"{k}: {_shape(theirs[k])} in the source, {_shape(v)} here"
                for k, v in ours.items() if k in theirs and theirs[k].shape != v.shape]
    problems += [f"{k}: missing from the source" for k in ours if k not in theirs]
    problems += [f"{k}: in the source only" for k in theirs if k not in ours]
    return problems


def warm_start(model: nn.Module, cfg: ModelConfig) -> dict[str, Any]:
    """Load the weights `cfg.init_from` names into `model` (built from `cfg`, in place); returns
    what the `start` event records. Raises RecipeError (path-qualified, exit 2) when the source
    cannot be loaded or does not fit."""
    from ..eval.loading import LoadError, load_run

    key, source = "$.model.init_from", cfg.init_from
    try:
        src = load_run(Path(source), "last", "cpu", cfg.init_weights)
    except LoadError as e:
        raise RecipeError([f"{key}: {e}"]) from None
    src_norm, our_norm = src.recipe.model.norm, cfg.norm
    folded: list[str] = []
    if src_norm == "batch" and our_norm == "none":
        try:
            state, folded = folded_state_dict(src.model)
        except FoldError as e:
            raise RecipeError([f"{key}: {e}"]) from None
    elif src_norm == "batch" and our_norm == "affine":
        state, folded = affine_state_dict(src.model)
    elif src_norm != our_norm:
        raise RecipeError([f"{key}: the source was trained with model.norm = '{src_norm}' and this "
                           f"recipe has '{our_norm}'; warm starts keep the norm, or turn BatchNorm "
                           f"into 'none' (folded into the convolutions) or 'affine'"])
    else:
        state = src.model.state_dict()
    problems = mismatches(model.state_dict(), state)
    if problems:
        shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise RecipeError([f"{key}: {source} does not fit this model ({len(problems)} tensors): "
                           + "; ".join(shown)])
    model.load_state_dict(state)
    return {"source": str(src.checkpoint_path), "step": src.step, "weights": src.weights,
            "method": src.recipe.method.name, "norm": src_norm,
            "folded_batchnorms": len(folded),
            "folded_into": {"none": "convolutions", "affine": "per-channel affine layers"}.get(our_norm)}


__all__ = ["mismatches", "warm_start"]
