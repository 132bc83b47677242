"""The samplers' and attacks' eval-mode network: BatchNorms folded into their convolutions on the
fly (`models/fold.py` `folded_view`, `samplers/common.py` `sampling_network`)."""

from __future__ import annotations

import pytest
import torch
from conftest import trained_bn_net

from ebjdat_engine.models import build_model, free_energy
from ebjdat_engine.models.fold import FoldedView, folded_view
from ebjdat_engine.recipe.schema import ModelConfig
from ebjdat_engine.samplers import ebjdat_ascent, sampling_network

torch.set_num_threads(1)


def _bn_net(arch: str = "cnn", shape=(1, 8, 8), **kw) -> torch.nn.Module:
    """A width-1 BatchNorm network off its init (conftest), in train mode."""
    return trained_bn_net(shape, arch=arch, width=1, **kw).train()


def _input_grad(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(free_energy(net(x)).sum(), x)
    return g


@pytest.mark.parametrize("arch,shape,kw", [("cnn", (1, 8, 8), {}), ("resnet", (3, 16, 16), {"depth": 18})])
def test_the_view_is_the_eval_mode_network_in_value_and_input_gradient(arch, shape, kw) -> None:
    net = _bn_net(arch, shape, **kw)
    x = torch.rand(8, *shape)
    with sampling_network(net, "eval") as view:
        assert isinstance(view, FoldedView)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in view.modules())
        assert not net.training  # the model itself is in eval mode inside the block
        torch.testing.assert_close(view(x), net(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(_input_grad(view, x), _input_grad(net, x), atol=1e-5, rtol=1e-4)
    assert net.training and all(p.requires_grad for p in net.parameters())  # restored
    assert not any(k.startswith("_") or "net." in k for k in net.state_dict())  # nothing added to the model


def test_the_view_follows_the_live_weights_and_statistics() -> None:
    net = _bn_net()
    x = torch.rand(8, 1, 8, 8)
    first = folded_view(net.eval())
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    free_energy(net(torch.rand(16, 1, 8, 8))).sum().backward()  # moves the running statistics too
    opt.step()
    net.eval()
    again = folded_view(net)
    assert again is first  # made once, refreshed at every call
    torch.testing.assert_close(again(x), net(x), atol=1e-5, rtol=1e-5)


def test_what_cannot_be_folded_runs_as_it_is() -> None:
    plain = build_model(ModelConfig(arch="cnn", width=1, norm="none"), (1, 8, 8), 10)
    assert folded_view(plain) is plain                       # no BatchNorm
    wrn = _bn_net("wrn", (3, 8, 8), depth=10)
    assert folded_view(wrn.eval()) is wrn                    # pre-activation: a BN after a sum
    net = _bn_net()
    with sampling_network(net, "train") as same:
        assert same is net                                   # batch statistics cannot be folded


def test_a_model_moved_to_channels_last_gets_a_new_view() -> None:
    net = _bn_net().eval()
    first = folded_view(net)
    net.to(memory_format=torch.channels_last)
    second = folded_view(net)
    assert second is not first and second.matches()
    x = torch.rand(8, 1, 8, 8)
    torch.testing.assert_close(second(x), net(x), atol=1e-5, rtol=1e-5)


def test_the_ascent_through_the_view_matches_the_model() -> None:
    """EB-JDAT's inner max sees the same network: its sign steps agree (up to a flipped sign of a
    gradient entry within rounding of zero, none here)."""
    net = _bn_net()
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    kw = dict(eps=8 / 255, step_size=2 / 255, steps=3, objective="energy", random_start=False)
    with sampling_network(net, "eval") as view:
        a = ebjdat_ascent(view, x, y, **kw)
        b = ebjdat_ascent(net, x, y, **kw)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
