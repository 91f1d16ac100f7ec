"""`goingdeeper predict IMAGE...`: the top classes of each image, softmax averaged over the
paper's test views."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..data.imagenet.classes import ClassMap
from ..data.sources import discover
from ..errors import EvalError, ImageError, UsageError
from ..evaluate import VIEW_FUNCTIONS
from ..images import load_image
from .common import (
    HELP_FORMAT,
    WEIGHTS_HELP,
    add_image_limit,
    load_any_weights,
    positive,
    printable,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="top-5 classes of images",
        epilog="examples:\n"
        "  goingdeeper predict cat.jpg --weights googlenet.bvlc_in1k\n"
        "  goingdeeper predict cat.jpg dog.png --weights bvlc_googlenet.safetensors\n"
        "  goingdeeper predict --data val/ --weights bvlc_googlenet.safetensors",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("images", nargs="*", type=Path)
    add_image_limit(p)
    p.add_argument(
        "--data",
        type=Path,
        help="a labelled folder (the layouts `eval` reads): each image's true class is shown "
        "beside its prediction, and the hit rates at the end",
    )
    p.add_argument("--labels", type=Path, help="label file of a flat ILSVRC2012_val_* folder")
    p.add_argument("--weights", required=True, metavar="W", help=WEIGHTS_HELP)
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
    if not args.images and args.data is None:
        raise UsageError("give images to classify, or --data FOLDER of labelled images")
    if args.labels is not None and args.data is None:
        raise UsageError("--labels labels a --data folder; give --data too")
    model, card = load_any_weights(args.weights, runtime=args.runtime)
    names = [printable(n) for n in card.class_names or range(card.num_classes)]
    items = [(str(path), lambda p=path: load_image(p), None) for path in args.images]
    if args.data is not None:
        source = discover(args.data, args.labels, known=ClassMap.for_card(card))
        found = source.split(source.scored_split())
        items += [
            (found.describe(i), lambda i=i: found.decode(i), found.targets[i])
            for i in range(len(found))
        ]
    failed, hits = 0, [0, 0, 0]  # labelled images scored, top-1 and top-5 hits
    for path, image, truth in items:
        try:
            x = VIEW_FUNCTIONS[args.views](image(), card.preprocessing)
        except ImageError as e:
            print(f"goingdeeper: error: {e}", file=sys.stderr)
            failed += 1
            continue
        with torch.inference_mode():  # section 7: softmax averaged over the views
            scores = torch.cat([model(v) for v in x.split(48)])
        if not torch.isfinite(scores).all():
            raise EvalError(
                f"{args.weights} gives scores that are not finite (NaN or infinity) for "
                f"{printable(path)}: its weights or its preprocessing (a zero std?) are broken, "
                "so no class it names would mean anything"
            )
        probs = torch.softmax(scores, dim=1).mean(0)
        top = probs.topk(min(args.top, probs.numel()))
        shown = printable(path)
        print(shown if truth is None else f"{shown}  (true class {truth} {names[truth]})")
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            print(f"  {p:7.2%}  {i:4d}  {names[i]}" + ("  <- true" if i == truth else ""))
        if truth is not None:
            best = probs.topk(min(5, probs.numel())).indices.tolist()
            hits = [hits[0] + 1, hits[1] + (best[0] == truth), hits[2] + (truth in best)]
    if hits[0]:
        n, top1, top5 = hits
        print(f"{n} labelled images: top-1 {top1 / n:.1%} ({top1}), top-5 {top5 / n:.1%} ({top5})")
    return 1 if failed else 0
