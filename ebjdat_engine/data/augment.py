"""Batched training augmentations on the device: pad-crop, horizontal flip, Gaussian noise.

Each function takes a float batch (B, C, H, W) and a `torch.Generator` on the batch's device,
draws all its randomness from that generator in one call per kind (so the result is a pure
function of the generator's seed), and uses tensor ops only: no per-image Python loop, no
host sync.

`rows` / `total` (optional, every function): draw the randomness of a batch of `total` images
and apply only its `rows` to `x` (which holds just those rows). A torchrun rank that streams only
its share of a global batch thereby gets exactly the rows the whole batch would have got.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _share(t: torch.Tensor, rows: slice | None, dim: int = 0) -> torch.Tensor:
    return t if rows is None else t.narrow(dim, rows.start, rows.stop - rows.start)


def pad_crop(x: torch.Tensor, padding: int, generator: torch.Generator, *,
             rows: slice | None = None, total: int | None = None) -> torch.Tensor:
    """Reflect-pad every image by `padding` pixels, then crop a random H x W window per image.

    The windows' top-left corners are uniform in [0, 2*padding] on each axis; the crop is one
    advanced-indexing gather over the whole batch. `padding` 0 returns `x` unchanged.
    """
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    if padding >= h or padding >= w:
        raise ValueError(f"crop padding {padding} must be smaller than the image size {h}x{w} "
                         f"(reflect padding)")
    padded = F.pad(x, (padding, padding, padding, padding), mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (2, total or b), generator=generator, device=x.device)
    offsets = _share(offsets, rows, dim=1)
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch_idx = torch.arange(b, device=x.device)[:, None, None, None]
    chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]


def hflip(x: torch.Tensor, generator: torch.Generator, *, rows: slice | None = None,
          total: int | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (one coin per image)."""
    flip = _share(torch.rand(total or x.shape[0], generator=generator, device=x.device), rows) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def add_noise(x: torch.Tensor, std: float, generator: torch.Generator, *,
              rows: slice | None = None, total: int | None = None) -> torch.Tensor:
    """Add i.i.d. Gaussian noise of standard deviation `std` (pixel units of [0, 1]), unclipped."""
    if std <= 0:
        return x
    shape = (total or x.shape[0], *x.shape[1:])
    noise = _share(torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype), rows)
    return x + std * noise


def derive_seed(*numbers: int) -> int:
    """Mix non-negative integers into one 63-bit seed (numpy's SeedSequence, host-side only)."""
    state = np.random.SeedSequence(list(numbers)).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)
