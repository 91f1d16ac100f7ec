"""`create_model`: a registered network, with weights, as feature maps, with its config.

    model = create_model("googlenet")                                # the paper's, initialised
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
from .weights import open_weights


def create_model(
    name: str,
    *,
    weights: str | Path | None = None,
    features_only: bool = False,
    out_indices: int | list[int] | tuple[int, ...] | None = None,
    **kwargs,
) -> nn.Module:
    """The registered model `name`; keyword arguments go to its constructor.

    `weights`: a weights file or folder for it (ours, a hub folder from `weights export-hub`,
    BVLC's blobs or .caffemodel); its card must name this model. `features_only`: the model as
    a `FeatureExtractor` returning the maps at `out_indices` (all by default), with
    `feature_info`. The model (or the extractor's) carries `pretrained_cfg`.
    """
    built_with = kwargs
    if weights is not None:
        model, card = open_weights(weights, **kwargs)
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
