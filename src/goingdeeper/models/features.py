"""A model's feature maps, the way timm's `features_only=True` gives them: a list, one map per
resolution from the stem to the last stage, with a `feature_info` that says the channels and
the reduction (input size / map size) of each.

Each model states where its maps are (`Classifier.feature_stages`) and runs to them
(`forward_intermediates`); nothing here recognises a model by its name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from .base import Classifier, example_input, take_indices


class FeatureInfo(Sequence[dict]):
    """One dict per feature map: `module` (the stage it is taken after), `num_chs`,
    `reduction`, and `index` among the model's maps; with timm's accessors."""

    def __init__(self, info: list[dict]) -> None:
        self.info = info

    def __getitem__(self, i):
        return self.info[i]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.info)

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self.info]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self.info]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self.info]


def feature_info(model: Classifier, size: int, indices=None) -> FeatureInfo:
    """The maps `model` gives for a square input of `size`: their channels and reductions
    (size / map side, rounded), read off one pass (cheapest on a model on the meta device)."""
    with torch.no_grad():
        maps = model.forward_intermediates(example_input(model, 1, size), indices)
    chosen = take_indices(len(model.feature_stages), indices)
    return FeatureInfo(
        [
            {
                "module": model.feature_stages[i],
                "index": i,
                "num_chs": m.shape[1],
                "reduction": max(1, round(size / m.shape[-1])),
            }
            for i, m in zip(chosen, maps, strict=True)
        ]
    )


class FeatureExtractor(nn.Module):
    """`model` as a feature extractor: `forward(x)` returns the maps at `out_indices` (all by
    default), in order; `feature_info` describes them."""

    def __init__(self, model: Classifier, out_indices=None, info: FeatureInfo | None = None):
        super().__init__()
        self.model = model
        self.out_indices = take_indices(len(model.feature_stages), out_indices)
        size = model.max_size or max(model.min_size, 224)
        self.feature_info = info if info is not None else feature_info(model, size, out_indices)

    def forward(self, x: Tensor) -> list[Tensor]:
        self.model.check_input(x)
        return self.model.forward_intermediates(x, self.out_indices)
