"""Inference graphs: training-only parts removed, then `torch.export` or ONNX."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn


def for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy without training-only heads (GoogLeNet's aux1/aux2), so that they
    appear in no exported graph, not even as unused inputs."""
    model = copy.deepcopy(model).eval()
    for name in ("aux1", "aux2"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    return model


def _example(model: nn.Module, input_size: int, batch: int) -> torch.Tensor:
    # LeNet reads one plane; every other model three
    return torch.zeros(batch, getattr(model, "in_channels", 3), input_size, input_size)


def export_program(model: nn.Module, input_size: int = 224) -> torch.export.ExportedProgram:
    model = for_inference(model)
    return torch.export.export(model, (_example(model, input_size, 1),))


def onnx_program(
    model: nn.Module, input_size: int = 224, *, dynamic_batch: bool = True
) -> torch.onnx.ONNXProgram:
    """The inference graph as ONNX (dynamo exporter); the batch dimension is dynamic by
    default. `.model_proto` is the ONNX model, `.save(path)` writes it."""
    model = for_inference(model)
    example = _example(model, input_size, 2)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program(model, input_size, dynamic_batch=dynamic_batch).save(
        str(path), external_data=False
    )
    return path
