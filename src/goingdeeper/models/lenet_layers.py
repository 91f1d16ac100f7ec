"""The layers of LeNet (LeCun, Bottou, Bengio, Haffner 1998, "Gradient-based learning applied
to document recognition", section II.B and Appendix A) that PyTorch has no module for: trainable
subsampling, convolutions with a partial connection table, and the output layer of Euclidean
RBF units with fixed codes; with the scaled tanh and the paper's weight initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelArgumentError


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
                raise ModelArgumentError(
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


def lecun_uniform_(model: nn.Module) -> None:
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
