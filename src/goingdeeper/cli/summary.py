"""`goingdeeper summary MODEL`: the per-layer table, Table 1 beside the exact numbers, or the
bottleneck arithmetic."""

from __future__ import annotations

import argparse

from ..analysis import (
    bottleneck_comparison,
    format_bottleneck,
    format_paper,
    format_summary,
    summarize,
)
from ..registry import build_shell, model_card
from .common import HELP_FORMAT, model_args, positive


def add_parser(sub) -> None:
    p = sub.add_parser(
        "summary",
        help="per-layer table: shapes, depth, Table 1 channels, params, MACs",
        epilog="examples:\n  goingdeeper summary googlenet --paper\n"
        "  goingdeeper summary googlenet --bottleneck\n"
        "  goingdeeper summary googlenet --aux --detail layers --format csv",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("model")
    p.add_argument(
        "--input-size", type=int, default=None, help="square input (default: the model's)"
    )
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument(
        "--detail",
        choices=["stages", "layers"],
        default="stages",
        help="one row per Table 1 row (stages) or per layer",
    )
    p.add_argument("--aux", action="store_true", help="include the training-only aux heads")
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's figures beside the exact numbers (GoogLeNet's Table 1, "
        "BN-Inception's Figure 5, NIN's)",
    )
    p.add_argument(
        "--bottleneck",
        action="store_true",
        help="GoogLeNet: each branch's MACs with and without the 1x1 reductions",
    )
    p.add_argument(
        "--arg",
        action="append",
        metavar="KEY=VALUE",
        help="a model constructor argument, e.g. conv1=separable (repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    card = model_card(args.model)
    positive(args.input_size, "--input-size")
    positive(args.num_classes, "--num-classes")
    size = args.input_size or card.input_size
    if args.bottleneck:
        print(format_bottleneck(bottleneck_comparison(size, args.model), args.format))
        return 0
    kwargs = model_args(args.arg)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if card.has_aux:
        kwargs.setdefault("aux_logits", args.aux)
    if card.takes_input_size:
        kwargs.setdefault("input_size", size)
    model = build_shell(args.model, **kwargs)  # shapes are all a table needs
    summary = summarize(model, size, name=args.model, aux=args.aux, detail=args.detail)
    print(
        format_paper(summary, args.format) if args.paper else format_summary(summary, args.format)
    )
    return 0
