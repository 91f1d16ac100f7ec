"""Per-layer cost of any model: output shape, depth, Table 1 channel columns, params and MACs;
and the counts of every registered model (`model_costs`).

MACs count the multiply-adds of convolutions and linear layers (Table 1's "ops"); FLOPs are
2 x MACs and are always printed under their own name. Counts are per image. Blocks state how
they are shown (`summary_type`, `summary_depth`, `summary_channels`, a model's
`summary_groups`); nothing here recognises a model by its class.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from functools import cache

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ArgumentError
from ..registry import build_shell, model_card
from ..tables import render_markdown, render_table
from .counts import forward_trace
from .trace import Step

CHANNEL_COLUMNS = ("ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")
CHANNEL_HEADERS = ("#1x1", "#3x3 red", "#3x3", "#5x5 red", "#5x5", "pool proj")


@dataclass
class Row:
    name: str
    type: str
    patch: str
    output: tuple[int, ...]  # C x H x W (or features)
    depth: int
    params: int
    weights: int  # weights only, no biases or BatchNorm (Table 1's convention)
    macs: int
    channels: dict[str, int | None] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Summary:
    model: str
    input_size: int
    rows: list[Row]
    total_params: int  # every parameter of the model, executed or not
    total_macs: int

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["output"] = list(r.output)
            d["flops"] = r.flops
            rows.append(d)
        return {
            "model": self.model,
            "input_size": self.input_size,
            "rows": rows,
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
        }


_TYPES = [
    (nn.Conv2d, "convolution"),
    (nn.MaxPool2d, "max pool"),
    (nn.AvgPool2d, "avg pool"),
    (nn.AdaptiveAvgPool2d, "avg pool"),
    (nn.LocalResponseNorm, "LRN"),
    (nn.Dropout, "dropout"),
    (nn.Linear, "linear"),
    (_BatchNorm, "batch norm"),
    (nn.ReLU, "ReLU"),
]


def _type_of(module: nn.Module) -> str:
    for cls, label in _TYPES:
        if isinstance(module, cls):
            return label
    return type(module).__name__


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _patch(leaf: Step) -> str:
    m = leaf.module
    if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        (kh, kw), (sh, _) = _pair(m.kernel_size), _pair(m.stride)
        return f"{kh}x{kw}/{sh}"
    if isinstance(m, nn.AdaptiveAvgPool2d) and len(leaf.in_shape) == 4:  # N x C x H x W
        return (
            f"{leaf.in_shape[2]}x{leaf.in_shape[3]}/1"
            if leaf.out_shape[2:] == (1, 1)
            else "adaptive"
        )
    return ""


def _depth(module: nn.Module) -> int:
    """Layers with weights along the longest path (Table 1's "depth")."""
    if getattr(module, "summary_depth", None) is not None:  # a block that states its own: an
        return module.summary_depth  # Inception module, a residual block (not its shortcut)
    if isinstance(module, nn.Conv2d | nn.Linear):
        return 1
    return sum(_depth(c) for c in module.children())


def _channels(modules: list[nn.Module]) -> dict[str, int | None]:
    cols: dict[str, int | None] = dict.fromkeys(CHANNEL_COLUMNS)
    declared = getattr(modules[0], "summary_channels", None) if len(modules) == 1 else None
    if declared is not None:  # a module that states Table 1's columns (Inception)
        cols.update({k: v for k, v in declared.items() if k in cols})
        return cols
    convs = [m for mod in modules for m in mod.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) == 2 and convs[0].kernel_size == (1, 1) and convs[1].kernel_size[0] in (3, 5):
        k = convs[1].kernel_size[0]  # a 1x1 reduction then a kxk: Table 1's conv2 row
        cols[f"ch{k}x{k}red"], cols[f"ch{k}x{k}"] = convs[0].out_channels, convs[1].out_channels
    return cols


def _weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def summarize(
    model: nn.Module, input_size: int, *, name: str = "", aux: bool = False, detail: str = "stages"
) -> Summary:
    """The per-layer table. `detail="stages"`: one row per top-level layer or module (Table 1's
    rows); `"layers"`: one row per executed leaf module."""
    traced = forward_trace(model, input_size, aux=aux)
    leaves = traced.steps
    outputs = {name: shape[1:] for name, shape in traced.shapes.items()}  # per image
    if detail == "layers":
        rows = [_leaf_row(leaf) for leaf in leaves if not isinstance(leaf.module, nn.ReLU)]
    elif detail == "stages":
        rows = _stage_rows(model, leaves, outputs)
    else:
        raise ArgumentError(f"detail must be 'stages' or 'layers', got {detail!r}")
    executed = {id(p) for leaf in leaves for p in leaf.module.parameters()}
    total_params = sum(p.numel() for p in model.parameters() if id(p) in executed)
    return Summary(
        name or type(model).__name__,
        input_size,
        rows,
        total_params,
        sum(leaf.macs for leaf in leaves),
    )


def _leaf_row(leaf: Step) -> Row:
    m = leaf.module
    params = sum(p.numel() for p in m.parameters(recurse=False))
    return Row(
        leaf.name,
        _type_of(m),
        _patch(leaf),
        leaf.out_shape[1:],
        _depth(m),
        params,
        _weights(m),
        leaf.macs,
        dict.fromkeys(CHANNEL_COLUMNS),
    )


def _stage_rows(
    model: nn.Module, leaves: list[Step], outputs: dict[str, tuple[int, ...]]
) -> list[Row]:
    groups: dict[str, tuple[str, ...]] = getattr(model, "summary_groups", {})
    member_of = {member: group for group, members in groups.items() for member in members}
    order: list[str] = []
    by_stage: dict[str, list[Step]] = {}
    for leaf in leaves:
        stage = _stage_of(leaf.name, member_of)
        if stage not in by_stage:
            order.append(stage)
            by_stage[stage] = []
        by_stage[stage].append(leaf)
    children = dict(model.named_modules())  # group members may be dotted paths
    rows = []
    for stage in order:
        members = [children[n] for n in groups.get(stage, (stage,)) if n in children]
        if not members:  # leaves directly on the model (a functional-free layout)
            members = [by_stage[stage][0].module]
        stage_leaves = by_stage[stage]
        module = members[0]
        is_leaf_stage = len(members) == 1 and not any(True for _ in module.children())
        kind = _type_of(module) if is_leaf_stage else _stage_type(members, stage_leaves)
        patch = ""
        if len(stage_leaves) == 1:
            patch = _patch(stage_leaves[0])
        elif kind == "convolution":  # the last convolution's patch (Table 1's conv2: 3x3/1)
            patch = _patch([lf for lf in stage_leaves if lf.macs][-1])
        last = groups.get(stage, (stage,))[-1]
        output = outputs.get(last, stage_leaves[-1].out_shape[1:])
        rows.append(
            Row(
                stage,
                kind,
                patch,
                output,
                sum(_depth(m) for m in members),
                sum(p.numel() for m in members for p in m.parameters()),
                sum(_weights(m) for m in members),
                sum(lf.macs for lf in stage_leaves),
                _channels(members),
            )
        )
    return rows


def _stage_of(name: str, member_of: dict[str, str]) -> str:
    """A leaf's stage: the group of its longest prefix named in `summary_groups` (which may
    name nested modules, e.g. DenseNet's `features.denseblock1`), else its top-level module."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        group = member_of.get(".".join(parts[:i]))
        if group is not None:
            return group
    return parts[0]


def _stage_type(members: list[nn.Module], leaves: list[Step]) -> str:
    declared = getattr(members[0], "summary_type", None)  # "inception", "aux head"
    if declared is not None:
        return declared
    kinds = {_type_of(lf.module) for lf in leaves} - {"ReLU", "batch norm"}
    return kinds.pop() if len(kinds) == 1 else type(members[0]).__name__


# --- output formats -----------------------------------------------------------------------------


def _fmt_shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}x{shape[0]}"
    return "x".join(str(s) for s in shape)


def _table_cells(summary: Summary) -> tuple[list[str], list[list[str]]]:
    show_channels = any(v is not None for r in summary.rows for v in r.channels.values())
    header = ["layer", "type", "patch/stride", "output", "depth"]
    if show_channels:
        header += list(CHANNEL_HEADERS)
    header += ["params", "MACs"]
    body = []
    for r in summary.rows:
        cells = [r.name, r.type, r.patch, _fmt_shape(r.output), str(r.depth) if r.depth else ""]
        if show_channels:
            cells += [
                "" if r.channels.get(c) is None else str(r.channels[c]) for c in CHANNEL_COLUMNS
            ]
        cells += [f"{r.params:,}" if r.params else "", f"{r.macs:,}" if r.macs else ""]
        body.append(cells)
    total = ["total", "", "", "", str(sum(r.depth for r in summary.rows))]
    if show_channels:
        total += [""] * len(CHANNEL_COLUMNS)
    total += [f"{summary.total_params:,}", f"{summary.total_macs:,}"]
    body.append(total)
    return header, body


def _footer(summary: Summary) -> str:
    return (
        f"{summary.model} at {summary.input_size}x{summary.input_size}: "
        f"{summary.total_params:,} parameters, {summary.total_macs:,} MACs "
        f"({summary.total_macs / 1e9:.3f} G), {summary.total_flops:,} FLOPs "
        f"({summary.total_flops / 1e9:.3f} G; FLOPs = 2 x MACs)"
    )


def format_summary(summary: Summary, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(summary.to_dict(), indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            [
                "layer",
                "type",
                "patch",
                "output",
                "depth",
                *CHANNEL_COLUMNS,
                "params",
                "weights",
                "macs",
                "flops",
            ]
        )
        for r in summary.rows:
            writer.writerow(
                [
                    r.name,
                    r.type,
                    r.patch,
                    _fmt_shape(r.output),
                    r.depth,
                    *["" if r.channels.get(c) is None else r.channels[c] for c in CHANNEL_COLUMNS],
                    r.params,
                    r.weights,
                    r.macs,
                    r.flops,
                ]
            )
        writer.writerow(
            [
                "total",
                "",
                "",
                "",
                "",
                *[""] * len(CHANNEL_COLUMNS),
                summary.total_params,
                "",
                summary.total_macs,
                summary.total_flops,
            ]
        )
        return buf.getvalue()
    header, body = _table_cells(summary)
    if fmt == "markdown":
        return render_markdown(header, body) + "\n\n" + _footer(summary)
    if fmt == "table":
        return render_table(header, body) + "\n\n" + _footer(summary)
    raise ArgumentError(f"format must be table, markdown, csv or json, got {fmt!r}")


# --- the registered models -----------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """A registered model at its card's input size, default arguments, no training-only heads."""

    params: int
    macs: int
    depth: int  # layers with weights along the longest path

    @property
    def flops(self) -> int:
        return 2 * self.macs


@cache
def counting_model(name: str, **kwargs) -> nn.Module:
    """A registered model for counting: shapes without values (`build_shell`), and without
    the aux heads, which the papers' counts leave out."""
    if model_card(name).has_aux:
        kwargs["aux_logits"] = False
    return build_shell(name, **kwargs)


def model_costs(name: str) -> Costs:
    """Parameters, multiply-adds and depth of the registered model `name`."""
    card = model_card(name)
    summary = summarize(counting_model(name), card.input_size, name=name)
    return Costs(summary.total_params, summary.total_macs, sum(r.depth for r in summary.rows))
