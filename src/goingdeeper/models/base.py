"""What every registered model offers, and the helpers their files share.

`Classifier` is the surface of every model in the registry, with timm's names:
`forward_features(x)` -> feature maps (a Tensor), `forward_head(features)` -> logits,
`forward(x)` = head(features(x)) after `check_input(x)`, and `reset_classifier(num_classes)`.
A model declares what it has as class or instance attributes rather than being recognised by
its name: the input planes it reads (`in_channels`), the smallest square input it takes
(`min_size`) and, for a network of one input size, the largest (`max_size`), and its
training-only heads (`aux_heads`), which inference and export graphs leave out.

A model also declares how it trains, so that a trainer needs to know no family:
`training_loss(output, target)` is what training minimises for the model's training-mode
output (the cross-entropy of the logits, plus `aux_weight` times each aux head's for a model
with aux heads: GoogLeNet's 0.3, section 5), and `after_step()` runs after each optimizer step
(ZFNet's filter renormalisation when `max_filter_rms` > 0). A module that can run several of
its children as one computation declares a `fused` mode (`Fusable`); `unfused(model)` turns it
off for the tools that watch each child run.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError, InputError
from ..preprocess import Preprocessing


class ImportedState(NamedTuple):
    """Another library's state dict, recognised by the model file whose network it fits: the
    registered model, its constructor arguments, the tensors under our keys, and the input
    transform those weights were trained with."""

    model: str
    kwargs: dict[str, Any]
    state: dict[str, Tensor]
    preprocessing: Preprocessing | None  # None: the other library's config says
    source: str = ""  # the other library's name for the architecture


class TrainingLoss(NamedTuple):
    """What one training forward costs: the loss minimised, the main classifier's part of it
    and the main logits."""

    total: Tensor
    main: Tensor
    logits: Tensor


def classification_loss(
    output: Tensor | tuple[Tensor, ...],
    target: Tensor,
    *,
    aux_weight: float = 0.0,
    label_smoothing: float = 0.0,
) -> TrainingLoss:
    """The cross-entropy of the logits; for a training record (a named tuple of the logits,
    then each aux head's), plus `aux_weight` times each aux head's cross-entropy. In float32
    whatever the autocast dtype of the logits."""

    def cross_entropy(logits: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)

    if isinstance(output, tuple):
        main = cross_entropy(output[0])
        total = main + aux_weight * sum(cross_entropy(aux) for aux in output[1:])
        return TrainingLoss(total, main, output[0])
    main = cross_entropy(output)
    return TrainingLoss(main, main, output)


@torch.no_grad()
def renormalize_filters(model: nn.Module, max_rms: float = 0.1) -> int:
    """Zeiler & Fergus section 3: "renormalize each filter in the convolutional layers whose
    RMS value exceeds a fixed radius of 10^-1 to this fixed radius". Returns how many filters
    were rescaled."""
    rescaled = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            rms = w.pow(2).mean(dim=tuple(range(1, w.dim())), keepdim=True).sqrt()
            over = rms > max_rms
            if over.any():
                w.mul_(torch.where(over, max_rms / rms, torch.ones_like(rms)))
                rescaled += int(over.sum())
    return rescaled


class Fusable:
    """A module that runs several of its children as one computation while `fused` (in
    training: GoogLeNet's Inception runs its three 1x1s on the input as one convolution), so
    that hooks on those children do not see them run. `unfused(model)` switches it off."""

    fused: bool = True


@contextmanager
def unfused(model: nn.Module) -> Iterator[nn.Module]:
    """Every `Fusable` module of `model` runs its children one by one for the duration (so
    that a hook on each sees it run), then as it was."""
    fusable = [m for m in model.modules() if isinstance(m, Fusable)]
    was = [m.fused for m in fusable]
    for m in fusable:
        m.fused = False
    try:
        yield model
    finally:
        for m, fused in zip(fusable, was, strict=True):
            m.fused = fused


class Classifier(nn.Module):
    """The model surface shared by every registered network (see the module docstring)."""

    network_name: str = ""  # in messages; the class name when empty
    in_channels: int = 3
    min_size: int = 1
    max_size: int | None = None
    aux_heads: tuple[str, ...] = ()
    aux_weight: float = 0.0  # in `training_loss`: each aux head's loss times this
    max_filter_rms: float = 0.0  # `after_step`: conv filters renormalised to this RMS; 0: never
    # the modules whose outputs are the feature maps of `forward_intermediates`, in order
    # (timm's `feature_info`): one per resolution, from the stem to the last stage
    feature_stages: tuple[str, ...] = ()
    num_classes: int
    num_features: int

    def feature_chain(self) -> list[str]:
        """The modules `forward_features` runs one after the other, by name (dotted for
        modules inside containers). A model whose features are not such a chain overrides
        `forward_intermediates` instead."""
        raise NotImplementedError(f"{type(self).__name__} states no feature chain")

    def forward_intermediates(
        self, x: Tensor, indices: int | list[int] | None = None
    ) -> list[Tensor]:
        """The feature maps at `feature_stages`, as timm's models give them: all of them
        (`indices=None`), the last n (an int), or those at the given positions; the chain runs
        only as far as the last one asked for."""
        wanted = take_indices(len(self.feature_stages), indices)
        names = {self.feature_stages[i]: i for i in wanted}
        found: dict[int, Tensor] = {}
        for name in self.feature_chain():
            x = self.get_submodule(name)(x)
            if name in names:
                found[names[name]] = x
                if len(found) == len(names):
                    break
        return [found[i] for i in wanted]

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def check_input(self, x: Tensor, *, min_size: int | None = None, needs: str = "") -> None:
        """An `InputError` unless `x` is N x in_channels x H x W with H and W in range.

        `min_size`, `needs`: a larger minimum for this call and what needs it (GoogLeNet's
        aux heads in training)."""
        check_input(
            x,
            channels=self.in_channels,
            min_size=self.min_size if min_size is None else min_size,
            max_size=self.max_size,
            what=needs or self.network_name or type(self).__name__,
        )

    def training_loss(
        self, output: Tensor | tuple[Tensor, ...], target: Tensor, *, label_smoothing: float = 0.0
    ) -> TrainingLoss:
        """What training minimises for `output`, this model's training-mode output: the
        cross-entropy of the logits, plus `aux_weight` times each aux head's."""
        return classification_loss(
            output, target, aux_weight=self.aux_weight, label_smoothing=label_smoothing
        )

    def after_step(self) -> None:
        """What follows each optimizer step: the filters renormalised when `max_filter_rms`
        is set (ZFNet)."""
        if self.max_filter_rms > 0:
            renormalize_filters(self, self.max_filter_rms)

    def remove_aux_heads(self) -> None:
        """Drop the training-only heads (in place): what inference and export graphs hold."""
        for name in self.aux_heads:
            setattr(self, name, None)


def check_input(
    x: Tensor, *, channels: int, min_size: int = 1, max_size: int | None = None, what: str
) -> None:
    """The one input check: rank 4, `channels` planes, sides from `min_size` to `max_size`."""
    fixed = max_size is not None and max_size == min_size
    sides = f"{min_size} x {min_size}" if fixed else "H x W"
    h, w = (x.shape[-2], x.shape[-1]) if x.dim() == 4 else (0, 0)
    wrong_size = fixed and (h, w) != (min_size, min_size)
    too_large = max_size is not None and max(h, w) > max_size
    if x.dim() != 4 or x.shape[1] != channels or wrong_size or too_large:
        raise InputError(
            f"{what} takes N x {channels} x {sides} images, got shape {tuple(x.shape)}"
        )
    if min(h, w) < min_size:
        raise InputError(
            f"input {h}x{w} is too small for {what}: the smallest that works is "
            f"{min_size}x{min_size}"
        )


def example_input(
    model: nn.Module,
    batch: int = 1,
    size: int | tuple[int, int] | None = None,
    *,
    channels: int | None = None,
) -> Tensor:
    """A zero batch the model accepts, on its device and in its dtype: its own planes (or
    `channels`), at `size` (a side or (height, width)) or its smallest (or only) input size,
    224 for a model that states none."""
    channels = channels or getattr(model, "in_channels", 3)
    if size is None:
        size = getattr(model, "max_size", None) or getattr(model, "min_size", None) or 224
    h, w = (size, size) if isinstance(size, int) else size
    param = next(model.parameters(), None)
    if param is None:
        return torch.zeros(batch, channels, h, w)
    dtype = param.dtype if param.is_floating_point() else None
    return torch.zeros(batch, channels, h, w, device=param.device, dtype=dtype)


def out_size(n: int, kernel: int, stride: int, padding: int = 0, ceil: bool = False) -> int:
    """PyTorch's output-size rule for a convolution or pool, ceil mode included."""
    if ceil:
        o = -(-(n + 2 * padding - kernel) // stride) + 1
        return o - 1 if (o - 1) * stride >= n + padding else o
    return (n + 2 * padding - kernel) // stride + 1


def he_normal_fan_out_(model: nn.Module) -> None:
    """He et al. 2015 ("Delving deep") as the ResNet authors' Torch code applies it:
    N(0, 2 / n) with n = kernel area x output channels per group; BatchNorm to the identity;
    linear biases zero."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def new_linear(in_features: int, out_features: int, *, std: float | None = None) -> nn.Linear:
    """A fresh classifier layer: PyTorch's default weights (or N(0, std)), zero bias."""
    fc = nn.Linear(in_features, out_features)
    if std is not None:
        nn.init.normal_(fc.weight, 0.0, std)
    nn.init.zeros_(fc.bias)
    return fc


def fc_relu(in_features: int, out_features: int) -> nn.Sequential:
    """A fully connected layer and its ReLU, as `fc` and `relu` (AlexNet's and VGG's fc6, fc7)."""
    return nn.Sequential(
        OrderedDict(fc=nn.Linear(in_features, out_features), relu=nn.ReLU(inplace=True))
    )


def count_blocks(state: dict[str, Tensor], pattern: str) -> tuple[int, ...]:
    """How many modules `pattern` (groups: stage, index from 0 or 1) finds in each stage of a
    state dict, stage 1 first: the highest index per stage."""
    found: dict[int, int] = {}
    for key in state:
        m = re.match(pattern, key)
        if m:
            stage, index = int(m.group(1)), int(m.group(2))
            found[stage] = max(found.get(stage, 0), index)
    return tuple(found[s] for s in sorted(found))


def max_pool_with_indices(pool: nn.MaxPool2d, x: Tensor) -> tuple[Tensor, Tensor]:
    """`pool(x)` and where each window took its maximum (flat indices into each H x W input
    map): the switches a deconvnet unpools with (Zeiler & Fergus section 2.1)."""
    return F.max_pool2d(
        x,
        pool.kernel_size,
        pool.stride,
        pool.padding,
        pool.dilation,
        ceil_mode=pool.ceil_mode,
        return_indices=True,
    )


def take_indices(count: int, indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
    """Positions among `count` feature maps, as timm reads `indices`: None for all, an int n
    for the last n, a sequence for those (negative ones counted from the end); sorted."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise ArgumentError(f"indices={indices}: this model has {count} feature maps")
        return list(range(count - indices, count))
    chosen = []
    for i in indices:
        if not -count <= i < count:
            raise ArgumentError(f"out_indices {list(indices)}: this model has {count} feature maps")
        chosen.append(i % count)
    return sorted(set(chosen))


def stages_before_pools(chain: list[str], modules: dict[str, nn.Module]) -> tuple[str, ...]:
    """A plain stack's feature maps: the output of the module before each max pool (one per
    resolution) and of the last module."""
    stages = [
        name
        for name, following in zip(chain, chain[1:], strict=False)
        if isinstance(modules[following], nn.MaxPool2d)
    ]
    return (*stages, chain[-1])
