"""torchvision's weights, every architecture we share with it, through one importer.

`import_torchvision(source)` reads a model, a state dict or a .pth file, finds the architecture
from the tensors (each model file says how its torchvision counterpart's keys read in ours:
`from_torchvision` in googlenet.py, inception_v3.py, alexnet.py, vgg.py, resnet.py,
densenet.py), loads them checked into the registered model, and writes the card: the classes,
and the input transform the weights were trained with (stated, not hidden: torchvision's
`googlenet` and `inception_v3` normalise inside the model; here that is the card's
preprocessing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torchvision
from torch import Tensor, nn

from ..errors import WeightsError
from ..models import alexnet, densenet, googlenet, inception_v3, resnet, vgg
from ..models.base import ImportedState
from ..preprocess import IMAGENET_RGB, Preprocessing
from ..registry import build_shell, model_card
from .format import WeightsCard
from .loading import load_checked, read_state_dict, recognise_state

# torchvision's architectures, each recognised by the file of the model it loads into
ARCHITECTURES: list[Callable[[dict[str, Tensor]], ImportedState | None]] = [
    googlenet.from_torchvision,
    inception_v3.from_torchvision,
    alexnet.from_torchvision,
    vgg.from_torchvision,
    resnet.from_torchvision,
    densenet.from_torchvision,
]


def recognise(state: dict[str, Tensor]) -> ImportedState:
    """Which registered model a torchvision state dict is for, with its keys made ours."""
    what = "torchvision state dict of googlenet, inception_v3, alexnet, vgg, resnet or densenet"
    return recognise_state(state, ARCHITECTURES, what)


def torchvision_preprocessing(name: str, tag: str, base: Preprocessing) -> Preprocessing:
    """The transform torchvision states for its weights `tag` of architecture `name` (resnet50
    IMAGENET1K_V2: resize 232), on top of `base`, how our model of these weights takes its
    input: the resize, crop and interpolation always; mean and std where the tag's are not
    ImageNet's usual (vgg16 IMAGENET1K_FEATURES: 0-255 minus the mean)."""
    weights = torchvision.models.get_model_weights(name)
    if tag not in weights.__members__:
        known = ", ".join(w.name for w in weights)
        raise WeightsError(f"torchvision has no {name} weights {tag!r}; it has {known}")
    given = weights[tag].transforms()
    pre = base.replace(
        resize=given.resize_size[0],
        crop=given.crop_size[0],
        interpolation=given.interpolation.value,
        note=f"torchvision {name} {tag}: resize {given.resize_size[0]}, crop {given.crop_size[0]}",
    )
    if (tuple(given.mean), tuple(given.std)) != (IMAGENET_RGB.mean, IMAGENET_RGB.std):
        pre = pre.replace(scale=1.0 / 255.0, mean=list(given.mean), std=list(given.std))
    return pre


def reported(name: str) -> str:
    """torchvision's published ImageNet accuracy for its architecture `name`."""
    try:
        weights = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return ""
    found = []
    for version in weights:
        metrics = version.meta.get("_metrics", {}).get("ImageNet-1K", {})
        if metrics:
            found.append(f"{metrics['acc@1']}% / {metrics['acc@5']}% ({version.name})")
    return "top-1 / top-5 per torchvision: " + "; ".join(found) if found else ""


def import_torchvision(
    source: str | Path | nn.Module | dict,
    *,
    aux_logits: bool | None = None,
    tag: str | None = None,
    preprocessing: Preprocessing | None = None,
) -> tuple[nn.Module, WeightsCard]:
    """Load torchvision weights (a model, a state dict, or a .pth file of one) into the
    registered model the tensors fit; return it in eval mode with its card.

    `aux_logits` (GoogLeNet): None keeps the aux heads the source has; False drops them; True
    keeps them, freshly initialised when the source has none (the card says so).
    `tag`: which of torchvision's weights these are (resnet50's "IMAGENET1K_V2"), for the
    transform torchvision evaluates them with; default the architecture's usual one.
    `preprocessing`: the transform itself.
    """
    state, origin = read_state_dict(source, "torchvision")
    found = recognise(state)
    if preprocessing is None and tag:
        preprocessing = torchvision_preprocessing(found.source, tag, found.preprocessing)
    kwargs, state = dict(found.kwargs), found.state
    fresh: tuple[str, ...] = ()
    notes = []
    if model_card(found.model).has_aux and aux_logits is not None:
        had = kwargs["aux_logits"]
        kwargs["aux_logits"] = aux_logits
        heads = tuple(f"{h}." for h in build_shell(found.model, aux_logits=False).aux_heads)
        if not aux_logits:
            state = {k: v for k, v in state.items() if not k.startswith(heads)}
        elif not had:
            fresh = heads
            notes.append("aux heads freshly initialised")
    model = load_checked(found.model, kwargs, state, fresh=fresh)
    card = WeightsCard.imported(
        found.model,
        kwargs,
        preprocessing or found.preprocessing,
        provenance={
            "source": origin,
            "origin": f"torchvision {found.source}",
            "reported": reported(found.source),
            "notes": notes,
        },
    )
    return model, card
