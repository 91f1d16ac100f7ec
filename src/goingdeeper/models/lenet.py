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

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..preprocess import Preprocessing
from ..registry import ModelCard, register_model

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


def connections(table: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """A connection table (rows = input maps, columns = output maps) as each output map's
    list of input maps."""
    return tuple(
        tuple(i for i, row in enumerate(table) if row[j] == "X") for j in range(len(table[0]))
    )


# Fig. 3: the output codes, stylised digits 0-9 on a 7 (wide) x 12 (high) grid, read row by
# row; "#" = +1, "." = -1. Drawn for this file: the paper's bitmaps are printed, not published.
DIGIT_BITMAPS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... ..###.. .#####. ....#.. ####### ..####. ####### .#####. .#####.
.#...#. ..##... .#...#. #.....# ...##.. #...... .#..... ......# #.....# #.....#
#.....# .#.#... #.....# ......# ..#.#.. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# ......# .#..#.. ######. #...... ....#.. #.....# #.....#
#.....# ...#... .....#. ..####. #...#.. ......# ######. ...#... .#####. #.....#
#.....# ...#... ....#.. ......# ####### ......# #.....# ...#... #.....# .######
#.....# ...#... ...#... ......# ....#.. ......# #.....# ..#.... #.....# ......#
#.....# ...#... ..#.... ......# ....#.. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... .#..... #.....# ....#.. #.....# #.....# ..#.... #.....# .....#.
..###.. .#####. ####### .#####. ....#.. .#####. .#####. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""
CODE_LENGTH = 84  # 7 x 12 = F6's width


def rbf_codes(num_classes: int = 10, *, seed: int = 0) -> Tensor:
    """Fixed +1/-1 codes of the output RBF units, num_classes x 84.

    Ten classes: the digit bitmaps of `DIGIT_BITMAPS`, read row by row. Any other number:
    +1/-1 with equal probability from `torch.Generator().manual_seed(seed)` (deterministic).
    """
    if num_classes == 10:
        lines = [line.split() for line in DIGIT_BITMAPS.strip().splitlines()]
        codes = [[1.0 if c == "#" else -1.0 for row in lines for c in row[d]] for d in range(10)]
        return torch.tensor(codes)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (num_classes, CODE_LENGTH), generator=g).float() * 2 - 1


def scaled_tanh(x: Tensor) -> Tensor:
    """The squashing function of Appendix A: f(a) = 1.7159 tanh(2a/3), so f(+-1) = +-1."""
    return 1.7159 * torch.tanh(x * (2.0 / 3.0))


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"scaled_tanh": scaled_tanh, "relu": F.relu}


# --- layers --------------------------------------------------------------------------------


class Subsampling(nn.Module):
    """S2/S4: "the four inputs to a unit are added, then multiplied by a trainable coefficient,
    and added to a trainable bias" (section II.B); one coefficient and one bias per map.

    Computed as a 2x2/2 depthwise convolution whose four weights are the map's coefficient.
    """

    summary_depth = 1  # one layer of the paper's seven

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.weight.view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
        return F.conv2d(x, kernel, self.bias, stride=2, groups=self.channels)

    def count_macs(self, out: Tensor) -> int:
        return out[0].numel() * 4

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size=2, stride=2"


class PartialConv2d(nn.Module):
    """A convolution in which output map j reads only the input maps `connections[j]`.

    The output maps that read the same number of inputs form one grouped convolution over
    the gathered input maps, so the work done is exactly the work counted (no masked dense
    kernel): for LeNet-5's C3, 6 x 3 + 9 x 4 + 1 x 6 = 60 kernels of 5x5.
    Parameters: `weight{k}` (maps with k inputs x k x kh x kw) and one `bias` per output map.
    """

    summary_depth = 1  # one layer of the paper's seven

    def __init__(
        self,
        in_channels: int,
        connections: Sequence[Sequence[int]],
        kernel_size: int,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = len(connections)
        self.kernel_size = (kernel_size, kernel_size)
        self.connections = tuple(tuple(c) for c in connections)
        for j, inputs in enumerate(self.connections):
            if (
                not inputs
                or len(set(inputs)) != len(inputs)
                or not set(inputs) <= set(range(in_channels))
            ):
                raise ValueError(
                    f"output map {j} reads {inputs}: expected distinct input maps in "
                    f"0..{in_channels - 1}"
                )
        self.fan_ins = tuple(sorted({len(c) for c in self.connections}))
        order: list[int] = []
        self._reads_all: set[int] = set()  # fan-ins whose gather is the input itself
        for k in self.fan_ins:
            maps = [j for j, c in enumerate(self.connections) if len(c) == k]
            order += maps
            gather = [i for j in maps for i in self.connections[j]]
            if gather == list(range(in_channels)):
                self._reads_all.add(k)
            self.register_buffer(f"index{k}", torch.tensor(gather), persistent=False)
            weight = torch.empty(len(maps), k, kernel_size, kernel_size)
            self.register_parameter(f"weight{k}", nn.Parameter(weight))
        # output maps come out grouped by fan-in; put them back in the table's order
        inverse = torch.empty(self.out_channels, dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(self.out_channels)
        self.reorder = order != sorted(order)
        self.register_buffer("inverse", inverse, persistent=False)
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's Conv2d default, per output map's own fan-in."""
        for k in self.fan_ins:
            nn.init.kaiming_uniform_(getattr(self, f"weight{k}"), a=math.sqrt(5))
        if self.bias is not None:
            with torch.no_grad():
                self.bias.copy_((torch.rand(self.out_channels) * 2 - 1) / self._fan_ins().sqrt())

    def _fan_ins(self) -> Tensor:
        kh, kw = self.kernel_size
        return torch.tensor([len(c) * kh * kw for c in self.connections], dtype=torch.float)

    def forward(self, x: Tensor) -> Tensor:
        outs = []
        for k in self.fan_ins:
            index: Tensor = getattr(self, f"index{k}")
            weight: Tensor = getattr(self, f"weight{k}")
            xg = x if k in self._reads_all else x.index_select(1, index)
            outs.append(F.conv2d(xg, weight, groups=weight.shape[0]))
        out = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
        if self.reorder:
            out = out.index_select(1, self.inverse)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def count_macs(self, out: Tensor) -> int:
        kh, kw = self.kernel_size
        kernels = sum(len(c) for c in self.connections)
        return out[0, 0].numel() * kernels * kh * kw

    def dense_weight(self) -> Tensor:
        """The equivalent out x in x kh x kw kernel, zero where the table has no connection."""
        ref = getattr(self, f"weight{self.fan_ins[0]}")
        dense = ref.new_zeros(self.out_channels, self.in_channels, *self.kernel_size)
        row = {k: 0 for k in self.fan_ins}
        for j, inputs in enumerate(self.connections):
            k = len(inputs)
            dense[j, list(inputs)] = getattr(self, f"weight{k}")[row[k]]
            row[k] += 1
        return dense

    def extra_repr(self) -> str:
        kernels = sum(len(c) for c in self.connections)
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"kernels={kernels}"
        )


class EuclideanRBF(nn.Module):
    """Output layer of Euclidean RBF units: y_i = sum_j (x_j - w_ij)^2 (eq. 7), w fixed.

    Returns -y (a logit; see the module docstring). The codes are a buffer, not a parameter:
    the paper chose them by hand and kept them fixed.
    """

    summary_depth = 1  # one layer of the paper's seven

    def __init__(self, codes: Tensor) -> None:
        super().__init__()
        self.register_buffer("codes", codes.float().clone())

    def distances(self, x: Tensor) -> Tensor:
        """The penalties y_i, N x classes. Expanded as |x|^2 - 2 x.w + |w|^2 so that the work
        is one matrix product, the 84 x classes multiply-adds that are counted."""
        codes = self.codes.to(x.dtype)
        return x.pow(2).sum(1, keepdim=True) - 2 * F.linear(x, codes) + codes.pow(2).sum(1)

    def forward(self, x: Tensor) -> Tensor:
        return -self.distances(x)

    def count_macs(self, out: Tensor) -> int:
        return self.codes.numel()

    def extra_repr(self) -> str:
        return f"in_features={self.codes.shape[1]}, classes={self.codes.shape[0]}, fixed codes"


def _lecun_uniform_(model: nn.Module) -> None:
    """Section II.B: weights uniform in +-2.4/F_i, F_i the fan-in of the unit (biases too)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            bound = 2.4 / m.weight[0].numel()
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, Subsampling):
            nn.init.uniform_(m.weight, -0.6, 0.6)  # fan-in 4
            nn.init.uniform_(m.bias, -0.6, 0.6)
        elif isinstance(m, PartialConv2d):
            kh, kw = m.kernel_size
            for k in m.fan_ins:
                bound = 2.4 / (k * kh * kw)
                nn.init.uniform_(getattr(m, f"weight{k}"), -bound, bound)
            if m.bias is not None:
                with torch.no_grad():
                    m.bias.copy_((torch.rand(m.out_channels) * 2 - 1) * 2.4 / m._fan_ins())


def _subsampling(kind: str, channels: int) -> nn.Module:
    if kind == "trainable":
        return Subsampling(channels)
    if kind == "average":
        return nn.AvgPool2d(2)
    if kind == "max":
        return nn.MaxPool2d(2)
    raise ValueError(f"subsampling must be 'trainable', 'average' or 'max', got {kind!r}")


def _check(x: Tensor, model: nn.Module, size: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != model.in_channels or x.shape[-2:] != (size, size):
        raise ValueError(
            f"{name} takes N x {model.in_channels} x {size} x {size} images, got shape "
            f"{tuple(x.shape)}"
        )


# --- the networks ---------------------------------------------------------------------------


class LeNet5(nn.Module):
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

    input_size = 32

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
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if c3 not in ("table", "full"):
            raise ValueError(f"c3 must be 'table' or 'full', got {c3!r}")
        if output not in ("rbf", "linear"):
            raise ValueError(f"output must be 'rbf' or 'linear', got {output!r}")
        if init not in ("paper", "default"):
            raise ValueError(f"init must be 'paper' or 'default', got {init!r}")
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
            _lecun_uniform_(self)

    def _output_layer(self, num_classes: int) -> nn.Module:
        if self.output_kind == "rbf":
            return EuclideanRBF(rbf_codes(num_classes))
        return nn.Linear(84, num_classes)

    def _squash_subsampled(self, layer: nn.Module, x: Tensor) -> Tensor:
        x = layer(x)  # a trainable subsampling unit has a bias and a squashing function;
        return ACTIVATIONS[self.activation](x) if isinstance(layer, Subsampling) else x

    def forward_features(self, x: Tensor) -> Tensor:
        """Input to F6: N x 84."""
        act = ACTIVATIONS[self.activation]
        x = act(self.C1(x))  # N x 6 x 28 x 28
        x = self._squash_subsampled(self.S2, x)  # N x 6 x 14 x 14
        x = act(self.C3(x))  # N x 16 x 10 x 10
        x = self._squash_subsampled(self.S4, x)  # N x 16 x 5 x 5
        x = act(self.C5(x))  # N x 120 x 1 x 1
        return act(self.F6(torch.flatten(x, 1)))  # N x 84

    def forward_head(self, x: Tensor) -> Tensor:
        return self.output(x)  # N x num_classes

    def forward(self, x: Tensor) -> Tensor:
        _check(x, self, 32, "LeNet-5")
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A new output layer: fresh fixed codes (RBF) or a fresh linear layer."""
        self.num_classes = num_classes
        self.output = self._output_layer(num_classes)


class LeNet1(nn.Module):
    """LeNet-1 (LeCun et al. 1990): H1 4@24x24, H2 4@12x12, H3 12@8x8, H4 12@4x4, output.

    Args:
        num_classes: output units (10 digits).
        in_channels: input planes (1).
        subsampling: "trainable" (coefficient and bias per map: 2,578 parameters, the 1990
            count) or "average" (plain 2x2 averages: 2,546).
        h3: "table" (20 kernels, `H3_TABLE`) or "full" (every H2 map: 48 kernels).
        init: "paper" (uniform +-2.4/fan-in) or "default".
    """

    input_size = 28

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
            raise ValueError(f"h3 must be 'table' or 'full', got {h3!r}")
        if init not in ("paper", "default"):
            raise ValueError(f"init must be 'paper' or 'default', got {init!r}")
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
            _lecun_uniform_(self)

    def _squash_subsampled(self, layer: nn.Module, x: Tensor) -> Tensor:
        x = layer(x)
        return scaled_tanh(x) if isinstance(layer, Subsampling) else x

    def forward_features(self, x: Tensor) -> Tensor:
        x = scaled_tanh(self.H1(x))  # N x 4 x 24 x 24
        x = self._squash_subsampled(self.H2, x)  # N x 4 x 12 x 12
        x = scaled_tanh(self.H3(x))  # N x 12 x 8 x 8
        x = self._squash_subsampled(self.H4, x)  # N x 12 x 4 x 4
        return torch.flatten(x, 1)  # N x 192

    def forward_head(self, x: Tensor) -> Tensor:
        return self.output(x)

    def forward(self, x: Tensor) -> Tensor:
        _check(x, self, 28, "LeNet-1")
        return self.forward_head(self.forward_features(x))

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
