"""torchvision's ResNet and DenseNet weights in `resnetNN` and `densenetNNN`, tensor for tensor.

Our ResNet and DenseNet keep torchvision's module names, so a state dict loads as it is; the
only renaming is for DenseNet files saved before torchvision 0.3 (and its published .pth
files), whose dense layers are keyed `norm.1`, `relu.1`, `conv.1`, ... instead of `norm1`,
`relu1`, `conv1`. torchvision's bottleneck ResNets put the stride in the 3x3 conv ("v1.5"),
so they load into `resnet50` / `resnet101` / `resnet152`, not the `_paper` presets.
Every card carries `IMAGENET_RGB`, the input transform torchvision's weights expect.
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor, nn

from ..models.densenet import DENSENET_TABLE, GROWTH_RATE
from ..models.resnet import RESNET_TABLE
from ..preprocess import IMAGENET_RGB, Preprocessing
from .format import WeightsCard, WeightsError, imagenet_class_names
from .torchvision import read_state_dict

# torchvision's reported ImageNet accuracies (top-1 / top-5). Its IMAGENET1K_V2 ResNet weights
# are evaluated with the shorter side resized to 232, not 256: import those with
# `preprocessing=IMAGENET_RGB_V2`.
REPORTED = {
    "resnet18": "69.758% top-1, 89.078% top-5 (torchvision IMAGENET1K_V1)",
    "resnet34": "73.314% top-1, 91.420% top-5 (torchvision IMAGENET1K_V1)",
    "resnet50": "76.130% / 92.862% (IMAGENET1K_V1); 80.858% / 95.434% (V2)",
    "resnet101": "77.374% / 93.546% (IMAGENET1K_V1); 81.886% / 95.780% (V2)",
    "resnet152": "78.312% / 94.046% (IMAGENET1K_V1); 82.284% / 96.002% (V2)",
    "densenet121": "74.434% top-1, 91.972% top-5 (torchvision IMAGENET1K_V1)",
    "densenet169": "75.600% top-1, 92.806% top-5 (torchvision IMAGENET1K_V1)",
    "densenet201": "76.896% top-1, 93.370% top-5 (torchvision IMAGENET1K_V1)",
}

# pre-0.3 torchvision DenseNet: features.denseblock1.denselayer1.norm.1.weight -> ...norm1.weight
IMAGENET_RGB_V2 = Preprocessing(resize=232, note="torchvision IMAGENET1K_V2: resize 232, crop 224")

_LEGACY_DENSE = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(.+)$")


def _load(name: str, state: dict[str, Tensor], num_classes: int) -> nn.Module:
    from ..registry import create_model

    model = create_model(name, num_classes=num_classes, init_weights=False)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"does not fit {name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, tensor in expected.items():
        if tensor.shape != state[key].shape:
            raise WeightsError(
                f"does not fit {name}: {key} has shape {tuple(state[key].shape)}, "
                f"{name} expects {tuple(tensor.shape)}"
            )
    model.load_state_dict(state)
    return model.eval()


def _card(
    name: str, num_classes: int, origin: str, preprocessing: Preprocessing = IMAGENET_RGB
) -> WeightsCard:
    return WeightsCard(
        model=name,
        model_kwargs={"num_classes": num_classes},
        num_classes=num_classes,
        class_names=imagenet_class_names() if num_classes == 1000 else [],
        preprocessing=preprocessing,
        provenance={
            "source": origin,
            "origin": f"torchvision {name}",
            "reported": REPORTED.get(name, ""),
            "notes": [],
        },
    )


def _count(state: dict[str, Tensor], pattern: str) -> tuple[int, ...]:
    """How many modules `pattern` (with groups (stage, index)) finds per stage, stage 1 first."""
    found: dict[int, int] = {}
    for key in state:
        m = re.match(pattern, key)
        if m:
            stage, index = int(m.group(1)), int(m.group(2))
            found[stage] = max(found.get(stage, 0), index)
    return tuple(found[s] for s in sorted(found))


# --- ResNet ------------------------------------------------------------------------------------


def resnet_name(state: dict[str, Tensor]) -> str:
    """The registry name of the torchvision ResNet a state dict is from (`resnet50`, ...)."""
    blocks = tuple(n + 1 for n in _count(state, r"^layer(\d)\.(\d+)\."))
    kind = "bottleneck" if any(".conv3." in k for k in state) else "basic"
    for depth, (table_kind, table_blocks) in RESNET_TABLE.items():
        if (kind, blocks) == (table_kind, table_blocks):
            return f"resnet{depth}"
    raise WeightsError(
        f"not a ResNet of Table 1 ({kind} blocks {list(blocks)}); "
        "give torchvision resnet18, 34, 50, 101 or 152 weights"
    )


def import_torchvision_resnet(
    source: str | Path | nn.Module | dict, *, preprocessing: Preprocessing = IMAGENET_RGB
) -> tuple[nn.Module, WeightsCard]:
    """Load torchvision ResNet-18/34/50/101/152 weights (a model, a state dict, or a .pth file)
    into the registry model of the same depth; return it in eval mode with its card.
    `preprocessing`: what the weights expect (`IMAGENET_RGB_V2` for torchvision's V2 sets)."""
    state, origin = read_state_dict(source, "resnet")
    if "fc.weight" not in state or "conv1.weight" not in state:
        raise WeightsError("not a torchvision resnet state dict (no conv1.weight or fc.weight)")
    name = resnet_name(state)
    num_classes = state["fc.weight"].shape[0]
    return _load(name, state, num_classes), _card(name, num_classes, origin, preprocessing)


# --- DenseNet ----------------------------------------------------------------------------------


def convert_densenet_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision DenseNet state dict, current or pre-0.3 keys -> ours (= current torchvision)."""
    return {_LEGACY_DENSE.sub(r"\1\2.\3", k): v for k, v in state.items()}


def densenet_name(state: dict[str, Tensor]) -> str:
    """The registry name of the DenseNet-BC a state dict is from (`densenet121`, ...)."""
    layers = _count(state, r"^features\.denseblock(\d)\.denselayer(\d+)\.")
    growth = state["features.denseblock1.denselayer1.conv2.weight"].shape[0]
    for depth, table_layers in DENSENET_TABLE.items():
        if layers == table_layers and growth == GROWTH_RATE:
            return f"densenet{depth}"
    raise WeightsError(
        f"not a DenseNet-BC of Table 1 (dense layers {list(layers)}, growth rate {growth}); "
        "give torchvision densenet121, 169 or 201 weights (densenet161, k = 48, is not here)"
    )


def import_torchvision_densenet(
    source: str | Path | nn.Module | dict,
) -> tuple[nn.Module, WeightsCard]:
    """Load torchvision DenseNet-121/169/201 weights (a model, a state dict, or a .pth file,
    current or legacy keys) into the registry model; return it in eval mode with its card."""
    state, origin = read_state_dict(source, "densenet")
    state = convert_densenet_state_dict(state)
    if "classifier.weight" not in state or (
        "features.denseblock1.denselayer1.conv2.weight" not in state
    ):
        raise WeightsError("not a torchvision densenet state dict (no dense layers or classifier)")
    name = densenet_name(state)
    num_classes = state["classifier.weight"].shape[0]
    return _load(name, state, num_classes), _card(name, num_classes, origin)
