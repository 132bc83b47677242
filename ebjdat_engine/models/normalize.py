"""Normalisation layers and the model's own input normalisation.

Two things live here:

* :func:`make_norm`, the factory behind ``ModelConfig.norm``. The JEM line trains without any
  normalisation (JEM, ``--norm None``) or with BatchNorm whose momentum is 0.9 in PyTorch's sense
  (JEM++, SADA-JEM, EB-JDAT; ALGORITHMS.md §0), so the momentum is taken from the config rather
  than PyTorch's default. GroupNorm is offered as a batch-independent alternative whose statistics
  cannot be hijacked by the last (adversarial or sampled) batch forwarded in train mode.
* :class:`InputNormalize`, the first operation of every model: it maps [0, 1] pixels to the
  network's input space, ``(x - mean) / std`` (mean = std = 0.5 gives the JEM line's [-1, 1]).
  Keeping it inside the model means attacks, samplers and evaluators all see a [0, 1] -> logits
  function, and ε budgets are always in standard pixel units.
"""

from __future__ import annotations

import torch
from torch import nn

from ..recipe.schema import ModelConfig

#: Upper bound on the number of GroupNorm groups (32, as in Wu & He, 2018).
MAX_GROUPS = 32


def group_count(channels: int, max_groups: int = MAX_GROUPS) -> int:
    """Number of GroupNorm groups for `channels`: the largest divisor of `channels` that is at
    most `max_groups` and leaves at least two channels per group (1 for a single channel).

    Two channels per group at least keeps GroupNorm from degenerating into InstanceNorm on the
    narrow (16-channel) layers of small models; the divisor condition is what GroupNorm requires.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    limit = max(1, min(max_groups, channels // 2))
    return max(g for g in range(1, limit + 1) if channels % g == 0)


def make_norm(kind: str, channels: int, bn_momentum: float = 0.1) -> nn.Module:
    """The normalisation layer ``ModelConfig.norm`` names, for a `channels`-channel feature map.

    'none' -> ``nn.Identity`` (JEM), 'batch' -> ``nn.BatchNorm2d(momentum=bn_momentum)``
    (JEM++ / SADA-JEM / EB-JDAT, momentum 0.9 there), 'group' -> ``nn.GroupNorm`` with
    :func:`group_count` groups.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=bn_momentum)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'none', 'batch' or 'group'")


def norm_from_config(cfg: ModelConfig, channels: int) -> nn.Module:
    """:func:`make_norm` with the kind and BatchNorm momentum of `cfg`."""
    return make_norm(cfg.norm, channels, cfg.bn_momentum)


class InputNormalize(nn.Module):
    """``x -> (x - mean) / std`` with scalar `mean` and `std` held as buffers (not parameters).

    Buffers travel with ``.to(device)`` and the state dict but are never trained; mean = std = 0.5
    maps [0, 1] images to the [-1, 1] range of the JEM line (ALGORITHMS.md §0).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"input std must be positive, got {std}")
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a [0, 1] batch (N, C, H, W) into the network's input space."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.item():g}, std={self.std.item():g}"
