"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2.

Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", AAAI 2017, arXiv:1602.07261 (2016).

The three networks of the paper on a 299x299 input, each a stem, three stages of modules
separated by the two reductions, a global average pool, dropout (keep 0.8) and the classifier:
- Inception-v4 (Fig. 9): the stem of Fig. 3 (to 35x35x384), 4 x Inception-A (Fig. 4),
  Reduction-A (Fig. 7), 7 x Inception-B (Fig. 5), Reduction-B (Fig. 8), 3 x Inception-C (Fig. 6).
- Inception-ResNet-v1 (Fig. 15): the stem of Fig. 14 (to 35x35x256), 5 x Inception-ResNet-A
  (Fig. 10), Reduction-A, 10 x Inception-ResNet-B (Fig. 11), Reduction-B (Fig. 12),
  5 x Inception-ResNet-C (Fig. 13).
- Inception-ResNet-v2 (Fig. 15): the stem of Fig. 3, 5 x Inception-ResNet-A (Fig. 16),
  Reduction-A, 10 x Inception-ResNet-B (Fig. 17), Reduction-B (Fig. 18), 5 x
  Inception-ResNet-C (Fig. 19).

Reduction-A is Fig. 7 with the k, l, m, n of Table 1. An Inception-ResNet module is its
branches, concatenated, a linear 1x1 convolution back to the input width (no BatchNorm, no
ReLU: "Linear"), scaled (section 3.3: "scaling down the residuals before adding them", by
0.1 to 0.3) and added to the input, then a ReLU. BatchNorm follows every other convolution
(section 3.3: not on top of the summations). Strided and "V" convolutions have no padding.

Where this code departs from the paper, and why:
- The residual scales are those of the authors' release (TF-slim inception_resnet_v2: 0.17,
  0.10, 0.20 for the A, B, C modules), within the paper's 0.1 to 0.3; the paper gives no
  value per module.
- Fig. 17 says 1154 output channels for Inception-ResNet-B of v2: the residual sum needs the
  1152 that Reduction-A gives (384 + 384 + 384); 1152 is built.
- The order of each asymmetric pair (1x7 / 7x1, 1x3 / 3x1) follows the authors' release,
  where the figures leave it unclear; the branches concatenate in the release's order.
- Average pools exclude the padding (TensorFlow's "SAME" pooling in the release).
- Initialisation: He et al. 2015 (fan-out); the paper states none.

timm's `inception_v4` is Inception-v4 as built here, key for key apart from the names. timm's
`inception_resnet_v2` is the authors' released network, which departs from the paper: its
layout is `inception_resnet_v2_timm`, each departure a named switch (`TIMM_RESNET_V2_LAYOUT`).
"""

from __future__ import annotations

import re

from torch import Tensor, nn

from ..errors import ModelArgumentError
from ..registry import ModelCard, register_model
from .base import Classifier, ImportedState, he_normal_fan_out_, new_linear
from .inception_v3 import INCEPTION_RGB, Branch, Conv, Mixed, Pool, Split, make_branch

DROPOUT = 0.2  # Fig. 9 and 15: "Dropout (keep 0.8)"
SCALES = {"a": 0.17, "b": 0.10, "c": 0.20}  # the release's residual scales, within 0.1-0.3


class ResidualMixed(Mixed):
    """An Inception-ResNet module: the branches, concatenated, a linear 1x1 convolution back to
    the input width (`project`, with bias, without BatchNorm), scaled and added to the input,
    then a ReLU (`relu=False`: none, the release's last module)."""

    summary_type = "inception-resnet"

    def __init__(
        self, in_channels: int, branches: list[Branch], scale: float, *, relu: bool = True
    ) -> None:
        super().__init__(in_channels, branches)
        self.project = nn.Conv2d(self.out_channels, in_channels, 1)
        self.scale = scale
        self.relu = nn.ReLU(inplace=True) if relu else None
        self.out_channels = in_channels

    @property
    def summary_depth(self) -> int:
        return super().summary_depth + 1  # the linear 1x1

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.concat(x)) * self.scale + x
        return out if self.relu is None else self.relu(out)


# --- the stems --------------------------------------------------------------------------------

# Fig. 3 (Inception-v4 and Inception-ResNet-v2): name, a layer or the branches of a module
STEM_FIG3: list[tuple[str, Conv | Pool | list[Branch]]] = [
    ("conv1", Conv(32, 3, 2)),  # 299 -> 149
    ("conv2", Conv(32, 3, valid=True)),  # 147
    ("conv3", Conv(64, 3)),  # 147x147x64
    ("mixed_3a", [(Pool("max"),), (Conv(96, 3, 2),)]),  # 73x73x160
    (
        "mixed_4a",
        [
            (Conv(64, 1), Conv(96, 3, valid=True)),
            (Conv(64, 1), Conv(64, (1, 7)), Conv(64, (7, 1)), Conv(96, 3, valid=True)),
        ],
    ),  # 71x71x192
    ("mixed_5a", [(Conv(192, 3, 2),), (Pool("max"),)]),  # 35x35x384
]
# Fig. 14 (Inception-ResNet-v1)
STEM_FIG14: list[tuple[str, Conv | Pool | list[Branch]]] = [
    *STEM_FIG3[:3],
    ("pool1", Pool("max")),  # 73
    ("conv4", Conv(80, 1)),  # 73x73x80
    ("conv5", Conv(192, 3, valid=True)),  # 71x71x192
    ("conv6", Conv(256, 3, 2)),  # 35x35x256
]
# The release's Inception-ResNet-v2 stem (timm's): Fig. 14's first five convolutions, a max
# pool, and a module of Inception-v3's kind (Mixed_5b) to 35x35x320
STEM_RELEASED_V2: list[tuple[str, Conv | Pool | list[Branch]]] = [
    *STEM_FIG14[:6],
    ("pool2", Pool("max")),  # 35
    (
        "mixed_5b",
        [
            (Conv(96, 1),),
            (Conv(48, 1), Conv(64, 5)),
            (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
            (Pool("avg"), Conv(64, 1)),
        ],
    ),  # 35x35x320
]
STEMS = {"fig3": STEM_FIG3, "fig14": STEM_FIG14, "released": STEM_RELEASED_V2}

# --- the modules ------------------------------------------------------------------------------

# Table 1: the filter counts of Reduction-A (Fig. 7): k, l, m, n
REDUCTION_A_TABLE = {
    "inception_v4": (192, 224, 256, 384),
    "inception_resnet_v1": (192, 192, 256, 384),
    "inception_resnet_v2": (256, 256, 384, 384),
}


def reduction_a(k: int, l: int, m: int, n: int) -> list[Branch]:  # noqa: E741 - Table 1's l
    """Fig. 7: 3x3/2 conv n; 1x1 k -> 3x3 l -> 3x3/2 m; 3x3/2 max pool."""
    return [(Conv(n, 3, 2),), (Conv(k, 1), Conv(l, 3), Conv(m, 3, 2)), (Pool("max"),)]


# Inception-v4's modules (Figs. 4, 5, 6, 8)
V4_A: list[Branch] = [
    (Conv(96, 1),),
    (Conv(64, 1), Conv(96, 3)),
    (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
    (Pool("avg"), Conv(96, 1)),
]  # 35x35x384
V4_B: list[Branch] = [
    (Conv(384, 1),),
    (Conv(192, 1), Conv(224, (1, 7)), Conv(256, (7, 1))),
    (Conv(192, 1), Conv(192, (7, 1)), Conv(224, (1, 7)), Conv(224, (7, 1)), Conv(256, (1, 7))),
    (Pool("avg"), Conv(128, 1)),
]  # 17x17x1024
V4_REDUCTION_B: list[Branch] = [
    (Conv(192, 1), Conv(192, 3, 2)),
    (Conv(256, 1), Conv(256, (1, 7)), Conv(320, (7, 1)), Conv(320, 3, 2)),
    (Pool("max"),),
]  # 8x8x1536
V4_C: list[Branch] = [
    (Conv(256, 1),),
    (Conv(384, 1), Split(Conv(256, (1, 3)), Conv(256, (3, 1)))),
    (
        Conv(384, 1),
        Conv(448, (3, 1)),
        Conv(512, (1, 3)),
        Split(Conv(256, (1, 3)), Conv(256, (3, 1))),
    ),
    (Pool("avg"), Conv(256, 1)),
]  # 8x8x1536

# Inception-ResNet-v1's (Figs. 10-13) and -v2's (Figs. 16-19) branches; each module adds its
# linear 1x1 back to the input width
RESNET_V1 = {
    "a": [(Conv(32, 1),), (Conv(32, 1), Conv(32, 3)), (Conv(32, 1), Conv(32, 3), Conv(32, 3))],
    "b": [(Conv(128, 1),), (Conv(128, 1), Conv(128, (1, 7)), Conv(128, (7, 1)))],
    "reduction_b": [
        (Conv(256, 1), Conv(384, 3, 2)),
        (Conv(256, 1), Conv(256, 3, 2)),
        (Conv(256, 1), Conv(256, 3), Conv(256, 3, 2)),
        (Pool("max"),),
    ],
    "c": [(Conv(192, 1),), (Conv(192, 1), Conv(192, (1, 3)), Conv(192, (3, 1)))],
}
RESNET_V2 = {
    "a": [(Conv(32, 1),), (Conv(32, 1), Conv(32, 3)), (Conv(32, 1), Conv(48, 3), Conv(64, 3))],
    "b": [(Conv(192, 1),), (Conv(128, 1), Conv(160, (1, 7)), Conv(192, (7, 1)))],
    "reduction_b": [
        (Conv(256, 1), Conv(384, 3, 2)),
        (Conv(256, 1), Conv(288, 3, 2)),
        (Conv(256, 1), Conv(288, 3), Conv(320, 3, 2)),
        (Pool("max"),),
    ],
    "c": [(Conv(192, 1),), (Conv(192, 1), Conv(224, (1, 3)), Conv(256, (3, 1)))],
}

# name: (stem, modules per stage (A, B, C), residual branches or None for Inception-v4)
NETWORKS = {
    "inception_v4": ("fig3", (4, 7, 3), None),
    "inception_resnet_v1": ("fig14", (5, 10, 5), RESNET_V1),
    "inception_resnet_v2": ("fig3", (5, 10, 5), RESNET_V2),
}


class InceptionV4(Classifier):
    """Inception-v4 or Inception-ResNet-v1/-v2 (`network`); the paper by default, each
    deviation of the release a named switch.

    Args:
        num_classes: classifier outputs (1000 for ImageNet).
        network: "inception_v4", "inception_resnet_v1" or "inception_resnet_v2".
        stem: the stem's figure ("fig3", "fig14"), or "released" (the release's
            Inception-ResNet-v2 stem: a max pool and an Inception-v3 module, to 35x35x320);
            default the network's.
        repeats: modules in the A, B and C stages; default the network's (the release of
            Inception-ResNet-v2: 10, 20, 10).
        last_linear: the last module without its ReLU and unscaled (the release's Block8).
        final_conv: a 1x1 convolution (BatchNorm, ReLU) to this width before the pool (the
            release's Conv2d_7b_1x1: 1536); 0 for none.
        dropout: before the classifier; 0.2 ("keep 0.8").
        init_weights: He initialisation (the paper states none).
    """

    min_size = 75  # Reduction-B needs 3x3 at 17x17: 7 at 35, 15 at 71, 17 at 73 ... 75 in

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        network: str = "inception_v4",
        stem: str = "",
        repeats: tuple[int, int, int] = (0, 0, 0),
        last_linear: bool = False,
        final_conv: int = 0,
        dropout: float = DROPOUT,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if network not in NETWORKS:
            raise ModelArgumentError(
                f"network must be one of {', '.join(NETWORKS)}; got {network!r}"
            )
        own_stem, own_repeats, residual = NETWORKS[network]
        stem = stem or own_stem
        repeats = tuple(repeats) if any(repeats) else own_repeats
        if stem not in STEMS:
            raise ModelArgumentError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}")
        if len(repeats) != 3 or not all(isinstance(r, int) and r > 0 for r in repeats):
            raise ModelArgumentError(f"repeats must be three positive counts, got {repeats!r}")
        self.network_name = network
        self.num_classes = num_classes
        self.chain: list[str] = []
        channels = 3
        for name, spec in STEMS[stem]:
            if isinstance(spec, list):
                module: nn.Module = Mixed(channels, spec)
                channels = module.out_channels
            else:
                module, channels = make_branch(channels, (spec,))
                module = module[0]
            self.add_module(name, module)
            self.chain.append(name)
        stages = self._stages(network, residual, repeats, last_linear)
        for name, branches, scale in stages:
            last = name == stages[-1][0]
            channels = self._add(name, channels, branches, scale, linear_end=last and last_linear)
        self.final_conv = None
        if final_conv:
            self.final_conv, channels = make_branch(channels, (Conv(final_conv, 1),))
            self.chain.append("final_conv")
        # one map per resolution: 147 (stride 2), 73 or 71 (4), then the last module of each
        # stage (8, 16, 32)
        self.feature_stages = (
            "conv3",
            "mixed_3a" if stem == "fig3" else "conv5",
            self.chain[self.chain.index("reduction_a") - 1],
            self.chain[self.chain.index("reduction_b") - 1],
            self.chain[-1],
        )
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # 8x8 at 299
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        if init_weights:
            he_normal_fan_out_(self)

    @staticmethod
    def _stages(network: str, residual: dict | None, repeats, last_linear: bool) -> list:
        """(name, branches, residual scale or None) of each module after the stem."""
        kind = "inception_resnet" if residual else "inception"
        a, b, c = (residual["a"], residual["b"], residual["c"]) if residual else (V4_A, V4_B, V4_C)
        red_b = residual["reduction_b"] if residual else V4_REDUCTION_B
        scale = SCALES if residual else dict.fromkeys("abc")
        out = [(f"{kind}_a{i}", a, scale["a"]) for i in range(1, repeats[0] + 1)]
        out.append(("reduction_a", reduction_a(*REDUCTION_A_TABLE[network]), None))
        out += [(f"{kind}_b{i}", b, scale["b"]) for i in range(1, repeats[1] + 1)]
        out.append(("reduction_b", red_b, None))
        out += [(f"{kind}_c{i}", c, scale["c"]) for i in range(1, repeats[2] + 1)]
        if last_linear:  # the release's Block8(no_relu=True): scale 1
            out[-1] = (out[-1][0], c, 1.0)
        return out

    def _add(self, name: str, channels: int, branches, scale, *, linear_end: bool) -> int:
        if scale is None:
            module = Mixed(channels, branches)
            if name.startswith("reduction"):
                module.summary_type = "grid reduction"
        else:
            module = ResidualMixed(channels, branches, scale, relu=not linear_end)
        self.add_module(name, module)
        self.chain.append(name)
        return module.out_channels

    def feature_chain(self) -> list[str]:
        return list(self.chain)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem, modules and reductions: N x 1536 x 8 x 8 at 299 (v4; v1: 1792, v2: 2144)."""
        for name in self.chain:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = new_linear(self.fc.in_features, num_classes)


# --- presets -----------------------------------------------------------------------------------

# timm's `inception_resnet_v2` (the authors' release), each entry one deviation from the paper
TIMM_RESNET_V2_LAYOUT = dict(
    stem="released",  # no Fig. 3 stem: max pool and Mixed_5b (an Inception-v3 module) to 320
    repeats=(10, 20, 10),  # Block35 x 10, Block17 x 20, Block8 x 9 + 1 (Fig. 15: 5, 10, 5)
    last_linear=True,  # block8 = Block8(no_relu=True), scale 1
    final_conv=1536,  # conv2d_7b: 1x1 to 1536 before the pool
)

_PAPER = dict(
    title="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
    authors="Szegedy, Ioffe, Vanhoucke, Alemi",
    year=2016,
    arxiv="1602.07261",
    input_size=299,
    preprocessing=INCEPTION_RGB,
)


@register_model(
    ModelCard(
        name="inception_v4",
        family="Inception-v4",
        **_PAPER,
        summary="Fig. 9: Fig. 3 stem, 4 x A, Reduction-A, 7 x B, Reduction-B, 3 x C; 299x299",
        deviations=("asymmetric pairs ordered as in the release",),
        top5_error="5.0% (single model, single crop, val, Table 2: 20.0% top-1)",
    )
)
def inception_v4(**kwargs) -> InceptionV4:
    """Inception-v4 (Fig. 9), timm's `inception_v4` parameter for parameter."""
    return InceptionV4(**{"network": "inception_v4", **kwargs})


@register_model(
    ModelCard(
        name="inception_resnet_v1",
        family="Inception-v4",
        **_PAPER,
        summary="Fig. 15: Fig. 14 stem, 5 x A, Reduction-A, 10 x B, Reduction-B, 5 x C, residual",
        deviations=("residual scales 0.17, 0.10, 0.20 (the release's v2; paper: 0.1-0.3)",),
        top5_error="5.5% (single model, single crop, val, Table 2: 21.3% top-1)",
    )
)
def inception_resnet_v1(**kwargs) -> InceptionV4:
    """Inception-ResNet-v1 (Fig. 15 with Figs. 10-14)."""
    return InceptionV4(**{"network": "inception_resnet_v1", **kwargs})


@register_model(
    ModelCard(
        name="inception_resnet_v2",
        family="Inception-v4",
        **_PAPER,
        summary="Fig. 15: Fig. 3 stem, 5 x A, Reduction-A, 10 x B, Reduction-B, 5 x C, residual",
        deviations=(
            "residual scales 0.17, 0.10, 0.20 (the release's; paper: 0.1-0.3)",
            "Fig. 17's 1154 is 1152 (the residual sum's width)",
        ),
        top5_error="4.9% (single model, single crop, val, Table 2: 19.9% top-1)",
    )
)
def inception_resnet_v2(**kwargs) -> InceptionV4:
    """Inception-ResNet-v2 (Fig. 15 with Figs. 3, 16-19)."""
    return InceptionV4(**{"network": "inception_resnet_v2", **kwargs})


@register_model(
    ModelCard(
        name="inception_resnet_v2_timm",
        family="Inception-v4",
        **_PAPER,
        summary="timm's inception_resnet_v2 (the authors' release), parameter for parameter",
        deviations=(
            "stem: max pool and an Inception-v3 module to 35x35x320",
            "10, 20, 10 modules (Fig. 15: 5, 10, 5)",
            "last module linear, unscaled",
            "1x1 conv to 1536 before the pool",
        ),
        top5_error="4.9% (the paper's Inception-ResNet-v2, Table 2)",
    )
)
def inception_resnet_v2_timm(**kwargs) -> InceptionV4:
    """timm's `inception_resnet_v2` layout: the authors' TF-slim release."""
    return InceptionV4(**{"network": "inception_resnet_v2", **TIMM_RESNET_V2_LAYOUT, **kwargs})


# --- timm's weights under this file's names ------------------------------------------------------

_V4_NAMES = [
    "conv1",
    "conv2",
    "conv3",
    "mixed_3a",
    "mixed_4a",
    "mixed_5a",
    *(f"inception_a{i}" for i in range(1, 5)),
    "reduction_a",
    *(f"inception_b{i}" for i in range(1, 8)),
    "reduction_b",
    *(f"inception_c{i}" for i in range(1, 4)),
]
_STEM_V2 = {"conv2d_1a": "conv1", "conv2d_2a": "conv2", "conv2d_2b": "conv3"}
_STEM_V2 |= {"conv2d_3b": "conv4", "conv2d_4a": "conv5", "conv2d_7b": "final_conv.0"}
_STEM_V2 |= {"mixed_6a": "reduction_a", "mixed_7a": "reduction_b", "classif": "fc"}
_REPEATS = {"repeat": "inception_resnet_a", "repeat_1": "inception_resnet_b"}
_REPEATS |= {"repeat_2": "inception_resnet_c"}


def _branch_key(rest: str) -> str:
    """timm's names inside a module -> ours: a lone conv `branch0.conv` is `branch0.0.conv`;
    `branch1_1a` (a split end) is `branch1.1.a`; `branch2_3` is `branch2.3`; the residual
    `conv2d` is `project`; a stem module's lone `conv` is its strided conv branch."""
    rest = re.sub(r"^branch(\d)\.(conv|bn)\.", r"branch\1.0.\2.", rest)
    rest = re.sub(r"^branch(\d)_(\d)([ab])\.", r"branch\1.\2.\3.", rest)
    rest = re.sub(r"^branch(\d)_(\d)\.", r"branch\1.\2.", rest)
    return re.sub(r"^conv2d\.", "project.", rest)


def _timm_v4_key(key: str) -> str:
    m = re.match(r"^features\.(\d+)\.(.+)$", key)
    if m is None:
        return re.sub(r"^last_linear\.", "fc.", key)
    name, rest = _V4_NAMES[int(m.group(1))], m.group(2)
    if name == "mixed_3a":  # (max pool, conv)
        return f"{name}.branch1.0.{rest.removeprefix('conv.')}"
    if name == "mixed_5a":  # (conv, max pool)
        return f"{name}.branch0.0.{rest.removeprefix('conv.')}"
    return f"{name}.{_branch_key(rest)}"


def _timm_resnet_v2_key(key: str, last_c: int) -> str:
    head, rest = key.split(".", 1)
    if head in _REPEATS:
        index, rest = rest.split(".", 1)
        return f"{_REPEATS[head]}{int(index) + 1}.{_branch_key(rest)}"
    if head == "block8":
        return f"inception_resnet_c{last_c}.{_branch_key(rest)}"
    if head == "mixed_5b":
        return f"mixed_5b.{_branch_key(rest)}"
    if head in ("mixed_6a", "mixed_7a"):
        return f"{_STEM_V2[head]}.{_branch_key(rest)}"
    return f"{_STEM_V2.get(head, head)}.{rest}"


def from_timm(state: dict[str, Tensor]) -> ImportedState | None:
    """timm's `inception_v4` (as `inception_v4`) or `inception_resnet_v2` (as
    `inception_resnet_v2_timm`) under our names; None for another architecture."""
    if "features.3.conv.conv.weight" in state and "features.21.branch2_3b.conv.weight" in state:
        ours = {_timm_v4_key(k): v for k, v in state.items()}
        model, source = "inception_v4", "inception_v4"
    elif "mixed_5b.branch0.conv.weight" in state and "block8.conv2d.weight" in state:
        last_c = 1 + sum(1 for k in state if re.match(r"^repeat_2\.\d+\.conv2d\.weight$", k))
        ours = {_timm_resnet_v2_key(k, last_c): v for k, v in state.items()}
        model, source = "inception_resnet_v2_timm", "inception_resnet_v2"
    else:
        return None
    kwargs = {"num_classes": ours["fc.weight"].shape[0]} if "fc.weight" in ours else {}
    return ImportedState(model, kwargs, ours, None, source)
