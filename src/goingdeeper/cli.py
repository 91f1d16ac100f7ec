"""The `goingdeeper` command. Everything below this file takes objects and returns values;
only this file parses arguments and prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  goingdeeper models
  goingdeeper summary googlenet --paper
  goingdeeper summary googlenet --bottleneck
  goingdeeper summary googlenet_torchvision --input-size 299 --format markdown
  goingdeeper summary googlenet --arg conv1=separable --paper
  goingdeeper weights import bvlc ../shared/data/bvlc-googlenet --out weights/bvlc_googlenet
  goingdeeper weights show weights/bvlc_googlenet.safetensors
  goingdeeper predict photo.jpg --weights weights/bvlc_googlenet.safetensors
"""


class UserError(Exception):
    """A mistake in what was asked: reported as one line, exit code 2."""


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _model_args(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--arg expects KEY=VALUE, got {pair!r} (e.g. --arg conv1=separable)")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _si(n: int) -> str:
    """Multiply-adds in G (10^9), M or K, as the papers print them."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(n)


# --- commands -------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .analysis.summary import render_markdown, render_table
    from .registry import list_models, model_card

    cards = [model_card(name) for name in list_models(args.pattern)]
    if not cards:
        raise UserError(f"no model matches {args.pattern!r}; try `goingdeeper models`")
    if args.format == "json":
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return 0
    header = ["model", "paper", "year", "depth", "input", "params", "MACs", "error (paper)"]
    body = [
        [
            c.name,
            c.title,
            str(c.year),
            str(c.depth),
            f"{c.input_size}x{c.input_size}",
            f"{c.params:,}",
            _si(c.macs),
            c.top5_error,
        ]
        for c in cards
    ]
    print(
        render_markdown(header, body)
        if args.format == "markdown"
        else render_table(header, body, 2)
    )
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .analysis import (
        bottleneck_comparison,
        format_bottleneck,
        format_summary,
        format_table1,
        summarize,
    )
    from .registry import create_model, model_card

    card = model_card(args.model)
    kwargs = _model_args(args.arg)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    size = args.input_size or card.input_size
    if card.family == "GoogLeNet":
        kwargs.setdefault("aux_logits", args.aux)
        kwargs.setdefault("init_weights", False)
        kwargs.setdefault("input_size", size)
    model = create_model(args.model, **kwargs)
    if args.bottleneck:
        if card.family != "GoogLeNet":
            raise UserError(
                "--bottleneck compares GoogLeNet's Inception modules; use it with googlenet"
            )
        print(format_bottleneck(bottleneck_comparison(size), args.format))
        return 0
    summary = summarize(model, size, name=args.model, aux=args.aux, detail=args.detail)
    if args.paper:
        if card.family != "GoogLeNet":
            raise UserError("--paper prints GoogLeNet's Table 1; use it with a googlenet model")
        print(format_table1(summary, args.format))
        return 0
    print(format_summary(summary, args.format))
    return 0


def cmd_weights_import(args: argparse.Namespace) -> int:
    from .weights import import_bvlc, import_torchvision, save_weights

    if args.kind == "bvlc":
        model, card = import_bvlc(args.source, aux_logits=args.aux)
    else:
        source = args.source
        if source == "download":  # needs internet: torchvision fetches its published weights
            import torchvision

            source = torchvision.models.googlenet(weights="DEFAULT").state_dict()
        model, card = import_torchvision(source)
    out = save_weights(model, card, args.out)
    print(
        f"wrote {out} and {out.with_suffix('.json')} ({card.model}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters)"
    )
    for note in card.provenance.get("notes", []):
        print(f"note: {note}")
    return 0


def cmd_weights_show(args: argparse.Namespace) -> int:
    from .weights import read_card

    card = read_card(args.path)
    d = card.to_dict()
    if len(d["class_names"]) > 6:
        d["class_names"] = d["class_names"][:5] + [f"... ({len(card.class_names)} in all)"]
    print(json.dumps(d, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .evaluate.views import VIEW_FUNCTIONS
    from .preprocess import ImageError, load_image
    from .weights import load_weights

    model, card = load_weights(args.weights)
    if args.runtime == "onnxruntime":  # the folded graph, exported once and cached
        from .inference import onnxruntime_model

        model = onnxruntime_model(model, args.weights, card.preprocessing.crop)
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


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from tqdm import tqdm

    from .train import config as cfg
    from .train.trainer import fit

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    direct = {
        "model": args.model,
        "data": args.data,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "out": args.out,
        "device": args.device,
        "amp": args.amp,
        "seed": args.seed,
        "workers": args.workers,
        "input_size": args.input_size,
    }
    config = cfg.resolve(args.preset, args.config, args.set, **direct)
    result = fit(
        config,
        resume=args.resume,
        progress=lambda **kw: tqdm(**kw, leave=False, dynamic_ncols=True),
    )
    if "final" not in result:  # not rank 0, or nothing left to train
        return 0
    _print_training_result(config, result)
    return 0


def _print_training_result(config, result: dict) -> None:
    from .analysis.summary import render_table

    final = result["final"]
    rows = [
        [
            "raw weights",
            f"{final['test_acc']:.2%}",
            f"{final['test_top5']:.2%}",
            result["paths"]["weights"],
        ]
    ]
    if "polyak_test_acc" in final:
        rows.append(
            [
                "Polyak average",
                f"{final['polyak_test_acc']:.2%}",
                f"{final['polyak_test_top5']:.2%}",
                result["paths"]["polyak_weights"],
            ]
        )
    print(
        f"\n{config.model} on {config.data}, {final['epoch']} epochs "
        f"({sum(h['seconds'] for h in result['history']):.0f} s of training):"
    )
    print(render_table(["model", "top-1 acc", "top-5 acc", "weights"], rows, 1))
    if result.get("views"):
        print("\nThe paper's test protocol (section 7: softmax averaged over the views):")
        body = [
            [
                v["model"],
                v["views"],
                str(v["images"]),
                str(v["cost"]),
                f"{v['top1_accuracy']:.2%}",
                f"{v['top5_accuracy']:.2%}",
                f"{v['seconds']:.0f}",
            ]
            for v in result["views"]
        ]
        header = ["model", "views", "images", "cost", "top-1 acc", "top-5 acc", "seconds"]
        print(render_table(header, body, 2))
    for key in ("curves", "log", "checkpoint"):
        if key in result["paths"]:
            print(f"{key}: {result['paths'][key]}")


def _model_to_export(args: argparse.Namespace):
    """(model, input size, preprocessing) from --model NAME or --weights FILE."""
    if args.weights:
        from .weights import load_weights

        model, card = load_weights(args.weights)
        pre = card.preprocessing
    else:
        from .registry import create_model, model_card

        pre = model_card(args.model).preprocessing
        model = create_model(args.model)
    size = args.input_size or pre.crop
    if size < 1:
        raise UserError(f"--input-size must be a positive number of pixels, got {size}")
    return model, size, pre


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .inference import calibration_images, write_onnx

    _check_fusion(args)
    if args.int8 and not args.calibration:
        raise UserError("--int8 needs --calibration DIR: a folder of images to calibrate on")
    if args.calibration and not args.int8:
        raise UserError("--calibration is for --int8; add --int8 or leave it out")
    images = None
    if args.int8:
        try:
            images = calibration_images(args.calibration, args.calibration_images)
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
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


def _check_fusion(args: argparse.Namespace) -> None:
    if args.fuse_1x1 and not args.fused:
        raise UserError("--fuse-1x1 goes with --fused (the 1x1s fuse in the folded graph)")


def _graph_kind(args: argparse.Namespace) -> str:
    if not args.fused:
        return "plain"
    return "BatchNorm folded, 1x1s fused" if args.fuse_1x1 else "BatchNorm folded"


def cmd_export_program(args: argparse.Namespace) -> int:
    from .inference import write_program

    _check_fusion(args)
    model, size, _ = _model_to_export(args)
    out = write_program(model, args.out, size, fused=args.fused, fuse_1x1=args.fuse_1x1)
    print(f"wrote {out} (torch.export program, {size}x{size}; load with torch.export.load)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .inference.bench import BenchOptions, run_benchmarks, write_results

    options = BenchOptions(
        batch_sizes=tuple(args.batch_sizes),
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        only=tuple(args.only or ()),
        data=args.data,
        accuracy_images=args.accuracy_images,
        train=not args.no_train,
        profile=not args.no_profile,
    )
    result = run_benchmarks(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    md, js = write_results(result, args.out)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0


def add_inference_commands(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a model's inference graph as ONNX (fp32 or int8) or a torch.export program",
        epilog="examples:\n"
        "  goingdeeper export onnx --model googlenet_torchvision --out tv.onnx --fused\n"
        "  goingdeeper export onnx --weights bvlc_googlenet.safetensors --out g.onnx --fused\n"
        "  goingdeeper export onnx --weights bvlc_googlenet.safetensors --out g8.onnx --fused \\\n"
        "      --int8 --calibration ../shared/data/imagenet-sample\n"
        "  goingdeeper export program --model googlenet --out googlenet.pt2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    esub = p.add_subparsers(dest="export_command", metavar="FORMAT")
    for name, func, what in (
        ("onnx", cmd_export_onnx, "ONNX file (dynamic batch), checked to run in ONNX Runtime"),
        ("program", cmd_export_program, "torch.export program (.pt2)"),
    ):
        q = esub.add_parser(name, help=what)
        source = q.add_mutually_exclusive_group(required=True)
        source.add_argument("--model", help="a registered model name (random weights)")
        source.add_argument("--weights", help="a .safetensors file written by `weights import`")
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

    p = sub.add_parser(
        "bench",
        help="time our inference paths against torchvision's googlenet on this machine",
        epilog="examples:\n"
        "  goingdeeper bench                            # full run, writes benchmarks/results\n"
        "  goingdeeper bench --only ort --batch-sizes 1 --repeats 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every runtime")
    p.add_argument(
        "--only", nargs="+", help="run the configurations whose name contains one of these"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="shared data folder (bvlc-googlenet, imagenet-sample) for the accuracy columns",
    )
    p.add_argument(
        "--accuracy-images", type=int, default=1000, help="imagenet-sample photos for top-1"
    )
    p.add_argument("--no-train", action="store_true", help="skip the training-step benchmark")
    p.add_argument("--no-profile", action="store_true", help="skip the per-operator profile")
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/inference"), help="(.md and .json)"
    )
    p.set_defaults(func=cmd_bench)


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goingdeeper",
        description="GoogLeNet and the classic CNN line, exactly as published.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models with params and MACs")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'googlenet*'")
    p.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "summary",
        help="per-layer table: shapes, depth, Table 1 channels, params, MACs",
        epilog="examples:\n  goingdeeper summary googlenet --paper\n"
        "  goingdeeper summary googlenet --bottleneck\n"
        "  goingdeeper summary googlenet --aux --detail layers --format csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--paper", action="store_true", help="GoogLeNet: Table 1 beside the exact numbers"
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
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("weights", help="import and inspect weight files")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    q = wsub.add_parser(
        "import",
        help="convert BVLC Caffe or torchvision weights to our format",
        epilog="examples:\n"
        "  goingdeeper weights import bvlc bvlc_googlenet.caffemodel --out bvlc_googlenet\n"
        "  goingdeeper weights import bvlc ../shared/data/bvlc-googlenet --out bvlc_googlenet\n"
        "  goingdeeper weights import torchvision googlenet-1378be20.pth --out tv_googlenet\n"
        "  goingdeeper weights import torchvision download --out tv_googlenet  # needs internet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("kind", choices=["bvlc", "torchvision"])
    q.add_argument("source", help="a .caffemodel, a BVLC blob folder, a .pth file, or 'download'")
    q.add_argument(
        "--out", required=True, help="output path (.safetensors; a .json card beside it)"
    )
    q.add_argument(
        "--aux",
        action="store_true",
        help="bvlc: keep aux heads (freshly initialised when the source lacks them)",
    )
    q.set_defaults(func=cmd_weights_import)
    q = wsub.add_parser("show", help="print a weight file's card")
    q.add_argument("path")
    q.set_defaults(func=cmd_weights_show)

    p = sub.add_parser(
        "train",
        help="train a model with a preset recipe (default: GoogLeNet on the embedded digits)",
        epilog="examples:\n"
        "  goingdeeper train                                  # the digits demo\n"
        "  goingdeeper train --preset paper --data /data/imagenet\n"
        "  goingdeeper train --preset mnist-lenet5 --set lr=0.05 --epochs 10\n"
        "  goingdeeper train --config my.yaml --out runs/x --resume\n"
        "  torchrun --nproc_per_node=2 -m goingdeeper train --preset cifar10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", default="digits", help="paper, digits, mnist-lenet5, cifar10, finetune"
    )
    p.add_argument("--config", action="append", help="a .toml, .yaml or .json config (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field")
    p.add_argument("--model")
    p.add_argument("--data", help="digits, a folder, a .tar(.gz), an MNIST/CIFAR folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float)
    p.add_argument("--input-size", type=int)
    p.add_argument("--out", help="run folder: checkpoint, logs, curves, weights")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.set_defaults(func=cmd_train)

    from .evaluate.commands import add_eval_commands
    from .visualize.commands import add_visualize_commands

    add_eval_commands(sub)
    add_visualize_commands(sub)

    p = sub.add_parser(
        "predict",
        help="top-5 classes of images",
        epilog="example:\n"
        "  goingdeeper predict cat.jpg dog.png --weights bvlc_googlenet.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.set_defaults(func=cmd_predict)

    add_inference_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .evaluate.engine import EvalError
    from .preprocess import ImageError
    from .registry import UnknownModelError
    from .train.checkpoint import CheckpointError
    from .train.config import ConfigError
    from .train.trainer import TrainingError
    from .visualize.trace import VisualizeError
    from .weights import WeightsError

    user_errors = (
        UserError,
        UnknownModelError,
        WeightsError,
        ImageError,
        DataError,
        ConfigError,
        CheckpointError,
        TrainingError,
        VisualizeError,
        EvalError,
    )

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2 if args.command is None else 2
    try:
        return args.func(args)
    except user_errors as e:
        print(f"goingdeeper: error: {e}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as e:  # bad model arguments from --arg and the like
        if _from_user_input(e):
            print(f"goingdeeper: error: {e}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("goingdeeper: interrupted", file=sys.stderr)
        return 130


def _from_user_input(e: Exception) -> bool:
    """Our constructors raise ValueError/TypeError with messages meant for people."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "goingdeeper" in tb.tb_frame.f_code.co_filename


if __name__ == "__main__":
    raise SystemExit(main())
