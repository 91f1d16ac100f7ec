"""Xception.

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017,
arXiv:1610.02357 (2016).

The network of Fig. 5 on a 299x299 input: an entry flow (two plain 3x3 convs, then three
blocks of two separable convs and a 3x3/2 max pool, each with a 1x1/2 conv shortcut), a
middle flow of eight blocks of three separable convs with identity shortcuts, and an exit
flow (one more downsampling block, separable convs of 1536 and 2048 filters), a global
average pool, dropout 0.5 and logistic regression (section 4.3). Every convolution and
separable convolution is followed by BatchNorm; separable convolutions have depth multiplier
1 and no non-linearity between the depthwise and pointwise parts (section 4.7, Fig. 10).
36 convolutional layers (a separable conv counts as one) plus the classifier.

Where this code departs from the paper, and why:
- The paper's Keras padding ("valid" for the two entry convs, "same" elsewhere) is kept in
  sizes (299 -> 149 -> 147 -> 74 -> 37 -> 19 -> 10); PyTorch pads a stride-2 pool
  symmetrically where TensorFlow pads only the bottom/right, so Keras weights would see a
  one-pixel shift in those pools. No Keras weights are imported here.
- The optional fully connected layers of Fig. 5 (used only on JFT, section 4.3) are left
  out: ImageNet runs use none.
- The convs have no biases (BatchNorm follows each), as in the author's Keras model; with
  that layout the parameter count is the paper's 22,855,952 (Table 3) exactly.
- Weight initialisation: He et al. 2015 (fan-out); the paper does not state one.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import Tensor, nn

from ..preprocess import Preprocessing
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, he_normal_fan_out_, new_linear

# Fig. 5, as (name, separable conv widths, block stride, ReLU before the first conv).
# A stride-2 block ends with a 3x3/2 max pool and has a 1x1/2 conv shortcut; a stride-1 block
# (the middle flow) has an identity shortcut. Input channels are derived, never typed.
ENTRY_FLOW: list[tuple[str, tuple[int, ...], int, bool]] = [
    ("block1", (128, 128), 2, False),  # 147 -> 74; conv2's ReLU comes just before
    ("block2", (256, 256), 2, True),  # 74 -> 37
    ("block3", (728, 728), 2, True),  # 37 -> 19: "19x19x728 feature maps"
]
MIDDLE_FLOW_REPEATS = 8  # "Repeated 8 times"
MIDDLE_FLOW = [(f"block{4 + i}", (728, 728, 728), 1, True) for i in range(MIDDLE_FLOW_REPEATS)]
EXIT_FLOW: list[tuple[str, tuple[int, ...], int, bool]] = [
    ("block12", (728, 1024), 2, True),  # 19 -> 10
]
EXIT_CONVS = (("conv3", 1536), ("conv4", 2048))  # separable, each followed by BN and ReLU
DROPOUT = 0.5  # section 4.3: "a dropout layer of rate 0.5 ... before the logistic regression"


class SeparableConv2d(nn.Module):
    """Depthwise kxk conv (depth multiplier 1) then pointwise 1x1, with nothing in between."""

    summary_depth = 1  # the paper counts a separable convolution as one layer

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class ConvBNReLU(nn.Sequential):
    """A plain or separable convolution, BatchNorm, ReLU (the entry convs, conv3, conv4)."""

    def __init__(self, conv: nn.Module, out_channels: int) -> None:
        super().__init__(
            OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels), relu=nn.ReLU(inplace=True))
        )


class XceptionBlock(nn.Module):
    """[ReLU - SeparableConv - BN] x n, then a 3x3/2 max pool if strided, plus a shortcut."""

    def __init__(
        self, in_channels: int, widths: tuple[int, ...], stride: int, relu_first: bool
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for i, width in enumerate(widths, 1):
            if i > 1 or relu_first:
                # the first ReLU must not overwrite x: the shortcut adds the pre-ReLU sum
                layers[f"relu{i}"] = nn.ReLU(inplace=i > 1)
            layers[f"sepconv{i}"] = SeparableConv2d(channels, width)
            layers[f"bn{i}"] = nn.BatchNorm2d(width)
            channels = width
        if stride != 1:
            layers["pool"] = nn.MaxPool2d(3, stride=stride, padding=1)
        self.residual = nn.Sequential(layers)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(channels),
                )
            )
        self.out_channels = channels
        self.summary_depth = len(widths)  # the analyzer's depth: not the shortcut

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.residual(x) + shortcut


class Xception(Classifier):
    """Xception of Fig. 5.

    Args:
        num_classes: classifier outputs (1000 for ImageNet).
        dropout: before the classifier; 0.5 as published (section 4.3).
        init_weights: He initialisation (the paper states none).
    """

    min_size = 7  # the two unpadded entry convolutions: 3x3/2 then 3x3

    def __init__(
        self, num_classes: int = 1000, *, dropout: float = DROPOUT, init_weights: bool = True
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        # entry flow: Conv 32 3x3/2, ReLU; Conv 64 3x3, ReLU ("valid" padding: 149, 147)
        self.conv1 = ConvBNReLU(nn.Conv2d(3, 32, 3, stride=2, bias=False), 32)
        self.conv2 = ConvBNReLU(nn.Conv2d(32, 64, 3, bias=False), 64)
        channels = 64
        for name, widths, stride, relu_first in ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW:
            block = XceptionBlock(channels, widths, stride, relu_first)
            self.add_module(name, block)
            channels = block.out_channels
        for name, width in EXIT_CONVS:
            self.add_module(name, ConvBNReLU(SeparableConv2d(channels, width), width))
            channels = width
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # global average pooling (Fig. 5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            he_normal_fan_out_(self)

    # 1/2 (the entry convs), 1/4, 1/8, 1/16 (the end of the middle flow), 1/32
    feature_stages = ("conv2", "block1", "block2", "block11", "conv4")

    def feature_chain(self) -> list[str]:
        blocks = [name for name, *_ in ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW]
        return ["conv1", "conv2", *blocks, "conv3", "conv4"]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # N x 32 x 149 x 149
        x = self.conv2(x)  # N x 64 x 147 x 147
        x = self.block1(x)  # N x 128 x 74 x 74
        x = self.block2(x)  # N x 256 x 37 x 37
        x = self.block3(x)  # N x 728 x 19 x 19 (end of the entry flow)
        for i in range(MIDDLE_FLOW_REPEATS):
            x = getattr(self, f"block{4 + i}")(x)  # N x 728 x 19 x 19
        x = self.block12(x)  # N x 1024 x 10 x 10
        x = self.conv3(x)  # N x 1536 x 10 x 10
        return self.conv4(x)  # N x 2048 x 10 x 10

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 2048
        return self.fc(self.dropout(x))  # N x num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for `num_classes` outputs."""
        self.num_classes = num_classes
        self.fc = new_linear(self.num_features, num_classes)


# Inception-style input, as the author's Keras model expects it: RGB scaled to [-1, 1]. The
# paper does not state its test resize; 342 keeps the usual 0.875 crop ratio at 299.
XCEPTION_RGB = Preprocessing(
    resize=342,
    crop=299,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    note="Inception-style (Keras 'tf' mode): RGB, 0-1, (x - 0.5) / 0.5, 299x299",
)


@register_model(
    ModelCard(
        name="xception",
        family="Xception",
        title="Xception: Deep Learning with Depthwise Separable Convolutions",
        authors="Chollet",
        year=2016,
        arxiv="1610.02357",
        input_size=299,
        preprocessing=XCEPTION_RGB,
        summary="Fig. 5: entry, middle (x8) and exit flows; 36 conv layers; 299x299",
        deviations=(
            "PyTorch's symmetric padding in the stride-2 pools (TensorFlow: bottom/right)",
            "no optional FC layers (Fig. 5; used on JFT only)",
        ),
        top5_error="5.5% (94.5% top-5 accuracy; single model, single crop, val, Table 1)",
    )
)
def xception(num_classes: int = 1000, **kwargs) -> Xception:
    """Xception (Fig. 5), 299x299 input."""
    return Xception(num_classes, **kwargs)


# --- timm's weights ---------------------------------------------------------------------------

_TIMM_RENAMES = [
    (r"^conv([12])\.weight$", r"conv\1.conv.weight"),
    (r"^bn([1234])\.(.+)$", r"conv\1.bn.\2"),
    (r"^conv([34])\.conv1\.(.+)$", r"conv\1.conv.depthwise.\2"),
    (r"^conv([34])\.pointwise\.(.+)$", r"conv\1.conv.pointwise.\2"),
    (r"^block(\d+)\.skip\.(.+)$", r"block\1.shortcut.conv.\2"),
    (r"^block(\d+)\.skipbn\.(.+)$", r"block\1.shortcut.bn.\2"),
]
_TIMM_REP = re.compile(r"^block(\d+)\.rep\.(\d+)\.(conv1\.|pointwise\.)?(.+)$")


def _timm_key(key: str, relu_first: dict[str, bool]) -> str:
    """timm's (Cadene's) `legacy_xception` key -> ours. Its blocks are one Sequential `rep` of
    [ReLU, separable conv, BatchNorm] per conv (no leading ReLU in block1), a `skip` conv and
    its `skipbn`."""
    m = _TIMM_REP.match(key)
    if m is None:
        for pattern, repl in _TIMM_RENAMES:
            key = re.sub(pattern, repl, key)
        return key
    block, index, part, rest = m.groups()
    j = int(index) + (0 if relu_first[f"block{block}"] else 1)  # as if it began with a ReLU
    if part:  # conv i sits at 3(i - 1) + 1: its depthwise part (conv1) or pointwise part
        kind = "depthwise" if part == "conv1." else "pointwise"
        return f"block{block}.residual.sepconv{(j - 1) // 3 + 1}.{kind}.{rest}"
    return f"block{block}.residual.bn{(j - 2) // 3 + 1}.{rest}"  # its BatchNorm at 3(i - 1) + 2


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `legacy_xception` (the Keras model ported to PyTorch, the same network as Fig. 5
    here, symmetric pool padding included) under our names; None for another architecture."""
    if "block1.rep.0.conv1.weight" not in state or "conv3.conv1.weight" not in state:
        return None
    relu_first = {name: first for name, _, _, first in ENTRY_FLOW + MIDDLE_FLOW + EXIT_FLOW}
    ours = {_timm_key(k, relu_first): v for k, v in state.items()}
    kwargs = {"num_classes": ours["fc.weight"].shape[0]} if "fc.weight" in ours else {}
    return ImportedState("xception", kwargs, ours, None, "legacy_xception")
