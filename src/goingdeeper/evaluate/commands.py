"""The `goingdeeper eval` command: the test protocol over a folder, printed as a Table 3 grid.

This is CLI layer (it parses and prints); `add_eval_commands` is wired into `cli.py`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .engine import AGGREGATES, VIEWS, EvalError, evaluate
from .grid import FORMATS, format_grid, grid_rows, member_results, paper_rows
from .samples import folder_samples
from .views import DENSE_SCALES

EXAMPLES = """\
examples:
  goingdeeper eval --weights bvlc_googlenet.safetensors --data ../shared/data/imagenet-sample
  goingdeeper eval --weights ../shared/data/bvlc-googlenet --data val/ --views 1,10,144 --paper
  goingdeeper eval --weights a.safetensors b.safetensors --data val/ --views 1,10 --ensemble
  goingdeeper eval --weights vgg16.safetensors --data val/ --views dense --scales 256,384,512
"""


def add_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval` to the `goingdeeper` subcommands."""
    p = subparsers.add_parser(
        "eval",
        help="top-1/top-5 error with 1, 10 or 144 crops, dense, ensembles (Table 3 grid)",
        description="Evaluate weights on a labelled image folder with the published test "
        "protocols and print a grid laid out like GoogLeNet's Table 3.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--weights",
        nargs="+",
        required=True,
        metavar="PATH",
        help="weight files (.safetensors from `weights import`); a BVLC blob folder or a "
        ".caffemodel is imported on the fly",
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="an ImageFolder tree (root/<class>/<image>) or a flat folder of one image per "
        "class in sorted class order (the imagenet-sample layout)",
    )
    p.add_argument(
        "--views",
        default="1",
        help=f"comma-separated protocols among {', '.join(VIEWS)} (default: 1)",
    )
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="with several weights, also the ensemble (softmax averaged over the models)",
    )
    p.add_argument("--aggregate", choices=AGGREGATES, default="softmax")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=64, help="views per forward pass")
    p.add_argument(
        "--scales",
        default=",".join(map(str, DENSE_SCALES)),
        help="dense evaluation: shorter sides Q (default: VGG's 256,384,512)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="onnxruntime: each model's BatchNorm-folded graph exported to ONNX (cached in "
        "~/.cache/goingdeeper) and run by ONNX Runtime on the CPU",
    )
    p.add_argument("--paper", action="store_true", help="also print the paper's Table 3 rows")
    p.set_defaults(func=cmd_eval)


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EvalError(f"{what} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise EvalError(f"{what} expects positive integers, got {text!r}")
    return values


def _views(text: str) -> list[str]:
    views = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise EvalError(f"--views takes {', '.join(VIEWS)} (comma-separated); got {text!r}")
    return views


def _load(path: str, device: str, runtime: str = "torch"):
    from ..weights import import_bvlc, load_weights

    p = Path(path)
    model, card = import_bvlc(p) if p.is_dir() or p.suffix == ".caffemodel" else load_weights(p)
    if runtime == "onnxruntime":
        from ..inference import onnxruntime_model

        return onnxruntime_model(model, p, card.preprocessing.crop), card
    return model.to(device), card


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def _samples(data: Path, card):
    """Labels of an ImageFolder tree follow the weights' classes: by name when every folder is
    named after one of the card's classes, else sorted folder order when the tree has them all
    (the ImageNet wnid layout)."""
    samples, folders = folder_samples(data)
    if not folders:
        return samples
    index = {_normal(n): i for i, n in enumerate(card.class_names)}
    if all(_normal(f) in index for f in folders):
        return folder_samples(data, {f: index[_normal(f)] for f in folders})[0]
    if len(folders) != card.num_classes:
        raise EvalError(
            f"{data}: {len(folders)} class folders but the weights have "
            f"{card.num_classes} classes; name the folders after the classes "
            f"(e.g. {card.class_names[0] if card.class_names else '0'!r}) or give all "
            f"{card.num_classes}"
        )
    return samples


def cmd_eval(args: argparse.Namespace) -> int:
    views = _views(args.views)
    scales = _int_list(args.scales, "--scales")
    if args.limit is not None and args.limit < 1:
        raise EvalError(f"--limit must be at least 1, got {args.limit}")
    if args.runtime == "onnxruntime" and args.device != "cpu":
        raise EvalError("--runtime onnxruntime runs on the CPU; leave --device out")
    if args.runtime == "onnxruntime" and "dense" in views:
        raise EvalError("dense evaluation needs inputs of several sizes: use --runtime torch")
    loaded = [_load(w, args.device, args.runtime) for w in args.weights]
    samples = _samples(args.data, loaded[0][1])[: args.limit]
    names = [Path(w).stem for w in args.weights]
    options = dict(aggregate=args.aggregate, batch_size=args.batch_size, dense_scales=scales)
    singles, ensembles = [], []
    for v in views:
        if args.ensemble and len(loaded) > 1:
            r = evaluate(loaded, samples, v, names=names, per_model=True, **options, **_bar(v))
            singles += member_results(r)
            ensembles.append(r)
        else:
            for pair, name in zip(loaded, names, strict=True):
                singles.append(evaluate([pair], samples, v, names=[name], **options, **_bar(v)))
    # Table 3's order: every single model over the protocols, then the ensembles
    singles.sort(key=lambda r: names.index(r["model_names"][0]))
    rows = grid_rows(singles + ensembles)
    if args.paper:
        rows += paper_rows()
    print(format_grid(rows, args.format))
    skipped = singles[0]["skipped_files"] if singles else []
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"goingdeeper: skipped {len(skipped)} unreadable images: {shown}", file=sys.stderr)
    return 0


def _bar(views: str) -> dict:
    """A progress bar on stderr when a person is watching."""
    if not sys.stderr.isatty():
        return {}
    from tqdm import tqdm

    bar = tqdm(total=None, desc=f"{views} view(s)", unit="img", leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return {"progress": progress}
