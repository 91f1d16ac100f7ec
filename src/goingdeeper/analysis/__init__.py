"""Cost tables: per-layer params and MACs, Table 1 reproduction, bottleneck arithmetic."""

from .paper import bottleneck_comparison, format_bottleneck, format_table1, table1_comparison
from .summary import (
    Summary,
    count_params_macs,
    format_summary,
    summarize,
    trace,
    training_step_macs,
)

__all__ = [
    "Summary",
    "bottleneck_comparison",
    "count_params_macs",
    "format_bottleneck",
    "format_summary",
    "format_table1",
    "summarize",
    "table1_comparison",
    "trace",
    "training_step_macs",
]
