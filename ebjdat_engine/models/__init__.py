"""Classifiers whose logits define the energy (JEM's classifier-as-EBM view, ALGORITHMS.md §0).

Every model built here takes [0, 1] images (float, NCHW), normalises them itself with
``ModelConfig.input_mean`` / ``input_std`` (buffers) and returns logits, so attack libraries,
samplers and evaluators all see a [0, 1] -> logits function. ``free_energy`` / ``energy`` /
``class_energy`` turn logits into JEM's f(x) = logsumexp l(x), E(x) = -f(x), E(x, y) = -l_y(x).
"""

from __future__ import annotations

from ..recipe.schema import ModelConfig
from .cnn import SmallCNN
from .energy import class_energy, energy, free_energy
from .normalize import Classifier, InputNormalize, group_count, make_norm
from .resnet import ResNet
from .wrn import WideResNet, wrn_blocks_per_stage

__all__ = [
    "Classifier",
    "InputNormalize",
    "ResNet",
    "SmallCNN",
    "WideResNet",
    "build_model",
    "class_energy",
    "energy",
    "free_energy",
    "group_count",
    "make_norm",
    "wrn_blocks_per_stage",
]


def build_model(cfg: ModelConfig, image_shape: tuple[int, int, int], n_classes: int) -> Classifier:
    """The classifier ``cfg.arch`` names, for (C, H, W) images and `n_classes` classes.

    'wrn' -> :class:`WideResNet` (depth must be 6n+4, else ValueError), 'cnn' -> :class:`SmallCNN`,
    'resnet' -> :class:`ResNet` (torchvision's, stem adapted to the image size H).
    Parameters are drawn from torch's global RNG, so the result is deterministic given
    ``torch.manual_seed``.
    """
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    in_channels = int(image_shape[0])
    if cfg.arch == "wrn":
        return WideResNet(cfg, in_channels, n_classes)
    if cfg.arch == "cnn":
        return SmallCNN(cfg, in_channels, n_classes, resolution=(int(image_shape[1]), int(image_shape[2])))
    if cfg.arch == "resnet":
        return ResNet(cfg, in_channels, n_classes, resolution=int(image_shape[1]))
    raise ValueError(f"unknown arch {cfg.arch!r}; expected 'wrn', 'cnn' or 'resnet'")
