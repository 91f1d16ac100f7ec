"""GoogLeNet (Inception v1).

Szegedy et al., "Going deeper with convolutions", CVPR 2015, arXiv:1409.4842.

The default `googlenet` is the paper's network as Table 1 and section 5 describe it (and as
BVLC's Caffe model implements it): plain 7x7/2 conv1 with bias, 3x3/2 max pools with ceil
rounding, LRN (size 5, alpha 1e-4, beta 0.75, k 1) after pool1 and after conv2's 3x3, conv2
as a 1x1 reduction to 64 then a 3x3 to 192, the nine Inception modules of Table 1 with a true
5x5 branch, ReLU after every convolution, auxiliary heads on inception 4a and 4d, a global
average pool, dropout 40% and a linear classifier.

Where this code departs from the paper, and why:
- The final pool is a global average pool. At the paper's 224x224 input it is exactly the
  7x7/1 average pool of Table 1; at other sizes it keeps the classifier's input at 1024.
- The auxiliary heads' first FC layer is sized for the `input_size` the model is built for
  (4x4x128 = 2048 inputs at 224, as published); training at another size needs a model built
  for it. Inference never uses the aux heads.
- Weight initialisation follows BVLC's Caffe replication (Xavier, conv bias 0.2): the paper
  does not state one.

Every other departure is a named switch (`GoogLeNet.__init__`), bundled in presets.
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import InputError, ModelArgumentError
from ..preprocess import CAFFE_BGR, IMAGENET_RGB, TORCHVISION_GOOGLENET
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, new_linear, out_size
from .inception import ConvReLU, Inception, InceptionAux, SeparableConv1
from .lrn import LocalResponseNorm

# Table 1: name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
# A max pool 3x3/2 follows 3b and 4e; the input channels of each row are derived, never typed.
INCEPTION_TABLE: list[tuple[str, int, int, int, int, int, int]] = [
    ("inception3a", 64, 96, 128, 16, 32, 32),  # 28x28 -> 256
    ("inception3b", 128, 128, 192, 32, 96, 64),  # 28x28 -> 480
    ("inception4a", 192, 96, 208, 16, 48, 64),  # 14x14 -> 512
    ("inception4b", 160, 112, 224, 24, 64, 64),  # 14x14 -> 512
    ("inception4c", 128, 128, 256, 24, 64, 64),  # 14x14 -> 512
    ("inception4d", 112, 144, 288, 32, 64, 64),  # 14x14 -> 528
    ("inception4e", 256, 160, 320, 32, 128, 128),  # 14x14 -> 832
    ("inception5a", 256, 160, 320, 32, 128, 128),  # 7x7 -> 832
    ("inception5b", 384, 192, 384, 48, 128, 128),  # 7x7 -> 1024
]
POOL_AFTER = {"inception3b": "pool3", "inception4e": "pool4"}
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0  # Caffe convention = PyTorch's
AUX_WEIGHT = 0.3  # section 5: "their loss is added to the total loss with a discount weight 0.3"


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with aux heads returns in training mode."""

    logits: Tensor
    aux1: Tensor  # head on inception 4a
    aux2: Tensor  # head on inception 4d


# --- shape arithmetic -------------------------------------------------------------------------


def feature_sizes(size: int, *, pool4_kernel: int = 3, aux_pool: str = "avg5s3") -> dict[str, int]:
    """Spatial size of each stage's output for a square input (224 -> conv1 112 ... 5b 7)."""
    s: dict[str, int] = {"input": size}
    s["conv1"] = out_size(size, 7, 2, 3)
    s["pool1"] = out_size(s["conv1"], 3, 2, ceil=True) if s["conv1"] >= 1 else 0
    s["pool2"] = out_size(s["pool1"], 3, 2, ceil=True) if s["pool1"] >= 1 else 0
    s["pool3"] = out_size(s["pool2"], 3, 2, ceil=True) if s["pool2"] >= 1 else 0
    s["pool4"] = out_size(s["pool3"], pool4_kernel, 2, ceil=True) if s["pool3"] >= 1 else 0
    if aux_pool == "avg5s3":
        s["aux"] = out_size(s["pool3"], 5, 3, ceil=True) if s["pool3"] >= 5 else 0
    else:
        s["aux"] = 4 if s["pool3"] >= 1 else 0
    return s


def min_input_size(*, aux: bool, pool4_kernel: int = 3, aux_pool: str = "avg5s3") -> int:
    """The smallest square input the network (and, with `aux`, its aux heads) accepts."""
    for size in range(1, 1024):
        s = feature_sizes(size, pool4_kernel=pool4_kernel, aux_pool=aux_pool)
        if s["pool4"] >= 1 and (not aux or s["aux"] >= 1):
            return size
    raise AssertionError("unreachable")


# --- the network ---------------------------------------------------------------------------


class FeatureTaps(NamedTuple):
    """`GoogLeNet.forward_taps`: the features and the inputs of the two aux heads."""

    features: Tensor  # inception 5b's output, N x 1024 x 7 x 7 at 224
    inception4a: Tensor  # aux1 reads it
    inception4d: Tensor  # aux2 reads it


class GoogLeNet(Classifier):
    """GoogLeNet; paper by default, each deviation a named switch.

    The analyzer shows conv2_reduce and conv2 as one row, as Table 1 does.

    Args:
        num_classes: classifier outputs (1000 for ImageNet).
        aux_logits: build the two auxiliary heads (used in training only).
        input_size: the square training input the aux heads' FC layer is sized for.
        batch_norm: BatchNorm after every convolution (Ioffe & Szegedy 2015, not in the paper).
        lrn: the two LRN layers of the paper (off in BatchNorm variants).
        bias: biases in the convolutions (torchvision's BatchNorm layout has none).
        bn_eps: BatchNorm epsilon (torchvision uses 1e-3).
        branch5x5_kernel: 5 as published; 3 in torchvision (pytorch/vision#906).
        pool4_kernel: 3 as published; 2 in torchvision (2x2/2 max pool after 4e).
        aux_pool: "avg5s3" as published; "adaptive4" in torchvision.
        dropout: before the classifier; 0.4 as published, 0.2 in torchvision.
        aux_dropout: in the aux heads; 0.7 as published (and in torchvision).
        conv1: "plain" (a 7x7/2 conv, the BVLC model) or "separable" (what Table 1 counts).
        naive: Inception modules of Fig. 2(a), without 1x1 reductions (for cost comparisons).
        pool_passthrough: with `naive`, no pool projection (Fig. 2(a) exactly).
        init_weights: initialise as BVLC's Caffe replication ("xavier", conv bias 0.2).
        head: "avg" as published (global average pooling); "fc" a linear layer on the whole
            7x7x1024 map (section 5's comparison: +0.6% top-1 for "avg"), for `input_size` only.
    """

    aux_heads = ("aux1", "aux2")
    aux_weight = AUX_WEIGHT
    summary_groups = {"conv2": ("conv2_reduce", "conv2")}  # Table 1's "conv2" row: depth 2

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        aux_logits: bool = True,
        input_size: int = 224,
        batch_norm: bool = False,
        lrn: bool = True,
        bias: bool = True,
        bn_eps: float = 1e-5,
        branch5x5_kernel: int = 5,
        pool4_kernel: int = 3,
        aux_pool: str = "avg5s3",
        dropout: float = 0.4,
        aux_dropout: float = 0.7,
        conv1: str = "plain",
        naive: bool = False,
        pool_passthrough: bool = False,
        init_weights: bool = True,
        head: str = "avg",
    ) -> None:
        super().__init__()
        _check_switches(conv1, branch5x5_kernel, naive, pool_passthrough)
        if head not in ("avg", "fc"):  # before anything is built
            raise ModelArgumentError(f"head must be 'avg' (paper) or 'fc', got {head!r}")
        self.num_classes = num_classes
        self.aux_logits = aux_logits
        self.input_size = input_size
        self.pool4_kernel = pool4_kernel
        self.aux_pool = aux_pool
        self.min_size = min_input_size(aux=False, pool4_kernel=pool4_kernel, aux_pool=aux_pool)
        self.min_size_aux = min_input_size(aux=True, pool4_kernel=pool4_kernel, aux_pool=aux_pool)
        if aux_logits and input_size < self.min_size_aux:
            raise ModelArgumentError(
                f"input_size {input_size} is too small for the aux heads' 5x5 pool: the smallest "
                f"that works is {self.min_size_aux} (or set aux_logits=False)"
            )
        conv = partial(ConvReLU, batch_norm=batch_norm, bn_eps=bn_eps, bias=bias)
        # the stem: conv1, pool1, lrn1, conv2 (a 1x1 reduction, then the 3x3), lrn2, pool2
        if conv1 == "separable":
            self.conv1: nn.Module = SeparableConv1(
                64, 8, bias=bias, batch_norm=batch_norm, bn_eps=bn_eps
            )
        else:
            self.conv1 = conv(3, 64, 7, stride=2, padding=3)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K) if lrn else None
        self.conv2_reduce = conv(64, 64, 1)
        self.conv2 = conv(64, 192, 3, padding=1)
        self.lrn2 = LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K) if lrn else None
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        inception = partial(
            Inception,
            conv=conv,
            branch5x5_kernel=branch5x5_kernel,
            naive=naive,
            pool_passthrough=pool_passthrough,
        )
        # the nine modules of Table 1 and the pools between them
        channels = 192
        aux_channels: dict[str, int] = {}  # the input width of each aux head
        for name, *widths in INCEPTION_TABLE:
            module = inception(channels, *widths)
            self.add_module(name, module)
            channels = module.out_channels
            if name in POOL_AFTER:
                kernel = pool4_kernel if name == "inception4e" else 3
                self.add_module(POOL_AFTER[name], nn.MaxPool2d(kernel, stride=2, ceil_mode=True))
            if name in AUX_AFTER:
                aux_channels[AUX_AFTER[name]] = channels
        self.num_features = channels
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        sizes = feature_sizes(input_size, pool4_kernel=pool4_kernel, aux_pool=aux_pool)
        if aux_logits:
            aux = partial(InceptionAux, num_classes=num_classes, conv=conv, pool=aux_pool)
            aux = partial(aux, pooled_size=sizes["aux"], dropout=aux_dropout)
            self.aux1, self.aux2 = aux(aux_channels["aux1"]), aux(aux_channels["aux2"])
        # the head: avgpool (7x7/1 at 224), dropout, fc; an "fc" head reads the whole last map
        # and so takes one input size only
        self.avgpool = nn.AdaptiveAvgPool2d(1) if head == "avg" else None
        self.dropout = nn.Dropout(dropout)
        self.map_side = sizes["pool4"] if head == "fc" else 1
        if head == "fc":
            self.min_size = self.max_size = sizes["input"]
        self.fc = nn.Linear(self.num_features * self.map_side**2, num_classes)
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                # Caffe's "xavier" filler: uniform(-a, a), a = sqrt(3 / fan_in)
                fan_in = m.weight[0].numel()
                bound = math.sqrt(3.0 / fan_in)
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # 1/2, 1/4 (conv2, before its LRN and pool), 1/8, 1/16, 1/32: the last module at each size
    feature_stages = ("conv1", "conv2", "inception3b", "inception4e", "inception5b")

    def feature_chain(self) -> list[str]:
        stem = ["conv1", "pool1", "lrn1", "conv2_reduce", "conv2", "lrn2", "pool2"]
        modules = [name for name, *_ in INCEPTION_TABLE]
        for after, pool in POOL_AFTER.items():
            modules.insert(modules.index(after) + 1, pool)
        return [name for name in stem + modules if getattr(self, name) is not None]

    def forward_stem(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.pool1(x)  # N x 64 x 56 x 56
        if self.lrn1 is not None:
            x = self.lrn1(x)
        x = self.conv2_reduce(x)  # N x 64 x 56 x 56
        x = self.conv2(x)  # N x 192 x 56 x 56
        if self.lrn2 is not None:
            x = self.lrn2(x)
        return self.pool2(x)  # N x 192 x 28 x 28

    def forward_taps(self, x: Tensor) -> FeatureTaps:
        """Stem and the nine Inception modules, with the inputs of the aux heads (4a, 4d)."""
        x = self.forward_stem(x)
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.pool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        at_4a = x
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        at_4d = x
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.pool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        return FeatureTaps(x, at_4a, at_4d)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem and the nine Inception modules: N x 1024 x 7 x 7 at 224."""
        return self.forward_taps(x).features

    def forward_head(self, x: Tensor) -> Tensor:
        if self.avgpool is not None:
            x = self.avgpool(x)  # N x 1024 x 1 x 1
        elif x.shape[-2:] != (self.map_side, self.map_side):
            raise InputError(
                f"the fully connected head reads a {self.map_side} x {self.map_side} map "
                f"({self.input_size} x {self.input_size} inputs), got {tuple(x.shape[-2:])}"
            )
        return self.fc(self.dropout(torch.flatten(x, 1)))  # N x num_classes

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        if self.training and self.aux1 is not None and self.aux2 is not None:
            # the aux heads' 5x5 pool needs a larger input than the main path
            self.check_input(x, min_size=self.min_size_aux, needs="the aux heads' 5x5 pool")
            taps = self.forward_taps(x)
            logits = self.forward_head(taps.features)
            return GoogLeNetOutputs(
                logits, self.aux1(taps.inception4a), self.aux2(taps.inception4d)
            )
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """New classifier (and aux classifiers) for `num_classes` outputs, freshly initialised."""
        self.num_classes = num_classes
        self.fc = new_linear(self.fc.in_features, num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = nn.Linear(aux.fc2.in_features, num_classes)


def _check_switches(conv1: str, branch5x5_kernel: int, naive: bool, pool_passthrough: bool):
    if conv1 not in ("plain", "separable"):
        raise ModelArgumentError(f"conv1 must be 'plain' or 'separable', got {conv1!r}")
    if branch5x5_kernel not in (3, 5):
        raise ModelArgumentError(
            f"branch5x5_kernel must be 5 (paper) or 3 (torchvision), got {branch5x5_kernel}"
        )
    if pool_passthrough and not naive:
        raise ModelArgumentError(
            "pool_passthrough=True is the naive module of Fig. 2(a): set naive=True too"
        )


# --- presets ---------------------------------------------------------------------------------

# torchvision's layout, each entry one deviation from the paper
TORCHVISION_LAYOUT = dict(
    batch_norm=True,  # BasicConv2d = conv + BatchNorm + ReLU
    bn_eps=1e-3,  # torchvision's BasicConv2d
    bias=False,  # no conv biases next to BatchNorm
    lrn=False,  # no LRN
    branch5x5_kernel=3,  # 3x3 in the "5x5" branch (pytorch/vision#906)
    pool4_kernel=2,  # maxpool4 = MaxPool2d(2, stride=2, ceil_mode=True)
    aux_pool="adaptive4",  # adaptive_avg_pool2d(x, (4, 4)) in InceptionAux
    dropout=0.2,  # final dropout 0.2 instead of 0.4
    aux_dropout=0.7,
)


_PAPER = dict(
    family="GoogLeNet",
    title="Going deeper with convolutions",
    authors="Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
    year=2014,
    arxiv="1409.4842",
    top5_error="6.67% (7 models, 144 crops); 10.07% (1 model, 1 crop)",
    has_aux=True,
    takes_input_size=True,
)


@register_model(
    ModelCard(
        name="googlenet",
        preprocessing=CAFFE_BGR,
        **_PAPER,
        summary="the paper's network (Table 1, BVLC Caffe layout): LRN, true 5x5, aux heads",
        deviations=("global average pool (= 7x7/1 at 224)", "aux FC sized for input_size"),
    )
)
def googlenet(**kwargs) -> GoogLeNet:
    """The paper's network (BVLC's Caffe layout)."""
    return GoogLeNet(**kwargs)


@register_model(
    ModelCard(
        name="googlenet_bn",
        preprocessing=IMAGENET_RGB,
        **_PAPER,
        summary="BatchNorm after every convolution, no LRN",
        deviations=("BatchNorm after every conv (Ioffe & Szegedy 2015)", "no LRN"),
    )
)
def googlenet_bn(**kwargs) -> GoogLeNet:
    """BatchNorm after every convolution, no LRN (Inception v2's BN, on v1's layout)."""
    return GoogLeNet(**{"batch_norm": True, "lrn": False, **kwargs})


@register_model(
    ModelCard(
        name="googlenet_torchvision",
        preprocessing=TORCHVISION_GOOGLENET,
        **_PAPER,
        summary="torchvision's googlenet layout, parameter for parameter",
        deviations=(
            "BatchNorm (eps 1e-3), no conv bias",
            "no LRN",
            "3x3 in the 5x5 branch (#906)",
            "2x2/2 fourth pool",
            "adaptive 4x4 aux pool",
            "dropout 0.2",
            "input transform stated as preprocessing, not hidden in the model",
        ),
    )
)
def googlenet_torchvision(**kwargs) -> GoogLeNet:
    """torchvision's `googlenet` layout, parameter for parameter; its input transform is not
    inside the model: it is the explicit preprocessing of the weights that need it."""
    return GoogLeNet(**{**TORCHVISION_LAYOUT, **kwargs})


@register_model(
    ModelCard(
        name="googlenet_naive",
        preprocessing=IMAGENET_RGB,
        **_PAPER,
        summary="Inception modules of Fig. 2(a), no 1x1 reductions (cost comparison only)",
        deviations=("no 3x3/5x5 reductions (Fig. 2a)", "pool projection kept for Table 1 widths"),
    )
)
def googlenet_naive(**kwargs) -> GoogLeNet:
    """Inception modules of Fig. 2(a) (no 1x1 reductions), Table 1's widths kept, for costs."""
    return GoogLeNet(**{"naive": True, **kwargs})


# --- other libraries' weights under this file's names ------------------------------------------

# torchvision's `googlenet` keys -> `googlenet_torchvision`'s; the aux heads and fc keep theirs
TORCHVISION_RENAMES = [
    (r"^conv2\.", "conv2_reduce."),
    (r"^conv3\.", "conv2."),
    (r"\.branch1\.", ".branch1x1."),
    (r"\.branch2\.0\.", ".branch3x3.reduce."),
    (r"\.branch2\.1\.", ".branch3x3.conv."),
    (r"\.branch3\.0\.", ".branch5x5.reduce."),
    (r"\.branch3\.1\.", ".branch5x5.conv."),
    (r"\.branch4\.1\.", ".branch_pool.proj."),
]


def from_torchvision_key(key: str) -> str:
    for pattern, repl in TORCHVISION_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def from_torchvision(state: dict[str, Tensor]) -> ImportedState | None:
    """torchvision's `googlenet` state dict as `googlenet_torchvision`'s (its aux heads kept
    when it has them); None for another architecture. torchvision's `transform_input=True`,
    which its published weights use, is `TORCHVISION_GOOGLENET`, stated on the card."""
    if "inception3a.branch1.conv.weight" not in state:
        return None
    ours = {from_torchvision_key(k): v for k, v in state.items()}
    kwargs = {"aux_logits": any(k.startswith("aux1.") for k in ours)}
    if "fc.weight" in ours:
        kwargs["num_classes"] = ours["fc.weight"].shape[0]
    return ImportedState("googlenet_torchvision", kwargs, ours, TORCHVISION_GOOGLENET, "googlenet")
