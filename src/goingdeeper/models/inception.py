"""The building blocks of GoogLeNet (Szegedy et al. 2014, arXiv:1409.4842): the convolution
with its ReLU, the Inception module of Fig. 2, the auxiliary classifier of section 5, and the
separable first layer that Table 1's counts describe.

Each block declares how the analyzer shows it (`summary_type`, `summary_depth`,
`summary_channels`), so that the cost tables need not recognise them by class.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, ModelArgumentError
from .base import Fusable


class ConvReLU(nn.Module):
    """Convolution, optional BatchNorm, ReLU: the paper puts a ReLU after every convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        batch_norm: bool = False,
        bn_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps) if batch_norm else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x)


ConvFactory = Callable[..., nn.Module]


class SeparableConv1(nn.Module):
    """conv1 as Table 1 counts it: a depthwise 7x7/2 with depth multiplier 8, then a 1x1 to 64.

    2.7K weights and 34M multiply-adds at 224 fit only this form; the Xception paper (section 1)
    says Inception v1's first layer was depthwise separable. No ReLU between the two parts.
    """

    summary_depth = 1  # one layer of Table 1

    def __init__(
        self,
        out_channels: int = 64,
        multiplier: int = 8,
        *,
        bias: bool = True,
        batch_norm: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(3, 3 * multiplier, 7, stride=2, padding=3, groups=3, bias=bias)
        self.pointwise = ConvReLU(
            3 * multiplier, out_channels, 1, batch_norm=batch_norm, bn_eps=bn_eps, bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class Inception(Fusable, nn.Module):
    """The Inception module of Fig. 2(b): 1x1, 1x1 -> 3x3, 1x1 -> 5x5, 3x3 pool -> 1x1.

    With `naive=True` it is Fig. 2(a): the 3x3 and 5x5 convolutions read the input directly.
    Fig. 2(a) has no projection after the pool either; `pool_passthrough=True` gives that, and
    the module's output then grows by its input width (the blow-up section 4 describes).

    While `fused` (the default; `models.base.unfused` turns it off), in training the three 1x1s
    on the input run as one convolution (`_fused_1x1`; exact, and one pass over the input
    instead of three), so hooks on them do not see them run; in evaluation, or unfused, each
    runs as its own module (`inference.fuse_inception_1x1` stores them fused for deployment).
    """

    summary_type = "inception"
    concatenates_branches = True  # its children read its input, concatenated on channels

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        conv: ConvFactory = ConvReLU,
        branch5x5_kernel: int = 5,
        naive: bool = False,
        pool_passthrough: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.widths = (
            ch1x1,
            None if naive else ch3x3red,
            ch3x3,
            None if naive else ch5x5red,
            ch5x5,
            None if pool_passthrough else pool_proj,
        )
        self.branch1x1 = conv(in_channels, ch1x1, 1)
        self.branch3x3 = self._reduced(conv, in_channels, ch3x3red, ch3x3, 3, naive)
        self.branch5x5 = self._reduced(conv, in_channels, ch5x5red, ch5x5, branch5x5_kernel, naive)
        pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        if pool_passthrough:
            self.branch_pool = nn.Sequential(OrderedDict(pool=pool))
            pool_out = in_channels
        else:
            self.branch_pool = nn.Sequential(
                OrderedDict(pool=pool, proj=conv(in_channels, pool_proj, 1))
            )
            pool_out = pool_proj
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_out

    @staticmethod
    def _reduced(
        conv: ConvFactory, cin: int, red: int, cout: int, k: int, naive: bool
    ) -> nn.Sequential:
        if naive:
            return nn.Sequential(OrderedDict(conv=conv(cin, cout, k, padding=k // 2)))
        return nn.Sequential(
            OrderedDict(reduce=conv(cin, red, 1), conv=conv(red, cout, k, padding=k // 2))
        )

    @property
    def summary_depth(self) -> int:
        """Layers with weights along the longest branch: a reduction and its 3x3 or 5x5."""
        return 1 if self.widths[1] is None else 2

    @property
    def summary_channels(self) -> dict[str, int | None]:
        """Table 1's channel columns, named as the constructor's arguments."""
        names = ("ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")
        return dict(zip(names, self.widths, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.fused and self._fusable():
            y1x1, y3x3, y5x5 = self._fused_1x1(x)
            branches = [y1x1, self.branch3x3.conv(y3x3), self.branch5x5.conv(y5x5)]
        else:
            branches = [self.branch1x1(x), self.branch3x3(x), self.branch5x5(x)]
        return torch.cat([*branches, self.branch_pool(x)], 1)

    def _heads(self) -> tuple[nn.Module, ...]:
        return self.branch1x1, self.branch3x3.reduce, self.branch5x5.reduce

    def _fusable(self) -> bool:
        """Whether the three 1x1s on the input can run as one: Fig. 2(b)'s layout (reductions
        before the 3x3 and 5x5) with plain `ConvReLU`s."""
        if self.widths[1] is None or self.widths[3] is None:
            return False
        return all(type(h) is ConvReLU for h in self._heads())

    def _fused_1x1(self, x: Tensor) -> list[Tensor]:
        """The 1x1 branch and the two reductions from one convolution whose filters are theirs
        stacked (taken afresh at each call, so they stay three sets of parameters), split by
        channel, each through its own BatchNorm and ReLU: the same arithmetic, one pass."""
        heads = self._heads()
        convs = [h.conv for h in heads]
        weight = torch.cat([c.weight for c in convs])
        has_bias = all(c.bias is not None for c in convs)
        bias = torch.cat([c.bias for c in convs]) if has_bias else None
        parts = F.conv2d(x, weight, bias).split([c.out_channels for c in convs], 1)
        return [
            torch.relu(p if h.bn is None else h.bn(p)) for h, p in zip(heads, parts, strict=True)
        ]


class InceptionAux(nn.Module):
    """Auxiliary classifier (section 5): avg pool 5x5/3, 1x1 conv 128, FC 1024, dropout 70%."""

    summary_type = "aux head"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        conv: ConvFactory = ConvReLU,
        pool: str = "avg5s3",
        pooled_size: int = 4,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        if pool == "avg5s3":
            self.pool: nn.Module = nn.AvgPool2d(5, stride=3, ceil_mode=True)
        elif pool == "adaptive4":  # torchvision: adaptive_avg_pool2d(x, (4, 4))
            self.pool = nn.AdaptiveAvgPool2d(4)
            pooled_size = 4
        else:
            raise ModelArgumentError(f"aux_pool must be 'avg5s3' or 'adaptive4', got {pool!r}")
        self.pooled_size = pooled_size
        self.conv = conv(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * pooled_size * pooled_size, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.pool(x))  # N x 128 x 4 x 4 at 224
        if x.shape[-1] != self.pooled_size or x.shape[-2] != self.pooled_size:
            raise InputError(
                f"the aux heads were built for a {self.pooled_size}x{self.pooled_size} pooled map "
                f"but got {x.shape[-2]}x{x.shape[-1]}: build the model with input_size set to the "
                "training input size, or with aux_logits=False"
            )
        x = self.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.dropout(x))
