"""DenseNet-BC.

Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017, arXiv:1608.06993 (2016).

The ImageNet networks of Table 1, all DenseNet-BC with growth rate k = 32: a 7x7/2 conv with
2k = 64 filters and a 3x3/2 max pool, four dense blocks whose layers each add k feature maps
to everything before them (Eq. 2), the composite function BN-ReLU-Conv (section 3) with a 1x1
bottleneck of 4k maps before each 3x3 ("DenseNet-B"), transition layers that halve the maps
(compression 0.5, "DenseNet-C") with a 1x1 conv and a 2x2/2 average pool, and a final
BN-ReLU, 7x7 global average pool and linear classifier.

Where this code departs from the paper, and why:
- Modules and state-dict keys follow torchvision (features.conv0, features.denseblock1.
  denselayer1.norm1, features.transition1.conv, ..., classifier), so its weights load tensor
  for tensor; the analyzer's rows are the paper's (conv0, pool0, denseblock1, transition1, ...).
- The transition layer is BN-ReLU-Conv-Pool: section 3 names BN and a 1x1 conv; the ReLU is
  the composite function's and is in the authors' Torch code (and torchvision's).
- The final pool is a global average pool (= Table 1's 7x7 at 224).
- Dropout (section 4.2: 0.2 after each conv, for the augmentation-free CIFAR/SVHN runs only)
  is the switch `drop_rate`, 0 by default as in the paper's ImageNet runs.
- Weight initialisation: He et al. 2015, fan-out (the authors' code follows fb.resnet.torch).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelArgumentError, WeightsError
from ..preprocess import IMAGENET_RGB
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, count_blocks, he_normal_fan_out_, new_linear

# Table 1: depth -> dense layers in dense blocks 1-4 (each layer: 1x1 conv then 3x3 conv).
# Depth = 1 (conv0) + 2 x layers + 3 transitions + 1 classifier: 121 = 1 + 2 x 58 + 3 + 1.
DENSENET_TABLE: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),  # as published, though 1 + 2 x 130 + 3 + 1 = 265 layers
}
GROWTH_RATE = 32  # k (section 4.3: "k = 32" for the ImageNet DenseNet-BC)
BN_SIZE = 4  # DenseNet-B: "each 1x1 convolution produce 4k feature-maps"
COMPRESSION = 0.5  # DenseNet-C: theta = 0.5


class DenseLayer(nn.Module):
    """H_l of DenseNet-B: BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k) on the concatenation of
    all preceding feature maps (Eq. 2)."""

    def __init__(
        self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        inner = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.relu1(self.norm1(x)))  # N x 4k x H x W
        x = self.conv2(self.relu2(self.norm2(x)))  # N x k x H x W
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x


class DenseBlock(nn.Module):
    """`num_layers` dense layers; each reads [x_0, x_1, ..., x_{l-1}] concatenated (Eq. 2)."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-Conv(1x1, floor(theta m)) and a 2x2/2 average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_channels),
                relu=nn.ReLU(inplace=True),
                conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                pool=nn.AvgPool2d(2, stride=2),
            )
        )


class DenseNet(Classifier):
    """DenseNet-BC of Table 1 in torchvision's module layout.

    Args:
        depth: 121, 169, 201 or 264 (Table 1).
        num_classes: classifier outputs (1000 for ImageNet).
        growth_rate: k; 32 for every ImageNet model of Table 1.
        bn_size: bottleneck width in multiples of k (4, DenseNet-B).
        compression: theta of the transition layers (0.5, DenseNet-C).
        drop_rate: dropout after each dense layer's 3x3 conv (0 on ImageNet).
        init_weights: He initialisation.
    """

    # 7x7/2 conv, 3x3/2 pool and three 2x2/2 transition pools: the last needs a 2x2 map
    min_size = 29

    def __init__(
        self,
        depth: int = 121,
        num_classes: int = 1000,
        *,
        growth_rate: int = GROWTH_RATE,
        bn_size: int = BN_SIZE,
        compression: float = COMPRESSION,
        drop_rate: float = 0.0,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if depth not in DENSENET_TABLE:
            raise ModelArgumentError(
                f"depth must be one of {sorted(DENSENET_TABLE)} (Table 1), got {depth}"
            )
        if not 0 < compression <= 1:
            raise ModelArgumentError(
                f"compression must be in (0, 1] (section 3), got {compression}"
            )
        self.depth = depth
        self.num_classes = num_classes
        channels = 2 * growth_rate  # section 3: "2k convolutions of size 7x7 with stride 2"
        stages: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False),  # 112 x 112
            norm0=nn.BatchNorm2d(channels),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, stride=2, padding=1),  # 56 x 56
        )
        blocks = DENSENET_TABLE[depth]
        for i, num_layers in enumerate(blocks, 1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate)
            stages[f"denseblock{i}"] = block
            channels = block.out_channels
            if i < len(blocks):
                out = math.floor(compression * channels)
                stages[f"transition{i}"] = Transition(channels, out)  # 28, 14, 7
                channels = out
        stages["norm5"] = nn.BatchNorm2d(channels)
        stages["relu5"] = nn.ReLU(inplace=True)  # parameter-free: keys stay torchvision's
        self.features = nn.Sequential(stages)
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # = 7x7 global average pool at 224
        self.classifier = nn.Linear(channels, num_classes)
        # analyzer rows: the paper's stages inside `features`, named as Table 1 lists them
        groups = {"conv0": ("features.conv0", "features.norm0", "features.relu0")}
        for name in stages:
            if name.startswith(("pool", "denseblock", "transition")):
                groups[name] = (f"features.{name}",)
        groups["norm5"] = ("features.norm5", "features.relu5")
        self.summary_groups = groups
        if init_weights:
            he_normal_fan_out_(self)

    # 1/2 (the stem, before its pool), the first three dense blocks (before their transition's
    # pool), the last after its BatchNorm and ReLU: 1/4 ... 1/32
    feature_stages = tuple(
        f"features.{n}" for n in ("relu0", "denseblock1", "denseblock2", "denseblock3", "relu5")
    )

    def feature_chain(self) -> list[str]:
        return [f"features.{name}" for name, _ in self.features.named_children()]

    def forward_features(self, x: Tensor) -> Tensor:
        # DenseNet-121: conv0 64x112x112, pool0 64x56x56, block1 256x56x56, transition1
        # 128x28x28, block2 512, transition2 256x14x14, block3 1024, transition3 512x7x7,
        # block4 1024x7x7
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))  # N x num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for `num_classes` outputs."""
        self.num_classes = num_classes
        self.classifier = new_linear(self.num_features, num_classes)


# --- presets ---------------------------------------------------------------------------------

_PAPER = dict(
    family="DenseNet",
    title="Densely Connected Convolutional Networks",
    authors="Huang, Liu, van der Maaten, Weinberger",
    year=2016,
    arxiv="1608.06993",
    preprocessing=IMAGENET_RGB,
    deviations=(
        "torchvision's module names and state-dict keys",
        "ReLU in the transition layer (BN-ReLU-Conv, authors' code)",
    ),
)
# Table 3: top-5 error on the ImageNet validation set, single-crop / 10-crop
_TOP5 = {
    121: "7.71% (single crop); 6.66% (10-crop) (val, Table 3)",
    169: "6.85% (single crop); 5.92% (10-crop) (val, Table 3)",
    201: "6.34% (single crop); 5.54% (10-crop) (val, Table 3)",
    264: "6.12% (single crop); 5.29% (10-crop) (val, Table 3)",
}


def _card(depth: int) -> ModelCard:
    blocks = ", ".join(str(n) for n in DENSENET_TABLE[depth])
    return ModelCard(
        name=f"densenet{depth}",
        summary=f"DenseNet-BC, k = 32, dense blocks [{blocks}] (Table 1)",
        top5_error=_TOP5[depth],
        **_PAPER,
    )


@register_model(_card(121))
def densenet121(num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-BC-121 (Table 1)."""
    return DenseNet(121, num_classes, **kwargs)


@register_model(_card(169))
def densenet169(num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-BC-169 (Table 1)."""
    return DenseNet(169, num_classes, **kwargs)


@register_model(_card(201))
def densenet201(num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-BC-201 (Table 1)."""
    return DenseNet(201, num_classes, **kwargs)


@register_model(_card(264))
def densenet264(num_classes: int = 1000, **kwargs) -> DenseNet:
    """DenseNet-BC-264 (Table 1); torchvision has no such model."""
    return DenseNet(264, num_classes, **kwargs)


# --- torchvision's weights --------------------------------------------------------------------

# torchvision before 0.3 (and its published .pth files) keys the dense layers' parts `norm.1`,
# `relu.1`, `conv.1`, ... where the current modules have `norm1`, `relu1`, `conv1`
_LEGACY_DENSE = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(.+)$")


def from_torchvision(state: dict[str, Tensor]) -> ImportedState | None:
    """torchvision's `densenet121`, `169`, `201` (current or legacy keys): our modules keep its
    names. None for another architecture; densenet161 (k = 48) is not a Table 1 network."""
    if not any(k.startswith("features.denseblock1.") for k in state):
        return None
    ours = {_LEGACY_DENSE.sub(r"\1\2.\3", k): v for k, v in state.items()}
    first = "features.denseblock1.denselayer1.conv2.weight"
    if first not in ours or "classifier.weight" not in ours:
        raise WeightsError("not a torchvision densenet state dict (no dense layers or classifier)")
    layers = count_blocks(ours, r"^features\.denseblock(\d)\.denselayer(\d+)\.")
    growth = ours[first].shape[0]
    depth = next((d for d, row in DENSENET_TABLE.items() if row == layers), None)
    if depth is None or growth != GROWTH_RATE:
        raise WeightsError(
            f"not a DenseNet-BC of Table 1 (dense layers {list(layers)}, growth rate {growth}); "
            "give torchvision densenet121, 169 or 201 weights (densenet161, k = 48, is not here)"
        )
    kwargs = {"num_classes": ours["classifier.weight"].shape[0]}
    return ImportedState(f"densenet{depth}", kwargs, ours, IMAGENET_RGB, f"densenet{depth}")


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `densenet121` ... `densenet201`: the same names as torchvision's."""
    found = from_torchvision(state)
    return found._replace(preprocessing=None) if found is not None else None
