"""Table 1 of the GoogLeNet paper beside the exact numbers, and the bottleneck arithmetic.

Table 1 counts weights without biases in K = 1024 and "ops" as multiply-adds of convolutions
and linear layers in M = 10^6. Several of its rows do not follow from its own channel columns;
`table1_comparison` says which and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import ArgumentError
from ..tables import render_markdown, render_table
from .counts import trace
from .summary import Summary, counting_model, summarize

# Table 1 as printed: row, params (K = 1024 weights), ops (M multiply-adds)
PAPER_TABLE1: list[tuple[str, float | None, float | None]] = [
    ("conv1", 2.7, 34),
    ("pool1", None, None),
    ("conv2", 112, 360),
    ("pool2", None, None),
    ("inception3a", 159, 128),
    ("inception3b", 380, 304),
    ("pool3", None, None),
    ("inception4a", 364, 73),
    ("inception4b", 437, 88),
    ("inception4c", 463, 100),
    ("inception4d", 580, 119),
    ("inception4e", 840, 170),
    ("pool4", None, None),
    ("inception5a", 1072, 54),
    ("inception5b", 1388, 71),
    ("avgpool", None, None),
    ("dropout", None, None),
    ("fc", 1000, 1),
]
PAPER_TOTALS = ("6.8M params", "1.5G ops")

# Why a row's printed figures differ from the arithmetic of its own channel columns
EXPLANATIONS = {
    "conv1": "2.7K/34M fit only a depthwise-separable 7x7 with depth multiplier 8 (the Xception "
    "paper says Inception v1 used one); a plain 7x7 conv is 9,408 weights, 118.0M MACs",
    "inception4c": "the channel columns give 497.5K weights, not 463K",
    "inception5a": "the channel columns give 1,018K weights and 51.1M MACs, not 1,072K and 54M",
}
TOLERANCE = 0.02  # a printed figure within 2% of the exact one is taken as rounding


@dataclass
class PaperRow:
    name: str
    output: str
    paper_params_k: float | None
    exact_params_k: float
    paper_ops_m: float | None
    exact_ops_m: float
    flag: str  # empty when the row agrees with its own channel columns

    @property
    def params_diff_k(self) -> float | None:
        return None if self.paper_params_k is None else self.exact_params_k - self.paper_params_k

    @property
    def ops_diff_m(self) -> float | None:
        return None if self.paper_ops_m is None else self.exact_ops_m - self.paper_ops_m


def _off(paper: float | None, exact: float) -> bool:
    if paper is None:
        return False
    return abs(exact - paper) > TOLERANCE * max(abs(paper), 1e-9) and abs(exact - paper) >= 0.5


def table1_comparison(summary: Summary) -> list[PaperRow]:
    """Pair each Table 1 row with the exact weights (K = 1024) and MACs (M) of `summary`."""
    rows = {r.name: r for r in summary.rows}
    missing = [name for name, *_ in PAPER_TABLE1 if name not in rows]
    if missing:
        raise ArgumentError(
            f"{summary.model} has no row {missing[0]!r} of GoogLeNet's Table 1: the paper "
            "comparison is for the GoogLeNet models (googlenet*, se_googlenet)"
        )
    out = []
    for name, paper_k, paper_m in PAPER_TABLE1:
        r = rows[name]
        exact_k, exact_m = r.weights / 1024, r.macs / 1e6
        off = _off(paper_k, exact_k) or _off(paper_m, exact_m)
        flag = EXPLANATIONS.get(name, "does not follow from its channel columns") if off else ""
        shape = _shape(r.output)
        out.append(PaperRow(name, shape, paper_k, exact_k, paper_m, exact_m, flag))
    return out


TABLE1_HEADER = ["row", "output", "paper K", "exact K", "diff K", "paper M", "exact M", "diff M"]


def _num(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _table1_cells(r: PaperRow) -> list[str]:
    exact_k = r.paper_params_k is not None or r.exact_params_k
    exact_m = r.paper_ops_m is not None or r.exact_ops_m
    return [
        r.name,
        r.output,
        _num(r.paper_params_k, ",.1f"),
        _num(r.exact_params_k, ",.1f") if exact_k else "",
        _num(r.params_diff_k, "+,.1f"),
        _num(r.paper_ops_m, ",.0f"),
        _num(r.exact_ops_m, ",.1f") if exact_m else "",
        _num(r.ops_diff_m, "+,.1f"),
        "off" if r.flag else "",
    ]


def _table1_sums(rows: list[PaperRow]) -> list[str]:
    paper_k = sum(r.paper_params_k or 0 for r in rows)
    paper_m = sum(r.paper_ops_m or 0 for r in rows)
    exact_k = sum(r.exact_params_k for r in rows)
    exact_m = sum(r.exact_ops_m for r in rows)
    return [
        "sum",
        "",
        f"{paper_k:,.1f}",
        f"{exact_k:,.1f}",
        f"{exact_k - paper_k:+,.1f}",
        f"{paper_m:,.0f}",
        f"{exact_m:,.1f}",
        f"{exact_m - paper_m:+,.1f}",
        "",
    ]


def format_table1(summary: Summary, fmt: str = "table") -> str:
    """Table 1 beside the exact numbers, with the differences and a flag per row."""
    rows = table1_comparison(summary)
    header = [*TABLE1_HEADER, "flag"]
    body = [*(_table1_cells(r) for r in rows), _table1_sums(rows)]
    notes = [f"- {r.name}: {r.flag}" for r in rows if r.flag]
    intro = (
        f"Table 1 (weights only, K = 1024; ops = multiply-adds, M = 10^6) beside "
        f"{summary.model} at {summary.input_size}x{summary.input_size}. The paper's totals "
        f"({', '.join(PAPER_TOTALS)}) are its column sums."
    )
    totals = (
        f"Exact, with biases: {summary.total_params:,} parameters, "
        f"{summary.total_macs:,} MACs = {summary.total_flops:,} FLOPs (FLOPs = 2 x MACs)."
    )
    table = render_markdown(header, body) if fmt == "markdown" else render_table(header, body, 2)
    return "\n".join([intro, "", table, "", "Rows flagged off:", *notes, "", totals])


# --- bottleneck arithmetic ------------------------------------------------------------------


@dataclass
class BranchCost:
    module: str
    branch: str
    naive_macs: int  # Fig. 2(a): the 3x3 / 5x5 convolution reads the module's input directly
    reduced_macs: int  # Fig. 2(b): a 1x1 reduction first

    @property
    def ratio(self) -> float:
        return self.naive_macs / self.reduced_macs if self.reduced_macs else float("nan")


def branch_macs(model: nn.Module, input_size: int = 224) -> dict[tuple[str, str], int]:
    """MACs of each branch of each Inception module (the modules that say they are one):
    {(module, branch): MACs}."""
    inceptions = [
        name for name, m in model.named_modules() if getattr(m, "summary_type", "") == "inception"
    ]
    out: dict[tuple[str, str], int] = {}
    for leaf in trace(model, input_size):
        owner = next((m for m in inceptions if leaf.name.startswith(m + ".")), None)
        if owner is not None:
            key = (owner, leaf.name[len(owner) + 1 :].split(".")[0])
            out[key] = out.get(key, 0) + leaf.macs
    return out


def bottleneck_comparison(input_size: int = 224, name: str = "googlenet") -> list[BranchCost]:
    """Per Inception module and branch of the model `name`, the cost without and with the 1x1
    reductions (the notes' figures for googlenet: inception 4a's 5x5 branch 112.9M vs 5.3M,
    inception 3a's 120.4M vs 12.4M). The model's builder must take `naive` (Fig. 2a)."""
    reduced = branch_macs(counting_model(name), input_size)
    if not reduced:
        raise ArgumentError(
            f"{name} has no Inception modules: the bottleneck comparison is for the GoogLeNet "
            "models (googlenet*, se_googlenet)"
        )
    naive = branch_macs(counting_model(name, naive=True), input_size)
    return [BranchCost(m, b, naive[(m, b)], reduced[(m, b)]) for (m, b) in reduced]


def format_bottleneck(costs: list[BranchCost], fmt: str = "table") -> str:
    header = ["module", "branch", "naive MACs", "with 1x1 reduction", "ratio"]
    body = [
        [
            c.module,
            c.branch,
            f"{c.naive_macs / 1e6:,.1f}M",
            f"{c.reduced_macs / 1e6:,.1f}M",
            f"{c.ratio:.1f}x",
        ]
        for c in costs
        if c.branch in ("branch3x3", "branch5x5")
    ]
    naive = sum(c.naive_macs for c in costs)
    reduced = sum(c.reduced_macs for c in costs)
    body.append(
        [
            "all modules",
            "all branches",
            f"{naive / 1e6:,.1f}M",
            f"{reduced / 1e6:,.1f}M",
            f"{naive / reduced:.1f}x",
        ]
    )
    if fmt == "markdown":
        return render_markdown(header, body)
    return render_table(header, body, 2)


def paper_summary(input_size: int = 224) -> Summary:
    """The paper's network (`googlenet`) at `input_size`, the summary Table 1 is compared with."""
    return summarize(counting_model("googlenet"), input_size, name="googlenet")


def _shape(output: tuple[int, ...]) -> str:
    """Table 1's HxWxC; a flat vector as 1x1xC."""
    if len(output) == 3:
        return f"{output[1]}x{output[2]}x{output[0]}"
    return f"1x1x{output[0]}"
