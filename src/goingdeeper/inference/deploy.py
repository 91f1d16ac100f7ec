"""From a model (registry name or weights file) to a deployable file: ONNX fp32 or int8, or a
`torch.export` program; and the cached ONNX that `predict --runtime onnxruntime` runs."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..export import export_onnx, for_inference
from ..preprocess import Preprocessing
from .quantize import calibration_images, image_batches, quantize_onnx
from .runtime import OnnxRuntimeModel, optimize_for_inference


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
    channels = getattr(model, "in_channels", 3)
    example = torch.zeros(1, channels, input_size, input_size)
    return optimize_for_inference(model, example, fuse_1x1=fuse_1x1, channels_last=False).net


def write_onnx(
    model: nn.Module,
    out: str | Path,
    input_size: int,
    *,
    fused: bool = True,
    fuse_1x1: bool = False,
    int8_calibration: list[Path] | None = None,
    preprocessing: Preprocessing | None = None,
) -> Path:
    """Export `model` (`deployable`'s graph) to ONNX at `out`; with `int8_calibration` images
    (and the weights' `preprocessing`), quantize it to int8 (QDQ) calibrated on them."""
    net = deployable(model, input_size, fused=fused, fuse_1x1=fuse_1x1)
    if int8_calibration is None:
        return export_onnx(net, out, input_size)
    if preprocessing is None:
        raise ValueError("int8 calibration needs the weights' preprocessing")
    preprocessing = preprocessing.scaled(input_size)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, Path(tmp) / "fp32.onnx", input_size)
        return quantize_onnx(fp32, out, image_batches(int8_calibration, preprocessing))


def write_program(
    model: nn.Module, out: str | Path, input_size: int, *, fused: bool, fuse_1x1: bool = False
) -> Path:
    """Save a `torch.export` program of the inference graph (load with torch.export.load)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = deployable(model, input_size, fused=fused, fuse_1x1=fuse_1x1)
    example = torch.zeros(1, getattr(net, "in_channels", 3), input_size, input_size)
    torch.export.save(torch.export.export(net, (example,)), str(out))
    return out


def cache_dir() -> Path:
    """Where exported graphs are kept: $GOINGDEEPER_CACHE, else ~/.cache/goingdeeper."""
    root = os.environ.get("GOINGDEEPER_CACHE") or Path.home() / ".cache" / "goingdeeper"
    return Path(root) / "onnx"


def _fingerprint(weights: Path) -> str:
    """Size and modification time of a weights file, or of every file of a blob folder."""
    files = sorted(f for f in weights.rglob("*") if f.is_file()) if weights.is_dir() else [weights]
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def onnxruntime_model(
    model: nn.Module, weights: str | Path, input_size: int, *, threads: int | None = None
) -> OnnxRuntimeModel:
    """The folded graph of `model` (loaded from `weights`, a file or a BVLC blob folder) in ONNX
    Runtime with `threads` intra-op threads (default: ONNX Runtime's); the ONNX file is exported
    once and cached under `cache_dir()`, keyed by the weights' path, sizes and modification
    times."""
    weights = Path(weights).resolve()
    key = f"{weights}|{_fingerprint(weights)}|{input_size}|folded|{torch.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"{weights.stem}-{input_size}-{digest}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        write_onnx(model, partial, input_size, fused=True)
        partial.replace(path)  # atomic: a concurrent run sees the whole file or none
    return OnnxRuntimeModel(path, threads=threads)


__all__ = [
    "cache_dir",
    "calibration_images",
    "deployable",
    "onnxruntime_model",
    "write_onnx",
    "write_program",
]
