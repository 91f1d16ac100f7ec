"""`goingdeeper export onnx|program|torchscript`: a model's inference graph as a file."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ..errors import UsageError
from ..factory import create_model
from ..files import writable
from ..inference import (
    calibration_images,
    deployable,
    write_onnx,
    write_program,
    write_torchscript,
)
from ..registry import model_card
from .common import HELP_FORMAT, WEIGHTS_HELP, load_any_weights, positive


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a model's inference graph: ONNX (fp32 or int8), torch.export, TorchScript",
        epilog="examples:\n"
        "  goingdeeper export onnx --model googlenet_torchvision --out tv.onnx --fused\n"
        "  goingdeeper export onnx --weights googlenet.bvlc_in1k --out g.onnx --fused\n"
        "  goingdeeper export onnx --weights bvlc_googlenet.safetensors --out g8.onnx --fused \\\n"
        "      --int8 --calibration ../shared/data/imagenet-sample\n"
        "  goingdeeper export program --model googlenet --out googlenet.pt2\n"
        "  goingdeeper export torchscript --weights bvlc_googlenet.safetensors --out g.pt",
        formatter_class=HELP_FORMAT,
    )
    esub = p.add_subparsers(dest="export_command", metavar="FORMAT")
    for name, func, what in (
        ("onnx", run_onnx, "ONNX file (dynamic batch), checked to run in ONNX Runtime"),
        ("program", run_program, "torch.export program (.pt2)"),
        ("torchscript", run_torchscript, "TorchScript module (.pt), traced in eval mode"),
    ):
        q = esub.add_parser(name, help=what)
        source = q.add_mutually_exclusive_group(required=True)
        source.add_argument("--model", help="a registered model name (random weights)")
        source.add_argument("--weights", metavar="W", help=WEIGHTS_HELP)
        q.add_argument("--out", required=True, type=Path)
        q.add_argument("--input-size", type=int, help="square input (default: the crop size)")
        q.add_argument(
            "--fused",
            action="store_true",
            help="the fast graph: every BatchNorm folded into its convolution",
        )
        q.add_argument(
            "--fuse-1x1",
            action="store_true",
            help="with --fused: each Inception module's three 1x1s on its input as one conv "
            "and a Split (faster in PyTorch, slower in ONNX Runtime)",
        )
        if name == "onnx":
            q.add_argument("--int8", action="store_true", help="int8 static quantization (QDQ)")
            q.add_argument("--calibration", type=Path, help="folder of calibration images")
            q.add_argument(
                "--calibration-images", type=int, default=200, help="how many to use (sorted)"
            )
        q.set_defaults(func=func)


MAX_EXPORT_SIZE = 4096  # the largest side any command takes


def _model_to_export(args: argparse.Namespace):
    """(model, input size, preprocessing) from --model NAME or --weights FILE, once --out is
    known to be writable and the size one the model takes."""
    positive(args.input_size, "--input-size")
    writable(args.out)
    if args.weights:
        model, card = load_any_weights(args.weights)
        pre = card.preprocessing
    else:
        pre = model_card(args.model).preprocessing
        model = create_model(args.model)
    size = args.input_size or pre.crop
    low, high = getattr(model, "min_size", 1), getattr(model, "max_size", None) or MAX_EXPORT_SIZE
    if not low <= size <= high:
        raise UsageError(
            f"--input-size {size}: this {type(model).__name__} takes {low} to {high} pixels"
        )
    return model, size, pre


def _check_fusion(args: argparse.Namespace) -> None:
    if args.fuse_1x1 and not args.fused:
        raise UsageError("--fuse-1x1 goes with --fused (the 1x1s fuse in the folded graph)")


def _graph_kind(args: argparse.Namespace) -> str:
    if not args.fused:
        return "plain"
    return "BatchNorm folded, 1x1s fused" if args.fuse_1x1 else "BatchNorm folded"


def run_onnx(args: argparse.Namespace) -> int:
    _check_fusion(args)
    if args.int8 and not args.calibration:
        raise UsageError("--int8 needs --calibration DIR: a folder of images to calibrate on")
    if args.calibration and not args.int8:
        raise UsageError("--calibration is for --int8; add --int8 or leave it out")
    images = calibration_images(args.calibration, args.calibration_images) if args.int8 else None
    model, size, pre = _model_to_export(args)
    out = write_onnx(
        model,
        args.out,
        size,
        fused=args.fused,
        fuse_1x1=args.fuse_1x1,
        int8_calibration=images,
        preprocessing=pre,
    )
    kind = f"int8, calibrated on {len(images)} images" if images else "fp32"
    print(f"wrote {out} ({kind}, {_graph_kind(args)} graph, {size}x{size})")
    return 0


def run_program(args: argparse.Namespace) -> int:
    _check_fusion(args)
    model, size, _ = _model_to_export(args)
    out = write_program(model, args.out, size, fused=args.fused, fuse_1x1=args.fuse_1x1)
    print(f"wrote {out} (torch.export program, {size}x{size}; load with torch.export.load)")
    return 0


def run_torchscript(args: argparse.Namespace) -> int:
    _check_fusion(args)
    model, size, _ = _model_to_export(args)
    net = deployable(model, size, fused=args.fused, fuse_1x1=args.fuse_1x1)
    with warnings.catch_warnings():  # said once below, in a line of ours
        warnings.filterwarnings("ignore", "`torch.jit.trace", FutureWarning)
        out = write_torchscript(net, args.out, size)
    print(f"wrote {out} (TorchScript, traced at {size}x{size}; load with torch.jit.load)")
    print("note: PyTorch deprecates TorchScript; `goingdeeper export program` writes torch.export")
    return 0
