"""Optimizer and learning-rate schedule from `[optim]` only."""

from __future__ import annotations

from typing import Iterable

import torch

from ..recipe import OptimConfig


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter],
                    sam: tuple[float, bool] | None = None) -> torch.optim.Optimizer:
    """SGD or Adam from `[optim]`; wrapped in SAM (rho, adaptive) when the method asks for it."""
    if cfg.name == "sgd":
        base, kwargs = torch.optim.SGD, dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                             weight_decay=cfg.weight_decay)
    else:
        base, kwargs = torch.optim.Adam, dict(lr=cfg.lr, betas=tuple(cfg.betas),
                                              weight_decay=cfg.weight_decay)
    if sam is not None:
        from .sam import SAM

        rho, adaptive = sam
        return SAM(params, base, rho=rho, adaptive=adaptive, **kwargs)
    return base(params, **kwargs)


def lr_factor(cfg: OptimConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr before iteration `step` (0-based): linear warm-up from 0 over
    `warmup_steps` (as the JEM line: lr * (step+1) / warmup), times `decay_factor` for each
    decay epoch already reached."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    epoch = step // max(1, steps_per_epoch)
    decays = sum(1 for e in cfg.decay_epochs if epoch >= e)
    return warm * cfg.decay_factor ** decays


def build_schedule(cfg: OptimConfig, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration; its state goes into every checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))
