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


# Two input sides this far apart change every map's side by exactly 64 / its stride, for any
# stride up to 64 made of stride-2 and stride-4 layers, floor or ceil rounding alike.
_SIDE_STEP = 64


def feature_info(model: Classifier, indices=None, size: int | None = None) -> FeatureInfo:
    """The maps `model` gives: their channels and reductions (the stride from the input to
    each map, as timm states it), measured from two passes at sides `size` (default: the
    model's smallest input, at least 64) and `size + 64`. Cheapest on a model on the meta
    device; a real one runs at those small sides in eval mode, without gradients."""
    size = size or max(model.min_size, 64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            small = model.forward_intermediates(example_input(model, 1, size), indices)
            large = model.forward_intermediates(example_input(model, 1, size + _SIDE_STEP), indices)
    finally:
        model.train(was_training)
    chosen = take_indices(len(model.feature_stages), indices)
    return FeatureInfo(
        [
            {
                "module": model.feature_stages[i],
                "index": i,
                "num_chs": m.shape[1],
                "reduction": _SIDE_STEP // (n.shape[-1] - m.shape[-1]),
            }
            for i, m, n in zip(chosen, small, large, strict=True)
        ]
    )


class FeatureExtractor(nn.Module):
    """`model` as a feature extractor: `forward(x)` returns the maps at `out_indices` (all by
    default), in order; `feature_info` describes them."""

    def __init__(self, model: Classifier, out_indices=None, info: FeatureInfo | None = None):
        super().__init__()
        self.model = model
        self.out_indices = take_indices(len(model.feature_stages), out_indices)
        self.feature_info = info if info is not None else feature_info(model, out_indices)

    def forward(self, x: Tensor) -> list[Tensor]:
        self.model.check_input(x)
        return self.model.forward_intermediates(x, self.out_indices)
