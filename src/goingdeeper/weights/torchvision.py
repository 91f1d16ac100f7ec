"""torchvision's GoogLeNet weights in `googlenet_torchvision`, tensor for tensor.

torchvision's names -> ours: conv2 -> conv2_reduce, conv3 -> conv2, branch1 -> branch1x1,
branch2.{0,1} -> branch3x3.{reduce,conv}, branch3.{0,1} -> branch5x5.{reduce,conv},
branch4.1 -> branch_pool.proj; the aux heads and fc keep their names. torchvision's
`transform_input=True` (which its pretrained weights use) becomes the card's preprocessing.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..preprocess import TORCHVISION_GOOGLENET
from .format import WeightsCard, WeightsError, imagenet_class_names

_RENAMES = [
    (r"^conv2\.", "conv2_reduce."),
    (r"^conv3\.", "conv2."),
    (r"\.branch1\.", ".branch1x1."),
    (r"\.branch2\.0\.", ".branch3x3.reduce."),
    (r"\.branch2\.1\.", ".branch3x3.conv."),
    (r"\.branch3\.0\.", ".branch5x5.reduce."),
    (r"\.branch3\.1\.", ".branch5x5.conv."),
    (r"\.branch4\.1\.", ".branch_pool.proj."),
]


def from_torchvision_key(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def convert_torchvision_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision `googlenet` state dict -> `googlenet_torchvision` state dict."""
    return {from_torchvision_key(k): v for k, v in state.items()}


def read_state_dict(source: str | Path | nn.Module | dict, what: str) -> tuple[dict, str]:
    """A state dict from a model, a state dict, or a .pth file of one (loaded with
    weights_only: tensors and plain containers, never arbitrary objects); and where it came
    from. `what` names the expected model in the error messages."""
    if isinstance(source, nn.Module):
        return source.state_dict(), "torchvision model"
    if isinstance(source, dict):
        return source, "torchvision state dict"
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file; give a torchvision {what} .pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a state dict"
        raise WeightsError(f"{path}: not a PyTorch state dict ({e.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state, str(path)


def import_torchvision(
    source: str | Path | nn.Module | dict, *, aux_logits: bool | None = None
) -> tuple[nn.Module, WeightsCard]:
    """Load torchvision GoogLeNet weights (a model, a state dict, or a .pth file of one)."""
    from ..registry import create_model

    state, origin = read_state_dict(source, "googlenet")
    if "fc.weight" not in state:
        raise WeightsError("not a torchvision googlenet state dict (no fc.weight)")
    state = convert_torchvision_state_dict(state)
    has_aux = any(k.startswith("aux1.") for k in state)
    aux = has_aux if aux_logits is None else aux_logits
    if not aux:
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    num_classes = state["fc.weight"].shape[0]
    model = create_model(
        "googlenet_torchvision", num_classes=num_classes, aux_logits=aux, init_weights=False
    )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if unexpected or (missing and not (aux and not has_aux)):
        raise WeightsError(
            f"does not fit googlenet_torchvision: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    model.load_state_dict(state, strict=not missing)
    notes = ["aux heads freshly initialised"] if missing else []
    card = WeightsCard(
        model="googlenet_torchvision",
        model_kwargs={"num_classes": num_classes, "aux_logits": aux},
        num_classes=num_classes,
        class_names=imagenet_class_names() if num_classes == 1000 else [],
        preprocessing=TORCHVISION_GOOGLENET,
        provenance={
            "source": origin,
            "origin": "torchvision GoogLeNet_Weights.IMAGENET1K_V1",
            "reported": "69.778% top-1, 89.530% top-5 (torchvision)",
            "notes": notes,
        },
    )
    return model.eval(), card
