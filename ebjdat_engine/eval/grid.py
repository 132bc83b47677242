"""PNG grids of images (samples, adversarial examples), with no plotting library needed."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def save_grid(x: torch.Tensor, path: Path, nrow: int | None = None, scale: int = 0) -> Path:
    """Tile [0, 1] images (N, C, H, W) into one PNG; small images are upscaled (nearest) so an
    8x8 digit is visible."""
    from PIL import Image

    x = x.detach().float().clamp(0, 1).cpu()
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    pad = 1
    canvas = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = x[i]
    array = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if c == 1 else array)
    scale = scale or max(1, 256 // max(canvas.shape[1:]))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
