"""`goingdeeper models`: the registry, with each model's paper, input, params and MACs."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ..analysis import model_costs
from ..errors import UsageError
from ..registry import list_models, model_card
from ..tables import render_markdown, render_table
from .common import si


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'googlenet*'")
    p.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; try `goingdeeper models`")
    rows = [(model_card(name), model_costs(name)) for name in names]
    if args.format == "json":
        print(json.dumps([{**card.to_dict(), **asdict(costs)} for card, costs in rows], indent=2))
        return 0
    header = ["model", "paper", "year", "depth", "input", "params", "MACs", "error (paper)"]
    body = [
        [
            card.name,
            card.title,
            str(card.year),
            str(costs.depth),
            f"{card.input_size}x{card.input_size}",
            f"{costs.params:,}",
            si(costs.macs),
            card.top5_error,
        ]
        for card, costs in rows
    ]
    if args.format == "markdown":
        print(render_markdown(header, body))
    else:
        print(render_table(header, body, 2))
    return 0
