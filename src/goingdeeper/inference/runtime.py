"""Runtimes for exported graphs: ONNX Runtime and OpenVINO, each behind the call that
`evaluate` and `predict` make of a PyTorch model (N x C x H x W tensor in, logits out).

    path = export_onnx(optimize_for_inference(model).net, "googlenet.onnx")
    logits = OnnxRuntimeModel(path)(images)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


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
