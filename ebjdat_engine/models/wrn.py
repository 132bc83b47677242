"""Wide-ResNet (Zagoruyko & Komodakis, 2016) in the pre-activation form of the JEM line.

Follows ``wgrathwohl/JEM/wideresnet.py`` (also used by JEM++, SADA-JEM and EB-JDAT; ALGORITHMS.md
§0, §1.4): a 3x3 stem conv to 16 channels, three stages of ``n = (depth - 4) / 6`` pre-activation
basic blocks of widths 16k, 32k, 64k (k = widening factor) with strides 1, 2, 2, a final
norm + LeakyReLU, global average pooling and a linear class head. WRN-28-10 gives the 640-d
feature of the papers. Global *adaptive* pooling (instead of JEM's fixed ``avg_pool2d(·, 8)``)
makes the same network work on 8x8, 28x28 and 32x32 inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..recipe.schema import ModelConfig, wrn_depth_problem
from .normalize import Classifier, init_weights, norm_from_config


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and a bias (the JEM line trains without norms too)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=True)


def wrn_blocks_per_stage(depth: int) -> int:
    """``n`` of a WRN of `depth` = 6n + 4; raises ValueError for any other depth."""
    problem = wrn_depth_problem(depth)
    if problem:
        raise ValueError(problem)
    return (depth - 4) // 6


class WideBasic(nn.Module):
    """Pre-activation basic block of JEM's ``wide_basic``.

    ``out = conv2(act(norm2(dropout(conv1(act(norm1(x))))))) + shortcut(x)``, where the
    second conv carries the stride and the shortcut is a strided 1x1 conv when the shape changes
    (identity otherwise). Dropout is omitted (``nn.Identity``) when the rate is 0.
    """

    def __init__(self, cfg: ModelConfig, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.norm1 = norm_from_config(cfg, in_ch)
        self.conv1 = conv3x3(in_ch, out_ch)
        self.dropout: nn.Module = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.norm2 = norm_from_config(cfg, out_ch)
        self.conv2 = conv3x3(out_ch, out_ch, stride)
        # Not in-place: with norm 'none' the activation's input is the block input itself
        # (e.g. the stem output PYLD takes gradients at).
        self.act = nn.LeakyReLU(cfg.leak)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(self.act(self.norm1(x))))
        out = self.conv2(self.act(self.norm2(out)))
        return out + self.shortcut(x)


class WideResNet(Classifier):
    """WRN-`depth`-`width` classifier on [0, 1] images; see the module docstring.

    ``stem`` is JEM's ``conv1`` (the layer whose output PYLD differentiates at).
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, n_classes: int) -> None:
        super().__init__(cfg, n_classes)
        n = wrn_blocks_per_stage(cfg.depth)
        k = cfg.width
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.stem = conv3x3(in_channels, widths[0])
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for out_ch, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBasic(cfg, in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_norm = norm_from_config(cfg, in_ch)
        self.act = nn.LeakyReLU(cfg.leak)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        self.head = nn.Linear(in_ch, n_classes)
        init_weights(self, cfg.leak)

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """Stem output -> three stages -> norm + LeakyReLU -> global average pool, (N, 64k)."""
        out = self.act(self.final_norm(self.stages(h)))
        return self.pool(out).flatten(1)
