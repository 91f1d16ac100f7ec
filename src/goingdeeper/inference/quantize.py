"""int8 post-training static quantization of an ONNX graph with ONNX Runtime.

QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantized operator, which both
ONNX Runtime and OpenVINO read), weights int8 per output channel, activations uint8 with
ranges calibrated on real images (min/max by default). uint8 activations with int8 weights
is what ONNX Runtime's x86 kernels are built for; on CPUs without VNNI their 16-bit
accumulation of u8 x s8 pairs can saturate, which `reduce_range` (7-bit weights) avoids.
It is on by default: on this project's AVX2 machine (AMD EPYC, no VNNI) BVLC GoogLeNet lost
8 points of top-1 on imagenet-sample without it (74.9% -> 66.9%), and 0.3 with it (74.6%;
benchmarks/results/inference.md).

Only the operators in `OP_TYPES` are quantized. The exporter writes LRN (the paper's
GoogLeNet has two) as elementwise Mul/Pow/Add/Div on x^2 * 1e-4, values that 8 bits cannot
hold: quantizing those (ONNX Runtime's default list includes them) took BVLC GoogLeNet from
75% to 16% top-1 on imagenet-sample. Leaving them in fp32 costs little; they are 2 of ~120.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import ArgumentError
from ..files import atomic_write
from ..images import folder_images, load_image
from ..preprocess import Preprocessing

# convolutions, the classifier, and the data movement between them (so int8 flows through)
OP_TYPES = ("Conv", "Gemm", "MatMul", "MaxPool", "Concat", "Split", "Reshape", "Flatten")


class _Batches:
    """onnxruntime.quantization.CalibrationDataReader over an iterable of N x C x H x W."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray | torch.Tensor]) -> None:
        self.input_name = input_name
        self.batches: Iterator = iter(batches)

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().float().cpu().numpy()
        return {self.input_name: np.ascontiguousarray(batch, np.float32)}


def quantize_onnx(
    source: str | Path,
    out: str | Path,
    calibration: Iterable[np.ndarray | torch.Tensor],
    *,
    per_channel: bool = True,
    reduce_range: bool = True,
    method: str = "minmax",
    op_types: tuple[str, ...] | None = None,
) -> Path:
    """Write an int8 (QDQ) version of the fp32 ONNX file `source` to `out`, calibrated on the
    input batches of `calibration`; `method` is "minmax", "entropy" or "percentile"."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ArgumentError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    out = Path(out)
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference and constant folding first, as ONNX Runtime's docs ask
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        atomic_write(
            out,
            lambda partial: quantize_static(
                str(prepared),
                partial,
                _Batches(input_name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                op_types_to_quantize=list(OP_TYPES if op_types is None else op_types),
            ),
        )
    return out


def image_batches(
    paths: list[Path], preprocessing: Preprocessing, batch_size: int = 16
) -> Iterator[torch.Tensor]:
    """Preprocessed images in batches (for calibration): center crop, the weights' transform."""
    for start in range(0, len(paths), batch_size):
        yield torch.stack([preprocessing(load_image(p)) for p in paths[start : start + batch_size]])


def calibration_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files under `folder` (recursively), sorted, the first `limit` of them."""
    paths = folder_images(folder, "calibration images")
    return paths[:limit] if limit else paths
