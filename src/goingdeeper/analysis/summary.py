"""Per-layer cost of any model: output shape, depth, Table 1 channel columns, params and MACs.

MACs count the multiply-adds of convolutions and linear layers (Table 1's "ops"); FLOPs are
2 x MACs and are always printed under their own name. Counts are per image.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

CHANNEL_COLUMNS = ("ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")
CHANNEL_HEADERS = ("#1x1", "#3x3 red", "#3x3", "#5x5 red", "#5x5", "pool proj")


@dataclass
class Leaf:
    """One executed leaf module (a convolution, a pool, ...)."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    input_needs_grad: bool = False  # only traced with `grad=True`


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


def _macs(module: nn.Module, out: Tensor) -> int:
    """Multiply-adds of one call of a leaf module, per image. A custom layer reports its own
    through a `count_macs(out) -> int` method (per image)."""
    if hasattr(module, "count_macs"):
        return int(module.count_macs(out))
    if isinstance(module, nn.Conv2d):
        per_output = (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        )
        return out[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def trace(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    aux: bool = False,
    in_channels: int | None = None,
) -> list[Leaf]:
    """Run one image through `model` and record every leaf module that executed, in order.

    With `aux` the model runs in training mode (BatchNorm kept in eval mode, nothing updated),
    so that training-only heads execute too. The image has `in_channels` planes, by default
    the model's `in_channels` attribute where it has one (LeNet: 1), else 3.
    """
    return _trace(model, input_size, aux=aux, in_channels=in_channels)[0]


def _trace(
    model: nn.Module,
    input_size: int | tuple[int, int],
    *,
    aux: bool = False,
    in_channels: int | None = None,
    grad: bool = False,
) -> tuple[list[Leaf], dict[str, tuple[int, ...]]]:
    """`trace`, plus the output shape of every container; with `grad` the forward pass runs
    with autograd on, so each leaf records whether its input needed a gradient."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    if in_channels is None:
        in_channels = getattr(model, "in_channels", 3)
    leaves: list[Leaf] = []
    outputs: dict[str, tuple[int, ...]] = {}  # output shape of every module that ran
    handles = []
    names = {m: n for n, m in model.named_modules()}
    was_training = {m: m.training for m in model.modules()}

    def hook(module: nn.Module, inputs: tuple, out: Tensor) -> None:
        if isinstance(out, Tensor):
            leaves.append(
                Leaf(
                    names[module],
                    module,
                    tuple(inputs[0].shape[1:]),
                    tuple(out.shape[1:]),
                    _macs(module, out),
                    inputs[0].requires_grad,
                )
            )

    def container_hook(module: nn.Module, inputs: tuple, out: Tensor) -> None:
        if isinstance(out, Tensor):
            outputs[names[module]] = tuple(out.shape[1:])

    for m in model.modules():
        if not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(hook))
        elif m is not model:
            handles.append(m.register_forward_hook(container_hook))
    try:
        model.train(aux)
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.eval()
        param = next(model.parameters())
        x = torch.zeros(2 if aux else 1, in_channels, h, w, dtype=param.dtype, device=param.device)
        with torch.set_grad_enabled(grad):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for m, t in was_training.items():
            m.training = t
    for leaf in leaves:
        outputs[leaf.name] = leaf.out_shape
    return leaves, outputs


def count_params_macs(model: nn.Module, input_size: int) -> tuple[int, int]:
    """Parameters and per-image MACs of the inference network (training-only heads left out)."""
    leaves = trace(model, input_size)
    executed = {id(p) for leaf in leaves for p in leaf.module.parameters()}
    params = sum(p.numel() for p in model.parameters() if id(p) in executed)
    return params, sum(leaf.macs for leaf in leaves)


def training_step_macs(model: nn.Module, input_size: int) -> dict[str, int]:
    """Per-image multiply-adds of one training step of `model` (training-only heads included).

    Backward costs, for every convolution and linear layer, one pass as large as its forward
    for the weight gradient and one more for the input gradient, which autograd skips where the
    layer's input needs none (a first layer reading the image). Returns the three parts, their
    sum and the convolutions' share of it: {"forward", "weight_grad", "input_grad", "total",
    "convolution"}.
    """
    leaves = _trace(model, input_size, aux=True, grad=True)[0]

    def weight_grad(leaf: Leaf) -> int:
        return leaf.macs if leaf.module.weight.requires_grad else 0

    def input_grad(leaf: Leaf) -> int:
        return leaf.macs if leaf.input_needs_grad else 0

    weighted = [lf for lf in leaves if isinstance(lf.module, (nn.Conv2d, nn.Linear))]
    parts = {
        "forward": sum(leaf.macs for leaf in leaves),
        "weight_grad": sum(weight_grad(lf) for lf in weighted),
        "input_grad": sum(input_grad(lf) for lf in weighted),
    }
    convs = [lf for lf in weighted if isinstance(lf.module, nn.Conv2d)]
    return {
        **parts,
        "total": sum(parts.values()),
        "convolution": sum(lf.macs + weight_grad(lf) + input_grad(lf) for lf in convs),
    }


# --- rows -------------------------------------------------------------------------------------

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


def _patch(leaf: Leaf) -> str:
    m = leaf.module
    if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        (kh, kw), (sh, _) = _pair(m.kernel_size), _pair(m.stride)
        return f"{kh}x{kw}/{sh}"
    if isinstance(m, nn.AdaptiveAvgPool2d) and len(leaf.in_shape) == 3:
        return (
            f"{leaf.in_shape[1]}x{leaf.in_shape[2]}/1"
            if leaf.out_shape[1:] == (1, 1)
            else "adaptive"
        )
    return ""


def _depth(module: nn.Module) -> int:
    """Layers with weights along the longest path (Table 1's "depth")."""
    from ..models.googlenet import Inception, SeparableConv1

    if getattr(module, "summary_depth", None) is not None:  # a block that states its own,
        return module.summary_depth  # e.g. a residual block: its shortcut adds no depth
    if isinstance(module, Inception):
        return max(
            _depth(b)
            for b in (module.branch1x1, module.branch3x3, module.branch5x5, module.branch_pool)
        )
    if isinstance(module, SeparableConv1):
        return 1
    if isinstance(module, nn.Conv2d | nn.Linear):
        return 1
    return sum(_depth(c) for c in module.children())


def _channels(modules: list[nn.Module]) -> dict[str, int | None]:
    from ..models.googlenet import Inception

    cols: dict[str, int | None] = dict.fromkeys(CHANNEL_COLUMNS)
    if len(modules) == 1 and isinstance(modules[0], Inception):
        cols.update(zip(CHANNEL_COLUMNS, modules[0].widths, strict=True))
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
    leaves, outputs = _trace(model, input_size, aux=aux)
    if detail == "layers":
        rows = [_leaf_row(leaf) for leaf in leaves if not isinstance(leaf.module, nn.ReLU)]
    elif detail == "stages":
        rows = _stage_rows(model, leaves, outputs)
    else:
        raise ValueError(f"detail must be 'stages' or 'layers', got {detail!r}")
    executed = {id(p) for leaf in leaves for p in leaf.module.parameters()}
    total_params = sum(p.numel() for p in model.parameters() if id(p) in executed)
    return Summary(
        name or type(model).__name__,
        input_size,
        rows,
        total_params,
        sum(leaf.macs for leaf in leaves),
    )


def _leaf_row(leaf: Leaf) -> Row:
    m = leaf.module
    params = sum(p.numel() for p in m.parameters(recurse=False))
    return Row(
        leaf.name,
        _type_of(m),
        _patch(leaf),
        leaf.out_shape,
        _depth(m),
        params,
        _weights(m),
        leaf.macs,
        dict.fromkeys(CHANNEL_COLUMNS),
    )


def _stage_rows(
    model: nn.Module, leaves: list[Leaf], outputs: dict[str, tuple[int, ...]]
) -> list[Row]:
    groups: dict[str, tuple[str, ...]] = getattr(model, "summary_groups", {})
    member_of = {member: group for group, members in groups.items() for member in members}
    order: list[str] = []
    by_stage: dict[str, list[Leaf]] = {}
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
        output = outputs.get(last, stage_leaves[-1].out_shape)
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


def _stage_type(members: list[nn.Module], leaves: list[Leaf]) -> str:
    from ..models.googlenet import Inception, InceptionAux

    if isinstance(members[0], Inception):
        return "inception"
    if isinstance(members[0], InceptionAux):
        return "aux head"
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


def render_table(header: list[str], body: list[list[str]], right_from: int = 4) -> str:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            out.append(c.rjust(w) if i >= right_from else c.ljust(w))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *[line(r) for r in body]])


def render_markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


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
    raise ValueError(f"format must be table, markdown, csv or json, got {fmt!r}")
