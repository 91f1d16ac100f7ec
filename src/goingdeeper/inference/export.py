"""Inference graphs as files: `torch.export` programs, TorchScript and ONNX (fp32, or int8
calibrated on images), always without the training-only heads; and the cached ONNX that
`predict` and `eval --runtime onnxruntime` run.

One graph in every form: `deployable` gives it (plain, or BatchNorm folded and optionally the
Inception 1x1s fused), the writers here serialise it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ArgumentError
from ..files import atomic_write
from ..models.base import example_input
from ..preprocess import Preprocessing
from .optimize import deployable, for_inference
from .quantize import image_batches, quantize_onnx
from .runtime import OnnxRuntimeModel

log = logging.getLogger(__name__)


def export_program(model: nn.Module, input_size: int = 224) -> torch.export.ExportedProgram:
    """A `torch.export` program of the inference graph (no aux heads), batch 1."""
    model = for_inference(model)
    return torch.export.export(model, (example_input(model, 1, input_size),))


def torchscript(model: nn.Module, input_size: int = 224) -> torch.jit.ScriptModule:
    """A TorchScript module of the inference graph, traced in eval mode at batch 1: its outputs
    equal the eager model's at other batch sizes and input sizes (tested for every registered
    model). Tracing, not scripting: the models check their input and branch on training mode
    in Python, which a trace of the eval graph leaves out."""
    model = for_inference(model)
    with torch.no_grad(), warnings.catch_warnings():
        # the input checks compare sizes in Python: the trace keeps their outcome, as meant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model, example_input(model, 1, input_size), check_trace=False)


def write_torchscript(model: nn.Module, out: str | Path, input_size: int = 224) -> Path:
    """Save `torchscript(model)` to `out` (load with torch.jit.load, no goingdeeper needed)."""
    out = Path(out)
    traced = torchscript(model, input_size)
    atomic_write(out, lambda tmp: traced.save(tmp))
    return out


def onnx_program(
    model: nn.Module, input_size: int = 224, *, dynamic_batch: bool = True
) -> torch.onnx.ONNXProgram:
    """The inference graph as ONNX (dynamo exporter); the batch dimension is dynamic by
    default. `.model_proto` is the ONNX model, `.save(path)` writes it."""
    model = for_inference(model)
    example = example_input(model, 2, input_size)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    return torch.onnx.export(
        model,
        (example,),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=shapes,
        dynamo=True,
        verbose=False,
    )


def export_onnx(
    model: nn.Module, path: str | Path, input_size: int = 224, *, dynamic_batch: bool = True
) -> Path:
    """Write an ONNX file of the inference graph; the batch dimension is dynamic by default."""
    path = Path(path)
    program = onnx_program(model, input_size, dynamic_batch=dynamic_batch)
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
    return path


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
        raise ArgumentError("int8 calibration needs the weights' preprocessing")
    preprocessing = preprocessing.scaled(input_size)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, Path(tmp) / "fp32.onnx", input_size)
        return quantize_onnx(fp32, out, image_batches(int8_calibration, preprocessing))


def write_program(
    model: nn.Module, out: str | Path, input_size: int, *, fused: bool, fuse_1x1: bool = False
) -> Path:
    """Save a `torch.export` program of the inference graph (load with torch.export.load)."""
    out = Path(out)
    net = deployable(model, input_size, fused=fused, fuse_1x1=fuse_1x1)
    program = export_program(net, input_size)
    atomic_write(out, lambda tmp: torch.export.save(program, tmp))
    return out


def cache_dir() -> Path:
    """Where exported graphs are kept: $GOINGDEEPER_CACHE, else ~/.cache/goingdeeper."""
    root = os.environ.get("GOINGDEEPER_CACHE") or Path.home() / ".cache" / "goingdeeper"
    return Path(root) / "onnx"


def _fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's class and every tensor of its state (names, shapes, bytes): the
    cache follows the weights themselves, not a file's name or time."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def onnxruntime_model(
    model: nn.Module, input_size: int, *, threads: int | None = None
) -> OnnxRuntimeModel:
    """The folded graph of `model` in ONNX Runtime with `threads` intra-op threads (default:
    ONNX Runtime's); the ONNX file is exported once and cached under `cache_dir()`, named by a
    hash of the weights' contents (the same weights under any name share it)."""
    key = f"{_fingerprint(model)}|{input_size}|folded|{torch.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    path = cache_dir() / f"{type(model).__name__.lower()}-{input_size}-{digest}.onnx"
    if path.is_file():
        try:
            return OnnxRuntimeModel(path, threads=threads)
        except Exception as e:  # noqa: BLE001 - a cached file ONNX Runtime cannot load
            log.warning("%s: cannot be loaded (%s); exporting it again", path, type(e).__name__)
    write_onnx(model, path, input_size, fused=True)  # atomic: a concurrent run sees all or none
    return OnnxRuntimeModel(path, threads=threads)
