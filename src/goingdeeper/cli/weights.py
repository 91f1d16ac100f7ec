"""`goingdeeper weights list|get|import|export-hub|show`: the catalogue of published weights,
one fetched by name, other projects' weights into our format, a hub folder, a card."""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path

import torchvision

from ..errors import UsageError
from ..files import writable
from ..tables import render_markdown, render_table
from ..weights import (
    WeightsEntry,
    all_entries,
    cache_home,
    cache_state,
    export_hub,
    find_entry,
    get_entry,
    import_bvlc,
    import_caffe,
    import_pretrainedmodels,
    import_timm,
    import_torchvision,
    place_file,
    pretrained_path,
    read_card,
    save_weights,
    timm_installed,
    weights_path,
)
from .common import HELP_FORMAT, on_terminal, parameter_count

KINDS = ("caffe", "bvlc", "torchvision", "timm", "pretrainedmodels")


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="published weights by name; import and inspect files")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    q = wsub.add_parser(
        "list",
        help="the catalogue of published weights: source, licence, accuracy, size, cached",
        epilog="examples:\n"
        "  goingdeeper weights list\n"
        "  goingdeeper weights list --model 'resnet50*' --format markdown",
        formatter_class=HELP_FORMAT,
    )
    q.add_argument("--model", metavar="PATTERN", help="only models matching this (fnmatch)")
    q.add_argument("--format", choices=["table", "markdown"], default="table")
    q.set_defaults(func=run_list)
    q = wsub.add_parser(
        "get",
        help="fetch published weights by name into the cache, checked and imported",
        epilog="examples:\n"
        "  goingdeeper weights get googlenet.bvlc_in1k\n"
        "  goingdeeper weights get resnet50.tv2_in1k\n"
        "  goingdeeper weights get googlenet        # the model's default weights\n"
        "  GOINGDEEPER_WEIGHTS_MIRROR=https://mirror.example.org goingdeeper weights get "
        "googlenet.bvlc_in1k",
        formatter_class=HELP_FORMAT,
    )
    q.add_argument("names", nargs="+", metavar="NAME", help="model.tag, or a model name")
    q.set_defaults(func=run_get)
    q = wsub.add_parser(
        "import",
        help="convert Caffe, torchvision, timm or pretrainedmodels weights to our format",
        epilog="examples:\n"
        "  goingdeeper weights import caffe deploy.prototxt bvlc_alexnet.caffemodel --out alexnet\n"
        "  goingdeeper weights import caffe VGG_ILSVRC_16_layers_deploy.prototxt "
        "VGG_ILSVRC_16_layers.caffemodel --out vgg16\n"
        "  goingdeeper weights import bvlc bvlc_googlenet.caffemodel --out bvlc_googlenet\n"
        "  goingdeeper weights import bvlc ../shared/data/bvlc-googlenet --out bvlc_googlenet\n"
        "  goingdeeper weights import torchvision googlenet-1378be20.pth --out tv_googlenet\n"
        "  goingdeeper weights import torchvision resnet50-0676ba61.pth --out resnet50\n"
        "  goingdeeper weights import torchvision resnet50-11ad3fa6.pth --tag IMAGENET1K_V2 "
        "--out resnet50_v2\n"
        "  goingdeeper weights import timm seresnet50.safetensors --tag a1_in1k --out seresnet50\n"
        "  goingdeeper weights import pretrainedmodels bn_inception-52deb4733.pth "
        "--out bn_inception\n"
        "  goingdeeper weights import torchvision download --out tv_googlenet  # needs internet\n"
        "  goingdeeper weights import googlenet.bvlc_in1k bvlc_googlenet.caffemodel  # the cache",
        formatter_class=HELP_FORMAT,
    )
    q.add_argument(
        "kind",
        metavar="KIND",
        help="caffe, bvlc, torchvision, timm or pretrainedmodels; or a name of `weights list`: "
        "the file, fetched elsewhere, is checked against its published hash and placed in the "
        "cache",
    )
    q.add_argument(
        "source",
        help="caffe: the network's .prototxt (deploy or train_val); bvlc: GoogLeNet's "
        ".caffemodel or blob folder; "
        "a .pth or .safetensors file, or 'download' (torchvision's GoogLeNet, needs internet)",
    )
    q.add_argument(
        "caffemodel", nargs="?", help="caffe: the .caffemodel holding the prototxt's weights"
    )
    q.add_argument("--out", help="output path (.safetensors; a .json card beside it)")
    q.add_argument(
        "--aux",
        action="store_true",
        help="GoogLeNet, Inception v3: keep aux heads (freshly initialised when the source "
        "lacks them)",
    )
    q.add_argument(
        "--tag",
        help="torchvision or timm: which of their weights these are, for the input transform "
        "they were evaluated with (resnet50: IMAGENET1K_V2; timm: a1_in1k)",
    )
    q.set_defaults(func=run_import)
    q = wsub.add_parser(
        "export-hub",
        help="write weights as a Hugging Face Hub model folder (no network)",
        epilog="example:\n"
        "  goingdeeper weights export-hub bvlc_googlenet.safetensors --out hub/bvlc_googlenet\n"
        '  python -c "import goingdeeper as gd; '
        "gd.create_model('googlenet', weights='hub/bvlc_googlenet')\"",
        formatter_class=HELP_FORMAT,
    )
    q.add_argument("weights", help="our .safetensors, a hub folder, BVLC blobs or .caffemodel")
    q.add_argument("--out", required=True, type=Path, help="the folder to write")
    q.add_argument("--force", action="store_true", help="replace the files of an earlier export")
    q.set_defaults(func=run_export_hub)
    q = wsub.add_parser("show", help="print a weight file's card")
    q.add_argument("path")
    q.set_defaults(func=run_show)


def _size(entry: WeightsEntry) -> str:
    return f"{entry.size / 1e6:.1f} MB" if entry.size else "?"


def _accuracy(entry: WeightsEntry) -> str:
    return f"{entry.top1:.1f} / {entry.top5:.1f}" if entry.top1 is not None else "-"


def run_list(args: argparse.Namespace) -> int:
    entries = [e for e in all_entries() if not args.model or fnmatch.fnmatch(e.model, args.model)]
    if not entries:
        raise UsageError(f"no published weights for a model matching {args.model!r}")
    header = ["name", "source", "licence", "top-1 / top-5", "size", "cached"]
    body = [[e.name, e.source, e.licence, _accuracy(e), _size(e), cache_state(e)] for e in entries]
    if args.format == "markdown":
        print(render_markdown(header, body))
    else:
        print(render_table(header, body, right_from=3))
    print(f"\n{len(entries)} weights; cache: {cache_home()}; top-1 / top-5 as published (%)")
    if not timm_installed():
        print(
            "timm is not installed: its checkpoints of resnet18 ... resnet152, se_resnet50, "
            "densenet121 and xception are not listed (pip install timm)"
        )
    return 0


def run_get(args: argparse.Namespace) -> int:
    for name in args.names:  # every name known before anything is fetched
        if find_entry(name) is None:
            get_entry(name)  # raises, naming the closest
    for name in args.names:
        path = pretrained_path(name, progress=on_terminal())
        print(f"{get_entry(name).name}: {path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    if args.kind not in KINDS:
        if find_entry(args.kind) is None:
            raise UsageError(
                f"{args.kind!r} is neither caffe, bvlc, torchvision, timm, pretrainedmodels nor a "
                "name of `goingdeeper weights list`"
            )
        if args.out or args.aux or args.tag or args.caffemodel:
            raise UsageError("a file placed by name takes one file and no --out, --aux or --tag")
        print(f"{get_entry(args.kind).name}: {place_file(args.kind, args.source)}")
        return 0
    if not args.out:
        raise UsageError(f"weights import {args.kind} needs --out (the .safetensors to write)")
    if args.kind in ("caffe", "bvlc", "pretrainedmodels") and args.tag:
        raise UsageError(
            f"--tag names torchvision's or timm's weights; {args.kind}'s have one transform"
        )
    if (args.kind == "caffe") != (args.caffemodel is not None):
        raise UsageError(
            "give a .caffemodel after the .prototxt for `import caffe`, and only for it"
            if args.kind == "caffe"
            else f"`import {args.kind}` takes one source; the second is for `import caffe`"
        )
    if args.kind in ("caffe", "pretrainedmodels") and args.aux:
        raise UsageError(
            f"--aux is for `import bvlc` and `import torchvision`: {args.kind}'s network has no "
            "aux heads"
        )
    writable(weights_path(args.out))
    if args.kind == "caffe":
        model, card = import_caffe(args.source, args.caffemodel)
    elif args.kind == "bvlc":
        model, card = import_bvlc(args.source, aux_logits=args.aux)
    elif args.kind == "timm":
        model, card = import_timm(args.source, tag=args.tag)
    elif args.kind == "pretrainedmodels":
        model, card = import_pretrainedmodels(args.source)
    else:
        source = args.source
        if source == "download":  # needs internet: torchvision fetches its published weights
            source = torchvision.models.googlenet(weights="DEFAULT").state_dict()
        aux = True if args.aux else None
        model, card = import_torchvision(source, aux_logits=aux, tag=args.tag)
    out = save_weights(model, card, args.out)
    print(
        f"wrote {out} and {out.with_suffix('.json')} ({card.model}, "
        f"{parameter_count(model):,} parameters)"
    )
    for note in card.provenance.get("notes", []):
        print(f"note: {note}")
    return 0


def run_export_hub(args: argparse.Namespace) -> int:
    writable(args.out, folder=True)
    out = export_hub(args.weights, args.out, overwrite=args.force)
    print(f"wrote {out}/: model.safetensors, config.json, README.md")
    return 0


def run_show(args: argparse.Namespace) -> int:
    card = read_card(args.path)
    d = card.to_dict()
    if len(d["class_names"]) > 6:
        d["class_names"] = d["class_names"][:5] + [f"... ({len(card.class_names)} in all)"]
    print(json.dumps(d, indent=2))
    return 0
