"""The inference form of a model and the runtimes that run it: PyTorch (fp32 or bf16,
channels-last, optionally compiled, CPU or CUDA), ONNX Runtime and OpenVINO.

    net = optimize_for_inference(model)             # eval copy: no aux heads, BN folded,
    logits = net(images)                            # Inception 1x1s fused, channels-last
    path = export_onnx(net.net, "googlenet.onnx")   # the same graph for other runtimes
    logits = OnnxRuntimeModel(path)(images)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..export import for_inference
from .fuse import fold_batchnorm, fuse_inception_1x1


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
    """Runs `module` in float32 inside a lower-precision network: PyTorch's CPU LRN (an
    avg_pool3d underneath) has no bfloat16 kernel."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.float()).to(x.dtype)


def example_input(model: nn.Module, batch: int = 1) -> Tensor:
    """A zero batch the model accepts: its own planes, its smallest (or fixed) input size."""
    channels = getattr(model, "in_channels", 3)
    size = getattr(model, "min_size", None) or getattr(model, "input_size", None) or 224
    return torch.zeros(batch, channels, size, size)


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
            if isinstance(module, nn.LocalResponseNorm):
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


# --- ONNX Runtime and OpenVINO ---------------------------------------------------------------


class _Runtime:
    """What `evaluate` asks of a model besides calling it: inference mode, always."""

    training = False

    def eval(self) -> _Runtime:
        return self

    def train(self, mode: bool = True) -> _Runtime:
        if mode:
            raise RuntimeError(f"{type(self).__name__} runs inference only; it cannot train")
        return self


class OnnxRuntimeModel(_Runtime):
    """An ONNX file run by ONNX Runtime on the CPU: N x C x H x W tensor in, logits out."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def __call__(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.numpy(x.detach().float().cpu().numpy()))


class OpenVINOModel(_Runtime):
    """An ONNX (or OpenVINO IR) file compiled by OpenVINO for the CPU; `precision` is the
    inference precision hint ("f32" or "bf16"; int8 comes from a quantized file)."""

    def __init__(
        self, path: str | Path, *, precision: str = "f32", threads: int | None = None
    ) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def numpy(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return np.asarray(result[self.compiled.output(0)])

    def __call__(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.numpy(x.detach().float().cpu().numpy()).copy())
