"""The published test protocols: 1, 10 and 144 crops, VGG dense evaluation, ensembles averaged
by softmax, and a results grid laid out like GoogLeNet's Table 3."""

from .dense import DENSE_SCALES, dense_form, dense_scores
from .engine import AGGREGATES, VIEWS, distinct_views, evaluate, metrics
from .grid import PAPER_TABLE3, format_grid, grid_rows, member_results, paper_rows
from .views import (
    SCALES_144,
    VIEW_FUNCTIONS,
    crop_offsets,
    crops_144,
    num_views,
    one_crop,
    scales_144,
    square_offsets,
    ten_crops,
)

__all__ = [
    "AGGREGATES",
    "DENSE_SCALES",
    "PAPER_TABLE3",
    "SCALES_144",
    "VIEWS",
    "VIEW_FUNCTIONS",
    "crop_offsets",
    "crops_144",
    "dense_form",
    "dense_scores",
    "distinct_views",
    "evaluate",
    "format_grid",
    "grid_rows",
    "member_results",
    "metrics",
    "num_views",
    "one_crop",
    "paper_rows",
    "scales_144",
    "square_offsets",
    "ten_crops",
]
