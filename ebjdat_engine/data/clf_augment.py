"""Classifier-stream augmentation for Dual Adversarial Training: AutoAugment + Cutout, batched.

DAT (ALGORITHMS.md §7.3) decouples the data augmentation of its two streams: the energy
(generative) stream keeps the original flips/crops (`augment.py`), while the discriminative
adversarial-training stream, where the classifier is trained on L2-PGD examples, gets the
stronger AutoAugment + Cutout recipe. Strong augmentation helps robust classification but would
distort the data distribution the energy model is asked to fit, hence two streams.

Both functions work on whole device batches and are deterministic from a seed:

* `autoaugment` runs torchvision's `v2.AutoAugment` on contiguous groups of `group_size`
  images (the v2 transform applies one sub-policy draw to a whole batched tensor, so a group
  is the unit of diversity: B/group_size calls instead of a per-image loop). Group g's draw
  is seeded from `derive_seed(seed, g)` only, so the result is a pure function of
  (x, policy, seed) and does not depend on how the batch is split.
* `cutout` zeroes one random square per image with a mask built from arange comparisons; its
  randomness is one `torch.randint` call on a `torch.Generator`.

Both take `rows=` / `total=` so a torchrun rank holding rows [a, b) of a global batch of
`total` images gets exactly those rows of what the whole batch would have got.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torchvision.transforms import v2

from .augment import derive_seed

AUTOAUGMENT_POLICIES = ("cifar10", "imagenet", "svhn")

_POLICY_ENUM = {
    "cifar10": v2.AutoAugmentPolicy.CIFAR10,
    "imagenet": v2.AutoAugmentPolicy.IMAGENET,
    "svhn": v2.AutoAugmentPolicy.SVHN,
}


@lru_cache(maxsize=None)
def _transform(policy: str) -> v2.AutoAugment:
    """The (stateless) torchvision transform for a policy name; geometric ops fill with 0."""
    return v2.AutoAugment(_POLICY_ENUM[policy])


def _resolve_rows(n: int, rows: slice | None, total: int | None) -> tuple[int, int, int]:
    """Check `rows`/`total` against a local batch of `n` images; return (start, stop, total)."""
    if rows is None:
        if total is not None and total != n:
            raise ValueError(f"total={total} without rows= must equal the batch size {n}")
        return 0, n, n
    if total is None:
        raise ValueError("rows= needs total= (the size of the global batch the rows belong to)")
    if rows.step not in (None, 1):
        raise ValueError(f"rows must be a contiguous slice, got step {rows.step}")
    start, stop = rows.start or 0, rows.stop
    if stop is None or not 0 <= start <= stop <= total:
        raise ValueError(f"rows {rows} must lie within the global batch [0, {total})")
    if stop - start != n:
        raise ValueError(f"rows {rows} cover {stop - start} images but the batch holds {n}")
    return start, stop, total


def autoaugment(x: torch.Tensor, policy: str, seed: int, group_size: int = 16, *,
                rows: slice | None = None, total: int | None = None) -> torch.Tensor:
    """AutoAugment (`v2.AutoAugment` with the named policy) on a uint8 batch (B, C, H, W), C 1 or 3.

    Global group g covers global rows [g*group_size, (g+1)*group_size) of a batch of `total`
    images (default: x is the whole batch) and gets one sub-policy draw, seeded with
    `derive_seed(seed, g)` inside `torch.random.fork_rng`, so the caller's RNG state is
    untouched and the result is a pure function of (x, policy, seed, rows, total). Only the groups
    overlapping `rows` are computed, on the rows x holds; every op is per-image, so a rank's share
    equals the corresponding slice of the full-batch result. Returns a new uint8 tensor of x's shape on x's device.

    Grey images (C = 1) work: every op accepts them, and "Color" (saturation) is the identity
    on them. Geometric ops (shear, translate, rotate) fill with 0.
    """
    if policy not in _POLICY_ENUM:
        raise ValueError(f"unknown AutoAugment policy {policy!r}; "
                         f"choose one of {AUTOAUGMENT_POLICIES}")
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"autoaugment needs a uint8 batch (B, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        # torchvision's colour ops reject other channel counts, but only when the drawn
        # sub-policy contains one: fail up front instead of at random
        raise ValueError(f"autoaugment needs 1 (grey) or 3 (RGB) channels, got {x.shape[1]}")
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    start, stop, _ = _resolve_rows(x.shape[0], rows, total)
    if start == stop:
        return x.clone()
    transform = _transform(policy)
    cuda = x.device.type == "cuda"
    pieces = []
    # torchvision draws the sub-policy, the coins and the signs from the global CPU generator;
    # the device generator is forked and seeded too in case a future op draws there. Only x's
    # device is touched (torch.manual_seed would reseed every GPU, and fork_rng restores only
    # the devices it is given).
    with torch.random.fork_rng(devices=[x.device] if cuda else []):
        for g in range(start // group_size, (stop - 1) // group_size + 1):
            lo, hi = max(g * group_size, start), min((g + 1) * group_size, stop)
            group_seed = derive_seed(seed, g)
            torch.default_generator.manual_seed(group_seed)
            if cuda:
                torch.cuda.default_generators[x.device.index if x.device.index is not None
                                              else torch.cuda.current_device()].manual_seed(group_seed)
            pieces.append(transform(x[lo - start:hi - start]))
    return torch.cat(pieces)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, *,
           rows: slice | None = None, total: int | None = None) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): zero a size x size square per image, clipped at the borders.

    The square covers rows [cy - size//2, cy - size//2 + size) and likewise for columns, around
    a centre (cy, cx) uniform over the H x W pixels (one `torch.randint` draw of a flat pixel
    index per image of the global batch, on `generator`). With `rows`/`total`, the centres are
    drawn for `total` images and rows [a, b) of them are applied to x. For even sizes this is
    the reference code's square; for odd sizes the reference's clip(c - s//2), clip(c + s//2)
    gives s-1 pixels, here it is s. `size` 0 returns x; x is never modified in place.
    """
    if size < 0:
        raise ValueError(f"cutout size must be non-negative, got {size}")
    if size == 0:
        return x
    b, _, h, w = x.shape
    start, stop, total = _resolve_rows(b, rows, total)
    # one flat pixel index per image rather than (2, B) draws, so non-square images stay uniform
    flat = torch.randint(0, h * w, (total,), generator=generator, device=x.device)[start:stop]
    top = torch.div(flat, w, rounding_mode="floor") - size // 2  # (B,)
    left = flat % w - size // 2
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + size)  # (B, H)
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + size)  # (B, W)
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
    return x.masked_fill(hole, 0)
