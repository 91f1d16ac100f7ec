"""`create_model`: a registered network, with weights, as feature maps, with its config.

    model = create_model("googlenet")                                # the paper's, initialised
    model = create_model("googlenet", pretrained=True)               # BVLC's, fetched once
    model = create_model("resnet50", pretrained="tv2_in1k")          # a tag of the catalogue
    model = create_model("googlenet", weights="bvlc.safetensors")    # or a hub folder, a BVLC
    maps = create_model("resnet50", features_only=True)(x)           # folder, a .caffemodel
    model.pretrained_cfg                                             # timm's keys

The registry builds (`registry.build_model`); this adds what a user asks for on top, as timm's
`create_model` does: weights read and checked (`weights.open_weights`), the feature-map form
(`models.features`), and `pretrained_cfg` on the model (the weights' card, else the model's).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .errors import WeightsError
from .models.features import FeatureExtractor, feature_info
from .registry import build_model, build_shell, model_card
from .weights import get_entry, load_pretrained, open_weights


def create_model(
    name: str,
    *,
    weights: str | Path | None = None,
    pretrained: bool | str = False,
    features_only: bool = False,
    out_indices: int | list[int] | tuple[int, ...] | None = None,
    **kwargs,
) -> nn.Module:
    """The registered model `name`; keyword arguments go to its constructor.

    `weights`: a weights file or folder for it (ours, a hub folder from `weights export-hub`,
    BVLC's blobs or .caffemodel, a name in `goingdeeper weights list`); its card must name
    this model. `pretrained`: True for the model's default published weights, or a tag of the
    catalogue ("bvlc_in1k", "tv2_in1k"), fetched and cached on first use. `features_only`:
    the model as a `FeatureExtractor` returning the maps at `out_indices` (all by default),
    with `feature_info`. The model (or the extractor's) carries `pretrained_cfg`.
    """
    built_with = kwargs
    if pretrained is not False and pretrained is not None:
        if weights is not None:
            raise WeightsError(f"{name}: give weights= or pretrained=, not both")
        if not isinstance(pretrained, bool | str) or pretrained == "":
            raise WeightsError(
                f"pretrained takes True or a tag such as 'bvlc_in1k', not {pretrained!r}"
            )
        entry = get_entry(name if pretrained is True else f"{name}.{pretrained}")
        opened = load_pretrained(entry, **kwargs)  # the catalogue's, never a file of that name
        weights = entry.name
    elif weights is not None:
        opened = open_weights(weights, **kwargs)
    if weights is not None:
        model, card = opened
        if card.model != name:
            raise WeightsError(f"{weights}: weights of {card.model}, not of {name}")
        pretrained_cfg, built_with = card.pretrained_cfg, {**card.model_kwargs, **kwargs}
    else:
        model = build_model(name, **kwargs)
        pretrained_cfg = model_card(name).pretrained_cfg
    model.pretrained_cfg = pretrained_cfg
    if not features_only:
        return model
    shell = build_shell(name, **built_with)  # the maps' sizes, from the same network
    extractor = FeatureExtractor(model, out_indices, feature_info(shell, out_indices))
    extractor.pretrained_cfg = pretrained_cfg
    return extractor
