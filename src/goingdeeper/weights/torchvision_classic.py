"""torchvision's AlexNet and VGG weights in `alexnet_torchvision` and `vgg11` ... `vgg19_bn`.

The VGG models here keep torchvision's keys (`features.N`, `classifier.N`): their state dicts
load unchanged. `alexnet_torchvision` uses the paper's layer names, so torchvision's keys are
renamed: features.{0,3,6,8,10} -> conv{1..5}.conv, classifier.{1,4} -> fc{6,7}.fc,
classifier.6 -> fc8. Every weight set gets torchvision's ImageNet preprocessing on its card.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..preprocess import IMAGENET_RGB
from .format import WeightsCard, WeightsError, imagenet_class_names
from .torchvision import read_state_dict

ALEXNET_RENAMES = {
    "features.0.": "conv1.conv.",
    "features.3.": "conv2.conv.",
    "features.6.": "conv3.conv.",
    "features.8.": "conv4.conv.",
    "features.10.": "conv5.conv.",
    "classifier.1.": "fc6.fc.",
    "classifier.4.": "fc7.fc.",
    "classifier.6.": "fc8.",
}
# number of convolutions -> torchvision name (configurations A, B, D, E of the VGG paper)
VGG_BY_CONVS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}
MODELS = (
    "alexnet_torchvision",
    *VGG_BY_CONVS.values(),
    *(f"{n}_bn" for n in VGG_BY_CONVS.values()),
)


def detect_model(state: dict[str, Tensor]) -> str:
    """Which of our models a torchvision AlexNet or VGG state dict is for."""
    first = state.get("features.0.weight")
    if first is None or "classifier.6.weight" not in state:
        raise WeightsError(
            "not a torchvision AlexNet or VGG state dict (no features.0.weight / "
            "classifier.6.weight)"
        )
    if first.dim() == 4 and first.shape[-1] == 11:
        return "alexnet_torchvision"
    convs = sum(
        1
        for k, v in state.items()
        if k.startswith("features.") and k.endswith("weight") and v.dim() == 4
    )
    if convs not in VGG_BY_CONVS:
        raise WeightsError(
            f"a VGG state dict with {convs} convolutions: expected 8, 10, 13 or 16 (vgg11, vgg13, "
            "vgg16, vgg19)"
        )
    batch_norm = any(k.endswith("running_mean") for k in state)
    return VGG_BY_CONVS[convs] + ("_bn" if batch_norm else "")


def convert_state_dict(state: dict[str, Tensor], model: str) -> dict[str, Tensor]:
    """torchvision keys -> ours (VGG: unchanged; AlexNet: `ALEXNET_RENAMES`)."""
    if model != "alexnet_torchvision":
        return dict(state)
    out = {}
    for key, value in state.items():
        prefix = next((p for p in ALEXNET_RENAMES if key.startswith(p)), None)
        if prefix is None:
            raise WeightsError(f"unexpected key {key!r} in a torchvision AlexNet state dict")
        out[ALEXNET_RENAMES[prefix] + key[len(prefix) :]] = value
    return out


def _reported(model: str) -> str:
    """torchvision's published accuracy for its ImageNet weights of this architecture."""
    import torchvision

    name = "alexnet" if model == "alexnet_torchvision" else model
    try:
        meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
        metrics = meta["_metrics"]["ImageNet-1K"]
    except (AttributeError, KeyError, ValueError):
        return ""
    return f"{metrics['acc@1']}% top-1, {metrics['acc@5']}% top-5 (torchvision IMAGENET1K_V1)"


def import_torchvision_classic(
    source: str | Path | nn.Module | dict, *, model: str | None = None
) -> tuple[nn.Module, WeightsCard]:
    """Load torchvision AlexNet or VGG weights (a model, a state dict, or a .pth file of one)
    into `alexnet_torchvision` or the matching `vgg*`; the model is found from the tensors
    unless `model` names it."""
    from ..registry import create_model

    state, origin = read_state_dict(source, "AlexNet or VGG")
    name = model or detect_model(state)
    if name not in MODELS:
        raise WeightsError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    state = convert_state_dict(state, name)
    alex = name == "alexnet_torchvision"
    num_classes = state["fc8.weight" if alex else "classifier.6.weight"].shape[0]
    fc_width = state["fc6.fc.weight" if alex else "classifier.0.weight"].shape[0]
    kwargs = {"num_classes": num_classes} | ({"fc_width": fc_width} if fc_width != 4096 else {})
    with torch.device("meta"):  # no initialisation: every tensor comes from `state`
        net = create_model(name, **kwargs)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, tensor in expected.items():
        if tensor.shape != state[key].shape:
            raise WeightsError(
                f"{key} has shape {tuple(state[key].shape)}, {name} expects {tuple(tensor.shape)}"
            )
    # copies, so that the imported model does not share storage with `source`
    net.load_state_dict({k: v.detach().clone() for k, v in state.items()}, assign=True)
    card = WeightsCard(
        model=name,
        model_kwargs=kwargs,
        num_classes=num_classes,
        class_names=imagenet_class_names() if num_classes == 1000 else [],
        preprocessing=IMAGENET_RGB,
        provenance={
            "source": origin,
            "origin": f"torchvision {name.removesuffix('_torchvision')}",
            "reported": _reported(name),
        },
    )
    return net.eval(), card
