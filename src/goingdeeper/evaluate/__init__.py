"""The published test protocols: 1 crop, AlexNet's 10 (and two other readings of them),
GoogLeNet's 144, VGG's 150 and dense evaluation and their combination, ensembles averaged by
softmax. What `evaluate` returns, and the grid laid out like GoogLeNet's Table 3 that shows
it, are in `goingdeeper.results`."""

from .dense import DENSE_SCALES, dense_form, dense_scales, dense_scores
from .engine import AGGREGATES, VIEWS, distinct_views, evaluate, metrics
from .views import (
    SCALES_144,
    VIEW_FUNCTIONS,
    crop_offsets,
    crops_144,
    crops_150,
    grid_offsets,
    num_views,
    one_crop,
    scales_144,
    scales_150,
    square_offsets,
    ten_crops,
    ten_crops_rect,
    ten_crops_warp,
)

__all__ = [
    "AGGREGATES",
    "DENSE_SCALES",
    "SCALES_144",
    "VIEWS",
    "VIEW_FUNCTIONS",
    "crop_offsets",
    "crops_144",
    "crops_150",
    "dense_form",
    "dense_scales",
    "dense_scores",
    "distinct_views",
    "evaluate",
    "grid_offsets",
    "metrics",
    "num_views",
    "one_crop",
    "scales_144",
    "scales_150",
    "square_offsets",
    "ten_crops",
    "ten_crops_rect",
    "ten_crops_warp",
]
