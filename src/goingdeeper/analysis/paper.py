"""What the papers print about a network beside the exact numbers, and GoogLeNet's bottleneck
arithmetic.

GoogLeNet's Table 1 counts weights without biases in K = 1024 and "ops" as multiply-adds of
convolutions and linear layers in M = 10^6. Several of its rows do not follow from its own
channel columns; `table1_comparison` says which and why. Other papers print less: an output
size per row (BN-Inception's Figure 5), a total, a file size (`PaperFigures`, compared by
`paper_comparison`). `format_paper` picks the comparison that belongs to a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from ..errors import ArgumentError
from ..tables import render_markdown, render_table
from .counts import forward_trace
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
    for leaf in forward_trace(model, input_size).steps:
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


# --- other papers: printed output sizes and totals ------------------------------------------


class PrintedRow(NamedTuple):
    """A row of a paper's table: its name here and the output it prints (H, W, C)."""

    name: str
    output: tuple[int, int, int]


class PrintedTotal(NamedTuple):
    """A figure a paper or a release prints about the whole network, and what it counts:
    "params" (every parameter) or "mib" (the float32 weight file, 2^20 bytes)."""

    text: str  # as printed, with where
    value: float
    counts: str


@dataclass(frozen=True)
class PaperFigures:
    """What a paper prints about one network: output sizes of its table's rows, totals, and
    the results it reports (shown as printed; nothing here can check them)."""

    source: str
    rows: tuple[PrintedRow, ...] = ()
    totals: tuple[PrintedTotal, ...] = ()
    explanations: dict[str, str] = field(default_factory=dict)  # why a printed figure is off
    results: tuple[str, ...] = ()


# Figure 5 of Ioffe & Szegedy (2015), the output size column. Its stride-2 rows print the
# module's input grid; 4c and 4d print 576 channels where their own columns add up to 608.
BN_INCEPTION_FIGURE5 = PaperFigures(
    source="Figure 5 of Ioffe & Szegedy (2015), arXiv:1502.03167",
    rows=(
        PrintedRow("conv1", (112, 112, 64)),
        PrintedRow("pool1", (56, 56, 64)),
        PrintedRow("conv2", (56, 56, 192)),
        PrintedRow("pool2", (28, 28, 192)),
        PrintedRow("inception3a", (28, 28, 256)),
        PrintedRow("inception3b", (28, 28, 320)),
        PrintedRow("inception3c", (28, 28, 576)),
        PrintedRow("inception4a", (14, 14, 576)),
        PrintedRow("inception4b", (14, 14, 576)),
        PrintedRow("inception4c", (14, 14, 576)),
        PrintedRow("inception4d", (14, 14, 576)),
        PrintedRow("inception4e", (14, 14, 1024)),
        PrintedRow("inception5a", (7, 7, 1024)),
        PrintedRow("inception5b", (7, 7, 1024)),
        PrintedRow("avgpool", (1, 1, 1024)),
    ),
    totals=(PrintedTotal("13.6 x 10^6 parameters (appendix)", 13.6e6, "params"),),
    explanations={
        "inception3c": "a stride-2 module: the row prints its input grid (28x28); it outputs "
        "14x14, the size 4a reads",
        "inception4c": "the row's own columns give 160 + 160 + 160 + 128 = 608 channels",
        "inception4d": "the row's own columns give 96 + 192 + 192 + 128 = 608 channels",
        "inception4e": "a stride-2 module: it outputs 7x7, and its columns give 192 + 256 + 608 "
        "(the pass-through input) = 1,056 channels, which 5a reads",
        "13.6 x 10^6 parameters (appendix)": "Figure 5's own columns give 11.3 M (11.28 M with "
        "the separable conv1 and BatchNorm's scales and shifts, 11.30 M in the Caffe port's "
        "layout); 13.6 M would need about 2.3 M more weights than the table has",
    },
    results=(
        "Table 2: 1 network, 1 crop: 25.2% top-1, 7.82% top-5 error (validation)",
        "Table 2: 1 network, 144 crops: 21.99% top-1, 5.82% top-5",
        "Table 2: 6 networks, 144 crops: 20.1% top-1, 4.9% top-5 (validation), 4.82% top-5 (test)",
    ),
)
NIN_CIFAR10_FIGURES = PaperFigures(
    source="Lin, Chen & Yan (2013), arXiv:1312.4400, and the authors' CIFAR-10 definition; the "
    "paper prints no per-layer sizes or counts",
    results=(
        "Table 1: 10.41% test error without data augmentation",
        "Table 1: 8.81% test error with translation and horizontal flipping",
    ),
)
NIN_IMAGENET_FIGURES = PaperFigures(
    source="the Caffe model zoo's ImageNet NIN (nin_imagenet); the release prints no "
    "per-layer sizes or counts",
    totals=(PrintedTotal("29 MB model file (release)", 29.0, "mib"),),
    results=("release: 59.36% top-1 accuracy on the ILSVRC 2012 validation set, 1 crop",),
)
PAPER_FIGURES = {
    "bn_inception": BN_INCEPTION_FIGURE5,
    "bn_inception_caffe": BN_INCEPTION_FIGURE5,
    "nin_cifar10": NIN_CIFAR10_FIGURES,
    "nin_imagenet": NIN_IMAGENET_FIGURES,
}


@dataclass
class FigureRow:
    name: str
    printed: str  # the paper's H x W x C, "" where it prints none
    output: str  # the exact H x W x C
    params: int
    macs: int
    flag: str  # empty when the printed figure agrees


@dataclass
class TotalCheck:
    text: str
    printed: float
    exact: float  # in the printed unit
    counts: str
    flag: str

    def exact_text(self) -> str:
        if self.counts == "mib":
            return f"{self.exact:.1f} MiB of float32 weights"
        return f"{self.exact:,.0f} parameters ({self.exact / 1e6:.2f} M)"


def paper_comparison(
    summary: Summary, figures: PaperFigures
) -> tuple[list[FigureRow], list[TotalCheck]]:
    """Each row of `summary` beside the output its paper prints, and each printed total
    beside the exact one, flagged where they differ (the reason from `figures.explanations`)."""
    printed = {r.name: r.output for r in figures.rows}
    missing = [name for name in printed if name not in {r.name for r in summary.rows}]
    if missing:
        raise ArgumentError(
            f"{summary.model} has no row {missing[0]!r} of {figures.source}: compare the "
            "models that table describes"
        )
    rows = []
    for r in summary.rows:
        paper = printed.get(r.name)
        exact = _shape(r.output)
        want = "" if paper is None else "x".join(str(v) for v in paper)
        off = bool(want) and want != exact
        flag = figures.explanations.get(r.name, "does not follow from the table") if off else ""
        rows.append(FigureRow(r.name, want, exact, r.params, r.macs, flag))
    totals = []
    for t in figures.totals:
        exact = summary.total_params * (4 / 2**20 if t.counts == "mib" else 1)
        off = abs(exact - t.value) > TOLERANCE * t.value
        flag = figures.explanations.get(t.text, "does not follow from the table") if off else ""
        totals.append(TotalCheck(t.text, t.value, exact, t.counts, flag))
    return rows, totals


def format_figures(summary: Summary, figures: PaperFigures, fmt: str = "table") -> str:
    """The per-row comparison, the totals and the reported results, as text or markdown."""
    rows, totals = paper_comparison(summary, figures)
    header = ["row", "paper output", "exact output", "params", "MACs (M)", "flag"]
    body = [
        [r.name, r.printed, r.output, f"{r.params:,}", f"{r.macs / 1e6:,.1f}", "off" * bool(r.flag)]
        for r in rows
    ]
    if not figures.rows:  # nothing printed per row: the exact columns only
        header, body = header[:1] + header[2:5], [row[:1] + row[2:5] for row in body]
    table = render_markdown(header, body) if fmt == "markdown" else render_table(header, body, 2)
    lines = [
        f"{figures.source}, beside {summary.model} at {summary.input_size}x{summary.input_size} "
        "(outputs H x W x C; params with biases and BatchNorm; MACs of convolutions and linear "
        "layers).",
        "",
        table,
        "",
        f"Exact: {summary.total_params:,} parameters, {summary.total_macs:,} MACs = "
        f"{summary.total_flops:,} FLOPs.",
    ]
    for t in totals:
        verdict = f": off. {t.flag}" if t.flag else ": agrees"
        lines.append(f"Printed: {t.text}; exact: {t.exact_text()}{verdict}.")
    flagged = [f"- {r.name}: {r.flag}" for r in rows if r.flag]
    if flagged:
        lines += ["", "Rows flagged off:", *flagged]
    if figures.results:
        lines += ["", "Reported results (as printed):", *(f"- {x}" for x in figures.results)]
    return "\n".join(lines)


# --- Inception v3: Table 1 of "Rethinking the Inception Architecture" (arXiv:1512.00567) -------

# Table 1 as printed: type, patch size / stride or remarks, input size; and the modules of
# `inception_v3` that make the row. The grid reductions (Fig. 10) have no row of their own.
V3_TABLE1: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("conv", "3x3/2", "299x299x3", ("conv1",)),
    ("conv", "3x3/1", "149x149x32", ("conv2",)),
    ("conv padded", "3x3/1", "147x147x32", ("conv3",)),
    ("pool", "3x3/2", "147x147x64", ("pool1",)),
    ("conv", "3x3/1", "73x73x64", ("conv4",)),
    ("conv", "3x3/2", "71x71x80", ("conv5",)),
    ("conv", "3x3/1", "35x35x192", ("conv6",)),
    ("3 x Inception", "Fig. 5", "35x35x288", tuple(f"inception_a{i}" for i in (1, 2, 3))),
    ("(grid reduction)", "Fig. 10", "", ("reduction_a",)),
    ("5 x Inception", "Fig. 6", "17x17x768", tuple(f"inception_b{i}" for i in (1, 2, 3, 4))),
    ("(grid reduction)", "Fig. 10", "", ("reduction_b",)),
    ("2 x Inception", "Fig. 7", "8x8x1280", ("inception_c1", "inception_c2")),
    ("pool", "8x8", "8x8x2048", ("avgpool",)),
    ("linear", "logits", "1x1x2048", ("fc",)),
    ("softmax", "classifier", "1x1x1000", ()),
]
V3_PAPER_TOTALS = ("less than 25 million parameters", "5 billion multiply-adds")  # abstract
# Rows the paper contradicts elsewhere ("off"), and rows that need a word ("note")
V3_ERRATA = {
    "5 x Inception": "Table 1 and section 6 say five modules; the authors' release has four, "
    "and the abstract's '<25 M parameters' leaves no room for a fifth: four are built. "
    "Section 6 calls them 'as depicted in figure 5': Table 1's Fig. 6 is meant",
    "2 x Inception": "section 6 calls them 'as depicted in figure 6': Table 1's Fig. 7 "
    "(the expanded filter bank) is meant",
}
V3_NOTES = {
    "(grid reduction)": "no row of Table 1; Fig. 10 draws the scheme, the widths are the "
    "release's (35 -> 17: no 1x1 before the lone 3x3/2; 17 -> 8: a 1x7, 7x1 pair)",
}
V3_DEPTH = 42  # section 6: "the network is 42 layers deep"


def _input_of(summary: Summary, modules: tuple[str, ...]) -> str:
    """What the first of `modules` reads, as Table 1 writes it (the logits for no module)."""
    if not modules:
        return _shape(summary.rows[-1].output)
    first = [r.name for r in summary.rows].index(modules[0])
    if first == 0:
        return f"{summary.input_size}x{summary.input_size}x3"
    return _shape(summary.rows[first - 1].output)


@dataclass
class V3Row:
    kind: str  # Table 1's type column
    patch: str
    paper_input: str  # as printed ("" for the grid reductions, which have no row)
    input: str  # what the network's modules of the row read
    modules: tuple[str, ...]
    params: int
    macs: int
    flag: str  # "off" (an erratum), "note", or ""


def inception_v3_table1(summary: Summary) -> list[V3Row]:
    """Table 1 of Inception v3 row by row beside `summary` (of `inception_v3`)."""
    rows = {r.name: r for r in summary.rows}
    missing = [m for *_, modules in V3_TABLE1 for m in modules if m not in rows]
    if missing:
        raise ArgumentError(
            f"{summary.model} has no module {missing[0]!r} of Inception v3's Table 1: the "
            "comparison is for inception_v3 (the Table 1 stem); inception_v3_torchvision's "
            "stem has other rows"
        )
    out = []
    for kind, patch, printed, modules in V3_TABLE1:
        ours = _input_of(summary, modules)
        flag = "off" if kind in V3_ERRATA or (printed and printed != ours) else ""
        flag = flag or ("note" if kind in V3_NOTES else "")
        params = sum(rows[m].params for m in modules)
        macs = sum(rows[m].macs for m in modules)
        out.append(V3Row(kind, patch, printed, ours, modules, params, macs, flag))
    return out


def format_inception_v3_table1(summary: Summary, fmt: str = "table") -> str:
    """Table 1 of Inception v3 beside `summary`: the printed input of each row beside the
    model's, the exact parameters and multiply-adds of the modules that make it, and the rows
    the paper's own text contradicts."""
    rows = inception_v3_table1(summary)
    body = [
        [
            r.kind,
            r.patch,
            r.paper_input,
            r.input,
            ", ".join(r.modules) if len(r.modules) < 3 else f"{r.modules[0]} ... {r.modules[-1]}",
            f"{r.params:,}" if r.params else "",
            f"{r.macs / 1e6:,.1f}" if r.macs else "",
            r.flag,
        ]
        for r in rows
    ]
    header = ["Table 1 row", "patch/stride", "paper input", "our input", "modules", "params"]
    header += ["MACs (M)", "flag"]
    table = render_markdown(header, body) if fmt == "markdown" else render_table(header, body, 2)
    said = {**V3_NOTES, **V3_ERRATA}
    notes = [f"- {k}: {v}" for k, v in said.items()]
    notes += [
        f"- {r.kind}: the printed input differs" for r in rows if r.flag and r.kind not in said
    ]
    depth = sum(r.depth for r in summary.rows)
    totals = (
        f"Exact: {summary.total_params:,} parameters, {summary.total_macs:,} MACs "
        f"({summary.total_macs / 1e9:.2f} G) at {summary.input_size}x{summary.input_size}, "
        f"{depth} layers with weights; the paper: {', '.join(V3_PAPER_TOTALS)} (abstract), "
        f"{V3_DEPTH} layers deep (section 6)."
    )
    intro = (
        f"Inception v3's Table 1 (the input size of each row) beside {summary.model} at "
        f"{summary.input_size}x{summary.input_size}, with the params and MACs of each row's "
        "modules."
    )
    return "\n".join([intro, "", table, "", "Flagged rows:", *notes, "", totals])


# the `summary --paper` table of each family that has its own (GoogLeNet's Table 1 otherwise)
PAPER_TABLES = {"Inception v3": format_inception_v3_table1}


def format_paper(summary: Summary, family: str = "", fmt: str = "table") -> str:
    """`summary --paper`: the paper's figures beside `summary`, for a model of `family` (its
    card's): the printed sizes and totals of `PAPER_FIGURES` (NIN, BN-Inception), Inception
    v3's Table 1, or GoogLeNet's Table 1 for the rest (which says when the model has not its
    rows)."""
    figures = PAPER_FIGURES.get(summary.model)
    if figures is not None:
        return format_figures(summary, figures, fmt)
    return PAPER_TABLES.get(family, format_table1)(summary, fmt)
