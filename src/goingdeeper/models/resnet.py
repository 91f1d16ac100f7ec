"""ResNet.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv:1512.03385 (2015).

The networks of Table 1: a 7x7/2 conv with 64 filters, a 3x3/2 max pool, four stages
(conv2_x .. conv5_x) of basic blocks (two 3x3 convs; ResNet-18/34) or bottleneck blocks
(1x1 reduce, 3x3, 1x1 expand x4; Fig. 5 right; ResNet-50/101/152), BatchNorm after every
convolution and before the activation (section 3.4), a global average pool and a linear
classifier. Stages 3-5 start with stride 2; shortcuts are identities, and a 1x1/2 projection
with BatchNorm where the dimensions change: the paper's option B (section 3.3), its default
for the deeper nets.

Where this code departs from the paper, and why:
- Modules and state-dict keys follow torchvision (conv1, bn1, layer1.0.conv1, ...,
  layer2.0.downsample.0/1, fc), so its weights load tensor for tensor. Analyzer rows carry
  Table 1's names (conv1, conv2_x .. conv5_x) all the same.
- `resnet50`, `resnet101`, `resnet152` are torchvision's "ResNet v1.5": the stride 2 of a
  stage's first bottleneck sits in its 3x3 conv. The paper ("downsampling is performed by
  conv3_1, conv4_1, and conv5_1 with a stride of 2", section 3.4) and the authors' Caffe
  release put it in the first 1x1 conv: that is `stride_in_1x1=True`, which the presets
  `resnet50_paper`, `resnet101_paper` and `resnet152_paper` set. Same parameters, fewer MACs
  (3.86 G instead of 4.09 G for ResNet-50; Table 1 says 3.8 x 10^9). For ResNet-18/34 both
  conventions are the same network: a basic block's first conv is its 3x3.
- Shortcut options A (zero-padded identity) and C (projection everywhere) of section 3.3 are
  the switch `shortcut="A"|"B"|"C"`; B is the default, as in the paper's Tables 3-5.
- Weight initialisation: He et al. 2015 ("Delving deep", the paper's [13]) with the fan-out
  convention of the authors' Torch replication (fb.resnet.torch); linear bias zero.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from ..errors import ModelArgumentError, WeightsError
from ..preprocess import IMAGENET_RGB
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, count_blocks, he_normal_fan_out_, new_linear

# Table 1: depth -> (block, blocks in conv2_x, conv3_x, conv4_x, conv5_x), and the paper's
# cost in multiply-adds ("FLOPs" in Table 1, counted as multiply-adds in section 3.4).
RESNET_TABLE: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),  # 1.8 x 10^9
    34: ("basic", (3, 4, 6, 3)),  # 3.6 x 10^9
    50: ("bottleneck", (3, 4, 6, 3)),  # 3.8 x 10^9
    101: ("bottleneck", (3, 4, 23, 3)),  # 7.6 x 10^9
    152: ("bottleneck", (3, 8, 36, 3)),  # 11.3 x 10^9
}
STAGE_WIDTHS = (64, 128, 256, 512)  # Table 1: 3x3 filters of conv2_x .. conv5_x
STAGE_NAMES = ("conv2_x", "conv3_x", "conv4_x", "conv5_x")  # Table 1's names for layer1..4
SHORTCUTS = ("A", "B", "C")  # section 3.3


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # no bias: a BatchNorm follows every convolution (section 3.4)
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (section 3.3): identity, subsampled by the stride, with zero channels padded
    for the increased width. Parameter-free."""

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        pad = self.out_channels - x.shape[1]
        return torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], 1) if pad else x


def make_shortcut(
    in_channels: int, out_channels: int, stride: int, option: str
) -> nn.Module | None:
    """The shortcut of one block: None for an identity, else what option A, B or C puts there."""
    if option not in SHORTCUTS:
        raise ModelArgumentError(f"shortcut must be 'A', 'B' or 'C' (section 3.3), got {option!r}")
    changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes):
        # projection W_s x (Eq. 2): a 1x1 conv with the block's stride, then BatchNorm
        return nn.Sequential(
            conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
        )
    if option == "A" and changes:
        return ZeroPadShortcut(out_channels, stride)
    return None


class BasicBlock(nn.Module):
    """Fig. 5 left: two 3x3 convs; y = ReLU(F(x) + x)."""

    expansion = 1
    summary_depth = 2  # the analyzer's depth: the residual path, not the shortcut

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        stride_in_1x1: bool = False,  # no 1x1 here: both conventions are this block
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.out_channels = width

    def residual(self, x: Tensor) -> Tensor:
        """F(x), before the addition (section 3.1)."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(x))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class Bottleneck(nn.Module):
    """Fig. 5 right: 1x1 reduce, 3x3, 1x1 expand (x4); y = ReLU(F(x) + x).

    `stride_in_1x1=True` puts a stage's stride in the first 1x1 (the paper, section 3.4, and
    the authors' Caffe models); False puts it in the 3x3 (torchvision, "ResNet v1.5").
    """

    expansion = 4
    summary_depth = 3

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        stride1, stride3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.out_channels = width * self.expansion

    def residual(self, x: Tensor) -> Tensor:
        """F(x), before the addition (section 3.1)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNet(Classifier):
    """ResNet of Table 1; torchvision's module layout, each deviation a named switch.

    Args:
        depth: 18, 34, 50, 101 or 152 (Table 1).
        num_classes: classifier outputs (1000 for ImageNet).
        stride_in_1x1: bottleneck stride in the first 1x1 (paper) instead of the 3x3
            (torchvision, ResNet v1.5). No effect on ResNet-18/34.
        shortcut: "B" (paper default: projections only where dimensions change), "A"
            (zero-padded identities, no extra parameters) or "C" (projections everywhere).
        block: a block class to use instead of Table 1's (SE-ResNet passes its own).
        block_kwargs: extra keyword arguments for every block (SE-ResNet: `reduction`).
        init_weights: He initialisation (the paper's [13]).
    """

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 1000,
        *,
        stride_in_1x1: bool = False,
        shortcut: str = "B",
        block: type[nn.Module] | None = None,
        block_kwargs: dict | None = None,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if depth not in RESNET_TABLE:
            raise ModelArgumentError(
                f"depth must be one of {sorted(RESNET_TABLE)} (Table 1), got {depth}"
            )
        kind, blocks = RESNET_TABLE[depth]
        block = block or BLOCKS[kind]
        self.depth = depth
        self.num_classes = num_classes
        self.stride_in_1x1 = stride_in_1x1
        self.shortcut = shortcut

        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)  # 112 x 112
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # 56 x 56, Table 1's conv2_x
        channels = 64
        for i, (width, n) in enumerate(zip(STAGE_WIDTHS, blocks, strict=True), 1):
            stride = 1 if i == 1 else 2  # conv3_1, conv4_1, conv5_1 downsample (section 3.4)
            out = width * block.expansion
            layers = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = make_shortcut(channels, out, s, shortcut)
                kwargs = {"stride_in_1x1": stride_in_1x1, **(block_kwargs or {})}
                layers.append(block(channels, width, s, down, **kwargs))
                channels = out
            self.add_module(f"layer{i}", nn.Sequential(*layers))
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # = 7x7 global average pool at 224
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            he_normal_fan_out_(self)

    # analyzer rows under Table 1's names; the modules keep torchvision's
    summary_groups = {
        "conv1": ("conv1", "bn1", "relu"),
        **{name: (f"layer{i}",) for i, name in enumerate(STAGE_NAMES, 1)},
    }

    feature_stages = ("relu", "layer1", "layer2", "layer3", "layer4")  # 1/2 ... 1/32

    def feature_chain(self) -> list[str]:
        return ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # N x 64 x 112 x 112
        x = self.maxpool(x)  # N x 64 x 56 x 56
        # channels: basic blocks (ResNet-18/34), in brackets bottleneck blocks (50/101/152)
        x = self.layer1(x)  # conv2_x: N x 64 [256] x 56 x 56
        x = self.layer2(x)  # conv3_x: N x 128 [512] x 28 x 28
        x = self.layer3(x)  # conv4_x: N x 256 [1024] x 14 x 14
        return self.layer4(x)  # conv5_x: N x 512 [2048] x 7 x 7

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))  # N x num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for `num_classes` outputs."""
        self.num_classes = num_classes
        self.fc = new_linear(self.num_features, num_classes)


# --- presets ---------------------------------------------------------------------------------

_PAPER = dict(
    family="ResNet",
    title="Deep Residual Learning for Image Recognition",
    authors="He, Zhang, Ren, Sun",
    year=2015,
    arxiv="1512.03385",
    preprocessing=IMAGENET_RGB,
)
# Table 3 (10-crop, val), Table 4 (single model, multi-scale fully convolutional, val),
# Table 5 (ensemble of six models, test). The paper gives no top-5 error for ResNet-18.
_TOP5 = {
    18: "not reported (27.88% top-1, 10-crop val, Table 2)",
    34: "7.46% (option B, 10-crop val, Table 3); 5.71% (multi-scale val, Table 4)",
    50: "6.71% (10-crop val, Table 3); 5.25% (multi-scale val, Table 4)",
    101: "6.05% (10-crop val, Table 3); 4.60% (multi-scale val, Table 4)",
    152: "5.71% (10-crop val); 4.49% (multi-scale val, Table 4); 3.57% (ensemble, test)",
}
_V15 = "stride 2 in the bottleneck's 3x3, not its first 1x1 (torchvision, ResNet v1.5)"
_LAYOUT = "torchvision's module names and state-dict keys"


def _card(depth: int, *, paper_stride: bool) -> ModelCard:
    bottleneck = RESNET_TABLE[depth][0] == "bottleneck"
    name = f"resnet{depth}" + ("_paper" if paper_stride else "")
    if not bottleneck:
        summary, deviations = "Table 1 (basic blocks, option B shortcuts)", (_LAYOUT,)
    elif paper_stride:
        summary = "Table 1 as published: stride in the first 1x1 (section 3.4, Caffe models)"
        deviations = (_LAYOUT,)
    else:
        summary = "Table 1 in torchvision's layout (ResNet v1.5), loads its weights"
        deviations = (_V15, _LAYOUT)
    return ModelCard(
        name=name, summary=summary, deviations=deviations, top5_error=_TOP5[depth], **_PAPER
    )


# Table 1's five depths in torchvision's convention (`resnet18` ... `resnet152`), then the
# bottleneck nets with the stride where the paper puts it (`resnet50_paper` ... `_paper`)
for _depth, _paper_stride in [
    *((d, False) for d in RESNET_TABLE),
    *((d, True) for d in (50, 101, 152)),
]:
    _layout = {"stride_in_1x1": True} if _paper_stride else {}
    register_model(_card(_depth, paper_stride=_paper_stride))(partial(ResNet, _depth, **_layout))


# --- torchvision's weights --------------------------------------------------------------------


def from_torchvision(state: dict[str, Tensor]) -> ImportedState | None:
    """torchvision's `resnet18` ... `resnet152`: our modules keep its names, so the tensors load
    as they are, into the model of the same depth (its bottlenecks put the stride in the 3x3,
    "v1.5": `resnet50`, not `resnet50_paper`). None for another architecture."""
    if "conv1.weight" not in state or not any(k.startswith("layer1.") for k in state):
        return None
    blocks = tuple(n + 1 for n in count_blocks(state, r"^layer(\d)\.(\d+)\."))
    kind = "bottleneck" if any(".conv3." in k for k in state) else "basic"
    depth = next((d for d, row in RESNET_TABLE.items() if row == (kind, blocks)), None)
    if depth is None:
        raise WeightsError(
            f"not a ResNet of Table 1 ({kind} blocks {list(blocks)}); "
            "give torchvision resnet18, 34, 50, 101 or 152 weights"
        )
    kwargs = {"num_classes": state["fc.weight"].shape[0]} if "fc.weight" in state else {}
    return ImportedState(f"resnet{depth}", kwargs, dict(state), IMAGENET_RGB, f"resnet{depth}")


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `resnet18` ... `resnet152` (its own names are torchvision's, the stride in the
    3x3 too); None for another architecture, SE-ResNets included (`senet.from_timm`)."""
    if any(".se." in k for k in state):
        return None
    found = from_torchvision(state)
    return found._replace(preprocessing=None) if found is not None else None
