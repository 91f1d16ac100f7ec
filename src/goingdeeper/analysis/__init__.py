"""Cost tables: per-layer params and MACs, Table 1 reproduction, bottleneck arithmetic, and the
counts of every registered model."""

from .counts import Leaf, count_params_macs, trace, trace_layers, training_step_macs
from .paper import (
    bottleneck_comparison,
    branch_macs,
    format_bottleneck,
    format_paper,
    format_table1,
    paper_summary,
    table1_comparison,
)
from .summary import Costs, Row, Summary, format_summary, model_costs, summarize

__all__ = [
    "Costs",
    "Leaf",
    "Row",
    "Summary",
    "bottleneck_comparison",
    "branch_macs",
    "count_params_macs",
    "format_bottleneck",
    "format_paper",
    "format_summary",
    "format_table1",
    "model_costs",
    "paper_summary",
    "summarize",
    "table1_comparison",
    "trace",
    "trace_layers",
    "training_step_macs",
]
