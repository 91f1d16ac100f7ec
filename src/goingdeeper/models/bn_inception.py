"""BN-Inception ("Inception v2").

Ioffe, Szegedy, "Batch normalization: accelerating deep network training by reducing internal
covariate shift", ICML 2015, arXiv:1502.03167.

`bn_inception` is the network of the paper's Figure 5 (its appendix table), GoogLeNet changed
as section 4.2 and the appendix list:
- Batch normalisation after every convolution, before its ReLU (so no convolution bias), and
  no local response normalisation;
- each 5x5 convolution replaced by two 3x3 convolutions (the "double #3x3" columns);
- three modules at 28x28 instead of two; inside the modules average pooling in some, max
  pooling in others (the "pool +proj" column);
- no pooling layer between modules: inception 3c and 4e reduce the grid themselves, with
  stride-2 3x3 convolutions and a stride-2 max pool whose output passes through unprojected,
  and without a 1x1 branch;
- the first convolution separable with depth multiplier 8 (the appendix), as GoogLeNet's
  Table 1 counts its own first layer;
- no dropout (section 4.2.1: "Remove Dropout"), a global 7x7 average pool and one linear
  layer; no auxiliary classifiers.

Single network, 144 crops: 21.99% top-1, 5.82% top-5 error on validation (Table 2); one crop
25.2% / 7.82%; the ensemble of six: 4.9% top-5 on validation, 4.82% on test.

`bn_inception_caffe` is the layout of the BN-Inception port that Cadene's `pretrainedmodels`
package ships ImageNet weights for (`bninception`, converted from a Caffe model): a plain 7x7/2
first convolution and a bias in every convolution; its input is BGR 0-255 minus (104, 117,
128). No library this project reads (torchvision, timm) ships BN-Inception weights.

Where this code departs from the paper, and why:
- The final pool is a global average pool: at 224 exactly Figure 5's 7x7/1 average pool.
- The average pools inside the modules count their zero padding (3x3/1, padding 1), as Caffe
  and PyTorch do by default; the paper does not say.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import InputError, ModelArgumentError
from ..preprocess import IMAGENET_RGB, mean_subtracted
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, new_linear, out_size
from .inception import ConvFactory, ConvReLU, SeparableConv1


class BNInceptionRow(NamedTuple):
    """One row of Figure 5: its channel columns, the pool of the pool branch and its projection
    (0: the pooled input passes through), and the stride of the module."""

    name: str
    ch1x1: int  # 0: no 1x1 branch (the stride-2 modules)
    ch3x3red: int
    ch3x3: int
    dbl3x3red: int
    dbl3x3: int
    pool: str  # "avg" | "max"
    pool_proj: int  # 0: "pass through"
    stride: int


# Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool +proj; stride
BN_INCEPTION_TABLE = [
    BNInceptionRow("inception3a", 64, 64, 64, 64, 96, "avg", 32, 1),  # 28x28 -> 256
    BNInceptionRow("inception3b", 64, 64, 96, 64, 96, "avg", 64, 1),  # 28x28 -> 320
    BNInceptionRow("inception3c", 0, 128, 160, 64, 96, "max", 0, 2),  # 28 -> 14x14x576
    BNInceptionRow("inception4a", 224, 64, 96, 96, 128, "avg", 128, 1),  # 14x14 -> 576
    BNInceptionRow("inception4b", 192, 96, 128, 96, 128, "avg", 128, 1),  # 14x14 -> 576
    BNInceptionRow("inception4c", 160, 128, 160, 128, 160, "avg", 128, 1),  # 14x14 -> 608
    BNInceptionRow("inception4d", 96, 128, 192, 160, 192, "avg", 128, 1),  # 14x14 -> 608
    BNInceptionRow("inception4e", 0, 128, 192, 192, 256, "max", 0, 2),  # 14 -> 7x7x1056
    BNInceptionRow("inception5a", 352, 192, 320, 160, 224, "avg", 128, 1),  # 7x7 -> 1024
    BNInceptionRow("inception5b", 352, 192, 320, 192, 224, "max", 128, 1),  # 7x7 -> 1024
]


class InceptionBN(nn.Module):
    """A module of Figure 5: a 1x1 branch; a 1x1 reduction then a 3x3; a 1x1 reduction then two
    3x3s (the factorised 5x5); a 3x3 pool, projected by a 1x1 or passed through. With stride 2
    the last 3x3 of each convolution branch and the pool have stride 2 (inception 3c, 4e)."""

    summary_type = "inception"
    concatenates_branches = True  # its children read its input, concatenated on channels
    summary_depth = 3  # the longest branch: a reduction and two 3x3s

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        dbl3x3red: int,
        dbl3x3: int,
        pool: str,
        pool_proj: int,
        stride: int = 1,
        *,
        conv: ConvFactory = ConvReLU,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ModelArgumentError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.in_channels = in_channels
        self.widths = (ch1x1, ch3x3red, ch3x3, dbl3x3red, dbl3x3, pool_proj)
        self.branch1x1 = conv(in_channels, ch1x1, 1) if ch1x1 else None
        self.branch3x3 = nn.Sequential(
            OrderedDict(
                reduce=conv(in_channels, ch3x3red, 1),
                conv=conv(ch3x3red, ch3x3, 3, stride=stride, padding=1),
            )
        )
        self.branch3x3dbl = nn.Sequential(
            OrderedDict(
                reduce=conv(in_channels, dbl3x3red, 1),
                conv1=conv(dbl3x3red, dbl3x3, 3, padding=1),
                conv2=conv(dbl3x3, dbl3x3, 3, stride=stride, padding=1),
            )
        )
        # within a module the pool keeps the grid (3x3/1, padding 1); at stride 2 it halves it
        # as the stride-2 convolutions do (Caffe's rounding up: 28 -> 14, 14 -> 7)
        padding = 1 if stride == 1 else 0
        pooling = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            pool=pooling(3, stride=stride, padding=padding, ceil_mode=True)
        )
        if pool_proj:
            layers["proj"] = conv(in_channels, pool_proj, 1)
        self.branch_pool = nn.Sequential(layers)
        self.out_channels = ch1x1 + ch3x3 + dbl3x3 + (pool_proj or in_channels)

    @property
    def summary_channels(self) -> dict[str, int | None]:
        """The columns the GoogLeNet summary shows (its #5x5 columns have no counterpart)."""
        ch1x1, ch3x3red, ch3x3, _, _, pool_proj = self.widths
        return {
            "ch1x1": ch1x1 or None,
            "ch3x3red": ch3x3red,
            "ch3x3": ch3x3,
            "pool_proj": pool_proj or None,
        }

    def forward(self, x: Tensor) -> Tensor:
        branches = [] if self.branch1x1 is None else [self.branch1x1(x)]
        branches += [self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)]
        return torch.cat(branches, 1)


class BNInception(Classifier):
    """BN-Inception; Figure 5 by default, each departure a named switch.

    Args:
        num_classes: classifier outputs.
        conv1: "separable" (the appendix: depth multiplier 8) or "plain" (a 7x7/2 convolution).
        bias: biases in the convolutions (none next to BatchNorm in the paper; Caffe ports have).
        bn_eps: BatchNorm epsilon.
        dropout: before the classifier; 0 as trained in section 4.2.1 ("Remove Dropout").
    """

    summary_groups = {"conv2": ("conv2_reduce", "conv2")}  # Figure 5's "convolution" row
    # 1/2, 1/4 (conv2, before its pool), 1/8, 1/16, 1/32: the last module at each size
    feature_stages = ("conv1", "conv2", "inception3b", "inception4d", "inception5b")

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        conv1: str = "separable",
        bias: bool = False,
        bn_eps: float = 1e-5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if conv1 not in ("separable", "plain"):
            raise ModelArgumentError(f"conv1 must be 'separable' or 'plain', got {conv1!r}")
        self.num_classes = num_classes
        conv = partial(ConvReLU, batch_norm=True, bn_eps=bn_eps, bias=bias)
        if conv1 == "separable":
            self.conv1: nn.Module = SeparableConv1(64, 8, bias=bias, batch_norm=True, bn_eps=bn_eps)
        else:
            self.conv1 = conv(3, 64, 7, stride=2, padding=3)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2_reduce = conv(64, 64, 1)
        self.conv2 = conv(64, 192, 3, padding=1)
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        for row in BN_INCEPTION_TABLE:
            module = InceptionBN(channels, *row[1:], conv=conv)
            self.add_module(row.name, module)
            channels = module.out_channels
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Figure 5's 7x7/1 average pool at 224
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.min_size = _min_size()
        self._init_weights()

    def _init_weights(self) -> None:
        """The paper states none; He et al. (2015) for the ReLU layers, BatchNorm as identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_chain(self) -> list[str]:
        stem = ["conv1", "pool1", "conv2_reduce", "conv2", "pool2"]
        return stem + [row.name for row in BN_INCEPTION_TABLE]

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the ten modules: N x 1024 x 7 x 7 at 224."""
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.pool1(x)  # N x 64 x 56 x 56
        x = self.conv2_reduce(x)  # N x 64 x 56 x 56
        x = self.conv2(x)  # N x 192 x 56 x 56
        x = self.pool2(x)  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 320 x 28 x 28
        x = self.inception3c(x)  # N x 576 x 14 x 14
        x = self.inception4a(x)  # N x 576 x 14 x 14
        x = self.inception4b(x)  # N x 576 x 14 x 14
        x = self.inception4c(x)  # N x 608 x 14 x 14
        x = self.inception4d(x)  # N x 608 x 14 x 14
        x = self.inception4e(x)  # N x 1056 x 7 x 7
        x = self.inception5a(x)  # N x 1024 x 7 x 7
        return self.inception5b(x)  # N x 1024 x 7 x 7

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        for side in x.shape[-2:]:
            grid = stride2_grids(side)
            if grid is not None:
                raise InputError(
                    f"input side {side} gives a {grid}x{grid} grid at a stride-2 module, where "
                    "its 3x3/2 convolutions and its 3x3/2 pool disagree on odd sizes: take a "
                    "side whose grid is even there (a multiple of 32, e.g. 224)"
                )
        return self.forward_head(self.forward_features(x))

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        return self.fc(self.dropout(x))  # N x num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier for `num_classes` outputs."""
        self.num_classes = num_classes
        self.fc = new_linear(self.fc.in_features, num_classes)


def stride2_grids(side: int) -> int | None:
    """The first grid side at which a stride-2 module (3c, 4e) cannot concatenate its branches
    for an input `side`, None if there is none. Its 3x3/2 convolutions (padding 1) give
    (n + 1) // 2 from n, its 3x3/2 pool (Caffe's rounding up) ceil((n - 3) / 2) + 1: the same
    for an even n, one less for an odd n."""
    n = out_size(side, 7, 2, 3)  # conv1
    for _ in range(2):  # pool1, pool2
        n = out_size(n, 3, 2, ceil=True) if n >= 1 else 0
    for _ in range(2):  # inception 3c, 4e
        if n < 1:
            return None
        conv, pool = out_size(n, 3, 2, 1), out_size(n, 3, 2, ceil=True)
        if conv != pool:
            return n
        n = conv
    return None


def _min_size() -> int:
    """The smallest square input every layer takes and both stride-2 modules can concatenate."""
    for size in range(1, 1024):
        n = out_size(size, 7, 2, 3)
        for _ in range(4):  # pool1, pool2, inception 3c, 4e: each halves the grid
            n = out_size(n, 3, 2, ceil=True) if n >= 1 else 0
        if n >= 1 and stride2_grids(size) is None:
            return size
    raise AssertionError("unreachable")


# --- pretrainedmodels' keys ------------------------------------------------------------------

# its layer names (Caffe's) that are not a module's: the stem, the classifier
_PRETRAINEDMODELS_STEM = {
    "conv1_7x7_s2": "conv1",
    "conv2_3x3_reduce": "conv2_reduce",
    "conv2_3x3": "conv2",
}
# a module's layers, `inception_3a_<layer>`, in our branches
_PRETRAINEDMODELS_BRANCHES = {
    "1x1": "branch1x1",
    "3x3_reduce": "branch3x3.reduce",
    "3x3": "branch3x3.conv",
    "double_3x3_reduce": "branch3x3dbl.reduce",
    "double_3x3_1": "branch3x3dbl.conv1",
    "double_3x3_2": "branch3x3dbl.conv2",
    "pool_proj": "branch_pool.proj",
}
_PRETRAINEDMODELS_KEY = re.compile(r"^(?:inception_(\d[a-e])_)?(\w+?)(_bn)?\.(\w+)$")


def from_pretrainedmodels_key(key: str) -> str:
    """One of pretrainedmodels' bninception keys under our name (`inception_3a_double_3x3_1`
    -> `inception3a.branch3x3dbl.conv1.conv`, its `_bn` -> `.bn`, `last_linear` -> `fc`); a key
    it does not know comes back as it is, for the loader to name."""
    if key.startswith("last_linear."):
        return "fc." + key.removeprefix("last_linear.")
    m = _PRETRAINEDMODELS_KEY.match(key)
    if m is None:
        return key
    module, layer, bn, tensor = m.groups()
    if module is None:
        ours = _PRETRAINEDMODELS_STEM.get(layer)
    else:
        branch = _PRETRAINEDMODELS_BRANCHES.get(layer)
        ours = f"inception{module}.{branch}" if branch else None
    if ours is None:
        return key
    return f"{ours}.{'bn' if bn else 'conv'}.{tensor}"


def from_pretrainedmodels(state: dict[str, Tensor]) -> ImportedState | None:
    """Cadene's `pretrainedmodels` bninception (a Caffe port) as `bn_inception_caffe`, its
    keys made ours; None for another network. Its published file predates BatchNorm's
    `num_batches_tracked` (which eval never reads): absent, it starts at 0."""
    if "conv1_7x7_s2.weight" not in state or "inception_3a_double_3x3_1.weight" not in state:
        return None
    ours = {from_pretrainedmodels_key(k): v for k, v in state.items()}
    for key in [k for k in ours if k.endswith(".bn.running_mean")]:
        ours.setdefault(key.replace("running_mean", "num_batches_tracked"), torch.tensor(0))
    kwargs = {"num_classes": ours["fc.weight"].shape[0]} if "fc.weight" in ours else {}
    return ImportedState("bn_inception_caffe", kwargs, ours, BNINCEPTION_CAFFE_BGR, "bninception")


# --- presets ---------------------------------------------------------------------------------

# Cadene's `pretrainedmodels` bninception: BGR, 0-255, minus (104, 117, 128), 224 crops
BNINCEPTION_CAFFE_BGR = mean_subtracted(
    (104.0, 117.0, 128.0),
    "BN-Inception Caffe port (pretrainedmodels bninception): BGR, 0-255, mean (104, 117, 128)",
    channel_order="BGR",
)

_PAPER = dict(
    family="BN-Inception",
    title="Batch normalization: accelerating deep network training by reducing internal "
    "covariate shift",
    authors="Ioffe, Szegedy",
    year=2015,
    arxiv="1502.03167",
    top5_error="4.9% val, 4.82% test (6 networks, 144 crops); 5.82% (1 network, 144 crops); "
    "7.82% (1 network, 1 crop)",
)


@register_model(
    ModelCard(
        name="bn_inception",
        preprocessing=IMAGENET_RGB,
        **_PAPER,
        summary="Figure 5: BN after every conv, 5x5 as two 3x3s, avg/max pools in the modules, "
        "stride-2 modules 3c and 4e, separable conv1, no dropout",
        deviations=("global average pool (= 7x7/1 at 224)", "He initialisation (none stated)"),
    )
)
def bn_inception(**kwargs) -> BNInception:
    """The network of Figure 5."""
    return BNInception(**kwargs)


@register_model(
    ModelCard(
        name="bn_inception_caffe",
        preprocessing=BNINCEPTION_CAFFE_BGR,
        **_PAPER,
        summary="the Caffe port's layout (pretrainedmodels' bninception): plain 7x7 conv1, "
        "conv biases",
        deviations=("plain 7x7/2 conv1 (not separable)", "a bias in every convolution"),
    )
)
def bn_inception_caffe(**kwargs) -> BNInception:
    """The layout of the Caffe BN-Inception port (Cadene's `pretrainedmodels` bninception)."""
    return BNInception(**{"conv1": "plain", "bias": True, **kwargs})
