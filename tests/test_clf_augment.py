"""DAT classifier-stream augmentation: batched, seeded AutoAugment and Cutout (`data/clf_augment.py`)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from ebjdat_engine.data.clf_augment import AUTOAUGMENT_POLICIES, autoaugment, cutout
from ebjdat_engine.data.loader import derive_seed


def _images(n: int = 32, c: int = 3, hw: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, hw, hw), generator=gen, dtype=torch.uint8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- autoaugment

@pytest.mark.parametrize("policy", AUTOAUGMENT_POLICIES)
def test_autoaugment_is_a_pure_function_of_the_seed(policy):
    x = _images()
    outs = [autoaugment(x, policy, seed) for seed in range(5)]
    assert torch.equal(outs[0], autoaugment(x, policy, 0))
    distinct = {tuple(o.flatten().tolist()) for o in outs}
    assert len(distinct) >= 4  # different seeds give different batches


def test_autoaugment_leaves_the_callers_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    expected = torch.rand(4)
    torch.set_rng_state(before)
    autoaugment(_images(), "imagenet", 7)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("c,hw", [(3, 16), (1, 8)])
def test_autoaugment_keeps_dtype_shape_device(c, hw):
    x = _images(c=c, hw=hw)
    before = x.clone()
    for policy in AUTOAUGMENT_POLICIES:
        y = autoaugment(x, policy, 3)
        assert y.dtype == torch.uint8 and y.shape == x.shape and y.device == x.device
    assert torch.equal(x, before)


def test_autoaugment_groups_are_torchvisions_transform_seeded_per_group():
    x = _images(n=10)
    y = autoaugment(x, "cifar10", 5, group_size=4)
    transform = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    for g, (lo, hi) in enumerate([(0, 4), (4, 8), (8, 10)]):
        torch.manual_seed(derive_seed(5, g))
        assert torch.equal(y[lo:hi], transform(x[lo:hi])), g


def test_autoaugment_one_draw_per_group_different_draws_across_groups():
    # one image repeated: rows of a group must agree (one draw each), groups must not all agree
    x = _images(n=1).expand(32, -1, -1, -1).contiguous()
    group_outputs = set()
    for seed in range(3):
        y = autoaugment(x, "imagenet", seed, group_size=4)
        for g in range(8):
            group = y[4 * g:4 * (g + 1)]
            assert (group == group[:1]).all(), (seed, g)
            group_outputs.add(tuple(group[0].flatten().tolist()))
    assert len(group_outputs) >= 6


@pytest.mark.parametrize("c,hw,total,group_size,cuts", [
    (3, 16, 32, 16, [16]),           # two ranks, aligned with the groups
    (3, 16, 32, 4, [16]),
    (1, 8, 30, 4, [7, 19]),          # 30 not a multiple of 4, cuts inside groups
    (3, 8, 13, 16, [5]),             # a single partial group split across ranks
])
def test_autoaugment_rows_of_a_global_batch_match_the_full_batch(c, hw, total, group_size, cuts):
    x = _images(n=total, c=c, hw=hw, seed=1)
    for policy in AUTOAUGMENT_POLICIES:
        full = autoaugment(x, policy, 11, group_size)
        bounds = [0, *cuts, total]
        parts = [autoaugment(x[a:b], policy, 11, group_size, rows=slice(a, b), total=total)
                 for a, b in zip(bounds, bounds[1:])]
        assert torch.equal(torch.cat(parts), full), policy


def test_autoaugment_rejects_what_torchvision_would_fail_on_at_random():
    x = _images(n=4)
    with pytest.raises(ValueError, match="channels"):
        autoaugment(_images(n=4, c=2), "cifar10", 0)
    with pytest.raises(ValueError, match="uint8"):
        autoaugment(x.float() / 255, "cifar10", 0)
    with pytest.raises(ValueError, match="policy"):
        autoaugment(x, "cifar100", 0)
    with pytest.raises(ValueError, match="total"):
        autoaugment(x, "cifar10", 0, rows=slice(0, 4))
    with pytest.raises(ValueError, match="cover"):
        autoaugment(x, "cifar10", 0, rows=slice(0, 3), total=8)


# ---------------------------------------------------------------- cutout

def _zero_boxes(y: torch.Tensor, size: int):
    """Per image: check the zeros form one rectangle shared by all channels; yield (h, w, touches_border)."""
    _, c, h, w = y.shape
    for img in (y == 0):
        assert (img == img[:1]).all()  # same hole in every channel
        ys, xs = img[0].nonzero(as_tuple=True)
        assert len(ys) > 0  # the centre pixel is always inside the hole
        y0, y1, x0, x1 = ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1
        assert img[0, y0:y1, x0:x1].all() and int(img.sum()) == c * (y1 - y0) * (x1 - x0)
        assert y1 - y0 <= size and x1 - x0 <= size
        yield y1 - y0, x1 - x0, y0 == 0 or x0 == 0 or y1 == h or x1 == w


@pytest.mark.parametrize("c,hw,size", [(3, 16, 4), (3, 16, 5), (1, 8, 3)])
def test_cutout_zeroes_one_square_per_image(c, hw, size):
    x = torch.ones(64, c, hw, hw)
    y = cutout(x, size, _gen(2))
    boxes = list(_zero_boxes(y, size))
    inside = [(bh, bw) for bh, bw, border in boxes if not border]
    assert inside and all(box == (size, size) for box in inside)  # full squares: size*size*C zeros
    assert any(border and bh * bw < size * size for bh, bw, border in boxes)  # some clipped
    assert ((y == 0).sum(dim=(1, 2, 3)) <= size * size * c).all()
    assert ((y == 0) | (y == 1)).all()


def test_cutout_centres_cover_every_pixel_also_on_non_square_images():
    x = torch.ones(2000, 1, 4, 6)
    y = cutout(x, 1, _gen(0))
    assert ((y == 0).sum(dim=(1, 2, 3)) == 1).all()
    hits = (y == 0).sum(dim=0)[0]
    assert (hits > 0).all()  # last row and last column reachable
    assert hits.max() < 3 * hits.min()  # roughly uniform (expected 83 per pixel)


def test_cutout_is_seeded_by_the_generator_and_does_not_modify_its_input():
    x = torch.rand(32, 3, 16, 16) + 0.1
    before = x.clone()
    a, b, c = cutout(x, 6, _gen(1)), cutout(x, 6, _gen(1)), cutout(x, 6, _gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)
    assert torch.equal(a[a != 0], x[a != 0])  # outside the hole, pixels are untouched
    assert torch.equal(cutout(x, 0, _gen(1)), x)


@pytest.mark.parametrize("total,cuts", [(32, [16]), (30, [7, 19])])
def test_cutout_rows_of_a_global_batch_match_the_full_batch(total, cuts):
    x = torch.rand(total, 1, 8, 8) + 0.1
    full = cutout(x, 3, _gen(4))
    bounds = [0, *cuts, total]
    parts = [cutout(x[a:b], 3, _gen(4), rows=slice(a, b), total=total) for a, b in zip(bounds, bounds[1:])]
    assert torch.equal(torch.cat(parts), full)
    # the rows really are the global batch's rows, not a fresh draw for the local batch
    assert not torch.equal(parts[-1], cutout(x[bounds[-2]:], 3, _gen(4)))


# ---------------------------------------------------------------- on the GPU

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_on_cuda_seeded_and_rng_states_untouched():
    device = torch.device("cuda")
    x = _images().to(device)
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state(device)
    a, b = autoaugment(x, "cifar10", 9), autoaugment(x, "cifar10", 9)
    assert a.device == x.device and a.dtype == torch.uint8 and torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(device), cuda_state)
    gen = torch.Generator(device).manual_seed(0)
    y = cutout(a.float() / 255, 4, gen)
    assert y.device == x.device and ((y == 0).sum(dim=(1, 2, 3)) <= 4 * 4 * 3).all()
