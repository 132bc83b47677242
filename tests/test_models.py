"""Tests of ebjdat_engine.models: shapes, in-model input normalisation, the stem split PYLD needs,
WRN depth validation, initialisation, and the JEM energy sign convention (ALGORITHMS.md §0)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebjdat_engine.models import (
    Classifier,
    SmallCNN,
    WideResNet,
    build_model,
    class_energy,
    energy,
    free_energy,
    group_count,
    make_norm,
)
from ebjdat_engine.recipe.schema import ModelConfig

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
NORMS = ["none", "batch", "group"]


def small_cfg(arch: str, norm: str = "none", **kw) -> ModelConfig:
    """A fast config of `arch`: WRN-10-1 or the width-1 CNN."""
    base = dict(arch=arch, depth=10, width=1, norm=norm)
    base.update(kw)
    return ModelConfig(**base)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("arch", ["wrn", "cnn"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shapes(arch: str, norm: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch, norm), shape, n_classes=7)
    assert isinstance(model, Classifier)
    x = torch.rand(4, *shape)
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    feats = model.features(x)
    assert feats.shape == (4, model.feature_dim)
    assert isinstance(model.stem, nn.Conv2d) and model.stem.in_channels == shape[0]


def test_wrn_width_sets_feature_dim_and_head() -> None:
    model = build_model(small_cfg("wrn", width=2), (3, 32, 32), 10)
    assert isinstance(model, WideResNet)
    assert model.feature_dim == 128
    assert model.head.in_features == 128 and model.head.out_features == 10
    cnn = build_model(small_cfg("cnn", width=2), (1, 8, 8), 10)
    assert isinstance(cnn, SmallCNN) and cnn.feature_dim == 128


def test_wrn_28_10_matches_the_papers_backbone() -> None:
    """WRN-28-10 on CIFAR: 640-d features, 4 blocks per stage, ~36.5M parameters (meta device)."""
    with torch.device("meta"):
        model = build_model(ModelConfig(arch="wrn", depth=28, width=10, norm="batch"), (3, 32, 32), 10)
    assert model.feature_dim == 640
    assert [len(stage) for stage in model.stages] == [4, 4, 4]
    assert 36.4e6 < n_params(model) < 36.6e6


@pytest.mark.parametrize("depth", [11, 12, 27, 29])
def test_bad_wrn_depth_raises(depth: int) -> None:
    with pytest.raises(ValueError, match="6n\\+4"):
        build_model(small_cfg("wrn", depth=depth), (3, 32, 32), 10)


def test_good_wrn_depths_build() -> None:
    for depth, n in [(10, 1), (16, 2)]:
        model = build_model(small_cfg("wrn", depth=depth), (1, 8, 8), 10)
        assert [len(stage) for stage in model.stages] == [n, n, n]


def test_dropout_module_only_when_rate_positive() -> None:
    def has_dropout(m: nn.Module) -> bool:
        return any(isinstance(x, nn.Dropout) for x in m.modules())

    assert not has_dropout(build_model(small_cfg("wrn", dropout=0.0), (1, 8, 8), 10))
    assert has_dropout(build_model(small_cfg("wrn", dropout=0.3), (1, 8, 8), 10))


def test_wrn_blocks_are_pre_activation_with_projection_shortcut() -> None:
    model = build_model(small_cfg("wrn", "batch", width=2), (3, 32, 32), 10)
    first, second, third = (stage[0] for stage in model.stages)
    # 16 -> 32 channels at stride 1, then strides 2, 2: all change shape, so 1x1 conv shortcuts.
    for block, stride in [(first, 1), (second, 2), (third, 2)]:
        assert isinstance(block.shortcut, nn.Conv2d) and block.shortcut.kernel_size == (1, 1)
        assert block.shortcut.stride == (stride, stride)
        assert isinstance(block.norm1, nn.BatchNorm2d)
        assert block.norm1.num_features == block.conv1.in_channels
    # Same shape (depth 16 has two blocks per stage): identity shortcut.
    deeper = build_model(small_cfg("wrn", depth=16), (1, 8, 8), 10)
    assert isinstance(deeper.stages[1][1].shortcut, nn.Identity)
    # LeakyReLU slope from the config.
    leaky = build_model(small_cfg("wrn", leak=0.05), (1, 8, 8), 10)
    assert all(m.negative_slope == 0.05 for m in leaky.modules() if isinstance(m, nn.LeakyReLU))


def test_wrn_blocks_add_the_residual() -> None:
    """With the residual branch's last conv zeroed, a block is exactly its shortcut."""
    torch.manual_seed(4)
    model = build_model(small_cfg("wrn", "none", depth=16), (1, 8, 8), 10)
    same, down = model.stages[1][1], model.stages[1][0]  # identity / projection shortcut
    with torch.no_grad():
        for block in (same, down):
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
        x = torch.randn(2, 32, 8, 8)
        torch.testing.assert_close(same(x), x)
        x = torch.randn(2, 16, 8, 8)
        torch.testing.assert_close(down(x), down.shortcut(x))
        assert down(x).shape == (2, 32, 4, 4)


# ----------------------------------------------------------------------------- norms


def test_norm_factory() -> None:
    assert isinstance(make_norm("none", 16), nn.Identity)
    bn = make_norm("batch", 16, bn_momentum=0.9)
    assert isinstance(bn, nn.BatchNorm2d) and bn.momentum == 0.9
    gn = make_norm("group", 160)
    assert isinstance(gn, nn.GroupNorm) and gn.num_channels == 160 and 160 % gn.num_groups == 0
    with pytest.raises(ValueError):
        make_norm("layer", 16)


@pytest.mark.parametrize("channels", [1, 2, 3, 16, 32, 48, 64, 160, 320, 640])
def test_group_count_divides_and_is_bounded(channels: int) -> None:
    g = group_count(channels)
    assert channels % g == 0 and 1 <= g <= 32
    if channels >= 2:
        assert channels // g >= 2
    if channels >= 64 and channels % 32 == 0:
        assert g == 32


def test_models_use_configured_norm() -> None:
    for arch in ["wrn", "cnn"]:
        bn = build_model(small_cfg(arch, "batch", bn_momentum=0.9), (1, 8, 8), 10)
        bns = [m for m in bn.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(m.momentum == 0.9 for m in bns)
        gn = build_model(small_cfg(arch, "group"), (1, 8, 8), 10)
        gns = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
        assert gns and all(m.num_channels % m.num_groups == 0 for m in gns)
        plain = build_model(small_cfg(arch, "none"), (1, 8, 8), 10)
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in plain.modules())


# ----------------------------------------------------------------------------- input normalisation


@pytest.mark.parametrize("arch", ["wrn", "cnn"])
def test_input_normalisation_happens_inside(arch: str) -> None:
    """model(x) with mean m / std s equals the same weights with mean 0 / std 1 on (x - m) / s."""
    m, s = 0.3, 0.2
    torch.manual_seed(1)
    model = build_model(small_cfg(arch, input_mean=m, input_std=s), (3, 32, 32), 10).eval()
    torch.manual_seed(1)
    raw = build_model(small_cfg(arch, input_mean=0.0, input_std=1.0), (3, 32, 32), 10).eval()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), raw((x - m) / s))
        # ... and the normalisation matters: without it the outputs differ.
        assert not torch.allclose(model(x), raw(x), atol=1e-3)


def test_normalisation_constants_are_buffers() -> None:
    model = build_model(small_cfg("cnn", input_mean=0.25, input_std=0.5), (1, 8, 8), 10)
    buffers = dict(model.named_buffers())
    assert buffers["normalize.mean"].item() == 0.25
    assert buffers["normalize.std"].item() == 0.5
    assert not any(name.startswith("normalize.") for name, _ in model.named_parameters())
    assert "normalize.mean" in model.state_dict()
    # The buffer values are what the forward uses.
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(model.normalize(x), (x - 0.25) / 0.5)
    with torch.no_grad():
        before = model(x)
        model.normalize.mean.fill_(0.75)
        assert not torch.allclose(model(x), before, atol=1e-4)


@pytest.mark.parametrize("arch", ["wrn", "cnn"])
@pytest.mark.parametrize("norm", NORMS)
def test_forward_equals_forward_from_stem(arch: str, norm: str) -> None:
    torch.manual_seed(2)
    model = build_model(small_cfg(arch, norm, input_mean=0.4, input_std=0.3), (1, 8, 8), 10).eval()
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        h = model.stem((x - 0.4) / 0.3)
        torch.testing.assert_close(model(x), model.forward_from_stem(h))
        torch.testing.assert_close(model.features(x), model.trunk(h))
        torch.testing.assert_close(model(x), model.head(model.features(x)))


@pytest.mark.parametrize("arch", ["wrn", "cnn"])
def test_gradient_at_stem_output_for_pyld(arch: str) -> None:
    """PYLD needs p = d sum f(x) / d h1 at the stem output h1 = conv1(x) (ALGORITHMS.md §2.2)."""
    torch.manual_seed(3)
    model = build_model(small_cfg(arch, "none"), (1, 8, 8), 10)
    x = torch.rand(4, 1, 8, 8)
    h = model.stem(model.normalize(x))
    h.retain_grad()
    free_energy(model.forward_from_stem(h)).sum().backward()
    assert h.grad is not None and h.grad.shape == h.shape
    assert h.grad.abs().sum() > 0
    # torch.autograd.grad at the stem output gives the same p (no retain_grad needed).
    h2 = model.stem(model.normalize(x))
    (p,) = torch.autograd.grad(free_energy(model.forward_from_stem(h2)).sum(), h2)
    torch.testing.assert_close(p, h.grad)


# ----------------------------------------------------------------------------- initialisation


def test_init_is_deterministic_given_seed() -> None:
    def state(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_model(small_cfg("wrn", "batch"), (3, 32, 32), 10).state_dict()

    a, b, c = state(0), state(0), state(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_init_kaiming_fan_out_and_zero_head_bias() -> None:
    leak = 0.2
    torch.manual_seed(0)
    model = build_model(small_cfg("wrn", "none", width=4, leak=leak), (3, 32, 32), 10)
    assert torch.count_nonzero(model.head.bias) == 0
    conv = model.stages[2][0].conv1  # 128 -> 256, 3x3: fan_out = 2 * fan_in, so the mode shows
    assert conv.out_channels == 2 * conv.in_channels
    fan_out = conv.out_channels * 9
    expected = (2.0 / (1 + leak**2)) ** 0.5 / fan_out**0.5
    # 295k weights: the sample std is within ~0.2%; slope 0 instead of 0.2 would be 2% off.
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.01)
    assert conv.weight.mean().abs().item() < 0.1 * expected
    assert all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


# ----------------------------------------------------------------------------- small CNN budget


def test_small_cnn_is_small() -> None:
    # Speed is for benchmarks, not tests: the parameter count is the budget a test can hold.
    model = build_model(ModelConfig(arch="cnn", width=1, norm="batch"), (1, 8, 8), 10)
    assert n_params(model) < 60_000


def test_cnn_width_scales_channels() -> None:
    m1 = build_model(small_cfg("cnn", width=1), (1, 8, 8), 10)
    m2 = build_model(small_cfg("cnn", width=2), (1, 8, 8), 10)
    assert m1.stem.out_channels == 16 and m2.stem.out_channels == 32
    assert n_params(m2) > 3 * n_params(m1)


def test_cnn_pool_keeps_the_spatial_layout_for_the_head() -> None:
    """model.pool = 7 on 28x28: the head reads the whole 7x7 map (64w x 49 features), where the
    default (1) is global average pooling; the pooled trunk is exactly the flattened conv map."""
    torch.manual_seed(0)
    gap = build_model(small_cfg("cnn", width=1, norm="group"), (1, 28, 28), 10)
    flat = build_model(small_cfg("cnn", width=1, norm="group", pool=7), (1, 28, 28), 10)
    assert gap.feature_dim == 64 and gap.head.in_features == 64
    assert flat.feature_dim == 64 * 49 and flat.head.in_features == 64 * 49
    x = torch.rand(3, 1, 28, 28)
    assert flat(x).shape == (3, 10)
    with torch.no_grad():
        conv_map = flat.body(flat.stem(flat.normalize(x)))
        assert conv_map.shape[-2:] == (7, 7)
        torch.testing.assert_close(flat.trunk(flat.stem(flat.normalize(x))), conv_map.flatten(1))
    # decided at build time (the map is already 7x7), so the model stays traceable by torch.fx
    assert isinstance(flat.pool, nn.Identity) and isinstance(gap.pool, nn.AdaptiveAvgPool2d)
    torch.fx.symbolic_trace(flat)
    other = build_model(small_cfg("cnn", width=1, pool=7), (1, 32, 32), 10)  # an 8x8 map: pooled to 7x7
    assert isinstance(other.pool, nn.AdaptiveAvgPool2d) and other(torch.rand(2, 1, 32, 32)).shape == (2, 10)


def test_build_model_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        build_model(small_cfg("cnn"), (8, 8), 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_model(small_cfg("cnn"), (1, 8, 8), 0)


# ----------------------------------------------------------------------------- energies


def test_energy_is_minus_logsumexp() -> None:
    logits = torch.randn(8, 10) * 3
    torch.testing.assert_close(free_energy(logits), torch.logsumexp(logits, dim=1))
    torch.testing.assert_close(energy(logits), -torch.logsumexp(logits, dim=1))
    assert free_energy(logits).shape == energy(logits).shape == (8,)


def test_larger_logits_have_lower_energy() -> None:
    logits = torch.randn(8, 10)
    confident = logits.clone()
    confident[:, 0] += 5.0  # more mass: higher f(x), lower E(x)
    assert (energy(confident) < energy(logits)).all()
    assert (free_energy(confident) > free_energy(logits)).all()
    assert (energy(logits + 1.0) < energy(logits)).all()


def test_class_energy_picks_minus_logit_and_relates_to_softmax() -> None:
    logits = torch.randn(6, 5)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    ce = class_energy(logits, y)
    torch.testing.assert_close(ce, -logits[torch.arange(6), y])
    # E(x, y) - E(x) = -log p(y | x), p = softmax(logits).
    log_p = torch.log_softmax(logits, dim=1)[torch.arange(6), y]
    torch.testing.assert_close(ce - energy(logits), -log_p)
    torch.testing.assert_close(ce - energy(logits), nn.functional.cross_entropy(logits, y, reduction="none"))


def test_energy_helpers_return_float32_for_bf16() -> None:
    logits = (torch.randn(4, 10) * 20).to(torch.bfloat16)
    y = torch.tensor([1, 2, 3, 4])
    for out in (free_energy(logits), energy(logits), class_energy(logits, y)):
        assert out.dtype == torch.float32
    # Computed from the float32 upcast, not rounded to bf16 afterwards.
    torch.testing.assert_close(free_energy(logits), torch.logsumexp(logits.float(), dim=1))


@pytest.mark.parametrize("depth,width,res,norm", [(18, 1, 32, "batch"), (18, 1, 96, "group"), (50, 1, 16, "none")])
def test_torchvision_resnets_keep_the_model_contract(depth, width, res, norm) -> None:
    from ebjdat_engine.models import ResNet

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet", depth=depth, width=width, norm=norm), (3, res, res), 7).eval()
    assert isinstance(model, ResNet)
    x = torch.rand(2, 3, res, res)
    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.allclose(model.forward_from_stem(model.stem(model.normalize(x))), logits)
    # the stem follows the resolution: 3x3 stride 1 up to 64 px, torchvision's 7x7 stride 2 above
    assert model.stem.kernel_size == ((3, 3) if res <= 64 else (7, 7))
    if norm == "none":
        assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    # PYLD's gradient at the stem output works (no in-place op on it)
    h = model.stem(model.normalize(x)).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.forward_from_stem(h).logsumexp(1).sum(), h)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_a_resnet_depth_it_does_not_have_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no depth 20 with width 1"):
        build_model(ModelConfig(arch="resnet", depth=20, width=1), (3, 32, 32), 10)
