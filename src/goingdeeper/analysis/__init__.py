"""Cost tables: per-layer params and MACs, Table 1 reproduction, bottleneck arithmetic, and the
counts of every registered model; all read one traced forward pass (`analysis.trace`)."""

from .counts import count_params_macs, forward_trace, training_step_macs
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
    "Row",
    "Summary",
    "bottleneck_comparison",
    "branch_macs",
    "count_params_macs",
    "forward_trace",
    "format_bottleneck",
    "format_paper",
    "format_summary",
    "format_table1",
    "model_costs",
    "paper_summary",
    "summarize",
    "table1_comparison",
    "training_step_macs",
]
