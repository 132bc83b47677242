"""Clean accuracy: the model in eval mode on un-augmented, noise-free images."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..data import ImageSplit, iterate_batches


@torch.no_grad()
def clean_accuracy(model: nn.Module, split: ImageSplit, batch_size: int = 256, limit: int = 0,
                   autocast: contextlib.AbstractContextManager | None = None) -> tuple[float, int]:
    """(accuracy, number of points) over the first `limit` images of `split` (0: all)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    n = 0
    try:
        for x, y in iterate_batches(split, batch_size, limit):
            with autocast or contextlib.nullcontext():
                logits = model(x)
            correct += (logits.argmax(1) == y).sum()
            n += y.numel()
    finally:
        model.train(was_training)
    return (correct.item() / n if n else float("nan")), n
