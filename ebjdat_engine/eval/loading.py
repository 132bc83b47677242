"""Loading a trained classifier from a run directory or a checkpoint file.

`load_classifier` is the public door for outside tools: it returns an `nn.Module` in eval mode
mapping [0, 1] NCHW images to logits, so any attack library can check ebjdat's numbers.

Weights: a run trained with `train.ema` keeps an averaged copy in its checkpoints; `weights =
"auto"` (the default everywhere) loads that copy when there is one, "ema" insists on it, "raw"
takes the trained weights themselves. `LoadedRun.weights` says which, for every protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ..errors import UserError
from ..models import build_model
from ..recipe import Recipe, from_toml_text
from ..recipe.schema import WEIGHT_CHOICES
from ..rundir.checkpoint import CHECKPOINT_DIR, CheckpointError, load_checkpoint


class LoadError(UserError):
    """The run or checkpoint cannot be loaded; the message says what to give instead."""


@attrs.frozen
class LoadedRun:
    run_dir: Path | None
    checkpoint_path: Path
    checkpoint_kind: str
    recipe: Recipe
    model: nn.Module
    checkpoint: dict[str, Any]
    weights: str = "raw"  # "raw", or "ema <decay>" when the averaged copy was loaded

    @property
    def step(self) -> int:
        return int(self.checkpoint.get("step", 0))


def ema_label(decay: float) -> str:
    """How evaluations name the averaged weights ('ema 0.999'; the trained ones are 'raw')."""
    return f"ema {decay}"

def find_checkpoint(path: str | Path, ckpt: str = "best") -> tuple[Path, str, Path | None]:
    """(checkpoint file, its kind, run dir) for a run directory + 'best' | 'last', or a file."""
    path = Path(path)
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else None
        return path, path.stem, run_dir
    if not path.is_dir():
        raise LoadError(f"{path}: no such run directory or checkpoint file")
    if ckpt not in ("best", "last"):
        named = path / CHECKPOINT_DIR / (ckpt if ckpt.endswith(".pt") else f"{ckpt}.pt")
        if "/" not in ckpt and named.is_file():  # a kind in the run: epoch_3, collapsed, ...
            return named, named.stem, path
        file = Path(ckpt)
        if not file.is_file():
            kinds = sorted(p.stem for p in (path / CHECKPOINT_DIR).glob("*.pt") if ".rank" not in p.name)
            raise LoadError(f"--ckpt {ckpt}: not in {path / CHECKPOINT_DIR} (it has: "
                            f"{', '.join(kinds) or 'none'}) and not a checkpoint file")
        return file, file.stem, path
    folder = path / CHECKPOINT_DIR
    wanted = [ckpt, "last"] if ckpt == "best" else [ckpt]
    for kind in wanted:
        if (folder / f"{kind}.pt").is_file():
            return folder / f"{kind}.pt", kind, path
    raise LoadError(f"{path}: no checkpoints/{ckpt}.pt (is it a run directory? has it saved one yet?)")


def load_run(path: str | Path, ckpt: str = "best", device: str | torch.device = "cpu",
             weights: str = "auto") -> LoadedRun:
    """The recipe and the trained model (eval mode, on `device`) of a run or checkpoint.
    'best' falls back to 'last' when the run kept no best.pt (no validation split). `weights`:
    'auto' (the EMA copy when the checkpoint has one), 'ema' or 'raw'."""
    if weights not in WEIGHT_CHOICES:
        raise LoadError(f"--weights {weights}: use 'auto', 'ema' or 'raw'")
    file, kind, run_dir = find_checkpoint(path, ckpt)
    try:
        state = load_checkpoint(file, map_location="cpu", required=("recipe", "model"))
    except CheckpointError as e:
        raise LoadError(str(e)) from None
    recipe = from_toml_text(state["recipe"])
    model = build_model(recipe.model, tuple(state["image_shape"]), int(state["n_classes"]))
    ema = state.get("ema")
    if weights == "ema" and not ema:
        raise LoadError(f"{file}: no EMA weights (the run was trained without train.ema); "
                        f"use --weights raw or auto")
    if ema and weights != "raw":
        model.load_state_dict(ema["model"])
        label = ema_label(ema["decay"])
    else:
        model.load_state_dict(state["model"])
        label = "raw"
    model.to(device).eval()
    return LoadedRun(run_dir, file, kind, recipe, model, state, label)


def load_classifier(path: str | Path, ckpt: str = "best", device: str | torch.device = "cpu",
                    weights: str = "auto") -> nn.Module:
    """An `nn.Module` in eval mode mapping [0, 1] NCHW images to logits (the EMA weights when
    the run kept them, unless `weights="raw"`)."""
    return load_run(path, ckpt, device, weights).model
