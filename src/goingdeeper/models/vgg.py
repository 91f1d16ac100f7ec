"""VGG, configurations A to E.

Simonyan, Zisserman, "Very deep convolutional networks for large-scale image recognition",
ICLR 2015, arXiv:1409.1556 (2014).

The configurations are Table 1 of the paper, transcribed in `CFGS` with its own notation
("conv3-64": a 3x3 convolution with 64 channels, stride 1, padding 1, then ReLU; every block
ends in a 2x2/2 max pool), followed by FC-4096, FC-4096 (dropout 0.5 on both, section 3.1) and
FC-1000. A (11 weight layers), A-LRN (A with LRN after the first layer), B (13), C (16, with
1x1 convolutions in blocks 3-5), D (16, "VGG16"), E (19, "VGG19"); parameters (with biases):
A 132,863,336; B 133,047,848; C 133,638,952; D 138,357,544; E 143,667,240.

Two layouts of the same network:
- the paper's names (`vgg_a` ... `vgg_e`, `vgg_*_bn`): conv1_1 ... conv5_4 (each a
  convolution, optional BatchNorm, ReLU), lrn1, pool1 ... pool5, fc6, dropout6, fc7, dropout7,
  fc8, as in the authors' released Caffe models; the analyzer shows one row per layer;
- torchvision's (`vgg11` ... `vgg19_bn`): `features.N`, `avgpool`, `classifier.N`, key for key,
  so that torchvision's state dicts load unchanged.

Dense evaluation (section 3.2) is `to_fully_convolutional` (a VGG's `fully_convolutional()`,
which `goingdeeper eval --views dense` asks for): fc6 becomes a 7x7 convolution and fc7, fc8
1x1 convolutions, so a larger image gives a map of class scores, which `average_score_map`
averages (the paper sum-pools it) into one score vector per image.

Where this code departs from the paper, and why:
- An adaptive average pool to 7x7 sits before fc6 (as in torchvision). At 224x224 it is the
  identity; it lets smaller and larger images through the FC layers. Dense evaluation does not
  use it.
- Initialisation: the paper trained A from N(0, 10^-2) (its text says variance 10^-2) and
  initialised the deeper nets from A (section 3.1), which needs a trained A: `init_from`
  (the `vgg_*` training presets do it). A builder has none, so the default is the Glorot &
  Bengio (2010) initialisation that the paper says works without pre-training.
  `init="normal"` gives the paper's distribution; `init="torchvision"` torchvision's.
- The LRN of A-LRN takes AlexNet's parameters, as the paper says (k 2, n 5, alpha 1e-4,
  beta 0.75; PyTorch's alpha 5e-4).
- The BatchNorm variants (after every convolution, before the ReLU) are not in the paper.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from functools import partial

import torch
from torch import Tensor, nn

from ..errors import InputError, ModelArgumentError, WeightsError
from ..preprocess import IMAGENET_RGB, mean_subtracted
from ..registry import ModelCard, register_model
from .alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE
from .base import (
    Classifier,
    ImportedState,
    check_input,
    fc_relu,
    new_linear,
    stages_before_pools,
)
from .lrn import LocalResponseNorm

# Table 1 (ConvNet configurations), one tuple per block; each block ends in a max pool 2x2/2.
CFGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (
        ("conv3-64",),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "A-LRN": (
        ("conv3-64", "LRN"),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "B": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "C": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv1-256"),
        ("conv3-512", "conv3-512", "conv1-512"),
        ("conv3-512", "conv3-512", "conv1-512"),
    ),
    "D": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512"),
    ),
    "E": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
    ),
}
POOLED_SIZE = 7  # 224 / 2^5: fc6 reads 512 x 7 x 7 = 25,088 values
# Section 3.1: "we initialised the first four convolutional layers and the last three
# fully-connected layers with the layers of net A". A's first four convolutions are the first
# of blocks 1 and 2 and both of block 3; B-E have layers of those names and shapes.
FROM_NET_A = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")
FC_WIDTH = 4096


def parse_layer(spec: str) -> tuple[int, int]:
    """Table 1's "conv<receptive field size>-<number of channels>" -> (kernel, channels)."""
    kind, _, channels = spec.partition("-")
    if not kind.startswith("conv") or not channels.isdigit():
        raise ModelArgumentError(f"not a Table 1 convolution: {spec!r} (expected e.g. 'conv3-64')")
    return int(kind[4:]), int(channels)


def _conv_block(cin: int, cout: int, k: int, batch_norm: bool) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = [("conv", nn.Conv2d(cin, cout, k, padding=k // 2))]
    if batch_norm:
        layers.append(("bn", nn.BatchNorm2d(cout)))
    layers.append(("relu", nn.ReLU(inplace=True)))
    return layers


class VGG(Classifier):
    """A VGG configuration of Table 1, in the paper's layout or torchvision's.

    Args:
        cfg: "A", "A-LRN", "B", "C", "D" or "E".
        num_classes: fc8's outputs.
        batch_norm: BatchNorm after every convolution (not in the paper).
        layout: "paper" (conv1_1 ... fc8) or "torchvision" (features.N, classifier.N).
        fc_width: width of fc6 and fc7 (4096 in the paper).
        dropout: dropout after fc6 and fc7 (0.5, section 3.1).
        in_channels: input planes.
        init: "glorot" (default), "normal" (N(0, 10^-2), the paper's for net A) or
            "torchvision" (Kaiming normal convolutions, N(0, 0.01) linear layers).
    """

    network_name = "VGG"

    def __init__(
        self,
        cfg: str = "D",
        num_classes: int = 1000,
        *,
        batch_norm: bool = False,
        layout: str = "paper",
        fc_width: int = FC_WIDTH,
        dropout: float = 0.5,
        in_channels: int = 3,
        init: str = "glorot",
    ) -> None:
        super().__init__()
        if cfg not in CFGS:
            raise ModelArgumentError(f"cfg must be one of {sorted(CFGS)}, got {cfg!r}")
        if layout not in ("paper", "torchvision"):
            raise ModelArgumentError(f"layout must be 'paper' or 'torchvision', got {layout!r}")
        if init not in ("glorot", "normal", "torchvision"):
            raise ModelArgumentError(
                f"init must be 'glorot', 'normal' or 'torchvision', got {init!r}"
            )
        self.cfg = cfg
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.layout = layout
        self.min_size = 2 ** len(CFGS[cfg])  # five 2x2/2 pools: 32

        features, channels = self._features(CFGS[cfg], in_channels, batch_norm)
        self.num_features = channels
        fc6_in = channels * POOLED_SIZE * POOLED_SIZE
        if layout == "torchvision":
            leaves = [m for _, block in features for m in block.modules() if not _has_children(m)]
            self.features = nn.Sequential(*leaves)
            self.avgpool = nn.AdaptiveAvgPool2d(POOLED_SIZE)
            self.classifier = nn.Sequential(
                nn.Linear(fc6_in, fc_width),  # fc6
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(fc_width, fc_width),  # fc7
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(fc_width, num_classes),  # fc8
            )
            self.feature_names = ["features"]
            self.head_names = ["classifier"]
        else:
            for name, module in features:
                self.add_module(name, module)
            self.avgpool = nn.AdaptiveAvgPool2d(POOLED_SIZE)  # identity at 224
            self.fc6 = fc_relu(fc6_in, fc_width)
            self.dropout6 = nn.Dropout(dropout)
            self.fc7 = fc_relu(fc_width, fc_width)
            self.dropout7 = nn.Dropout(dropout)
            self.fc8 = nn.Linear(fc_width, num_classes)
            self.feature_names = [name for name, _ in features]
            self.head_names = ["fc6", "dropout6", "fc7", "dropout7", "fc8"]
        self.feature_stages = stages_before_pools(self.feature_chain(), dict(self.named_modules()))
        self._init_weights(init)

    @staticmethod
    def _features(
        blocks: tuple[tuple[str, ...], ...], channels: int, batch_norm: bool
    ) -> tuple[list[tuple[str, nn.Module]], int]:
        layers: list[tuple[str, nn.Module]] = []
        for b, block in enumerate(blocks, start=1):
            i = 0
            for spec in block:
                if spec == "LRN":
                    lrn = LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)
                    layers.append((f"lrn{b}", lrn))
                    continue
                k, width = parse_layer(spec)
                i += 1
                block_layers = _conv_block(channels, width, k, batch_norm)
                layers.append((f"conv{b}_{i}", nn.Sequential(OrderedDict(block_layers))))
                channels = width
            layers.append((f"pool{b}", nn.MaxPool2d(2, stride=2)))
        return layers, channels

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                if init == "glorot":
                    nn.init.xavier_uniform_(m.weight)
                elif init == "normal":
                    nn.init.normal_(m.weight, 0.0, 0.1)  # "zero mean and 10^-2 variance"
                elif isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)  # "The biases were initialised with zero" (3.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def head_layers(self, kind: type[nn.Module]) -> list[nn.Module]:
        """The head's layers of one kind in order, whatever the layout: `nn.Linear` gives
        fc6, fc7, fc8; `nn.Dropout` dropout6, dropout7."""
        modules = [m for n in self.head_names for m in getattr(self, n).modules()]
        return [m for m in modules if isinstance(m, kind)]

    def feature_chain(self) -> list[str]:
        if self.layout == "torchvision":
            return [f"features.{i}" for i in range(len(self.features))]
        return list(self.feature_names)

    def forward_features(self, x: Tensor) -> Tensor:
        """The convolutional part: N x 512 x 7 x 7 at 224x224."""
        for name in self.feature_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 25088
        for name in self.head_names:
            x = getattr(self, name)(x)
        return x  # N x num_classes

    def fully_convolutional(self) -> FullyConvolutionalVGG:
        """The network of dense evaluation (section 3.2): `to_fully_convolutional(self)`."""
        return to_fully_convolutional(self)

    @torch.no_grad()
    def init_from(self, net_a: nn.Module) -> list[str]:
        """Take net A's layers `FROM_NET_A` (section 3.1), a trained `VGG("A")`, the other
        layers keeping their fresh initialisation; returns the names taken. Both nets in the
        paper's layout, of the same head widths and classes."""
        if not isinstance(net_a, VGG) or net_a.cfg != "A":
            got = getattr(net_a, "cfg", type(net_a).__name__)
            raise ModelArgumentError(f"VGG's deeper nets start from a trained net A, got {got}")
        if self.layout != "paper" or net_a.layout != "paper":
            raise ModelArgumentError("initialisation from net A takes the paper's layout")
        for name in FROM_NET_A:
            ours, theirs = getattr(self, name).state_dict(), getattr(net_a, name).state_dict()
            shapes = {k: tuple(v.shape) for k, v in ours.items()}
            if shapes != {k: tuple(v.shape) for k, v in theirs.items()}:
                raise ModelArgumentError(
                    f"{name} differs from net A's ({shapes} here); build the net with A's "
                    "num_classes, fc_width and batch_norm"
                )
            getattr(self, name).load_state_dict(theirs)
        return list(FROM_NET_A)

    def reset_classifier(self, num_classes: int) -> None:
        """A new fc8 for `num_classes` outputs (initialised as torchvision does)."""
        self.num_classes = num_classes
        fc8 = new_linear(self.head_layers(nn.Linear)[-1].in_features, num_classes, std=0.01)
        if self.layout == "torchvision":
            self.classifier[-1] = fc8
        else:
            self.fc8 = fc8


def _has_children(m: nn.Module) -> bool:
    return any(True for _ in m.children())


# --- dense evaluation (section 3.2) -----------------------------------------------------------


class FullyConvolutionalVGG(nn.Module):
    """VGG with fc6 as a 7x7 convolution and fc7, fc8 as 1x1 convolutions (section 3.2):
    N x 3 x H x W -> a class score map N x C x (H/32 - 6) x (W/32 - 6)."""

    def __init__(
        self, features: nn.Sequential, head: nn.Sequential, min_size: int, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.min_size = min_size  # fc6 is a 7x7 convolution: 7 x VGG's own smallest input
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        what = "dense evaluation (fc6 as a 7x7 convolution)"
        check_input(x, channels=self.in_channels, min_size=self.min_size, what=what)
        return self.head(self.features(x))  # N x C x h x w


@torch.no_grad()
def to_fully_convolutional(model: VGG) -> FullyConvolutionalVGG:
    """The dense-evaluation network of section 3.2, a copy that leaves `model` untouched:
    "the first FC layer is converted to a 7x7 conv. layer, the last two FC layers to 1x1 conv.
    layers". At 224x224 it gives `model`'s scores as a 1x1 map; larger images give a map."""
    features = nn.Sequential(
        OrderedDict((n, copy.deepcopy(getattr(model, n))) for n in model.feature_names)
    )
    fc6, fc7, fc8 = model.head_layers(nn.Linear)
    dropouts = model.head_layers(nn.Dropout)
    channels = fc6.in_features // (POOLED_SIZE * POOLED_SIZE)
    layers: list[tuple[str, nn.Module]] = []
    for i, (fc, k) in enumerate(((fc6, POOLED_SIZE), (fc7, 1), (fc8, 1)), start=6):
        cin = channels if i == 6 else fc.in_features
        conv = nn.Conv2d(cin, fc.out_features, k, device=fc.weight.device, dtype=fc.weight.dtype)
        # a flattened C x 7 x 7 input is read in the order of the 7x7 kernel's (c, y, x)
        conv.weight.copy_(fc.weight.reshape(fc.out_features, cin, k, k))
        conv.bias.copy_(fc.bias)
        layers.append((f"fc{i}", conv))
        if i < 8:
            layers.append((f"relu{i}", nn.ReLU(inplace=True)))
            layers.append((f"dropout{i}", nn.Dropout(dropouts[i - 6].p)))
    head = nn.Sequential(OrderedDict(layers))
    dense = FullyConvolutionalVGG(features, head, model.min_size * POOLED_SIZE, model.in_channels)
    return dense.train(model.training)


def average_score_map(scores: Tensor) -> Tensor:
    """N x C x h x w class scores -> N x C: "the class score map is spatially averaged
    (sum-pooled) to obtain a fixed-size vector of class scores for the image" (section 3.2)."""
    if scores.dim() != 4:
        raise InputError(f"expected a score map N x C x h x w, got shape {tuple(scores.shape)}")
    return scores.mean(dim=(2, 3))


# --- presets ---------------------------------------------------------------------------------

# Section 2.1: "The only pre-processing we do is subtracting the mean RGB value, computed on
# the training set, from each pixel"; single-scale S = 256, 224x224 crops.
VGG_PAPER = mean_subtracted(
    (123.68, 116.779, 103.939), "VGG: RGB 0-255 minus the mean RGB value of the training set"
)

_PAPER = dict(
    family="VGG",
    title="Very deep convolutional networks for large-scale image recognition",
    authors="Simonyan, Zisserman",
    year=2014,
    arxiv="1409.1556",
    input_size=224,
)
_PAPER_DEVIATIONS = ("adaptive 7x7 pool before fc6 (identity at 224)", "Glorot init (see docs)")
# Top-5 validation error, one net: Table 3 (single test scale; for C, D, E trained with scale
# jittering [256, 512] and tested at 384), Table 4 (multi-scale test), Table 5 (dense and
# multi-crop combined).
_TOP5 = {
    "A": "10.4% (Table 3, S = 256)",
    "A-LRN": "10.5% (Table 3, S = 256)",
    "B": "9.9% (Table 3, S = 256)",
    "C": "8.8% (Table 3, jittered S)",
    "D": "8.1% (Table 3); 7.5% (Table 4, multi-scale); 7.2% (Table 5, dense + multi-crop)",
    "E": "8.0% (Table 3); 7.5% (Table 4, multi-scale); 7.1% (Table 5, dense + multi-crop)",
}
_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}


def _card(name: str, cfg: str, *, batch_norm: bool = False, torchvision: bool = False) -> ModelCard:
    bn = ("BatchNorm after every conv",) if batch_norm else ()
    if torchvision:
        summary = f"torchvision's {name}: configuration {cfg}, features.N / classifier.N keys"
        deviations = ("adaptive 7x7 pool before fc6 (identity at 224)", "torchvision init")
    else:
        summary = f"configuration {cfg} of Table 1 ({_LAYERS[cfg]} weight layers), paper names"
        deviations = _PAPER_DEVIATIONS
    return ModelCard(
        name=name,
        **_PAPER,
        preprocessing=IMAGENET_RGB if torchvision else VGG_PAPER,
        summary=summary + (", BatchNorm" if batch_norm else ""),
        deviations=deviations + bn,
        top5_error=f"not in the paper; {cfg}: {_TOP5[cfg]}" if batch_norm else _TOP5[cfg],
    )


# the paper's configurations, the paper's layer names


@register_model(_card("vgg_a", "A"))
def vgg_a(**kwargs) -> VGG:
    """Configuration A: 8 convolutions and 3 FC layers."""
    return VGG("A", **kwargs)


@register_model(_card("vgg_a_lrn", "A-LRN"))
def vgg_a_lrn(**kwargs) -> VGG:
    """Configuration A-LRN: A with Local Response Normalisation after the first layer."""
    return VGG("A-LRN", **kwargs)


@register_model(_card("vgg_b", "B"))
def vgg_b(**kwargs) -> VGG:
    """Configuration B: 10 convolutions and 3 FC layers."""
    return VGG("B", **kwargs)


@register_model(_card("vgg_c", "C"))
def vgg_c(**kwargs) -> VGG:
    """Configuration C: B plus a 1x1 convolution at the end of blocks 3, 4 and 5."""
    return VGG("C", **kwargs)


@register_model(_card("vgg_d", "D"))
def vgg_d(**kwargs) -> VGG:
    """Configuration D ("VGG16"): 13 convolutions and 3 FC layers."""
    return VGG("D", **kwargs)


@register_model(_card("vgg_e", "E"))
def vgg_e(**kwargs) -> VGG:
    """Configuration E ("VGG19"): 16 convolutions and 3 FC layers."""
    return VGG("E", **kwargs)


# BatchNorm variants of the paper's configurations, and torchvision's names and state-dict
# layout: name, configuration, BatchNorm, torchvision's layout
TORCHVISION_LAYOUT = dict(layout="torchvision", init="torchvision")
VARIANTS = [
    *((f"vgg_{cfg.lower()}_bn", cfg, True, False) for cfg in "ABCDE"),
    *(
        (f"vgg{n}{bn}", cfg, bn == "_bn", True)
        for n, cfg in zip((11, 13, 16, 19), "ABDE", strict=True)
        for bn in ("", "_bn")
    ),
]
for _name, _cfg, _bn, _tv in VARIANTS:
    _switches = {**(TORCHVISION_LAYOUT if _tv else {}), "batch_norm": _bn}
    register_model(_card(_name, _cfg, batch_norm=_bn, torchvision=_tv))(
        partial(VGG, _cfg, **_switches)
    )


# --- torchvision's weights --------------------------------------------------------------------

VGG_BY_CONVS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}  # configurations A, B, D, E


def from_torchvision(state: dict[str, Tensor]) -> ImportedState | None:
    """torchvision's `vgg11` ... `vgg19_bn` state dicts load unchanged into the models of the
    same names (torchvision's layout); None for another architecture."""
    first = state.get("features.0.weight")
    if first is None or first.dim() != 4 or first.shape[-1] != 3:
        return None
    convs = sum(
        1
        for k, v in state.items()
        if k.startswith("features.") and k.endswith("weight") and v.dim() == 4
    )
    if convs not in VGG_BY_CONVS:
        raise WeightsError(
            f"a VGG state dict with {convs} convolutions: expected 8, 10, 13 or 16 (vgg11, vgg13, "
            "vgg16, vgg19)"
        )
    name = VGG_BY_CONVS[convs] + ("_bn" if any(k.endswith("running_mean") for k in state) else "")
    kwargs = {}
    if "classifier.6.weight" in state:
        kwargs["num_classes"] = state["classifier.6.weight"].shape[0]
    if "classifier.0.weight" in state and state["classifier.0.weight"].shape[0] != FC_WIDTH:
        kwargs["fc_width"] = state["classifier.0.weight"].shape[0]
    return ImportedState(name, kwargs, dict(state), IMAGENET_RGB, name)


# timm writes fc6 as a 7x7 convolution and fc7 as a 1x1 one (its `pre_logits`), fc8 as `head.fc`
TIMM_HEAD = {
    "pre_logits.fc1.": "classifier.0.",
    "pre_logits.fc2.": "classifier.3.",
    "head.fc.": "classifier.6.",
}


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `vgg11` ... `vgg19_bn`: the convolutions under torchvision's keys, its
    convolutional fc6/fc7 flattened into the linear layers (the same arithmetic on a 7x7 map,
    i.e. at 224x224; timm's head then pools the map it makes of larger inputs)."""
    if "pre_logits.fc1.weight" not in state:
        return None
    ours = {}
    for key, value in state.items():
        prefix = next((p for p in TIMM_HEAD if key.startswith(p)), None)
        if prefix is None:
            ours[key] = value
        elif key.endswith("weight"):
            ours[TIMM_HEAD[prefix] + "weight"] = value.reshape(value.shape[0], -1)
        else:
            ours[TIMM_HEAD[prefix] + key[len(prefix) :]] = value
    found = from_torchvision(ours)
    return found._replace(preprocessing=None) if found is not None else None
