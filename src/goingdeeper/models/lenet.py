"""LeNet-1 and LeNet-5.

LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition",
Proceedings of the IEEE 86(11):2278-2324, 1998 (no arXiv id). LeNet-1 is section III.C.7 of that
paper; its layers are those of LeCun et al., "Handwritten digit recognition with a
back-propagation network", NIPS 2 (1990).

`lenet5` is the paper's network (section II.B, Fig. 2): a 32x32 input plane; C1 6@28x28 (5x5);
S2 6@14x14 trainable subsampling; C3 16@10x10 with the partial connections of Table I; S4
16@5x5; C5 120 (a 5x5 convolution that is 1x1 at 32x32); F6 84; the scaled tanh
1.7159 tanh(2a/3) (Appendix A) after every layer up to F6; an output layer of 10 Euclidean RBF
units with fixed +1/-1 codes. 60,000 trainable parameters, 332,824 multiply-adds (the paper's
340,908 connections less one bias connection per unit).

Where this code departs from the paper, and why:
- The output layer returns -y_i, the RBF penalties negated, so that the output is a logit:
  cross-entropy on it is the paper's MAP criterion (eq. 9) without its "rubbish class"
  constant j (the limit j -> infinity), and argmax picks the nearest code as the paper does.
- The RBF codes are 7x12 stylised digits drawn for this file (`DIGIT_BITMAPS`): the paper's
  bitmaps (Fig. 3) are not published as data. For a number of classes other than ten the codes
  are random +1/-1 vectors from a fixed seed, which section II.B names as an alternative.
- Weights are drawn uniformly in +-2.4/F_i (F_i = fan-in of the unit), as section II.B says,
  biases included; the paper does not say how it treated the biases.
- S2/S4 are computed as a 2x2/2 depthwise convolution whose four weights are tied to the one
  coefficient (the same function) and counted as 4 MACs per unit, like the paper's connections.

`lenet1` (the 1990 network) keeps H1 4@24x24, H2 subsampling, H3 12@8x8, H4 12@4x4 and a
fully connected output, at 2,578 parameters and 98,442 connections as the 1990 paper reports.
Those two numbers leave one layout: H2/H4 with a trainable coefficient and bias per map, and H3
with 20 5x5 kernels for its 12 maps. Which H2 maps each H3 map reads is not reproduced in the
1998 paper; `H3_TABLE` is our reconstruction with those counts. Its output units are linear
(logits) instead of squashed.

`lenet5_modern` is the version most courses teach: ReLU, 2x2 max pools, a full C3 and a
linear output layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ModelArgumentError
from ..preprocess import Preprocessing
from ..registry import ModelCard, register_model
from .base import Classifier, take_indices
from .lenet_layers import (
    ACTIVATIONS,
    EuclideanRBF,
    PartialConv2d,
    Subsampling,
    connections,
    lecun_uniform_,
    rbf_codes,
    scaled_tanh,
)

# Table I: column j marks the S2 maps that C3 map j combines (X = connected). Maps 0-5 read 3
# contiguous maps, 6-11 read 4 contiguous, 12-14 read 4 discontinuous ones, 15 reads all six:
# "to break the symmetry in the network" with fewer connections (section II.B).
C3_TABLE = (
    # C3: 0123456789012345
    "X...XXX..XXXX.XX",  # S2 map 0
    "XX...XXX..XXXX.X",  # S2 map 1
    "XXX...XXX..X.XXX",  # S2 map 2
    ".XXX..XXXX..X.XX",  # S2 map 3
    "..XXX..XXXX.XX.X",  # S2 map 4
    "...XXX..XXXX.XXX",  # S2 map 5
)

# LeNet-1's H3 (our reconstruction, see the module docstring): maps 0-3 read one H2 map each,
# maps 4-7 the pairs (i, i+1), maps 8-11 the pairs (i, i+2) mod 4: 20 kernels.
H3_TABLE = (
    # H3: 012345678901
    "X...X..XX.X.",  # H2 map 0
    ".X..XX...X.X",  # H2 map 1
    "..X..XX.X.X.",  # H2 map 2
    "...X..XX.X.X",  # H2 map 3
)


def _subsampling(kind: str, channels: int) -> nn.Module:
    if kind == "trainable":
        return Subsampling(channels)
    if kind == "average":
        return nn.AvgPool2d(2)
    if kind == "max":
        return nn.MaxPool2d(2)
    raise ModelArgumentError(f"subsampling must be 'trainable', 'average' or 'max', got {kind!r}")


# --- the networks ---------------------------------------------------------------------------


class LeNet5(Classifier):
    """LeNet-5; the paper's network by default, each modernisation a named switch.

    Args:
        num_classes: output units (10 digits).
        in_channels: input planes (1: the paper's grayscale image).
        activation: "scaled_tanh" (1.7159 tanh(2a/3), Appendix A) or "relu".
        subsampling: "trainable" (coefficient and bias per map), "average" or "max".
        c3: "table" (Table I's partial connections) or "full" (every S2 map).
        output: "rbf" (fixed-code Euclidean RBF units, logits = -distances) or "linear".
        init: "paper" (uniform +-2.4/fan-in) or "default" (PyTorch's).
    """

    network_name = "LeNet-5"
    min_size = max_size = 32  # C5 is a 5x5 convolution that must come out 1x1

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        activation: str = "scaled_tanh",
        subsampling: str = "trainable",
        c3: str = "table",
        output: str = "rbf",
        init: str = "paper",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ModelArgumentError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if c3 not in ("table", "full"):
            raise ModelArgumentError(f"c3 must be 'table' or 'full', got {c3!r}")
        if output not in ("rbf", "linear"):
            raise ModelArgumentError(f"output must be 'rbf' or 'linear', got {output!r}")
        if init not in ("paper", "default"):
            raise ModelArgumentError(f"init must be 'paper' or 'default', got {init!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.activation = activation
        self.output_kind = output
        self.num_features = 84
        self.C1 = nn.Conv2d(in_channels, 6, 5)  # 32x32 -> 6@28x28
        self.S2 = _subsampling(subsampling, 6)  # -> 6@14x14
        if c3 == "table":
            self.C3: nn.Module = PartialConv2d(6, connections(C3_TABLE), 5)  # -> 16@10x10
        else:
            self.C3 = nn.Conv2d(6, 16, 5)
        self.S4 = _subsampling(subsampling, 16)  # -> 16@5x5
        self.C5 = nn.Conv2d(16, 120, 5)  # -> 120@1x1
        self.F6 = nn.Linear(120, 84)
        self.output = self._output_layer(num_classes)
        if init == "paper":
            lecun_uniform_(self)

    def _output_layer(self, num_classes: int) -> nn.Module:
        if self.output_kind == "rbf":
            return EuclideanRBF(rbf_codes(num_classes))
        return nn.Linear(84, num_classes)

    def _squash_subsampled(self, layer: nn.Module, x: Tensor) -> Tensor:
        x = layer(x)  # a trainable subsampling unit has a bias and a squashing function;
        return ACTIVATIONS[self.activation](x) if isinstance(layer, Subsampling) else x

    feature_stages = ("C1", "S2", "C3", "S4", "C5")  # each map after its squashing

    def _maps(self, x: Tensor) -> list[Tensor]:
        act = ACTIVATIONS[self.activation]
        c1 = act(self.C1(x))  # N x 6 x 28 x 28
        s2 = self._squash_subsampled(self.S2, c1)  # N x 6 x 14 x 14
        c3 = act(self.C3(s2))  # N x 16 x 10 x 10
        s4 = self._squash_subsampled(self.S4, c3)  # N x 16 x 5 x 5
        return [c1, s2, c3, s4, act(self.C5(s4))]  # C5: N x 120 x 1 x 1

    def forward_intermediates(self, x: Tensor, indices=None) -> list[Tensor]:
        maps = self._maps(x)  # the squashing is not a module: no chain of modules to run
        return [maps[i] for i in take_indices(len(maps), indices)]

    def forward_features(self, x: Tensor) -> Tensor:
        """Input to the output layer, F6's: N x 84."""
        c5 = self._maps(x)[-1]
        return ACTIVATIONS[self.activation](self.F6(torch.flatten(c5, 1)))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.output(x)  # N x num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """A new output layer: fresh fixed codes (RBF) or a fresh linear layer."""
        self.num_classes = num_classes
        self.output = self._output_layer(num_classes)


class LeNet1(Classifier):
    """LeNet-1 (LeCun et al. 1990): H1 4@24x24, H2 4@12x12, H3 12@8x8, H4 12@4x4, output.

    Args:
        num_classes: output units (10 digits).
        in_channels: input planes (1).
        subsampling: "trainable" (coefficient and bias per map: 2,578 parameters, the 1990
            count) or "average" (plain 2x2 averages: 2,546).
        h3: "table" (20 kernels, `H3_TABLE`) or "full" (every H2 map: 48 kernels).
        init: "paper" (uniform +-2.4/fan-in) or "default".
    """

    network_name = "LeNet-1"
    min_size = max_size = 28

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        subsampling: str = "trainable",
        h3: str = "table",
        init: str = "paper",
    ) -> None:
        super().__init__()
        if h3 not in ("table", "full"):
            raise ModelArgumentError(f"h3 must be 'table' or 'full', got {h3!r}")
        if init not in ("paper", "default"):
            raise ModelArgumentError(f"init must be 'paper' or 'default', got {init!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_features = 12 * 4 * 4
        self.H1 = nn.Conv2d(in_channels, 4, 5)  # 28x28 -> 4@24x24
        self.H2 = _subsampling(subsampling, 4)  # -> 4@12x12
        if h3 == "table":
            self.H3: nn.Module = PartialConv2d(4, connections(H3_TABLE), 5)  # -> 12@8x8
        else:
            self.H3 = nn.Conv2d(4, 12, 5)
        self.H4 = _subsampling(subsampling, 12)  # -> 12@4x4
        self.output = nn.Linear(self.num_features, num_classes)
        if init == "paper":
            lecun_uniform_(self)

    def _squash_subsampled(self, layer: nn.Module, x: Tensor) -> Tensor:
        x = layer(x)
        return scaled_tanh(x) if isinstance(layer, Subsampling) else x

    feature_stages = ("H1", "H2", "H3", "H4")

    def _maps(self, x: Tensor) -> list[Tensor]:
        h1 = scaled_tanh(self.H1(x))  # N x 4 x 24 x 24
        h2 = self._squash_subsampled(self.H2, h1)  # N x 4 x 12 x 12
        h3 = scaled_tanh(self.H3(h2))  # N x 12 x 8 x 8
        return [h1, h2, h3, self._squash_subsampled(self.H4, h3)]  # H4: N x 12 x 4 x 4

    def forward_intermediates(self, x: Tensor, indices=None) -> list[Tensor]:
        maps = self._maps(x)
        return [maps[i] for i in take_indices(len(maps), indices)]

    def forward_features(self, x: Tensor) -> Tensor:
        return torch.flatten(self._maps(x)[-1], 1)  # N x 192

    def forward_head(self, x: Tensor) -> Tensor:
        return self.output(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.output = nn.Linear(self.num_features, num_classes)


# --- presets ---------------------------------------------------------------------------------

# Section II.A: "the background level (white) corresponds to -0.1 and the foreground (black)
# to 1.175": MNIST ink 0..255 -> -0.1 + 1.275 * p / 255, one grayscale plane ("L"). The paper
# centres MNIST's 28x28 digits in a 32x32 field: resize to 28, a 2-pixel black border.
LENET5_MNIST = Preprocessing(
    resize=28,
    crop=32,
    pad=2,
    channel_order="L",
    scale=1.275 / 255.0,
    mean=(0.1, 0.1, 0.1),
    std=(1.0, 1.0, 1.0),
    note="LeNet-5: one grayscale plane, 32x32 (MNIST padded from 28x28); background -0.1, "
    "ink 1.175",
)
LENET1_MNIST = Preprocessing(
    resize=28,
    crop=28,
    channel_order="L",
    scale=1.275 / 255.0,
    mean=(0.1, 0.1, 0.1),
    std=(1.0, 1.0, 1.0),
    note="LeNet-1: one grayscale plane, the digit (16x16 in 1990) centred in 28x28; "
    "LeNet-5's scaling (-0.1 background, 1.175 ink)",
)
MNIST_STANDARDIZED = Preprocessing(
    resize=28,
    crop=32,
    pad=2,
    channel_order="L",
    mean=(0.1307, 0.1307, 0.1307),
    std=(0.3081, 0.3081, 0.3081),
    note="one grayscale plane, 32x32 (MNIST padded from 28x28); MNIST mean 0.1307, std 0.3081",
)

_PAPER = dict(
    family="LeNet",
    title="Gradient-based learning applied to document recognition",
    authors="LeCun, Bottou, Bengio, Haffner",
    year=1998,
    arxiv="",
    num_classes=10,
)


@register_model(
    ModelCard(
        name="lenet1",
        input_size=28,
        preprocessing=LENET1_MNIST,
        **_PAPER,
        summary="LeNet-1 (NIPS 1990; Proc. IEEE 1998 section III.C.7): 4 then 12 maps, 5x5, "
        "2,578 parameters",
        deviations=(
            "H3 connection table reconstructed from the 1990 counts (20 kernels)",
            "linear output units (logits)",
        ),
        top5_error="1.7% MNIST test error (top-1)",
    )
)
def lenet1(**kwargs) -> LeNet1:
    """LeNet-1: 28x28 input, 4 and 12 feature maps, trainable 2x2 averaging."""
    return LeNet1(**kwargs)


@register_model(
    ModelCard(
        name="lenet5",
        input_size=32,
        preprocessing=LENET5_MNIST,
        **_PAPER,
        summary="LeNet-5 as published (Proc. IEEE 86(11), 1998): Table I's C3, trainable "
        "subsampling, scaled tanh, fixed-code RBF output; 60,000 parameters",
        deviations=(
            "RBF output returned as negative distances (logits)",
            "our own 7x12 digit bitmaps as the RBF codes",
        ),
        top5_error="0.95% MNIST test error (top-1); 0.8% with distortions",
    )
)
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5 as published."""
    return LeNet5(**kwargs)


@register_model(
    ModelCard(
        name="lenet5_modern",
        input_size=32,
        preprocessing=MNIST_STANDARDIZED,
        **_PAPER,
        summary="LeNet-5's layout with ReLU, max pooling, a full C3 and a linear output",
        deviations=("ReLU", "2x2 max pools", "full C3", "linear output", "PyTorch default init"),
        top5_error="",
    )
)
def lenet5_modern(**kwargs) -> LeNet5:
    """LeNet-5's layout as most courses teach it."""
    modern = dict(activation="relu", subsampling="max", c3="full", output="linear", init="default")
    return LeNet5(**{**modern, **kwargs})
