"""A synthetic ImageNet-style folder of PNGs, for tests, benchmarks and trying `imagefolder` offline.

Each class has its own colour and stripe orientation under per-pixel noise, so a classifier can
learn it and a resize is visible; image sizes vary (not square) so the resize-and-crop path runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def write_folder(root: str | Path, classes: Sequence[str], n_train: int, n_val: int,
                 size: tuple[int, int] = (48, 40), seed: int = 0, fmt: str = "png") -> Path:
    """Write root/{train,val}/<class>/<i>.<fmt>; returns root. `size` is (width, height) of the
    first image; later ones vary by up to +25 % per axis."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(37 * c) % 256, (101 * c + 60) % 256, (173 * c + 120) % 256])
            for i in range(n):
                w = int(size[0] * (1 + 0.25 * rng.random()))
                h = int(size[1] * (1 + 0.25 * rng.random()))
                yy, xx = np.mgrid[0:h, 0:w]
                angle = np.pi * c / max(len(classes), 1)
                stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 3.0 + rng.random() * 6)
                img = colour[None, None, :] * (0.6 + 0.3 * stripes[..., None])
                img = img + rng.normal(0, 20, img.shape)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.{fmt}")
    return root


__all__ = ["write_folder"]
