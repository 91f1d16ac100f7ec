"""Exact graph rewrites for speed: BatchNorm folded into the convolution before it, and the
1x1 convolutions of an Inception module that read the same input run as one convolution.

Folding. In eval mode a BatchNorm after a convolution is an affine map per output channel,
    y = gamma * (W x + b - mean) / sqrt(var + eps) + beta,
so it folds into the convolution: W' = W * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var
+ eps). Which BatchNorm follows which convolution is read off one traced forward pass, not off
module names: a pair folds only when the BatchNorm's input is the convolution's output
untouched (same autograd node, so no in-place op came between) and nothing else reads that
output (the node has a single consumer in the autograd graph).

Fusing. In Fig. 2(b) of the paper the 1x1 branch, the 3x3 reduction and the 5x5 reduction all
read the module's input. Their filters stacked along the output axis make one convolution
whose output, split by channel, is the three results: exact, because every output channel of
a convolution (and of a BatchNorm and a ReLU after it) depends on its own filter only. This
holds in training too (BatchNorm's batch statistics are per channel), so `FusedInception`
trains, and its state dict is written and read in the plain layout.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

import torch
from torch import Tensor, nn

from ..models.base import unfused
from ..models.inception import ConvReLU, Inception

# --- BatchNorm folding -----------------------------------------------------------------------


def conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(convolution, BatchNorm) module names where the BatchNorm reads only that conv's output.

    Runs `model` once on `example` with autograd recording (in the model's current mode).
    """
    names = {module: name for name, module in model.named_modules()}
    calls: Counter[nn.Module] = Counter()
    made_by: dict[int, str] = {}  # id(autograd node of a conv output) -> conv name
    nodes: list = []  # keep the nodes alive, so that no id is reused during the pass
    found: list[tuple[str, str, int]] = []

    def after_conv(module: nn.Module, inputs, output: Tensor) -> None:
        calls[module] += 1
        if output.grad_fn is not None:
            nodes.append(output.grad_fn)
            made_by[id(output.grad_fn)] = names[module]

    def before_bn(module: nn.Module, inputs) -> None:
        calls[module] += 1
        node = inputs[0].grad_fn
        if node is not None and id(node) in made_by:
            found.append((made_by[id(node)], names[module], id(node)))

    handles = []
    for module in model.modules():
        if type(module) is nn.Conv2d:
            handles.append(module.register_forward_hook(after_conv))
        elif type(module) is nn.BatchNorm2d:
            handles.append(module.register_forward_pre_hook(before_bn))
    requires = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(True)  # conv outputs need an autograd node to be recognised
        with torch.enable_grad(), unfused(model):  # every convolution runs as its module
            output = model(example)
        consumers = _consumer_counts(output)
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in requires.items():
            p.requires_grad_(flag)
    pairs = []
    for conv, bn, node in found:
        once = calls[model.get_submodule(conv)] == 1 and calls[model.get_submodule(bn)] == 1
        if once and consumers[node] == 1:
            pairs.append((conv, bn))
    return pairs


def _consumer_counts(output) -> Counter[int]:
    """For each autograd node reachable from `output`: how many node inputs read it."""
    outputs = output if isinstance(output, tuple | list) else [output]
    stack = [t.grad_fn for t in outputs if isinstance(t, Tensor) and t.grad_fn is not None]
    seen = {id(n) for n in stack}
    counts: Counter[int] = Counter()
    keep = list(stack)
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            counts[id(child)] += 1
            if id(child) not in seen:
                seen.add(id(child))
                keep.append(child)
                stack.append(child)
    return counts


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing bn(conv(x)) with BatchNorm's running statistics."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    w = conv.weight.double()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    folded.weight.copy_(w * scale.view(-1, 1, 1, 1))
    folded.bias.copy_(bias)
    return folded


def fold_batchnorm(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """Fold, in place, every BatchNorm that directly follows a convolution; such a BatchNorm
    becomes `nn.Identity`. `model` must be in eval mode. Returns the folded pairs."""
    if model.training:
        raise ValueError("fold_batchnorm needs an eval-mode model: call model.eval() first")
    pairs = conv_bn_pairs(model, example)
    for conv_name, bn_name in pairs:
        folded = fold_bn_into_conv(model.get_submodule(conv_name), model.get_submodule(bn_name))
        _replace(model, conv_name, folded)
        _replace(model, bn_name, nn.Identity())
    return pairs


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# --- the Inception module's 1x1 convolutions as one ------------------------------------------

_PARTS = ("branch1x1.", "branch3x3.reduce.", "branch5x5.reduce.")  # plain-layout key prefixes


class FusedInception(nn.Module):
    """An Inception module (Fig. 2b) whose 1x1 branch, 3x3 reduction and 5x5 reduction run as
    one 1x1 convolution (`reduce`), its output split by channel. Same arithmetic, same state
    dict keys as the `Inception` (or `SEInception`) it was made from."""

    def __init__(self, inception: Inception) -> None:
        super().__init__()
        ch1x1, ch3x3red, _, ch5x5red, _, _ = inception.widths
        if ch3x3red is None or ch5x5red is None:
            raise ValueError("a naive Inception module (Fig. 2a) has no 1x1 reductions to fuse")
        self.layout = type(inception)  # what `unfuse` rebuilds
        self.in_channels = inception.in_channels
        self.widths = inception.widths
        self.out_channels = inception.out_channels
        self.splits = (ch1x1, ch3x3red, ch5x5red)
        parts = [inception.branch1x1, inception.branch3x3.reduce, inception.branch5x5.reduce]
        self.reduce = concat_conv_relu(parts)
        # the 3x3 and 5x5 branches keep their `conv` under the same names, minus the reduction
        self.branch3x3 = nn.Sequential(OrderedDict(conv=inception.branch3x3.conv))
        self.branch5x5 = nn.Sequential(OrderedDict(conv=inception.branch5x5.conv))
        self.branch_pool = inception.branch_pool
        self.se = getattr(inception, "se", None)  # SE-Inception (SENet Fig. 2)
        self.register_state_dict_post_hook(_split_state)
        self.register_load_state_dict_pre_hook(_join_state)

    def forward(self, x: Tensor) -> Tensor:
        y1x1, y3x3, y5x5 = torch.split(self.reduce(x), self.splits, dim=1)
        out = torch.cat([y1x1, self.branch3x3(y3x3), self.branch5x5(y5x5), self.branch_pool(x)], 1)
        return out if self.se is None else self.se(out)

    def unfuse(self) -> Inception:
        """The module in the plain layout (the class it was made from), same weights."""
        plain = self.layout.__new__(self.layout)
        nn.Module.__init__(plain)
        plain.in_channels, plain.widths = self.in_channels, self.widths
        plain.out_channels = self.out_channels
        branch1x1, reduce3x3, reduce5x5 = split_conv_relu(self.reduce, self.splits)
        plain.branch1x1 = branch1x1
        plain.branch3x3 = nn.Sequential(OrderedDict(reduce=reduce3x3, conv=self.branch3x3.conv))
        plain.branch5x5 = nn.Sequential(OrderedDict(reduce=reduce5x5, conv=self.branch5x5.conv))
        plain.branch_pool = self.branch_pool
        if self.se is not None:
            plain.se = self.se
        return plain.train(self.training)


def _split_state(module: FusedInception, state: dict, prefix: str, metadata) -> None:
    """state_dict(): `reduce.*` written as the three plain-layout 1x1 convolutions."""
    for key in [k for k in state if k.startswith(prefix + "reduce.")]:
        value, rest = state.pop(key), key[len(prefix + "reduce.") :]
        pieces = [value] * 3 if value.dim() == 0 else torch.split(value, module.splits)
        for part, piece in zip(_PARTS, pieces, strict=True):
            state[prefix + part + rest] = piece.clone()  # own storage: safetensors wants that


def _join_state(module: FusedInception, state: dict, prefix: str, *args) -> None:
    """load_state_dict(): the three plain-layout 1x1 convolutions read into `reduce.*`."""
    first = prefix + _PARTS[0]
    for key in [k for k in state if k.startswith(first)]:
        rest = key[len(first) :]
        keys = [prefix + part + rest for part in _PARTS]
        if not all(k in state for k in keys):
            continue  # left for load_state_dict to report as missing
        pieces = [state.pop(k) for k in keys]
        state[prefix + "reduce." + rest] = pieces[0] if pieces[0].dim() == 0 else torch.cat(pieces)


@torch.no_grad()
def concat_conv_relu(parts: list[ConvReLU]) -> ConvReLU:
    """One ConvReLU whose output channels are those of `parts`, in order."""
    first = parts[0]
    if not all(isinstance(p, ConvReLU) for p in parts):
        raise TypeError("only ConvReLU layers (conv, optional BatchNorm, ReLU) can be fused")
    conv, bn = first.conv, first.bn
    same = {(p.conv.kernel_size, p.conv.stride, p.conv.padding, p.conv.bias is None) for p in parts}
    same_bn = {None if p.bn is None else (p.bn.eps, p.bn.momentum, p.bn.affine) for p in parts}
    if len(same) != 1 or len(same_bn) != 1:
        raise ValueError("the convolutions to fuse differ in shape, bias or BatchNorm settings")
    if bn is not None and not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"cannot fuse a {type(bn).__name__} after the convolution")
    fused = ConvReLU(
        conv.in_channels,
        sum(p.conv.out_channels for p in parts),
        1,
        batch_norm=bn is not None,
        bn_eps=bn.eps if bn is not None else 1e-5,
        bias=conv.bias is not None,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    fused.conv.weight.copy_(torch.cat([p.conv.weight for p in parts]))
    if conv.bias is not None:
        fused.conv.bias.copy_(torch.cat([p.conv.bias for p in parts]))
    if bn is not None:
        fused.bn.momentum = bn.momentum
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(fused.bn, name).copy_(torch.cat([getattr(p.bn, name) for p in parts]))
        fused.bn.num_batches_tracked.copy_(bn.num_batches_tracked)
    return fused


@torch.no_grad()
def split_conv_relu(fused: ConvReLU, splits: tuple[int, ...]) -> list[ConvReLU]:
    """The inverse of `concat_conv_relu`."""
    conv, bn = fused.conv, fused.bn
    parts = []
    start = 0
    for width in splits:
        part = ConvReLU(
            conv.in_channels,
            width,
            1,
            batch_norm=isinstance(bn, nn.BatchNorm2d),
            bn_eps=bn.eps if isinstance(bn, nn.BatchNorm2d) else 1e-5,
            bias=conv.bias is not None,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        part.conv.weight.copy_(conv.weight[start : start + width])
        if conv.bias is not None:
            part.conv.bias.copy_(conv.bias[start : start + width])
        if isinstance(bn, nn.BatchNorm2d):
            part.bn.momentum = bn.momentum
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(part.bn, name).copy_(getattr(bn, name)[start : start + width])
            part.bn.num_batches_tracked.copy_(bn.num_batches_tracked)
        elif bn is not None:  # folded away (nn.Identity)
            part.bn = nn.Identity()
        parts.append(part.train(fused.training))
        start += width
    return parts


def fuse_inception_1x1(model: nn.Module) -> nn.Module:
    """Replace, in place, every Inception module of `model` (those with 1x1 reductions) by its
    `FusedInception` form; works in training mode. Returns `model`."""
    for name, module in list(model.named_modules()):
        if isinstance(module, Inception) and module.widths[1] is not None:  # not Fig. 2(a)
            _replace(model, name, FusedInception(module).train(module.training))
    return model


def unfuse_inception_1x1(model: nn.Module) -> nn.Module:
    """Undo `fuse_inception_1x1` in place: plain Inception modules again. Returns `model`."""
    for name, module in list(model.named_modules()):
        if isinstance(module, FusedInception):
            _replace(model, name, module.unfuse())
    return model
