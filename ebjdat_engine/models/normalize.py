"""Normalisation layers, the model's own input normalisation, and the shared model contract.

Three things live here:

* :func:`make_norm`, the factory behind ``ModelConfig.norm``. The JEM line trains without any
  normalisation (JEM, ``--norm None``) or with BatchNorm whose momentum is 0.9 in PyTorch's sense
  (JEM++, SADA-JEM, EB-JDAT; ALGORITHMS.md §0), so the momentum is taken from the config rather
  than PyTorch's default. GroupNorm is offered as a batch-independent alternative whose statistics
  cannot be hijacked by the last (adversarial or sampled) batch forwarded in train mode.
* :class:`InputNormalize`, the first operation of every model: it maps [0, 1] pixels to the
  network's input space, ``(x - mean) / std`` (mean = std = 0.5 gives the JEM line's [-1, 1]).
  Keeping it inside the model means attacks, samplers and evaluators all see a [0, 1] -> logits
  function, and ε budgets are always in standard pixel units.
* :class:`Classifier`, the base class of every architecture, which fixes that contract:
  ``forward(x) = forward_from_stem(stem(normalize(x)))`` on [0, 1] images, returning logits.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

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


class ChannelAffine(nn.Module):
    """``y = weight · x + bias`` per channel: BatchNorm's eval-mode function with its statistics
    baked in, and no batch statistics at all (norm 'affine'). A BatchNorm converts to it exactly
    (`models.fold.affine_state_dict`), in any architecture, also where it cannot be folded into a
    convolution (a pre-activation block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.to(x.dtype).reshape(shape) + self.bias.to(x.dtype).reshape(shape)


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
    if kind == "affine":
        return ChannelAffine(channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'none', 'batch', 'group' or 'affine'")


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


class Classifier(nn.Module):
    """Base class of every model: [0, 1] images (N, C, H, W) -> logits (N, n_classes).

    The forward pass is split so that JEM++'s PYLD sampler (ALGORITHMS.md §2.2, §11.3) can take
    the gradient of ``f = logsumexp`` at the first-conv output ``h1 = conv1(x)``::

        forward(x) == forward_from_stem(stem(normalize(x)))

    Subclasses set ``stem`` (the first ``nn.Conv2d``, applied to the normalised input), ``head``
    (the linear class head on ``feature_dim``-dimensional pooled features) and implement
    :meth:`trunk` (stem output -> pooled penultimate features).
    """

    normalize: InputNormalize
    stem: nn.Conv2d
    head: nn.Linear
    feature_dim: int
    n_classes: int

    def __init__(self, cfg: ModelConfig, n_classes: int) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.normalize = InputNormalize(cfg.input_mean, cfg.input_std)

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """Stem output (N, C1, H, W) -> pooled penultimate features (N, feature_dim)."""
        raise NotImplementedError

    def forward_from_stem(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) from the stem output ``h = stem(normalize(x))``."""
        return self.head(self.trunk(h))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (N, feature_dim) of [0, 1] images `x`."""
        return self.trunk(self.stem(self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of [0, 1] images `x`; ``free_energy(logits)`` is JEM's f(x)."""
        return self.forward_from_stem(self.stem(self.normalize(x)))


def init_weights(model: nn.Module, leak: float) -> None:
    """Initialise `model` in place: Kaiming-normal convs (fan_out, leaky_relu with slope `leak`)
    with zero bias, unit/zero affine norms, zero bias on linear layers (weights keep PyTorch's
    default). Deterministic given ``torch.manual_seed``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=leak, mode="fan_out", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@contextlib.contextmanager
def bn_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm keeps using batch statistics but does not update its running ones (SAM's
    second pass: momentum 0 leaves running_mean/var unchanged)."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum
