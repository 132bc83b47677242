"""A small CNN for the 8x8 (scikit-learn digits) and 28x28 (Fashion-MNIST) datasets.

Not from the papers: a cheap backbone so that the energy-based methods can be exercised on a CPU
in seconds. Layout, with w = ``ModelConfig.width``::

    stem conv3x3 (C -> 16w)          | norm, LeakyReLU
    conv3x3 stride 2 (16w -> 32w)    | norm, LeakyReLU
    conv3x3 (32w -> 32w)             | norm, LeakyReLU
    conv3x3 stride 2 (32w -> 64w)    | norm, LeakyReLU
    average pool to p x p -> linear head (64w p^2 -> n_classes),   p = ``ModelConfig.pool``

About 33k parameters at w = 1 on 1-channel 10-class inputs. Global average pooling (p = 1, the
default) makes it work at any input size >= 1x1 (8x8 -> 2x2, 28x28 -> 7x7, 32x32 -> 8x8 before
pooling); p = 7 on 28x28 keeps the whole 7x7 map (a flattened head): on Fashion-MNIST, at the
same cost, 90.3 % test accuracy against 86.7 % for p = 1 after 1,872 steps (README).
"""

from __future__ import annotations

import torch
from torch import nn

from ..recipe.schema import ModelConfig
from .normalize import Classifier, init_weights, norm_from_config


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, with a bias (needed when norm is 'none')."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=True)


class SmallCNN(Classifier):
    """The small CNN of the module docstring, on [0, 1] images; ``stem`` is its first conv."""

    def __init__(self, cfg: ModelConfig, in_channels: int, n_classes: int,
                 resolution: tuple[int, int] | None = None) -> None:
        super().__init__(cfg, n_classes)
        w = cfg.width
        c1, c2, c3 = 16 * w, 32 * w, 64 * w
        self.stem = _conv(in_channels, c1)
        # Not in-place anywhere: with norm 'none' the first activation acts on the stem output.
        self.body = nn.Sequential(
            norm_from_config(cfg, c1), nn.LeakyReLU(cfg.leak),
            _conv(c1, c2, stride=2), norm_from_config(cfg, c2), nn.LeakyReLU(cfg.leak),
            _conv(c2, c2), norm_from_config(cfg, c2), nn.LeakyReLU(cfg.leak),
            _conv(c2, c3, stride=2), norm_from_config(cfg, c3), nn.LeakyReLU(cfg.leak),
        )
        # two stride-2 convolutions (padding 1): each side becomes ceil(side / 2), twice
        conv_map = tuple(-(-(-(-side // 2)) // 2) for side in resolution) if resolution else None
        # already p x p (p > 1): pooling would be the identity, and costs time in the samplers'
        # backward passes; decided here, not per call, so the model stays traceable (torch.fx)
        same = cfg.pool > 1 and conv_map == (cfg.pool, cfg.pool)
        self.pool = nn.Identity() if same else nn.AdaptiveAvgPool2d(cfg.pool)
        self.feature_dim = c3 * cfg.pool * cfg.pool
        self.head = nn.Linear(self.feature_dim, n_classes)
        init_weights(self, cfg.leak)

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """Stem output -> conv blocks -> average pool to p x p, flattened: (N, 64w p^2)."""
        return self.pool(self.body(h)).flatten(1)
