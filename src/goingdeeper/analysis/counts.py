"""One forward pass watched layer by layer: which leaf modules ran, their shapes and their
multiply-adds; the parameters and MACs of a network, and of a training step.

MACs count the multiply-adds of convolutions and linear layers (Table 1's "ops"); FLOPs are
2 x MACs and are always named as such. Counts are per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.base import example_input, unfused


@dataclass
class Leaf:
    """One executed leaf module (a convolution, a pool, ...)."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    input_needs_grad: bool = False  # only traced with `grad=True`


def _macs(module: nn.Module, out: Tensor) -> int:
    """Multiply-adds of one call of a leaf module, per image. A custom layer reports its own
    through a `count_macs(out) -> int` method (per image)."""
    if hasattr(module, "count_macs"):
        return int(module.count_macs(out))
    if isinstance(module, nn.Conv2d):
        per_output = (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        )
        return out[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def trace(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    aux: bool = False,
    in_channels: int | None = None,
) -> list[Leaf]:
    """Run one image through `model` and record every leaf module that executed, in order.

    With `aux` the model runs in training mode (BatchNorm kept in eval mode, nothing updated),
    so that training-only heads execute too. The image has `in_channels` planes, by default
    the model's `in_channels` attribute where it has one (LeNet: 1), else 3.
    """
    return trace_layers(model, input_size, aux=aux, in_channels=in_channels)[0]


def trace_layers(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    aux: bool = False,
    in_channels: int | None = None,
    grad: bool = False,
) -> tuple[list[Leaf], dict[str, tuple[int, ...]]]:
    """`trace`, plus the output shape of every container; with `grad` the forward pass runs
    with autograd on, so each leaf records whether its input needed a gradient."""
    leaves: list[Leaf] = []
    outputs: dict[str, tuple[int, ...]] = {}  # output shape of every module that ran
    handles = []
    names = {m: n for n, m in model.named_modules()}
    was_training = {m: m.training for m in model.modules()}

    def hook(module: nn.Module, inputs: tuple, out: Tensor) -> None:
        if isinstance(out, Tensor):
            leaves.append(
                Leaf(
                    names[module],
                    module,
                    tuple(inputs[0].shape[1:]),
                    tuple(out.shape[1:]),
                    _macs(module, out),
                    inputs[0].requires_grad,
                )
            )

    def container_hook(module: nn.Module, inputs: tuple, out: Tensor) -> None:
        if isinstance(out, Tensor):
            outputs[names[module]] = tuple(out.shape[1:])

    for m in model.modules():
        if not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(hook))
        elif m is not model:
            handles.append(m.register_forward_hook(container_hook))
    try:
        model.train(aux)
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.eval()
        x = example_input(model, 2 if aux else 1, input_size, channels=in_channels)
        with torch.set_grad_enabled(grad), unfused(model):  # every leaf runs as its module
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for m, t in was_training.items():
            m.training = t
    for leaf in leaves:
        outputs[leaf.name] = leaf.out_shape
    return leaves, outputs


def count_params_macs(model: nn.Module, input_size: int) -> tuple[int, int]:
    """Parameters and per-image MACs of the inference network (training-only heads left out)."""
    leaves = trace(model, input_size)
    executed = {id(p) for leaf in leaves for p in leaf.module.parameters()}
    params = sum(p.numel() for p in model.parameters() if id(p) in executed)
    return params, sum(leaf.macs for leaf in leaves)


def training_step_macs(model: nn.Module, input_size: int) -> dict[str, int]:
    """Per-image multiply-adds of one training step of `model` (training-only heads included).

    Backward costs, for every convolution and linear layer, one pass as large as its forward
    for the weight gradient and one more for the input gradient, which autograd skips where the
    layer's input needs none (a first layer reading the image). Returns the three parts, their
    sum and the convolutions' share of it: {"forward", "weight_grad", "input_grad", "total",
    "convolution"}.
    """
    leaves = trace_layers(model, input_size, aux=True, grad=True)[0]

    def weight_grad(leaf: Leaf) -> int:
        return leaf.macs if leaf.module.weight.requires_grad else 0

    def input_grad(leaf: Leaf) -> int:
        return leaf.macs if leaf.input_needs_grad else 0

    weighted = [lf for lf in leaves if isinstance(lf.module, (nn.Conv2d, nn.Linear))]
    parts = {
        "forward": sum(leaf.macs for leaf in leaves),
        "weight_grad": sum(weight_grad(lf) for lf in weighted),
        "input_grad": sum(input_grad(lf) for lf in weighted),
    }
    convs = [lf for lf in weighted if isinstance(lf.module, nn.Conv2d)]
    return {
        **parts,
        "total": sum(parts.values()),
        "convolution": sum(lf.macs + weight_grad(lf) + input_grad(lf) for lf in convs),
    }
