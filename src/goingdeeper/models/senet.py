"""Squeeze-and-Excitation networks.

Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2019,
arXiv:1709.01507 (2017).

The SE block (section 3, Fig. 1): squeeze each channel to one number by global average
pooling (Eq. 2), excite with FC (C -> C/r) - ReLU - FC (C/r -> C) - sigmoid (Eq. 3), and
rescale the channels by the result (Eq. 4); reduction ratio r = 16 (section 6.1, Table 10).

- `se_resnet50`: ResNet-50 with an SE block on every bottleneck's residual branch, before the
  addition (Fig. 3), and the stride in each stage's first 1x1 conv, as in the authors' Caffe
  models (the ResNet paper's convention; torchvision's v1.5 is `stride_in_1x1=False`).
- `se_googlenet`: SE on the concatenated output of every Inception module (the SE-Inception
  module of Fig. 2), on this package's GoogLeNet as its paper publishes it. Aux heads,
  channel columns and weight names of `googlenet` are kept: its weights load with only the
  SE layers missing.

Where this code departs from the paper, and why:
- The paper evaluates SE on BN-Inception (Inception v2), not on Inception v1; `se_googlenet`
  applies the same module to v1 (add `batch_norm=True, lrn=False` to come closer to v2).
- The excitation's FC layers are `nn.Linear` (the paper's W1, W2); the authors' Caffe models
  write them as 1x1 convolutions, which is the same arithmetic.
- SE layers use PyTorch's default initialisation; the paper states none.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ModelArgumentError, WeightsError
from ..preprocess import IMAGENET_RGB
from ..registry import ModelCard, register_model
from .base import ImportedState, count_blocks
from .googlenet import INCEPTION_TABLE, GoogLeNet
from .inception import Inception
from .resnet import RESNET_TABLE, Bottleneck, ResNet

REDUCTION = 16  # r (section 6.1: "r = 16 ... a good balance between accuracy and complexity")


class SqueezeExcitation(nn.Module):
    """x * sigmoid(W2 relu(W1 avgpool(x))), channel by channel (Eqs. 2-4)."""

    def __init__(self, channels: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ModelArgumentError(
                f"reduction must be between 1 and the channel count {channels}, got {reduction}"
            )
        self.channels = channels
        self.reduction = reduction
        self.squeeze = nn.AdaptiveAvgPool2d(1)  # F_sq: global average pooling
        self.fc1 = nn.Linear(channels, channels // reduction)  # W1: C -> C/r
        self.relu = nn.ReLU(inplace=True)  # delta
        self.fc2 = nn.Linear(channels // reduction, channels)  # W2: C/r -> C
        self.gate = nn.Sigmoid()  # sigma

    def forward(self, x: Tensor) -> Tensor:
        s = torch.flatten(self.squeeze(x), 1)  # N x C
        s = self.gate(self.fc2(self.relu(self.fc1(s))))  # N x C, in (0, 1)
        return x * s[:, :, None, None]  # F_scale


class SEBottleneck(Bottleneck):
    """SE-ResNet module (Fig. 3): SE on the residual branch, then the identity added. The
    stride sits in the first 1x1 by default, as in the authors' Caffe models."""

    def __init__(
        self, *args, stride_in_1x1: bool = True, reduction: int = REDUCTION, **kwargs
    ) -> None:
        super().__init__(*args, stride_in_1x1=stride_in_1x1, **kwargs)
        self.se = SqueezeExcitation(self.out_channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.se(self.residual(x)) + identity)


class SEInception(Inception):
    """SE-Inception module (Fig. 2): an Inception module, then SE on its concatenated output.

    Built around an existing `Inception`: it takes over that module's branches and public
    attributes (widths, channels), so the analyzer and the weight names see an Inception
    module with one extra child, `se`.
    """

    def __init__(self, inception: Inception, reduction: int = REDUCTION) -> None:
        nn.Module.__init__(self)  # adopt the branches rather than build them a second time
        for name, value in vars(inception).items():
            if not name.startswith("_"):
                setattr(self, name, value)
        for name, child in inception.named_children():
            self.add_module(name, child)
        self.se = SqueezeExcitation(inception.out_channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return self.se(super().forward(x))


def add_se_to_inception(model: GoogLeNet, reduction: int = REDUCTION) -> GoogLeNet:
    """Replace each of the nine Inception modules of `model` by its SE-Inception form."""
    for name, *_ in INCEPTION_TABLE:
        module = getattr(model, name)
        if not isinstance(module, SEInception):
            setattr(model, name, SEInception(module, reduction))
    return model


# --- presets ---------------------------------------------------------------------------------

_PAPER = dict(
    family="SENet",
    title="Squeeze-and-Excitation Networks",
    authors="Hu, Shen, Albanie, Sun, Wu",
    year=2017,
    arxiv="1709.01507",
    preprocessing=IMAGENET_RGB,
)


@register_model(
    ModelCard(
        name="se_resnet50",
        summary="ResNet-50 with an SE block (r = 16) in every bottleneck (Fig. 3)",
        deviations=("torchvision's ResNet module names, plus `se` in each block",),
        top5_error="6.62% (single crop 224, val, Table 2)",
        **_PAPER,
    )
)
def se_resnet50(
    num_classes: int = 1000, *, reduction: int = REDUCTION, stride_in_1x1: bool = True, **kwargs
) -> ResNet:
    """SE-ResNet-50: stride in the first 1x1 as the authors' models; `stride_in_1x1=False`
    gives the torchvision (v1.5) placement."""
    return ResNet(
        50,
        num_classes,
        block=SEBottleneck,
        block_kwargs={"reduction": reduction},
        stride_in_1x1=stride_in_1x1,
        **kwargs,
    )


@register_model(
    ModelCard(
        name="se_googlenet",
        summary="GoogLeNet (the paper's, with aux heads) with SE-Inception modules (Fig. 2)",
        deviations=(
            "SE evaluated on BN-Inception in the paper, applied here to Inception v1",
            "SE FC layers as nn.Linear (Caffe models: 1x1 convs)",
        ),
        top5_error="not reported for Inception v1; SE-BN-Inception 7.14% (single crop, Table 2)",
        has_aux=True,
        takes_input_size=True,
        **_PAPER,
    )
)
def se_googlenet(num_classes: int = 1000, *, reduction: int = REDUCTION, **kwargs) -> GoogLeNet:
    """GoogLeNet (any of its switches, e.g. `batch_norm=True`) with SE-Inception modules."""
    return add_se_to_inception(GoogLeNet(num_classes, **kwargs), reduction)


# --- timm's weights ---------------------------------------------------------------------------


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `seresnet50`: torchvision's ResNet names with `se.fc1`/`se.fc2` as 1x1
    convolutions (here linear layers: the same weights, flattened) and the stride in the 3x3,
    so it loads into `se_resnet50` with `stride_in_1x1=False`. None for another architecture."""
    if "layer1.0.se.fc1.weight" not in state:
        return None
    ours = {
        k: v.flatten(1) if ".se.fc" in k and k.endswith("weight") else v for k, v in state.items()
    }
    blocks = tuple(n + 1 for n in count_blocks(ours, r"^layer(\d)\.(\d+)\."))
    if blocks != RESNET_TABLE[50][1]:
        raise WeightsError(f"an SE-ResNet with blocks {list(blocks)}: only SE-ResNet-50 is here")
    kwargs = {"stride_in_1x1": False}
    if "fc.weight" in ours:
        kwargs["num_classes"] = ours["fc.weight"].shape[0]
    return ImportedState("se_resnet50", kwargs, ours, None, "seresnet50")
