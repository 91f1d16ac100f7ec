"""Inception v3.

Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception Architecture for Computer
Vision", CVPR 2016, arXiv:1512.00567 (2015).

The network of Table 1 on a 299x299 input: a stem of plain convolutions to 35x35x288, three
modules of Fig. 5 (the 5x5 of GoogLeNet factorised into two 3x3s), a grid reduction (Fig. 10:
a strided convolution beside a strided pool) to 17x17x768, modules of Fig. 6 (n x n factorised
into 1 x n then n x 1, n = 7), a second grid reduction to 8x8x1280, two modules of Fig. 7 (the
filter bank expanded by parallel 1x3 and 3x1) to 8x8x2048, a global average pool and the
classifier; BatchNorm after every convolution ("Inception-v3" of section 10 is this network
with BN-auxiliary: the auxiliary classifier on the last 17x17 module, its layers batch
normalised, Fig. 8).

The paper gives the layout and the output widths of each stage, not the widths inside the
modules; those are taken from the authors' released model (TF-slim's inception_v3, which
torchvision ports). Where this code departs from the paper, and why:
- Table 1 and section 6 say five modules of Fig. 6 at 17x17; the release has four, and the
  paper's own "less than 25 million parameters" (abstract) leaves no room for a fifth: four
  are built (`summary --paper` flags the row).
- The grid reductions keep the release's branches (Fig. 10 draws the scheme, not the widths):
  35 -> 17 without a 1x1 before the single strided 3x3, 17 -> 8 with a 1x7, 7x1 pair.
- Average pools exclude the padding, as TensorFlow's "SAME" pooling of the release does (the
  paper does not say).
- Dropout 0.2 before the classifier, the release's keep probability 0.8 (the paper states
  none); initialisation: truncated normal, std 0.1 (TF-slim's arg scope; the paper states none).

Every departure of torchvision's (and timm's) `inception_v3` from the paper is a named switch
(`InceptionV3.__init__`), bundled in `TORCHVISION_LAYOUT`.

The building blocks (`Conv`, `Pool`, `Split`, `Mixed`, `ResidualMixed`) are the ones the
Inception-v4 paper reuses (models/inception_v4.py): a module is its table of branches.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ModelArgumentError
from ..preprocess import Preprocessing
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, new_linear

BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon in the release (and in torchvision's port)


# --- the building blocks: a module is a table of branches --------------------------------------


class Conv(NamedTuple):
    """A convolution with its BatchNorm and ReLU: width, kernel (k or (kh, kw)), stride.
    Stride-1 convolutions keep the map size ("SAME"); strided ones, and `valid` ones, have no
    padding ("VALID"), as in the papers' figures ("V")."""

    out: int
    kernel: int | tuple[int, int]
    stride: int = 1
    valid: bool = False


class Pool(NamedTuple):
    """ "avg": 3x3/1, the map size kept; "max": 3x3/2, no padding (a grid reduction's pool)."""

    kind: str


class Split(NamedTuple):
    """A branch's end as two convolutions side by side on the same input, concatenated: the
    expanded filter bank of Fig. 7 (1x3 beside 3x1)."""

    a: Conv
    b: Conv


Layer = Conv | Pool | Split
Branch = tuple[Layer, ...]


class ConvBN(nn.Module):
    """Convolution (no bias: BatchNorm follows), BatchNorm, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        *,
        bn_eps: float = BN_EPS,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)

    @classmethod
    def of(cls, in_channels: int, spec: Conv, bn_eps: float = BN_EPS) -> ConvBN:
        kh, kw = (spec.kernel, spec.kernel) if isinstance(spec.kernel, int) else spec.kernel
        same = spec.stride == 1 and not spec.valid
        padding = (kh // 2, kw // 2) if same else 0
        return cls(in_channels, spec.out, (kh, kw), spec.stride, padding, bn_eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class SplitEnd(nn.Module):
    """Two convolutions on one input, concatenated on channels (`Split`)."""

    def __init__(self, in_channels: int, spec: Split, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.a = ConvBN.of(in_channels, spec.a, bn_eps)
        self.b = ConvBN.of(in_channels, spec.b, bn_eps)
        self.out_channels = spec.a.out + spec.b.out

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


def make_pool(kind: str, *, count_pad: bool = False) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=count_pad)
    return nn.MaxPool2d(3, stride=2)


def make_branch(
    in_channels: int, layers: Branch, *, bn_eps: float = BN_EPS, count_pad: bool = False
) -> tuple[nn.Sequential, int]:
    """One branch as an `nn.Sequential` of its layers, and its output width."""
    modules: list[nn.Module] = []
    channels = in_channels
    for layer in layers:
        if isinstance(layer, Conv):
            modules.append(ConvBN.of(channels, layer, bn_eps))
            channels = layer.out
        elif isinstance(layer, Split):
            modules.append(SplitEnd(channels, layer, bn_eps))
            channels = layer.a.out + layer.b.out
        else:
            modules.append(make_pool(layer.kind, count_pad=count_pad))
    return nn.Sequential(*modules), channels


class Mixed(nn.Module):
    """A module of parallel branches (`branch0`, `branch1`, ...) concatenated on channels: an
    Inception module or a grid reduction, as its table of branches describes it."""

    summary_type = "inception"
    concatenates_branches = True  # its children read its input, concatenated on channels

    def __init__(
        self,
        in_channels: int,
        branches: list[Branch],
        *,
        bn_eps: float = BN_EPS,
        count_pad: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.branches = [tuple(b) for b in branches]
        widths = []
        for i, layers in enumerate(branches):
            branch, width = make_branch(in_channels, layers, bn_eps=bn_eps, count_pad=count_pad)
            self.add_module(f"branch{i}", branch)
            widths.append(width)
        self.widths = tuple(widths)
        self.out_channels = sum(widths)

    @property
    def summary_depth(self) -> int:
        """Layers with weights along the longest branch."""
        return max(sum(not isinstance(x, Pool) for x in b) for b in self.branches)

    def concat(self, x: Tensor) -> Tensor:
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(len(self.widths))], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.concat(x)


def _check_kind(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ModelArgumentError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


# --- Inception v3: Table 1 and Figures 5, 6, 7, 10 -----------------------------------------------

# Table 1's stem: (name, layer). conv6 ends at 35x35x288, the input Table 1 gives the first
# module of Fig. 5. Sizes at 299: 149, 147, 147, 73, 71, 35, 35.
STEM_TABLE1: list[tuple[str, Layer]] = [
    ("conv1", Conv(32, 3, 2)),  # 299 -> 149
    ("conv2", Conv(32, 3, valid=True)),  # 149 -> 147
    ("conv3", Conv(64, 3)),  # "conv padded", 147
    ("pool1", Pool("max")),  # 147 -> 73
    ("conv4", Conv(80, 3, valid=True)),  # 73 -> 71
    ("conv5", Conv(192, 3, 2)),  # 71 -> 35
    ("conv6", Conv(288, 3)),  # 35x35x288
]
# The release's stem (TF-slim Conv2d_1a ... MaxPool_5a, torchvision's the same): conv4 a 1x1,
# conv5 an unstrided 3x3, a max pool for the last reduction; it ends at 35x35x192.
STEM_RELEASED: list[tuple[str, Layer]] = [
    *STEM_TABLE1[:4],
    ("conv4", Conv(80, 1)),  # 73
    ("conv5", Conv(192, 3, valid=True)),  # 73 -> 71
    ("pool2", Pool("max")),  # 71 -> 35
]


def figure5(pool_proj: int, *, kernel: int = 3) -> list[Branch]:
    """Fig. 5: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3 (the factorised 5x5); pool -> 1x1.
    `kernel` 5: the release's 1x1 -> 5x5 in place of the 1x1 -> 3x3."""
    return [
        (Conv(64, 1),),
        (Conv(48, 1), Conv(64, kernel)),
        (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
        (Pool("avg"), Conv(pool_proj, 1)),
    ]


def figure6(c7: int, *, double_7x1_first: bool = False) -> list[Branch]:
    """Fig. 6 with n = 7: 1x1; 1x1 -> 1x7 -> 7x1; 1x1 -> (1x7 -> 7x1) x 2; pool -> 1x1.
    `double_7x1_first`: the release's doubled branch runs 7x1 before 1x7."""
    first, second = ((7, 1), (1, 7)) if double_7x1_first else ((1, 7), (7, 1))
    return [
        (Conv(192, 1),),
        (Conv(c7, 1), Conv(c7, (1, 7)), Conv(192, (7, 1))),
        (Conv(c7, 1), Conv(c7, first), Conv(c7, second), Conv(c7, first), Conv(192, second)),
        (Pool("avg"), Conv(192, 1)),
    ]


def figure7() -> list[Branch]:
    """Fig. 7: 1x1; 1x1 -> [1x3, 3x1]; 1x1 -> 3x3 -> [1x3, 3x1]; pool -> 1x1 (2048 out)."""
    expand = Split(Conv(384, (1, 3)), Conv(384, (3, 1)))
    return [
        (Conv(320, 1),),
        (Conv(384, 1), expand),
        (Conv(448, 1), Conv(384, 3), expand),
        (Pool("avg"), Conv(192, 1)),
    ]


# Fig. 10's grid reductions with the release's widths: a strided convolution beside a pool.
REDUCTION_35: list[Branch] = [
    (Conv(384, 3, 2),),
    (Conv(64, 1), Conv(96, 3), Conv(96, 3, 2)),
    (Pool("max"),),
]  # 35x35x288 -> 17x17x768
REDUCTION_17: list[Branch] = [
    (Conv(192, 1), Conv(320, 3, 2)),
    (Conv(192, 1), Conv(192, (1, 7)), Conv(192, (7, 1)), Conv(192, 3, 2)),
    (Pool("max"),),
]  # 17x17x768 -> 8x8x1280

# The modules after the stem: name, figure, width (Fig. 5: the pool projection; Fig. 6: the
# 1x7 / 7x1 widths). Input channels are derived, never typed.
INCEPTION_V3_TABLE: list[tuple[str, str, int | None]] = [
    ("inception_a1", "fig5", 64),  # 35x35 -> 288 (Table 1: "3 x Inception, 35x35x288")
    ("inception_a2", "fig5", 64),
    ("inception_a3", "fig5", 64),
    ("reduction_a", "fig10", None),  # -> 17x17x768
    ("inception_b1", "fig6", 128),  # Table 1: "5 x Inception, 17x17x768"; the release: 4
    ("inception_b2", "fig6", 160),
    ("inception_b3", "fig6", 160),
    ("inception_b4", "fig6", 192),  # the auxiliary classifier reads this one
    ("reduction_b", "fig10", None),  # -> 8x8x1280
    ("inception_c1", "fig7", None),  # Table 1: "2 x Inception, 8x8x1280"
    ("inception_c2", "fig7", None),  # -> 8x8x2048
]
AUX_AFTER = "inception_b4"
AUX_WEIGHT = 0.4  # TF-slim's train script weights the aux loss 0.4; the paper states none
DROPOUT = 0.2  # the release's keep probability 0.8; the paper states none


class InceptionV3Outputs(NamedTuple):
    """What an Inception v3 with its auxiliary classifier returns in training mode."""

    logits: Tensor
    aux: Tensor  # the auxiliary classifier on the last 17x17 module


class AuxHead(nn.Module):
    """BN-auxiliary (section 4, Fig. 8; Table 3): avg pool 5x5/3 -> 1x1 conv 128 -> 5x5 conv
    768 (the "fully connected" layer, batch normalised like the convolutions) -> classifier."""

    summary_type = "aux head"

    def __init__(self, in_channels: int, num_classes: int, *, bn_eps: float = BN_EPS) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv0 = ConvBN(in_channels, 128, 1, bn_eps=bn_eps)
        self.conv1 = ConvBN(128, 768, 5, bn_eps=bn_eps)  # 5x5 -> 1x1 at 299
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # larger inputs: the average of its positions
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.conv0(self.pool(x)))  # N x 768 x 1 x 1 at 299
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InceptionV3(Classifier):
    """Inception v3 (Table 1); the paper by default, each deviation a named switch.

    Args:
        num_classes: classifier outputs (1000 for ImageNet).
        aux_logits: build the auxiliary classifier (used in training only).
        stem: "table1" (Table 1's seven rows, to 35x35x288) or "released" (TF-slim's:
            1x1 -> 80, 3x3 -> 192, max pool, to 35x35x192).
        pool_proj_a: the pool projections of the three Fig. 5 modules; (64, 64, 64) keeps
            Table 1's 288 channels; the release's first is 32.
        branch_a_kernel: 3 as Fig. 5 draws it (1x1 -> 3x3); 5 in the release (1x1 -> 5x5).
        double_7x1_first: the doubled branch of Fig. 6 begins with 1x7 (False, as drawn);
            True as in the release.
        avg_pool_counts_pad: the modules' 3x3 average pools divide by 9 at the border too
            (torchvision's F.avg_pool2d(x, 3, 1, 1)); False as TensorFlow pools.
        dropout: before the classifier; 0.2 (the release), 0.5 in torchvision.
        init_weights: truncated normal, std 0.1 (TF-slim's arg scope).
    """

    aux_heads = ("aux",)
    aux_weight = AUX_WEIGHT
    min_size = 75  # the 17 -> 8 reduction needs 3x3 at 17x17: 7 at 35, 15 at 71 ... 75 at input
    min_size_aux = 299  # the aux head's 5x5/3 pool then 5x5 conv need 17x17: 299 at input

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        aux_logits: bool = True,
        stem: str = "table1",
        pool_proj_a: tuple[int, int, int] = (64, 64, 64),
        branch_a_kernel: int = 3,
        double_7x1_first: bool = False,
        avg_pool_counts_pad: bool = False,
        dropout: float = DROPOUT,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        _check_kind("stem", stem, ("table1", "released"))
        if branch_a_kernel not in (3, 5):
            raise ModelArgumentError(
                f"branch_a_kernel must be 3 (Fig. 5) or 5, got {branch_a_kernel}"
            )
        if len(pool_proj_a) != 3 or not all(isinstance(w, int) and w > 0 for w in pool_proj_a):
            raise ModelArgumentError(f"pool_proj_a must be three widths, got {pool_proj_a!r}")
        self.num_classes = num_classes
        self.stem_names = []
        channels = 3
        for name, layer in STEM_TABLE1 if stem == "table1" else STEM_RELEASED:
            module, channels = make_branch(channels, (layer,))
            self.add_module(name, module[0])
            self.stem_names.append(name)
        widths = iter(pool_proj_a)
        aux_channels = 0
        for name, figure, width in INCEPTION_V3_TABLE:
            if figure == "fig5":
                branches = figure5(next(widths), kernel=branch_a_kernel)
            elif figure == "fig6":
                branches = figure6(width, double_7x1_first=double_7x1_first)
            elif figure == "fig7":
                branches = figure7()
            else:
                branches = REDUCTION_35 if name == "reduction_a" else REDUCTION_17
            module = Mixed(channels, branches, count_pad=avg_pool_counts_pad)
            if figure == "fig10":
                module.summary_type = "grid reduction"
            self.add_module(name, module)
            channels = module.out_channels
            if name == AUX_AFTER:
                aux_channels = channels
        # one map per resolution: 147 (stride 2), 71 or 73 (4), the last module of each stage
        stride4 = "conv4" if stem == "table1" else "conv5"
        self.feature_stages = ("conv3", stride4, "inception_a3", "inception_b4", "inception_c2")
        self.aux = AuxHead(aux_channels, num_classes) if aux_logits else None
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1's "pool 8x8" at 299
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_chain(self) -> list[str]:
        return [*self.stem_names, *(name for name, *_ in INCEPTION_V3_TABLE)]

    def forward_taps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The features and the input of the aux head (the last 17x17 module's output)."""
        for name in self.stem_names:
            x = getattr(self, name)(x)  # N x 288 x 35 x 35 at 299 (released stem: 192)
        x = self.inception_a1(x)  # N x 288 x 35 x 35 (released: 256)
        x = self.inception_a2(x)  # N x 288 x 35 x 35
        x = self.inception_a3(x)  # N x 288 x 35 x 35
        x = self.reduction_a(x)  # N x 768 x 17 x 17
        x = self.inception_b1(x)  # N x 768 x 17 x 17
        x = self.inception_b2(x)
        x = self.inception_b3(x)
        x = self.inception_b4(x)  # N x 768 x 17 x 17
        at_b4 = x
        x = self.reduction_b(x)  # N x 1280 x 8 x 8
        x = self.inception_c1(x)  # N x 2048 x 8 x 8
        x = self.inception_c2(x)  # N x 2048 x 8 x 8
        return x, at_b4

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and modules: N x 2048 x 8 x 8 at 299."""
        return self.forward_taps(x)[0]

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 2048
        return self.fc(self.dropout(x))  # N x num_classes

    def forward(self, x: Tensor) -> Tensor | InceptionV3Outputs:
        if self.training and self.aux is not None:
            self.check_input(x, min_size=self.min_size_aux, needs="the aux head (training)")
            features, at_b4 = self.forward_taps(x)
            return InceptionV3Outputs(self.forward_head(features), self.aux(at_b4))
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """New classifier (and aux classifier) for `num_classes` outputs, freshly initialised."""
        self.num_classes = num_classes
        self.fc = new_linear(self.fc.in_features, num_classes)
        if self.aux is not None:
            self.aux.fc = new_linear(self.aux.fc.in_features, num_classes)


# --- presets -----------------------------------------------------------------------------------

# torchvision's `inception_v3` (and timm's, the same code), each entry one deviation from the paper
TORCHVISION_LAYOUT = dict(
    stem="released",  # Conv2d_3b_1x1, Conv2d_4a_3x3, maxpool2: 35x35x192, not Table 1's 288
    pool_proj_a=(32, 64, 64),  # Mixed_5b's pool projection 32: 256 channels out, then 288
    branch_a_kernel=5,  # Mixed_5b-d keep a 1x1 -> 5x5 branch (branch5x5_1, branch5x5_2)
    double_7x1_first=True,  # branch7x7dbl_2 is a 7x1 (TF-slim Conv2d_0b_7x1)
    avg_pool_counts_pad=True,  # F.avg_pool2d(x, 3, 1, 1): count_include_pad defaults to True
    dropout=0.5,  # torchvision's Inception3(dropout=0.5)
)

# The inception preprocessing of the release: RGB scaled to [-1, 1], 299 crops of 342
INCEPTION_RGB = Preprocessing(
    resize=342,
    crop=299,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    note="Inception (TF-slim): RGB, 0-1, (x - 0.5) / 0.5, 299 crop of 342",
)
# torchvision's published weights: transform_input=True turns its ImageNet-normalised input
# into (x - 0.5) / 0.5 inside the model; here that is the card's preprocessing
TORCHVISION_INCEPTION_V3 = INCEPTION_RGB.replace(
    interpolation="bilinear",
    note="torchvision inception_v3 (transform_input=True): RGB, 0-1, (x - 0.5) / 0.5, 342 -> 299",
)

_PAPER = dict(
    family="Inception v3",
    title="Rethinking the Inception Architecture for Computer Vision",
    authors="Szegedy, Vanhoucke, Ioffe, Shlens, Wojna",
    year=2015,
    arxiv="1512.00567",
    input_size=299,
    has_aux=True,
    top5_error="5.6% (single model, single crop, val, Table 3: 21.2% top-1)",
)


@register_model(
    ModelCard(
        name="inception_v3",
        preprocessing=INCEPTION_RGB,
        **_PAPER,
        summary="Table 1 and Figs. 5-7, 10: factorised modules, BN-auxiliary head, 299x299",
        deviations=(
            "four Fig. 6 modules (Table 1: five; the release and '<25 M params': four)",
            "module widths of the release (the paper gives stage widths only)",
        ),
    )
)
def inception_v3(**kwargs) -> InceptionV3:
    """The paper's network (Table 1's stem, Fig. 5's 3x3 branch), the release's widths."""
    return InceptionV3(**kwargs)


@register_model(
    ModelCard(
        name="inception_v3_torchvision",
        preprocessing=TORCHVISION_INCEPTION_V3,
        **_PAPER,
        summary="torchvision's (and timm's) inception_v3 layout, parameter for parameter",
        deviations=(
            "the release's stem (1x1 -> 80, 3x3 -> 192, max pool) to 35x35x192",
            "1x1 -> 5x5 in the Fig. 5 modules",
            "7x1 first in Fig. 6's doubled branch",
            "average pools count the padding",
            "dropout 0.5",
            "input transform stated as preprocessing, not hidden in the model",
        ),
    )
)
def inception_v3_torchvision(**kwargs) -> InceptionV3:
    """torchvision's `inception_v3` layout (timm's is the same); its input transform is the
    card's preprocessing, not a step inside the model."""
    return InceptionV3(**{**TORCHVISION_LAYOUT, **kwargs})


# --- other libraries' weights under this file's names --------------------------------------------

# torchvision's (and timm's) module names -> ours, per kind of module; the branch order of
# each is its concatenation order
_STEM = {
    "Conv2d_1a_3x3": "conv1",
    "Conv2d_2a_3x3": "conv2",
    "Conv2d_2b_3x3": "conv3",
    "Conv2d_3b_1x1": "conv4",
    "Conv2d_4a_3x3": "conv5",
}
_MIXED = {
    **{f"Mixed_5{c}": f"inception_a{i}" for i, c in enumerate("bcd", 1)},
    "Mixed_6a": "reduction_a",
    **{f"Mixed_6{c}": f"inception_b{i}" for i, c in enumerate("bcde", 1)},
    "Mixed_7a": "reduction_b",
    "Mixed_7b": "inception_c1",
    "Mixed_7c": "inception_c2",
}
_BRANCHES = {
    "inception_a": {
        "branch1x1": "branch0.0",
        "branch5x5_1": "branch1.0",
        "branch5x5_2": "branch1.1",
        "branch3x3dbl_1": "branch2.0",
        "branch3x3dbl_2": "branch2.1",
        "branch3x3dbl_3": "branch2.2",
        "branch_pool": "branch3.1",
    },
    "reduction_a": {
        "branch3x3": "branch0.0",
        "branch3x3dbl_1": "branch1.0",
        "branch3x3dbl_2": "branch1.1",
        "branch3x3dbl_3": "branch1.2",
    },
    "inception_b": {
        "branch1x1": "branch0.0",
        **{f"branch7x7_{i}": f"branch1.{i - 1}" for i in (1, 2, 3)},
        **{f"branch7x7dbl_{i}": f"branch2.{i - 1}" for i in (1, 2, 3, 4, 5)},
        "branch_pool": "branch3.1",
    },
    "reduction_b": {
        "branch3x3_1": "branch0.0",
        "branch3x3_2": "branch0.1",
        **{f"branch7x7x3_{i}": f"branch1.{i - 1}" for i in (1, 2, 3, 4)},
    },
    "inception_c": {
        "branch1x1": "branch0.0",
        "branch3x3_1": "branch1.0",
        "branch3x3_2a": "branch1.1.a",
        "branch3x3_2b": "branch1.1.b",
        "branch3x3dbl_1": "branch2.0",
        "branch3x3dbl_2": "branch2.1",
        "branch3x3dbl_3a": "branch2.2.a",
        "branch3x3dbl_3b": "branch2.2.b",
        "branch_pool": "branch3.1",
    },
}
_KEY = re.compile(r"^(\w+?)\.(.+)$")


def from_torchvision_key(key: str) -> str:
    """torchvision's (or timm's) `inception_v3` key -> `inception_v3_torchvision`'s."""
    head, rest = _KEY.match(key).groups()
    if head in _STEM:
        return f"{_STEM[head]}.{rest}"
    if head == "AuxLogits":
        return f"aux.{rest}"
    if head in _MIXED:
        ours = _MIXED[head]
        kind = ours.rstrip("1234")
        branch, tail = rest.split(".", 1)
        return f"{ours}.{_BRANCHES[kind][branch]}.{tail}"
    return key  # fc


def from_torchvision(state: dict[str, Tensor]) -> ImportedState | None:
    """torchvision's `inception_v3` state dict as `inception_v3_torchvision`'s (its aux head
    kept when it has one); None for another architecture. timm's `inception_v3` has the same
    keys (`from_timm`)."""
    if "Mixed_5b.branch5x5_1.conv.weight" not in state:
        return None
    ours = {from_torchvision_key(k): v for k, v in state.items()}
    kwargs: dict = {"aux_logits": any(k.startswith("aux.") for k in ours)}
    if "fc.weight" in ours:
        kwargs["num_classes"] = ours["fc.weight"].shape[0]
    return ImportedState(
        "inception_v3_torchvision", kwargs, ours, TORCHVISION_INCEPTION_V3, "inception_v3"
    )


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `inception_v3` (torchvision's code, the same keys) as `inception_v3_torchvision`;
    the input transform comes from timm's config of the tag."""
    found = from_torchvision(state)
    return None if found is None else found._replace(preprocessing=None)
