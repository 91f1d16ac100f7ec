"""Network in Network (NIN).

Lin, Chen, Yan, "Network In Network", ICLR 2014, arXiv:1312.4400 (2013).

NIN replaces each linear convolution by an "mlpconv" layer: a convolution followed by a small
multilayer perceptron shared over positions, which is a stack of 1x1 convolutions (the
"cascaded cross channel parametric pooling" layers, "cccp" in the authors' code), each with a
ReLU. The last mlpconv gives one map per class and a global average pool turns the maps into
the class scores: no fully connected layer. Both ideas, the 1x1 convolution and global average
pooling, went into GoogLeNet.

`nin_cifar10` is the paper's CIFAR-10 network (section 4.2) with the layer sizes of the authors'
released CIFAR-10 definition: three mlpconv blocks, 192 maps, 5x5, 5x5 and 3x3 convolutions,
cccp widths 160/96, 192/192 and 192/10, a 3x3/2 max pool after the first block, a 3x3/2 average
pool after the second, dropout 0.5 after both (section 4.2: "dropout is applied on the outputs
of all but the last mlpconv layers"), a global average pool over the ten class maps. 10.41%
test error without augmentation, 8.81% with translations and flips (Table 1).

`nin_imagenet` is the ImageNet model of the Caffe model zoo (released by the first author,
59.36% top-1 on the validation set, one centre crop): four mlpconv blocks, conv1 96 11x11/4,
conv2 256 5x5, conv3 384 3x3, conv4 1024 3x3, max pools 3x3/2 with Caffe's ceil rounding,
dropout 0.5 before the fourth block, 1000 class maps averaged over their 6x6. Layers are named
as in its prototxt (Caffe's "conv4-1024" is `conv4_1024` here, a dash being no Python name), so
that its blobs map by name: conv1, cccp1, cccp2, pool0, conv2, cccp3, cccp4, pool2, conv3,
cccp5, cccp6, pool3, drop, conv4_1024, cccp7_1024, cccp8_1024, pool4.

Where this code departs from the paper and the releases, and why:
- The last pool is a global average pool. At the published input sizes (32 and 224) it is
  exactly the 8x8/1 and 6x6/1 average pools of the prototxts; at other sizes it still gives one
  score per class.
- CIFAR-10 input: the paper whitens the images (global contrast normalisation and ZCA); here
  the card states the per-channel CIFAR-10 mean and standard deviation instead.
- A ReLU follows the class maps, as in both Caffe definitions: the scores are non-negative.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ModelArgumentError
from ..preprocess import CAFFE_BGR, Preprocessing
from ..registry import ModelCard, register_model
from .base import Classifier, out_size


class MlpConv(NamedTuple):
    """One mlpconv block as the prototxts write it: a k x k convolution (name, maps, kernel,
    stride, padding), two 1x1 "cccp" layers (name, maps), then a pool and maybe a dropout."""

    conv: tuple[str, int, int, int, int]
    cccp: tuple[tuple[str, int], tuple[str, int]]
    pool: tuple[str, str, int, int]  # name, "max" | "avg" | "global", kernel, stride
    dropout: str = ""  # the dropout layer's name; "" for none


# The authors' CIFAR-10 definition (the paper's section 4.2 network); sizes at 32x32
NIN_CIFAR10 = [
    MlpConv(("conv1", 192, 5, 1, 2), (("cccp1", 160), ("cccp2", 96)),
            ("pool1", "max", 3, 2), "drop1"),  # 32 -> 16
    MlpConv(("conv2", 192, 5, 1, 2), (("cccp3", 192), ("cccp4", 192)),
            ("pool2", "avg", 3, 2), "drop2"),  # 16 -> 8
    MlpConv(("conv3", 192, 3, 1, 1), (("cccp5", 192), ("cccp6", 10)),
            ("pool3", "global", 8, 1)),  # 8 -> 1: the 10 class maps averaged
]  # fmt: skip
# The Caffe model zoo's ImageNet NIN ("nin_imagenet"); sizes at 224x224
NIN_IMAGENET = [
    MlpConv(("conv1", 96, 11, 4, 0), (("cccp1", 96), ("cccp2", 96)),
            ("pool0", "max", 3, 2)),  # 54 -> 27
    MlpConv(("conv2", 256, 5, 1, 2), (("cccp3", 256), ("cccp4", 256)),
            ("pool2", "max", 3, 2)),  # 27 -> 13
    MlpConv(("conv3", 384, 3, 1, 1), (("cccp5", 384), ("cccp6", 384)),
            ("pool3", "max", 3, 2), "drop"),  # 13 -> 6
    MlpConv(("conv4_1024", 1024, 3, 1, 1), (("cccp7_1024", 1024), ("cccp8_1024", 1000)),
            ("pool4", "global", 6, 1)),  # 6 -> 1: the 1000 class maps averaged
]  # fmt: skip

# The Gaussian std of each layer's initial weights in the ImageNet prototxt (biases 0): 0.05,
# except the layers named here. The CIFAR-10 definition is initialised the same way here.
CAFFE_INIT_STD = 0.05
CAFFE_INIT_STD_EXCEPT = {"conv1": 0.01, "conv3": 0.01, "cccp8_1024": 0.01}


def conv_relu(
    cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, *, relu: bool = True
) -> nn.Sequential:
    """A convolution and its ReLU, as `conv` and `relu` (every NIN layer has one; `relu=False`
    leaves an identity in its place, the keys unchanged)."""
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
    act = nn.ReLU(inplace=True) if relu else nn.Identity()
    return nn.Sequential(OrderedDict(conv=conv, relu=act))


class NIN(Classifier):
    """Network in Network from a table of mlpconv blocks (`NIN_CIFAR10`, `NIN_IMAGENET`).

    Every layer is a top-level module under its prototxt name. The features are everything up
    to the last 1x1 layer; the head is that layer (the class maps, with its ReLU) and the
    global average pool, so `reset_classifier` replaces the class-map layer.

    Args:
        num_classes: class maps of the last layer (the table's last width is replaced).
        blocks: the table of mlpconv blocks.
        dropout: probability of each dropout layer (0.5 in both releases).
        init: "caffe" (Gaussian weights of `CAFFE_INIT_STD`, zero biases, as the prototxts) or
            "kaiming" (He et al. 2015, fan-in, for the ReLUs; not in the paper).
        class_map_relu: the ReLU both prototxts put on the class maps. Once every class map
            of every image is below zero the scores are all 0 and no gradient comes back; off,
            the class maps are linear (for short runs: see benchmarks/train_nin_cifar10.py).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        blocks: list[MlpConv] = NIN_IMAGENET,
        dropout: float = 0.5,
        init: str = "caffe",
        class_map_relu: bool = True,
    ) -> None:
        super().__init__()
        if init not in ("caffe", "kaiming"):
            raise ModelArgumentError(f"init must be 'caffe' or 'kaiming', got {init!r}")
        self.blocks = [MlpConv(*b) for b in blocks]
        self.num_classes = num_classes
        self.feature_names: list[str] = []
        channels = self.in_channels
        *body, last = self.blocks
        for conv, cccps, pool, drop in body:
            channels = self._add_convs(conv, cccps, channels)
            self._add(pool[0], _pool(pool))
            if drop:
                self._add(drop, nn.Dropout(dropout))
        # the last block: its conv and first cccp are features, its second cccp the class maps
        conv, (cccp, (head, _)), (pool_name, *_), _ = last
        self.num_features = self._add_convs(conv, (cccp,), channels)
        self.classifier_name, self.pool_name = head, pool_name
        self.class_map_relu = class_map_relu
        self.add_module(head, conv_relu(self.num_features, num_classes, 1, relu=class_map_relu))
        # a global average pool: exactly the prototxt's last pool at the published size
        self.add_module(pool_name, nn.AdaptiveAvgPool2d(1))
        self.min_size = self._min_size()
        stages = [b.cccp[1][0] for b in self.blocks[:-1]] + [self.blocks[-1].cccp[0][0]]
        if len(stages) < 4:  # fewer blocks than resolutions a feature pyramid wants
            stages.insert(0, self.blocks[0].conv[0])
        self.feature_stages = tuple(stages)
        self._init_weights(init)

    def _add_convs(self, conv: tuple, cccps: tuple, channels: int) -> int:
        """The block's k x k convolution and its 1x1 layers; returns the output width."""
        name, width, kernel, stride, padding = conv
        self._add(name, conv_relu(channels, width, kernel, stride, padding))
        for cccp, cccp_width in cccps:
            self._add(cccp, conv_relu(width, cccp_width, 1))
            width = cccp_width
        return width

    def _add(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self.feature_names.append(name)

    def _min_size(self) -> int:
        """The smallest square input every convolution and pool takes."""
        for size in range(1, 1024):
            n = size
            for (_, _, kernel, stride, padding), _, (_, kind, k, s), _ in self.blocks:
                n = out_size(n, kernel, stride, padding)
                if n >= 1 and kind != "global":
                    n = out_size(n, k, s, ceil=True)
                if n < 1:
                    break
            if n >= 1:
                return size
        raise AssertionError("unreachable")

    def _init_weights(self, init: str) -> None:
        for name, m in self.named_children():
            if isinstance(m, nn.Sequential):
                conv = m.conv
                if init == "caffe":
                    std = CAFFE_INIT_STD_EXCEPT.get(name, CAFFE_INIT_STD)
                    nn.init.normal_(conv.weight, 0.0, std)
                else:
                    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)

    def feature_chain(self) -> list[str]:
        return list(self.feature_names)

    def forward_features(self, x: Tensor) -> Tensor:
        """Every layer up to the class maps: N x 192 x 8 x 8 (CIFAR-10 at 32), N x 1024 x 6 x 6
        (ImageNet at 224)."""
        for name in self.feature_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        x = getattr(self, self.classifier_name)(x)  # N x num_classes x 8 x 8 (or 6 x 6)
        x = getattr(self, self.pool_name)(x)  # N x num_classes x 1 x 1
        return torch.flatten(x, 1)

    def reset_classifier(self, num_classes: int) -> None:
        """New class maps: a fresh 1x1 layer of `num_classes` outputs on the same features."""
        self.num_classes = num_classes
        head = conv_relu(self.num_features, num_classes, 1, relu=self.class_map_relu)
        std = CAFFE_INIT_STD_EXCEPT.get(self.classifier_name, CAFFE_INIT_STD)
        nn.init.normal_(head.conv.weight, 0.0, std)
        nn.init.zeros_(head.conv.bias)
        setattr(self, self.classifier_name, head)


def _pool(spec: tuple[str, str, int, int]) -> nn.Module:
    _, kind, kernel, stride = spec
    if kind == "max":
        return nn.MaxPool2d(kernel, stride=stride, ceil_mode=True)  # Caffe rounds up
    return nn.AvgPool2d(kernel, stride=stride, ceil_mode=True)


# --- presets ---------------------------------------------------------------------------------

# CIFAR-10's per-channel mean and standard deviation (the paper whitened instead: GCN + ZCA)
CIFAR10_STANDARDIZED = Preprocessing(
    resize=32,
    crop=32,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    note="CIFAR-10: RGB 0-1 minus the per-channel mean, over the per-channel std",
)
# The Caffe model zoo's ImageNet NIN: 224 crops of BGR 0-255 minus the ImageNet mean image
# (its per-channel mean here, as for BVLC's models)
NIN_CAFFE_BGR = CAFFE_BGR

_PAPER = dict(
    family="NIN",
    title="Network In Network",
    authors="Lin, Chen, Yan",
    year=2013,
    arxiv="1312.4400",
)


@register_model(
    ModelCard(
        name="nin_cifar10",
        input_size=32,
        num_classes=10,
        preprocessing=CIFAR10_STANDARDIZED,
        **_PAPER,
        summary="the paper's CIFAR-10 network: three mlpconv blocks (192 maps, cccp 160/96, "
        "192/192, 192/10), dropout, global average pooling over 10 class maps",
        deviations=(
            "per-channel standardisation instead of GCN + ZCA whitening",
            "global average pool (= 8x8/1 at 32)",
        ),
        top5_error="10.41% CIFAR-10 test error (top-1); 8.81% with translation and flipping",
    )
)
def nin_cifar10(**kwargs) -> NIN:
    """NIN's CIFAR-10 network (section 4.2, the authors' released definition)."""
    return NIN(**{"num_classes": 10, "blocks": NIN_CIFAR10, **kwargs})


@register_model(
    ModelCard(
        name="nin_imagenet",
        input_size=224,
        preprocessing=NIN_CAFFE_BGR,
        **_PAPER,
        summary="the Caffe model zoo's ImageNet NIN: four mlpconv blocks (conv1 96 11x11/4, "
        "..., conv4 1024), dropout before the fourth, 1000 class maps averaged; prototxt names",
        deviations=("global average pool (= 6x6/1 at 224)", "conv4-1024 named conv4_1024"),
        top5_error="40.64% top-1 (59.36% accuracy) on ILSVRC 2012 val, 1 crop, per its release",
    )
)
def nin_imagenet(**kwargs) -> NIN:
    """The Caffe model zoo's ImageNet NIN, layers named as in its prototxt."""
    return NIN(**{"blocks": NIN_IMAGENET, **kwargs})
