"""timm's weights for the architectures timm shares with us, through one importer.

`import_timm(source)` reads a timm model, its state dict, or a checkpoint file (.pth,
.safetensors: what timm and its hub folders save), finds the architecture from the tensors
(each model file says how timm's keys read in ours: `from_timm` in resnet.py, senet.py,
densenet.py, vgg.py, xception.py, inception_v3.py, inception_v4.py), loads it checked and
writes the card. timm's `resnet*`, `seresnet50`, `densenet121/169/201`, `vgg11` ...
`vgg19_bn`, `legacy_xception`, `inception_v3`, `inception_v4` and `inception_resnet_v2` are
covered; its other variants (resnet50d, the aligned xceptions) are other networks than the
papers'.

The input transform comes from timm's own pretrained config of the architecture (its default
tag, or `tag`), which needs timm installed; `preprocessing=` states it instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn

from ..errors import WeightsError
from ..models import densenet, inception_v3, inception_v4, resnet, senet, vgg, xception
from ..models.base import ImportedState
from ..preprocess import Preprocessing
from .format import WeightsCard
from .loading import load_checked, read_state_dict, recognise_state

ARCHITECTURES: list[Callable[[dict[str, Tensor]], ImportedState | None]] = [
    inception_v3.from_timm,
    inception_v4.from_timm,
    xception.from_timm,
    senet.from_timm,  # before resnet: an SE-ResNet has all of a ResNet's keys
    resnet.from_timm,
    densenet.from_timm,
    vgg.from_timm,
]


def recognise_timm(state: dict[str, Tensor]) -> ImportedState:
    """Which registered model a timm state dict is for, with its keys made ours."""
    what = (
        "timm state dict of resnet, seresnet50, densenet, vgg, legacy_xception, inception_v3, "
        "inception_v4 or inception_resnet_v2"
    )
    return recognise_state(state, ARCHITECTURES, what)


def timm_preprocessing(name: str) -> tuple[Preprocessing, str]:
    """The transform timm states for its pretrained weights `name` (an architecture, or
    `architecture.tag`), as ours, and the tag it came from. timm resizes the shorter side to
    floor(crop / crop_pct) and center-crops."""
    try:
        import timm  # optional: `pip install timm`, or pass preprocessing=
    except ImportError:
        raise WeightsError(
            "timm weights: the input transform comes from timm's config; install timm "
            "(pip install timm) or give the preprocessing"
        ) from None
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as e:  # timm's "Invalid pretrained tag"
        raise WeightsError(f"timm has no pretrained config {name!r} ({e})") from None
    if cfg is None:
        raise WeightsError(f"timm has no pretrained config {name!r}")
    crop = cfg.input_size[-1]
    interpolation = {"box": "area"}.get(cfg.interpolation, cfg.interpolation)
    pre = Preprocessing(
        resize=math.floor(crop / cfg.crop_pct),
        crop=crop,
        interpolation=interpolation,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        note=f"timm {name}: {cfg.interpolation}, crop_pct {cfg.crop_pct}",
    )
    return pre, cfg.tag or ""


def import_timm(
    source: str | Path | nn.Module | dict,
    *,
    tag: str | None = None,
    preprocessing: Preprocessing | None = None,
) -> tuple[nn.Module, WeightsCard]:
    """Load timm weights (a model, a state dict, or a .pth/.safetensors file of one) into the
    registered model the tensors fit; return it in eval mode with its card.

    `tag`: which of timm's pretrained weights these are (e.g. "a1_in1k" for resnet50), for
    their input transform; default timm's default. `preprocessing`: the transform itself.
    """
    state, origin = read_state_dict(source, "timm")
    found = recognise_timm(state)
    tag_used = tag or ""
    if preprocessing is None:
        name = f"{found.source}.{tag}" if tag else found.source
        preprocessing, tag_used = timm_preprocessing(name)
    model = load_checked(found.model, found.kwargs, found.state)
    card = WeightsCard.imported(
        found.model,
        found.kwargs,
        preprocessing,
        provenance={
            "source": origin,
            "origin": f"timm {found.source}" + (f".{tag_used}" if tag_used else ""),
            "notes": [],
        },
    )
    return model, card
