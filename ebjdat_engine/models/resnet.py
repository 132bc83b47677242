"""torchvision's ResNets (ResNet-18/34/50/101, Wide-ResNet-50-2/101-2, and Wide-ResNet-50-4 from
torchvision's ResNet class, DAT's ImageNet network) under the model contract.

`model.arch = "resnet"` with `model.depth` (18, 34, 50, 101) and `model.width` (1; 2 for the
wide 50/101 variants; 4 for Wide-ResNet-50-4) builds torchvision's network with this project's normalisation
(`model.norm`: BatchNorm with the recipe's momentum, GroupNorm, or none) and wraps it in the
[0, 1] -> logits contract of `Classifier`:

* the stem is adapted to the resolution (`model.stem = "auto"`): at 64 px and below, a 3×3
  stride-1 convolution and no max-pool (the CIFAR / downsampled-ImageNet stem: a 7×7 stride-2
  stem and a max-pool would leave a 2×2 map at 32 px); above 64 px, torchvision's 7×7 stride-2
  convolution and 3×3 max-pool. `model.stem = "small"` / `"large"` picks one at any size (the
  large stem costs about 1/15 of the small one's FLOPs at the same resolution: 296 against
  4,443 MFLOP for ResNet-18 at 64 px);
* `stem` is that first convolution (what PYLD differentiates at), `trunk` the rest up to the
  pooled features, `head` torchvision's `fc`;
* with `norm = "none"` every convolution gets a bias (torchvision's have none, since a BatchNorm
  follows each), which is also what a BatchNorm folds into (`models.fold`).

Activations are torchvision's ReLUs (not the JEM line's LeakyReLU).
"""

from __future__ import annotations

import torch
from torch import nn

from ..recipe.schema import RESNET_VARIANTS, ModelConfig, resnet_variant_problem
from .normalize import Classifier, make_norm

#: (depth, width) -> torchvision builder name (the recipe layer refuses any other pair)
VARIANTS = RESNET_VARIANTS
#: variants torchvision has no builder for: its ResNet class with a wider bottleneck (DAT's
#: ImageNet network, WRN-50-4: width_per_group 64 x 4)
_WIDER = {"wide_resnet50_4": ([3, 4, 6, 3], 64 * 4)}
#: at or below this resolution the stem is a 3x3 stride-1 convolution without max-pool
SMALL_STEM_MAX = 64


def small_stem(cfg: ModelConfig, resolution: int) -> bool:
    """Whether the network starts with the 3x3 stride-1 stem (model.stem, 'auto': by resolution)."""
    return cfg.stem == "small" or (cfg.stem == "auto" and resolution <= SMALL_STEM_MAX)


def variant_name(depth: int, width: int) -> str:
    """torchvision's name for `model.depth` x `model.width`; ValueError listing the valid pairs."""
    problem = resnet_variant_problem(depth, width)
    if problem:
        raise ValueError(problem)
    return VARIANTS[(depth, width)]


def _with_biases(module: nn.Module) -> None:
    """Give every bias-free convolution a (zero) bias, in place: a network without norms needs them."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and child.bias is None:
            conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                             child.padding, child.dilation, child.groups, bias=True)
            with torch.no_grad():
                conv.weight.copy_(child.weight)
                conv.bias.zero_()
            setattr(module, name, conv)
        else:
            _with_biases(child)


class ResNet(Classifier):
    """A torchvision ResNet on [0, 1] images of `resolution` pixels; see the module docstring."""

    def __init__(self, cfg: ModelConfig, in_channels: int, n_classes: int, resolution: int) -> None:
        super().__init__(cfg, n_classes)
        import torchvision

        name = variant_name(cfg.depth, cfg.width)
        norm_layer = lambda c: make_norm(cfg.norm, c, cfg.bn_momentum)  # noqa: E731
        if name in _WIDER:
            from torchvision.models.resnet import Bottleneck
            from torchvision.models.resnet import ResNet as TorchvisionResNet

            layers, width_per_group = _WIDER[name]
            net = TorchvisionResNet(Bottleneck, layers, num_classes=n_classes,
                                    width_per_group=width_per_group, norm_layer=norm_layer)
        else:
            net = getattr(torchvision.models, name)(weights=None, num_classes=n_classes,
                                                    norm_layer=norm_layer)
        if small_stem(cfg, resolution):
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 7, 2, 3, bias=False)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.ReLU):
                m.inplace = False  # PYLD differentiates at the stem output, which the first ReLU reads
        if cfg.norm == "none":
            _with_biases(net)
        self.stem = net.conv1
        self.stem_norm, self.act, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layers = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.pool = net.avgpool
        self.feature_dim = net.fc.in_features
        self.head = net.fc

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """Stem output -> norm, ReLU, (max-pool) -> four stages -> global average pool."""
        out = self.maxpool(self.act(self.stem_norm(h)))
        return self.pool(self.layers(out)).flatten(1)
