"""The inference form of a model in PyTorch: training-only heads removed, BatchNorm folded,
the Inception 1x1s fused, channels-last, fp32 or bf16, optionally compiled, CPU or CUDA.

    net = optimize_for_inference(model)             # eval copy: no aux heads, BN folded,
    logits = net(images)                            # Inception 1x1s fused, channels-last
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..models.base import Classifier, example_input
from .fuse import fold_batchnorm, fuse_inception_1x1


def for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy without the model's training-only heads (GoogLeNet's aux1/aux2), so
    that they appear in no inference or exported graph, not even as unused inputs."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, Classifier):
        model.remove_aux_heads()
    return model


class InferenceModel(nn.Module):
    """`net` behind an input conversion (device, dtype, memory format); returns fp32 logits."""

    def __init__(
        self,
        net: nn.Module,
        *,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.device = torch.device(device)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)
        return self.net(x).float()


class Float32(nn.Module):
    """Runs `module` in float32 inside a lower-precision network: PyTorch's own CPU LRN (an
    avg_pool3d underneath) has no bfloat16 kernel, and its fp16 squares overflow. The
    package's `LocalResponseNorm` needs no such wrapper."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.float()).to(x.dtype)


def optimize_for_inference(
    model: nn.Module,
    example: Tensor | None = None,
    *,
    fuse_1x1: bool = True,
    fold_bn: bool = True,
    channels_last: bool = True,
    dtype: torch.dtype | None = None,
    compile: bool = False,
    device: torch.device | str = "cpu",
) -> InferenceModel:
    """A new eval-mode module computing what `model` computes in eval mode, faster.

    Aux heads are dropped, each Inception module's three 1x1 convolutions on its input run as
    one (`fuse_1x1`), every BatchNorm right after a convolution is folded into it (`fold_bn`;
    found by tracing `example`, by default a zero batch at the model's smallest input size),
    weights are stored channels-last and, with `dtype=torch.bfloat16` (or float16 on CUDA), in
    that type. `compile` wraps the network in `torch.compile`. `model` is not modified.
    """
    net = for_inference(model)  # a copy in eval mode, without aux1/aux2
    if fuse_1x1:
        fuse_inception_1x1(net)
    if fold_bn:
        fold_batchnorm(net, example_input(net) if example is None else example)
    if dtype not in (None, torch.float32):
        for name, module in list(net.named_modules()):
            if type(module) is nn.LocalResponseNorm:  # ours computes in bf16 and fp16 itself
                parent, _, child = name.rpartition(".")
                setattr(net.get_submodule(parent) if parent else net, child, Float32(module))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device=device, dtype=dtype or torch.float32, memory_format=memory_format)
    for p in net.parameters():
        p.requires_grad_(False)
    if compile:
        net = torch.compile(net)
    return InferenceModel(
        net, dtype=dtype or torch.float32, channels_last=channels_last, device=device
    ).eval()


def deployable(
    model: nn.Module, input_size: int, *, fused: bool, fuse_1x1: bool = False
) -> nn.Module:
    """The graph to export, in eval mode without aux heads: with `fused`, every BatchNorm folded
    into its convolution (contiguous weights); with `fuse_1x1` as well, each Inception module's
    three 1x1 convolutions on its input as one convolution and a Split. That fusion pays in
    PyTorch but not in ONNX Runtime, whose blocked channel layout (NCHWc) has no Split: it
    wraps each one in layout reorders (62 in GoogLeNet), and the graph ran about 10% slower than
    the unfused one there, so exports leave it out unless asked."""
    if not fused:
        return for_inference(model)
    example = example_input(model, 1, input_size)
    return optimize_for_inference(model, example, fuse_1x1=fuse_1x1, channels_last=False).net
