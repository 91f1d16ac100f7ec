"""`goingdeeper eval`: the test protocol over a folder, printed as a Table 3 grid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.imagenet.classes import ClassMap
from ..data.imagenet.labels import real_labels, val_number
from ..data.sources import ImageDataset, discover
from ..data.sources.discover import SHARDS
from ..errors import EvalError, UsageError
from ..evaluate import AGGREGATES, VIEWS, evaluate
from ..results import FORMATS, format_grid, grid_rows, paper_rows
from .common import HELP_FORMAT, WEIGHTS_HELP, add_image_limit, counting_bar, load_any_weights

EXAMPLES = """\
examples:
  goingdeeper eval --weights googlenet.bvlc_in1k --data ../shared/data/imagenet-sample
  goingdeeper eval --weights bvlc_googlenet.safetensors --data ../shared/data/imagenet-sample
  goingdeeper eval --weights ../shared/data/bvlc-googlenet --data val/ --views 1,10,144 --paper
  goingdeeper eval --weights a.safetensors b.safetensors --data val/ --views 1,10 --ensemble
  goingdeeper eval --weights vgg16.safetensors --data val/ --views dense
  goingdeeper eval --weights vgg16.safetensors --data val/ --views dense --scales 256,384,512
  goingdeeper eval --weights vgg16.safetensors --data val/ --views 150,dense,dense+150
  goingdeeper eval --weights bvlc_googlenet.safetensors --data ILSVRC2012_img_val/ \
      --labels LOC_val_solution.csv --real-labels real.json
"""

VIEWS_HELP = (
    f"comma-separated protocols among {', '.join(VIEWS)} (default: 1). 10: AlexNet's (corners "
    "of the central 256x256 square); 10-rect: corners of the whole resized image; 10-warp: "
    "Caffe's oversample (image warped to 256x256; the BVLC reference figures are its center "
    "crop); 144: GoogLeNet's; 150: VGG's multi-crop (3 scales x 5x5 grid x 2 flips); dense: "
    "VGG's fully convolutional evaluation; dense+150: both, posteriors averaged (VGG Table 5)"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1/top-5 error with 1, 10 or 144 crops, dense, ensembles (Table 3 grid)",
        description="Evaluate weights on a labelled image folder with the published test "
        "protocols and print a grid laid out like GoogLeNet's Table 3.",
        epilog=EXAMPLES,
        formatter_class=HELP_FORMAT,
    )
    add_image_limit(p)
    p.add_argument(
        "--weights",
        nargs="+",
        required=True,
        metavar="W",
        help="weights, each " + WEIGHTS_HELP,
    )
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="class folders named by WordNet id, class name or index (root/<class>/<image>, "
        "any subset of the classes), a flat folder of <wnid>_*.JPEG files, or ILSVRC2012_val_* "
        "photos with their label file",
    )
    _label_arguments(p)
    p.add_argument(
        "--views",
        default="1",
        help=VIEWS_HELP,
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
        default="auto",
        help="dense evaluation: shorter sides Q. auto (default): from the scale the weights "
        "were trained at (their card), VGG section 4.2: S-32,S,S+32 for a fixed S, "
        "S_min,(S_min+S_max)/2,S_max for scale jittering, 256,384,512 when the card does not "
        "say; single: section 4.1's one scale, S or (S_min+S_max)/2; or comma-separated sizes",
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
    p.set_defaults(func=run)


def _label_arguments(p) -> None:
    p.add_argument(
        "--labels",
        type=Path,
        help="label file of a flat folder of ILSVRC2012 validation photos: LOC_val_solution.csv, "
        "the devkit's ILSVRC2012_validation_ground_truth.txt (meta.mat beside it) or its "
        "archive, Caffe's val.txt (found in the folder or beside it when not given)",
    )
    p.add_argument(
        "--real-labels",
        type=Path,
        metavar="REAL_JSON",
        help="ReaL's real.json: also report ReaL top-1 (the photos must keep their "
        "ILSVRC2012_val_* names)",
    )


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{what} expects positive integers, got {text!r}")
    return values


def _views(text: str) -> list[str]:
    views = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise UsageError(f"--views takes {', '.join(VIEWS)} (comma-separated); got {text!r}")
    return views


def _check_options(args: argparse.Namespace, views: list[str]) -> None:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    if args.runtime == "onnxruntime" and args.device != "cpu":
        raise UsageError("--runtime onnxruntime runs on the CPU; leave --device out")
    if args.runtime == "onnxruntime" and any(v.startswith("dense") for v in views):
        raise UsageError("dense evaluation needs inputs of several sizes: use --runtime torch")


def run(args: argparse.Namespace) -> int:
    views = _views(args.views)
    # auto and single: each model's scales from its card (evaluate's dense_scales=None)
    scales = None if args.scales in ("auto", "single") else _int_list(args.scales, "--scales")
    _check_options(args, views)
    loaded = [load_any_weights(w, device=args.device, runtime=args.runtime) for w in args.weights]
    card = loaded[0][1]
    classes = ClassMap.for_card(card)
    source = discover(args.data, args.labels, known=classes)
    split = source.scored_split()
    if source.layout == SHARDS or len(source.splits) > 1:  # say which one is scored
        print(
            f"goingdeeper: scoring the '{split}' split of {source.path} "
            f"(splits: {', '.join(source.splits)})",
            file=sys.stderr,
        )
    samples = source.split(split)
    if args.limit is not None:
        samples = samples.subset(range(min(args.limit, len(samples))))
    real = _real_sets(args.real_labels, samples, classes)
    names = [Path(w).stem if Path(w).exists() else w for w in args.weights]
    options = dict(
        aggregate=args.aggregate,
        batch_size=args.batch_size,
        dense_scales=scales,
        dense_multi=args.scales != "single",
        real=real,
    )
    singles, ensembles = [], []
    for v in views:
        if args.ensemble and len(loaded) > 1:
            r = evaluate(
                loaded,
                samples,
                v,
                names=names,
                per_model=True,
                **options,
                progress=counting_bar(f"{v} view(s)"),
            )
            singles += r.member_results()
            ensembles.append(r)
        else:
            for pair, name in zip(loaded, names, strict=True):
                singles.append(
                    evaluate(
                        [pair],
                        samples,
                        v,
                        names=[name],
                        **options,
                        progress=counting_bar(f"{v} view(s)"),
                    )
                )
    if singles and singles[0].images == 0:
        raise EvalError(
            f"{args.data}: none of the {len(samples)} images could be read "
            f"(first: {singles[0].skipped_files[0]}); nothing was evaluated"
        )
    # Table 3's order: every single model over the protocols, then the ensembles
    singles.sort(key=lambda r: names.index(r.model_names[0]))
    rows = grid_rows(singles + ensembles)
    if args.paper:
        rows += paper_rows()
    print(format_grid(rows, args.format))
    skipped = singles[0].skipped_files if singles else []
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"goingdeeper: skipped {len(skipped)} unreadable images: {shown}", file=sys.stderr)
    return 0


def _real_sets(
    path: Path | None, samples: ImageDataset, classes: ClassMap
) -> list[list[int]] | None:
    """For each image of `samples`, its ReaL classes as the model's class indices; None
    without `--real-labels`."""
    if path is None:
        return None
    names = samples.file_names()
    if names is None:
        raise UsageError(
            "--real-labels follows the validation photos' file names; give the folder of "
            "ILSVRC2012_val_* photos rather than shards or an archive"
        )
    by_photo = real_labels(path)
    sets = []
    for name in names:
        number = val_number(name)
        if number is None or not 1 <= number <= len(by_photo):
            raise UsageError(
                f"--real-labels: {name} is not an ILSVRC2012_val_NNNNNNNN photo; "
                "ReaL labels follow the validation photos' numbers"
            )
        sets.append(sorted(i for w in by_photo[number - 1] for i in classes.lookup(w)))
    return sets
