"""`goingdeeper predict IMAGE...`: the top classes of each image, softmax averaged over the
paper's test views."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import ImageError
from ..evaluate import VIEW_FUNCTIONS
from ..images import load_image
from .common import HELP_FORMAT, load_any_weights, positive


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="top-5 classes of images",
        epilog="example:\n"
        "  goingdeeper predict cat.jpg dog.png --weights bvlc_googlenet.safetensors",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument(
        "--weights", required=True, help="a .safetensors file written by `weights import`"
    )
    p.add_argument("--top", type=int, default=5)
    p.add_argument(
        "--views",
        choices=["1", "10", "144"],
        default="1",
        help="the paper's test views, softmax averaged (section 7); 1 = the weights' transform",
    )
    p.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="onnxruntime: the BatchNorm-folded graph in ONNX (cached in ~/.cache/goingdeeper)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    positive(args.top, "--top")
    model, card = load_any_weights(args.weights, runtime=args.runtime)
    names = card.class_names or [str(i) for i in range(card.num_classes)]
    failed = 0
    for path in args.images:
        try:
            x = VIEW_FUNCTIONS[args.views](load_image(path), card.preprocessing)
        except ImageError as e:
            print(f"goingdeeper: error: {e}", file=sys.stderr)
            failed += 1
            continue
        with torch.inference_mode():  # section 7: softmax averaged over the views
            probs = torch.cat([torch.softmax(model(v), dim=1) for v in x.split(48)]).mean(0)
        top = probs.topk(min(args.top, probs.numel()))
        print(path)
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            print(f"  {p:7.2%}  {i:4d}  {names[i]}")
    return 1 if failed else 0
