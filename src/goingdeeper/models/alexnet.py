"""AlexNet and ZFNet.

Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional neural
networks", NIPS 2012 (no arXiv id). Zeiler, Fergus, "Visualizing and understanding
convolutional networks", ECCV 2014, arXiv:1311.2901 (2013).

`alexnet` is the paper's two-tower network (section 3.5, Fig. 2), one tower per GPU written as
grouped convolutions: conv 96 11x11/4; ReLU; LRN; max pool 3x3/2; conv 256 5x5 (2 groups); LRN;
pool; conv 384 3x3 (reads both towers); conv 384 3x3 (2 groups); conv 256 3x3 (2 groups); pool;
FC 4096, FC 4096 (dropout 0.5 on both), FC 1000. 60,965,224 parameters. The LRN is the
paper's b = a / (k + alpha sum a^2)^beta with k 2, n 5, alpha 1e-4, beta 0.75: PyTorch divides
alpha by n, so it takes alpha 5e-4.

`zfnet` is Fig. 3 of Zeiler & Fergus: layer 1 96 filters 7x7/2, layer 2 256 5x5/2, dense (not
grouped) layers 3-5, max pool then contrast normalisation, 224x224 input, and its pools can
return their switches for a deconvnet (`forward_with_switches`). It declares the paper's filter
renormalisation (`max_filter_rms` 0.1), which `after_step` applies after each training step.

`alexnet_torchvision` is torchvision's single tower (64-192-384-256-256, no LRN,
dropout before fc6 and fc7), 61,100,840 parameters, whose weights load through
`goingdeeper.weights.import_torchvision`.

Where this code departs from the papers, and why:
- An adaptive average pool to 6x6 sits before fc6 (as in torchvision). At the papers' input
  sizes (227 for AlexNet, 224 for ZFNet) it is the identity; it lets other sizes through.
- AlexNet's input is 227x227: the paper says 224, but only 227 gives its 55x55 first layer.
- One LRN spans both towers, so at the tower boundary (maps 47/48) the window reads two maps of
  the other tower; in the paper's two-GPU code each GPU normalised its own maps.
- ZFNet's "contrast normalisation across feature maps" is not specified in the paper: it is
  AlexNet's LRN here. Its sizes (110, 55, 26, 13, 13, 6 in Fig. 3) need a padding of 1 in layer
  1 and pools that round up (Caffe's rule), which is what is built.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ModelArgumentError, WeightsError
from ..preprocess import IMAGENET_RGB, mean_subtracted
from ..registry import ModelCard, register_model
from .base import (
    Classifier,
    ImportedState,
    fc_relu,
    max_pool_with_indices,
    out_size,
    stages_before_pools,
)
from .lrn import LocalResponseNorm

# Section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75 on the plain sum; PyTorch's alpha is
# divided by the window size n (as Caffe's is), so it is 5 x 1e-4 here.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 5e-4, 0.75, 2.0

# name, kernels, size, stride, padding, groups; spatial sizes at the paper's input size
ALEXNET_CONVS = [
    ("conv1", 96, 11, 4, 0, 1),  # 227 -> 55, LRN, pool -> 27
    ("conv2", 256, 5, 1, 2, 2),  # 27, LRN, pool -> 13; each tower reads its own 48 maps
    ("conv3", 384, 3, 1, 1, 1),  # 13; "connected to all kernel maps in the second layer"
    ("conv4", 384, 3, 1, 1, 2),  # 13
    ("conv5", 256, 3, 1, 1, 2),  # 13, pool -> 6
]
ZFNET_CONVS = [
    ("conv1", 96, 7, 2, 1, 1),  # 224 -> 110, pool -> 55, LRN
    ("conv2", 256, 5, 2, 0, 1),  # 55 -> 26, pool -> 13, LRN
    ("conv3", 384, 3, 1, 1, 1),  # 13
    ("conv4", 384, 3, 1, 1, 1),  # 13
    ("conv5", 256, 3, 1, 1, 1),  # 13, pool -> 6
]
TORCHVISION_CONVS = [
    ("conv1", 64, 11, 4, 2, 1),  # 224 -> 55, pool -> 27
    ("conv2", 192, 5, 1, 2, 1),  # 27, pool -> 13
    ("conv3", 384, 3, 1, 1, 1),  # 13
    ("conv4", 256, 3, 1, 1, 1),  # 13
    ("conv5", 256, 3, 1, 1, 1),  # 13, pool -> 6
]
LRN_AFTER = ("conv1", "conv2")
POOL_AFTER = ("conv1", "conv2", "conv5")  # overlapping pools, 3x3/2 (section 3.4)
POOLED_SIZE = 6  # fc6 reads 256 x 6 x 6 = 9,216 values


class PoolSwitches(NamedTuple):
    """Where each max came from (flat indices into the pool's input) and that input's size:
    what a deconvnet needs to unpool (Zeiler & Fergus section 2.1)."""

    indices: Tensor
    input_size: torch.Size


class SwitchedForward(NamedTuple):
    """`forward_with_switches`: the logits, every named layer's output, every pool's switches."""

    logits: Tensor
    activations: dict[str, Tensor]
    switches: dict[str, PoolSwitches]


def _conv_relu(cin: int, cout: int, k: int, s: int, p: int, groups: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, groups=groups)
    return nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU(inplace=True)))


class AlexNet(Classifier):
    """AlexNet and its family (ZFNet, torchvision's tower); the paper's network by default.

    Layers are named as in the papers and Caffe: conv1 ... conv5 (each a convolution and its
    ReLU), lrn1, lrn2, pool1, pool2, pool5, fc6, fc7 (linear and ReLU), dropout6, dropout7, fc8.

    Args:
        num_classes: classifier outputs.
        convs: the convolution table (`ALEXNET_CONVS`, `ZFNET_CONVS`, `TORCHVISION_CONVS`).
        lrn: LRN after conv1 and conv2 (section 3.3).
        lrn_after_pool: normalise after the pool (ZFNet, Fig. 3; BVLC's CaffeNet) instead of
            before (AlexNet).
        lrn_alpha, lrn_k: the LRN's alpha (divided by the window size, as PyTorch and Caffe
            take it) and k: the paper's 5e-4 and 2 by default; BVLC's Caffe models use 1e-4
            and 1.
        ceil_pools: pools round their output size up (Caffe; ZFNet's Fig. 3 sizes need it).
        fc_width: width of fc6 and fc7 (4096 in both papers).
        dropout: dropout probability (0.5, section 4.2).
        dropout_before_fc: dropout on the inputs of fc6 and fc7 (torchvision) instead of on
            their outputs (the paper: "dropout in the first two fully-connected layers").
        in_channels: input planes.
        init: "alexnet" (section 5: N(0, 0.01), bias 1 in conv2, conv4, conv5, fc6, fc7),
            "zfnet" (section 3: N(0, 0.01), biases 0) or "default" (PyTorch's, as torchvision).
        max_filter_rms: after each training step, conv filters whose RMS exceeds it are
            renormalised to it (ZFNet section 3: 0.1); 0: never.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        convs: list[tuple[str, int, int, int, int, int]] = ALEXNET_CONVS,
        lrn: bool = True,
        lrn_after_pool: bool = False,
        lrn_alpha: float = LRN_ALPHA,
        lrn_k: float = LRN_K,
        ceil_pools: bool = False,
        fc_width: int = 4096,
        dropout: float = 0.5,
        dropout_before_fc: bool = False,
        in_channels: int = 3,
        init: str = "alexnet",
        max_filter_rms: float = 0.0,
    ) -> None:
        super().__init__()
        if init not in ("alexnet", "zfnet", "default"):
            raise ModelArgumentError(f"init must be 'alexnet', 'zfnet' or 'default', got {init!r}")
        if not (lrn_alpha >= 0 and lrn_k > 0):
            raise ModelArgumentError(
                f"lrn_alpha must be >= 0 and lrn_k > 0, got {lrn_alpha}, {lrn_k}"
            )
        if not max_filter_rms >= 0:
            raise ModelArgumentError(f"max_filter_rms must be >= 0 (0: off), got {max_filter_rms}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.max_filter_rms = max_filter_rms
        self.convs = [tuple(row) for row in convs]
        self.ceil_pools = ceil_pools
        self.feature_names: list[str] = []
        channels = in_channels
        for name, width, k, s, p, groups in self.convs:
            self._add(name, _conv_relu(channels, width, k, s, p, groups))
            channels = width
            i = name[-1]
            norm = pool = None
            if lrn and name in LRN_AFTER:
                norm = (f"lrn{i}", LocalResponseNorm(LRN_SIZE, lrn_alpha, LRN_BETA, lrn_k))
            if name in POOL_AFTER:
                pool = (f"pool{i}", nn.MaxPool2d(3, stride=2, ceil_mode=ceil_pools))
            for after in (pool, norm) if lrn_after_pool else (norm, pool):
                if after is not None:
                    self._add(*after)
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(POOLED_SIZE)  # identity at the paper's input size
        self.dropout_before_fc = dropout_before_fc
        self.fc6 = fc_relu(channels * POOLED_SIZE * POOLED_SIZE, fc_width)
        self.dropout6 = nn.Dropout(dropout)
        self.fc7 = fc_relu(fc_width, fc_width)
        self.dropout7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.min_size = self._min_size()
        self.feature_stages = stages_before_pools(self.feature_names, dict(self.named_children()))
        if init != "default":
            self._init_weights(init)

    def _add(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self.feature_names.append(name)

    def _min_size(self) -> int:
        """The smallest square input every convolution and pool takes (ceil-mode pools take a
        map smaller than their window)."""
        for size in range(1, 1024):
            n = size
            for name, _, k, s, p, _ in self.convs:
                n = out_size(n, k, s, p)
                if n >= 1 and name in POOL_AFTER:
                    n = out_size(n, 3, 2, ceil=self.ceil_pools)
                if n < 1:
                    break
            if n >= 1:
                return size
        raise AssertionError("unreachable")

    def _init_weights(self, init: str) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                top = name.split(".")[0]
                ones = init == "alexnet" and top in ("conv2", "conv4", "conv5", "fc6", "fc7")
                nn.init.constant_(m.bias, 1.0 if ones else 0.0)  # "accelerates the early
                # stages of learning by providing the ReLUs with positive inputs" (section 5)

    def feature_chain(self) -> list[str]:
        return list(self.feature_names)

    def forward_features(self, x: Tensor) -> Tensor:
        """conv1 ... pool5 in the table's order: N x 256 x 6 x 6 at the paper's input size."""
        for name in self.feature_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 9216
        if self.dropout_before_fc:
            x = self.fc7(self.dropout7(self.fc6(self.dropout6(x))))
        else:
            x = self.dropout7(self.fc7(self.dropout6(self.fc6(x))))
        return self.fc8(x)  # N x num_classes

    def forward_with_switches(self, x: Tensor) -> SwitchedForward:
        """The forward pass that also records every named layer's output and, for every max
        pool, its switches: the input to a deconvnet (Zeiler & Fergus section 2.1)."""
        self.check_input(x)
        activations: dict[str, Tensor] = {}
        switches: dict[str, PoolSwitches] = {}
        for name in self.feature_names:
            layer = getattr(self, name)
            if isinstance(layer, nn.MaxPool2d):
                size = x.shape
                x, indices = max_pool_with_indices(layer, x)
                switches[name] = PoolSwitches(indices, size)
            else:
                x = layer(x)
            activations[name] = x
        return SwitchedForward(self.forward_head(x), activations, switches)

    def reset_classifier(self, num_classes: int) -> None:
        """A new fc8 for `num_classes` outputs."""
        self.num_classes = num_classes
        self.fc8 = nn.Linear(self.fc8.in_features, num_classes)


# --- presets ---------------------------------------------------------------------------------

# Section 2: "subtracting the mean activity over the training set from each pixel", raw RGB
# 0..255; here the per-channel ImageNet mean. Shorter side 256, 227x227 crops.
ALEXNET_PAPER = mean_subtracted(
    (123.68, 116.78, 103.94),
    "AlexNet: RGB 0-255 minus the training-set mean (per channel here), 227x227 crops",
    crop=227,
)
# Section 3: shorter side 256, centre 256x256, minus the per-pixel mean, 224x224 sub-crops
ZFNET_PAPER = mean_subtracted(
    (123.68, 116.78, 103.94),
    "ZFNet: RGB 0-255 minus the training-set mean (per channel here), 224x224 crops",
)

_ALEXNET = dict(
    family="AlexNet",
    title="ImageNet classification with deep convolutional neural networks",
    authors="Krizhevsky, Sutskever, Hinton",
    year=2012,
    arxiv="",
)


@register_model(
    ModelCard(
        name="alexnet",
        input_size=227,
        preprocessing=ALEXNET_PAPER,
        **_ALEXNET,
        summary="the paper's two-tower network (NIPS 2012) as grouped convolutions, LRN",
        deviations=(
            "227x227 input (the paper's arithmetic; it says 224)",
            "adaptive 6x6 pool before fc6 (identity at 227)",
            "one LRN across both towers",
        ),
        top5_error="18.2% (1 CNN), 16.4% (5 CNNs) on validation; 15.3% test (7 CNNs)",
    )
)
def alexnet(**kwargs) -> AlexNet:
    """AlexNet as published: two towers (grouped conv2, conv4, conv5), LRN, 227x227 input."""
    return AlexNet(**kwargs)


@register_model(
    ModelCard(
        name="alexnet_torchvision",
        input_size=224,
        preprocessing=IMAGENET_RGB,
        **_ALEXNET,
        summary="torchvision's single-tower alexnet (64-192-384-256-256), parameter for parameter",
        deviations=(
            "one tower, 64-192-384-256-256 kernels (Krizhevsky 2014, 'One weird trick')",
            "no LRN",
            "conv1 padding 2 (224 input)",
            "dropout before fc6 and fc7",
            "adaptive 6x6 pool",
            "PyTorch default init",
        ),
        top5_error="18.2% (1 CNN, the two-tower paper network); torchvision weights: 20.934%",
    )
)
def alexnet_torchvision(**kwargs) -> AlexNet:
    """torchvision's `alexnet` layout; its weights load via `weights.import_torchvision`."""
    layout = dict(convs=TORCHVISION_CONVS, lrn=False, dropout_before_fc=True, init="default")
    return AlexNet(**{**layout, **kwargs})


@register_model(
    ModelCard(
        name="zfnet",
        family="ZFNet",
        title="Visualizing and understanding convolutional networks",
        authors="Zeiler, Fergus",
        year=2013,
        arxiv="1311.2901",
        input_size=224,
        preprocessing=ZFNET_PAPER,
        summary="Fig. 3: 7x7/2 layer 1, 5x5/2 layer 2, dense layers 3-5; pool switches for a "
        "deconvnet; filter renormalisation",
        deviations=(
            "contrast normalisation = AlexNet's LRN (not specified)",
            "adaptive 6x6 pool before fc6 (identity at 224)",
        ),
        top5_error="16.5% (1 convnet, val); 14.8% test (6 convnets)",
    )
)
def zfnet(**kwargs) -> AlexNet:
    """ZFNet (Fig. 3 of Zeiler & Fergus), its filters renormalised after each training step."""
    # section 3: filters whose RMS exceeds a fixed radius of 10^-1 renormalised to it
    layout = dict(
        convs=ZFNET_CONVS, lrn_after_pool=True, ceil_pools=True, init="zfnet", max_filter_rms=0.1
    )
    return AlexNet(**{**layout, **kwargs})


# BVLC's reference CaffeNet (Caffe model zoo): "the order of pooling and normalization layers
# is switched", Caffe's LRN (alpha 1e-4 over the window, k 1) and pools that round up
CAFFENET_BGR = mean_subtracted(
    (104.0, 117.0, 123.0),
    "BVLC Caffe: BGR, 0-255, minus the mean (104, 117, 123), 227x227 crops",
    crop=227,
    channel_order="BGR",
)


@register_model(
    ModelCard(
        name="caffenet",
        input_size=227,
        preprocessing=CAFFENET_BGR,
        **_ALEXNET,
        summary="BVLC's CaffeNet: AlexNet with each pool before its LRN, Caffe's LRN and pools",
        deviations=(
            "pool before LRN (BVLC's reference CaffeNet)",
            "LRN alpha 1e-4 over the window, k 1 (BVLC's Caffe; the paper: 1e-4 on the sum, k 2)",
            "adaptive 6x6 pool before fc6 (identity at 227)",
            "one LRN across both towers",
        ),
        top5_error="19.6% (BVLC's weights: 80.4% top-5, 57.4% top-1, center crop)",
    )
)
def caffenet(**kwargs) -> AlexNet:
    """BVLC's CaffeNet: the two towers of `alexnet`, each pool before its LRN, Caffe's LRN
    parameters and pool rounding; the graph of `bvlc_reference_caffenet`."""
    layout = dict(lrn_after_pool=True, lrn_alpha=1e-4, lrn_k=1.0, ceil_pools=True)
    return AlexNet(**{**layout, **kwargs})


# --- torchvision's weights under this file's names ---------------------------------------------

# torchvision's `alexnet` keys -> `alexnet_torchvision`'s (the papers' layer names)
TORCHVISION_RENAMES = {
    "features.0.": "conv1.conv.",
    "features.3.": "conv2.conv.",
    "features.6.": "conv3.conv.",
    "features.8.": "conv4.conv.",
    "features.10.": "conv5.conv.",
    "classifier.1.": "fc6.fc.",
    "classifier.4.": "fc7.fc.",
    "classifier.6.": "fc8.",
}


def from_torchvision(state: dict[str, Tensor]) -> ImportedState | None:
    """torchvision's `alexnet` state dict (11x11 first filters, fc8 at classifier.6) as
    `alexnet_torchvision`'s; None for another architecture."""
    first = state.get("features.0.weight")
    if first is None or first.dim() != 4 or first.shape[-1] != 11:
        return None
    ours = {}
    for key, value in state.items():
        prefix = next((p for p in TORCHVISION_RENAMES if key.startswith(p)), None)
        if prefix is None:
            raise WeightsError(f"unexpected key {key!r} in a torchvision AlexNet state dict")
        ours[TORCHVISION_RENAMES[prefix] + key[len(prefix) :]] = value
    kwargs = {"num_classes": ours["fc8.weight"].shape[0]} if "fc8.weight" in ours else {}
    if "fc6.fc.weight" in ours and ours["fc6.fc.weight"].shape[0] != 4096:
        kwargs["fc_width"] = ours["fc6.fc.weight"].shape[0]
    return ImportedState("alexnet_torchvision", kwargs, ours, IMAGENET_RGB, "alexnet")
