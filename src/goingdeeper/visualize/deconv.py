"""The deconvnet of Zeiler & Fergus 2013 (arXiv:1311.2901, section 2.1, Fig. 1).

To see what drives one activation, every other activation of its layer is set to zero and the
map is passed back down the network, each layer undone in reverse order:
- max pool -> *unpooling*: each value goes back to the position its pooling window took its
  maximum from (the switch recorded in the forward pass). Overlapping pools (3x3/2 in AlexNet,
  ZFNet and GoogLeNet) can route two pooled values to one position; they are summed, which is
  the transpose of the switch selection (and what autograd does for a max pool).
- ReLU -> *rectification*: ReLU applied to the reconstruction itself, not gated by where the
  forward pass was positive ("to obtain valid feature reconstructions at each layer").
- convolution -> *filtering*: convolution with "transposed versions of the same filters",
  i.e. `conv_transpose2d` with the layer's weights, stride, padding, dilation and groups.
  Biases are not used: they are not part of the filters.
- LRN -> passed through: ZFNet's deconvnet has no inverse for its contrast normalisation.
- BatchNorm (not in ZFNet or the paper's GoogLeNet) -> folded: in eval mode it is a per-channel
  affine map; its scale gamma / sqrt(var + eps) belongs to the filters of the convolution
  before it, so the reconstruction is multiplied by it; its shift, like a bias, is dropped.
- Dropout, Identity -> passed through (eval mode).
- a concat module (Inception, GoogLeNet Fig. 2b) -> the map is split into the channel slices
  of its branches, each branch undone on its own, and the four reconstructions summed at the
  module's input (the transpose of "read the same input, concatenate the outputs").

With ReLU's backward in place of rectification (and LRN's backward in place of passing through)
this would be the gradient; as it is, it equals the gradient of a copy of the network whose ReLUs
pass back only positive signals and whose LRNs pass gradients through unchanged (Springenberg
et al. 2014, arXiv:1412.6806, compare deconvnet and backpropagation this way); the tests use
that as an oracle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..analysis.trace import Concat, Item, Step, Trace, record, unknown_layer
from ..errors import UnsupportedLayerError, VisualizeError

PASS_THROUGH = (nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d, nn.Identity)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# --- the three operations of section 2.1 ---------------------------------------------------


def unpool(signal: Tensor, switches: Tensor, in_shape: Sequence[int]) -> Tensor:
    """Put each pooled value back where its window's maximum was; zeros elsewhere.

    `switches` are the flat H*W indices that `max_pool2d(..., return_indices=True)` gives;
    values routed to the same position (overlapping windows) add up.
    """
    n, c = signal.shape[:2]
    h, w = in_shape[-2], in_shape[-1]
    if switches.shape[0] != n:
        switches = switches.expand(n, *switches.shape[1:])
    out = signal.new_zeros(n, c, h * w)
    out.scatter_add_(2, switches.reshape(n, c, -1), signal.reshape(n, c, -1))
    return out.view(n, c, h, w)


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        k, d = _pair(conv.kernel_size), _pair(conv.dilation)
        if any(ki % 2 == 0 for ki in k):
            raise UnsupportedLayerError("padding='same' with an even kernel is not supported")
        return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
    return _pair(conv.padding)


def filter_transposed(signal: Tensor, conv: nn.Conv2d, in_shape: Sequence[int]) -> Tensor:
    """Convolve with the transposed filters of `conv` (no bias), back to `in_shape`."""
    if conv.padding_mode != "zeros":
        raise UnsupportedLayerError(f"padding_mode={conv.padding_mode!r} has no plain transpose")
    stride, dilation = _pair(conv.stride), _pair(conv.dilation)
    padding, kernel = _conv_padding(conv), _pair(conv.kernel_size)
    # A strided convolution drops up to stride-1 trailing rows; output_padding restores them.
    reached = [
        (signal.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + 1
        for i in range(2)
    ]
    extra = (in_shape[2] - reached[0], in_shape[3] - reached[1])
    return F.conv_transpose2d(
        signal,
        conv.weight.detach(),
        None,
        stride,
        padding,
        extra,
        conv.groups,
        dilation,
    )


def rectify(signal: Tensor) -> Tensor:
    """ZFNet's rectification: ReLU on the reconstruction, not gated by the forward pass."""
    return signal.clamp(min=0)


def batchnorm_scale(bn: nn.BatchNorm2d) -> Tensor:
    """The per-channel scale of BatchNorm in eval mode, gamma / sqrt(running_var + eps)."""
    if bn.running_var is None:
        raise UnsupportedLayerError("BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    return scale * bn.weight.detach() if bn.weight is not None else scale


# --- walking back --------------------------------------------------------------------------


def undo_step(step: Step, signal: Tensor, rows: Tensor | None = None) -> Tensor:
    """One layer of the deconvnet: the reconstruction at `step`'s input."""
    m = step.module
    if isinstance(m, nn.Conv2d):
        return filter_transposed(signal, m, step.in_shape)
    if isinstance(m, nn.ReLU):
        return rectify(signal)
    if isinstance(m, nn.MaxPool2d):
        switches = step.switches if rows is None else step.switches.index_select(0, rows)
        return unpool(signal, switches, step.in_shape)
    if isinstance(m, nn.BatchNorm2d):
        return signal * batchnorm_scale(m).view(1, -1, 1, 1)
    if isinstance(m, PASS_THROUGH):
        return signal
    raise UnsupportedLayerError(
        f"{step.name}: the deconvnet cannot project through {type(m).__name__} "
        "(it inverts Conv2d, ReLU, MaxPool2d, LRN, BatchNorm2d, Dropout and Inception)"
    )


def undo_steps(steps: Sequence[Step], signal: Tensor, rows: Tensor | None = None) -> Tensor:
    for step in reversed(steps):
        signal = undo_step(step, signal, rows)
    return signal


def undo_concat(concat: Concat, signal: Tensor, rows: Tensor | None = None) -> Tensor:
    """Split the map into the branches' channel slices, undo each branch, sum at the input."""
    total = None
    for branch, part in zip(concat.branches, signal.split(concat.widths, dim=1), strict=True):
        if not part.any():  # nothing to project: this branch's weights are never touched
            continue
        back = undo_steps(branch, part, rows)
        total = back if total is None else total + back
    if total is None:
        n = signal.shape[0]
        return signal.new_zeros(n, *concat.in_shape[1:])
    return total


def _matches(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def path_to(trace: Trace, layer: str) -> list[Item]:
    """The items from the input up to the output of `layer`, in forward order.

    A layer inside a concat module (`inception3a.branch3x3`) ends the path with the steps of
    its branch up to it; a container (`conv1`, a Sequential) ends at its last step.
    """
    end: list[Item] | None = None
    for i, item in enumerate(trace.items):
        if isinstance(item, Step):
            if _matches(item.name, layer):
                end = trace.items[: i + 1]
        elif _matches(item.name, layer):
            end = trace.items[: i + 1]
        elif layer.startswith(item.name + "."):
            for branch in item.branches:
                for j, step in enumerate(branch):
                    if _matches(step.name, layer):
                        end = [*trace.items[:i], *branch[: j + 1]]
    if end is None:
        raise unknown_layer(layer, trace.layers)
    return end


def check_chain(items: Sequence[Item]) -> None:
    """Refuse a path the deconvnet cannot follow: a step that did not read the output of the
    step before it, or a concat module whose branches do not add up to its output."""
    for item in items:
        if isinstance(item, Concat):
            if item.out_channels is not None and sum(item.widths) != item.out_channels:
                raise UnsupportedLayerError(
                    f"{item.name}: its branches give {sum(item.widths)} channels, its output has "
                    f"{item.out_channels}; the deconvnet undoes plain Inception modules only"
                )
            for branch in item.branches:
                check_chain(branch)
        elif not item.chained:
            raise UnsupportedLayerError(
                f"{item.name} does not read the output of the layer before it (a residual "
                "addition or an operation outside modules): the deconvnet follows chains of "
                "layers and Inception modules only"
            )


def project(trace: Trace, layer: str, signal: Tensor, rows: Tensor | None = None) -> Tensor:
    """Project a map at `layer`'s output back to the input (pixel) space.

    `signal`: M x C x H x W, shaped like the layer's output. `rows`: for each of the M maps, the
    image of the traced batch whose switches to use (default: row i uses image i, or image 0
    for all when one image was traced).
    """
    path = path_to(trace, layer)
    check_chain(path)
    for item in reversed(path):
        if isinstance(item, Concat):
            signal = undo_concat(item, signal, rows)
        else:
            signal = undo_step(item, signal, rows)
    return signal


# --- one image, a few channels ---------------------------------------------------------------


def one_hot(shape: Sequence[int], channel: int, position: tuple[int, int], value: float) -> Tensor:
    """A C x H x W map that is zero except `value` at (channel, y, x): ZFNet's starting point."""
    out = torch.zeros(*shape)
    out[channel, position[0], position[1]] = value
    return out


def strongest_position(fmap: Tensor) -> tuple[tuple[int, int], float]:
    """(y, x) and value of the maximum of one H x W map."""
    flat = int(fmap.argmax())
    w = fmap.shape[-1]
    return (flat // w, flat % w), float(fmap.flatten()[flat])


@dataclass
class Reconstruction:
    """The deconvnet projection of one activation."""

    layer: str
    channel: int
    position: tuple[int, int]  # (y, x) in the layer's output
    value: float  # the activation
    image: Tensor  # 3 x H x W, in the network's input space (its channel order)


def check_channels(trace: Trace, layer: str, channels: Sequence[int]) -> int:
    """The layer's channel count; raise if a channel is out of range or the output not 4-D."""
    shape = trace.shapes.get(layer)
    if shape is None or len(shape) != 4:
        raise VisualizeError(
            f"layer {layer!r} has no feature maps (output {shape}); "
            f"use one of: {', '.join(trace.layers)}"
        )
    bad = [c for c in channels if not 0 <= c < shape[1]]
    if bad:
        raise VisualizeError(f"layer {layer!r} has channels 0-{shape[1] - 1}, got {bad[0]}")
    return shape[1]


def deconv(
    model: nn.Module,
    x: Tensor,
    layer: str,
    channels: Sequence[int],
    positions: Sequence[tuple[int, int] | None] | None = None,
) -> list[Reconstruction]:
    """Project activations of `layer` in one image `x` (3 x H x W) back to pixels.

    For each channel, the activation at its position (default: where the channel is strongest)
    is kept and everything else in the layer set to zero (ZFNet section 2.1).
    """
    device = next(model.parameters()).device
    trace = record(model, x.unsqueeze(0).to(device), keep=[layer])
    check_channels(trace, layer, channels)
    fmap = trace.outputs[layer][0]
    positions = positions or [None] * len(channels)
    found = []
    for channel, position in zip(channels, positions, strict=True):
        if position is None:
            position, value = strongest_position(fmap[channel])
        else:
            value = float(fmap[channel, position[0], position[1]])
        found.append((channel, position, value))
    signal = torch.stack([one_hot(fmap.shape, c, p, v) for c, p, v in found]).to(device)
    with torch.no_grad():
        images = project(trace, layer, signal).cpu()
    return [
        Reconstruction(layer, c, p, v, image)
        for (c, p, v), image in zip(found, images, strict=True)
    ]


# --- receptive fields --------------------------------------------------------------------------


def _widen(step: Step, lo: list[int], hi: list[int]) -> None:
    m = step.module
    if isinstance(m, nn.Conv2d):
        k, s, p, d = _pair(m.kernel_size), _pair(m.stride), _conv_padding(m), _pair(m.dilation)
    elif isinstance(m, nn.MaxPool2d):
        k, s, p, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation)
    else:
        return  # pointwise in space (ReLU, LRN across channels, BatchNorm, Dropout)
    for i in range(2):
        lo[i] = lo[i] * s[i] - p[i]
        hi[i] = hi[i] * s[i] - p[i] + d[i] * (k[i] - 1)


def _widen_all(items: Sequence[Item], lo: list[int], hi: list[int], branch: int | None) -> None:
    for item in reversed(items):
        if isinstance(item, Step):
            _widen(item, lo, hi)
            continue
        chosen = item.branches if branch is None else [item.branches[branch]]
        boxes = []
        for steps in chosen:
            blo, bhi = list(lo), list(hi)
            _widen_all(steps, blo, bhi, None)
            boxes.append((blo, bhi))
        lo[:] = [min(b[0][i] for b in boxes) for i in range(2)]
        hi[:] = [max(b[1][i] for b in boxes) for i in range(2)]
        branch = None


def receptive_field(
    trace: Trace, layer: str, position: tuple[int, int], channel: int | None = None
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the input pixels that can reach one activation of `layer`.

    From the layer arithmetic alone; bottom and right are exclusive, the box is not clipped to
    the image. With `channel` at a concat module's output, only its branch counts.
    """
    items = path_to(trace, layer)
    check_chain(items)
    branch = None
    last = items[-1]
    if isinstance(last, Concat) and channel is not None:
        ends = torch.tensor(last.widths).cumsum(0)
        branch = int((ends <= channel).sum())
    lo, hi = [position[0], position[1]], [position[0], position[1]]
    _widen_all(items, lo, hi, branch)
    return lo[0], lo[1], hi[0] + 1, hi[1] + 1
