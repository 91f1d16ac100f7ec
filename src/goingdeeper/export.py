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


def export_program(model: nn.Module, input_size: int = 224) -> torch.export.ExportedProgram:
    example = torch.zeros(1, 3, input_size, input_size)
    return torch.export.export(for_inference(model), (example,))


def export_onnx(
    model: nn.Module, path: str | Path, input_size: int = 224, *, dynamic_batch: bool = True
) -> Path:
    """Write an ONNX file of the inference graph; the batch dimension is dynamic by default."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = for_inference(model)
    example = torch.zeros(2, 3, input_size, input_size)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=shapes,
        dynamo=True,
        external_data=False,
    )
    return path
