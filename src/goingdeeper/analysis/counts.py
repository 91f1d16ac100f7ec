"""The parameters and multiply-adds of a network, and of a training step, read from one traced
forward pass (`analysis.trace.record`).

MACs count the multiply-adds of convolutions and linear layers (Table 1's "ops"); FLOPs are
2 x MACs and are always named as such. Counts are per image.
"""

from __future__ import annotations

from torch import nn

from ..models.base import example_input
from .trace import Step, Trace, record


def forward_trace(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    aux: bool = False,
    in_channels: int | None = None,
    grad: bool = False,
) -> Trace:
    """Run one image through `model` and record every leaf module that executed, in order,
    and the output shape of every module (`Trace.steps`, `Trace.shapes`, batch first).

    With `aux` the model runs in training mode on two images (BatchNorm kept in eval mode,
    nothing updated), so that training-only heads execute too. The image has `in_channels`
    planes, by default the model's `in_channels` attribute where it has one (LeNet: 1), else 3.
    With `grad` the forward pass runs with autograd on, so each step records whether its input
    needed a gradient.
    """
    x = example_input(model, 2 if aux else 1, input_size, channels=in_channels)
    return record(model, x, train=aux, grad=grad)


def count_params_macs(model: nn.Module, input_size: int) -> tuple[int, int]:
    """Parameters and per-image MACs of the inference network (training-only heads left out)."""
    steps = forward_trace(model, input_size).steps
    executed = {id(p) for step in steps for p in step.module.parameters()}
    params = sum(p.numel() for p in model.parameters() if id(p) in executed)
    return params, sum(step.macs for step in steps)


def training_step_macs(model: nn.Module, input_size: int) -> dict[str, int]:
    """Per-image multiply-adds of one training step of `model` (training-only heads included).

    Backward costs, for every convolution and linear layer, one pass as large as its forward
    for the weight gradient and one more for the input gradient, which autograd skips where the
    layer's input needs none (a first layer reading the image). Returns the three parts, their
    sum and the convolutions' share of it: {"forward", "weight_grad", "input_grad", "total",
    "convolution"}.
    """
    steps = forward_trace(model, input_size, aux=True, grad=True).steps

    def weight_grad(step: Step) -> int:
        return step.macs if step.module.weight.requires_grad else 0

    def input_grad(step: Step) -> int:
        return step.macs if step.input_needs_grad else 0

    weighted = [s for s in steps if isinstance(s.module, (nn.Conv2d, nn.Linear))]
    parts = {
        "forward": sum(step.macs for step in steps),
        "weight_grad": sum(weight_grad(s) for s in weighted),
        "input_grad": sum(input_grad(s) for s in weighted),
    }
    convs = [s for s in weighted if isinstance(s.module, nn.Conv2d)]
    return {
        **parts,
        "total": sum(parts.values()),
        "convolution": sum(s.macs + weight_grad(s) + input_grad(s) for s in convs),
    }
