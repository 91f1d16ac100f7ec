"""`goingdeeper train`: a training run from a preset, config files and overrides."""

from __future__ import annotations

import argparse
import logging

from tqdm import tqdm

from ..results import FitResult
from ..tables import render_table
from ..train import config as cfg
from ..train import fit
from .common import HELP_FORMAT, WEIGHTS_HELP, add_image_limit


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with a preset recipe (default: GoogLeNet on the embedded digits)",
        epilog="examples:\n"
        "  goingdeeper train                                  # the digits demo\n"
        "  goingdeeper train --preset paper --data /data/imagenet\n"
        "  goingdeeper train --preset mnist-lenet5 --set lr=0.05 --epochs 10\n"
        "  goingdeeper train --config my.yaml --out runs/x --resume\n"
        "  goingdeeper train --preset finetune --weights googlenet.bvlc_in1k --data photos/\n"
        "  torchrun --nproc_per_node=2 -m goingdeeper train --preset cifar10",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument(
        "--preset", default="digits", help=", ".join(cfg.list_presets()) + " (default: digits)"
    )
    p.add_argument("--config", action="append", help="a .toml, .yaml or .json config (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field")
    p.add_argument("--model")
    p.add_argument(
        "--weights",
        metavar="W",
        help="the initial weights (config init_weights; --set new_head=true for a new "
        "classifier on the data's classes): " + WEIGHTS_HELP,
    )
    add_image_limit(p)
    p.add_argument("--data", help="digits, a folder, a .tar(.gz), an MNIST/CIFAR folder")
    p.add_argument(
        "--holdout",
        type=float,
        metavar="F",
        help="data of one split (a class tree): hold out a stratified fraction F of each class "
        "as 'test' (seed 0), e.g. 0.2",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float)
    p.add_argument("--input-size", type=int)
    p.add_argument("--out", help="run folder: checkpoint, logs, curves, weights")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument(
        "--loader",
        choices=cfg.CHOICES["loader"],
        help="who decodes and augments: auto (tensor on a GPU where it can, else pil), pil "
        "(Pillow in the workers), tensor (the batch on the device), dali (NVIDIA DALI)",
    )
    p.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile the training step"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run OUT holds (its files deleted)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    direct = {
        "model": args.model,
        "data": args.data,
        "holdout": args.holdout,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "out": args.out,
        "device": args.device,
        "init_weights": args.weights,
        "amp": args.amp,
        "seed": args.seed,
        "workers": args.workers,
        "input_size": args.input_size,
        "loader": args.loader,
        "compile": args.compile,
    }
    config = cfg.resolve(args.preset, args.config, args.set, **direct)
    result = fit(
        config,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=lambda **kw: tqdm(**kw, leave=False, dynamic_ncols=True),
    )
    if result.final is not None:  # rank 0, with something trained
        print_result(config, result)
    return 0


def print_result(config: cfg.TrainConfig, result: FitResult) -> None:
    """The final accuracies of the raw and averaged weights, the paper's views, the files."""
    final, paths = result.final, result.paths
    rows = [["raw weights", final.test_acc, final.test_top5, paths.weights]]
    if paths.polyak_weights is not None:
        polyak = [final.polyak_test_acc, final.polyak_test_top5]
        rows.append(["Polyak average", *polyak, paths.polyak_weights])
    seconds = sum(h.seconds for h in result.history)
    print(f"\n{config.model} on {config.data}, {final.epoch} epochs ({seconds:.0f} s of training):")
    body = [[name, f"{top1:.2%}", f"{top5:.2%}", path] for name, top1, top5, path in rows]
    print(render_table(["model", "top-1 acc", "top-5 acc", "weights"], body, 1))
    if result.views:
        print("\nThe paper's test protocol (section 7: softmax averaged over the views):")
        header = ["model", "views", "images", "cost", "top-1 acc", "top-5 acc", "seconds"]
        body = [
            [
                v.model,
                v.views,
                str(v.images),
                str(v.cost),
                f"{v.top1_accuracy:.2%}",
                f"{v.top5_accuracy:.2%}",
                f"{v.seconds:.0f}",
            ]
            for v in result.views
        ]
        print(render_table(header, body, 2))
    for name, path in (
        ("curves", paths.curves),
        ("log", paths.log),
        ("checkpoint", paths.checkpoint),
    ):
        if path is not None:
            print(f"{name}: {path}")
