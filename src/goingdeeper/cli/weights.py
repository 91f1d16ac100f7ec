"""`goingdeeper weights import|export-hub|show`: other projects' weights into our format, a hub
folder, a card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torchvision

from ..errors import UsageError
from ..files import writable
from ..weights import (
    export_hub,
    import_bvlc,
    import_caffe,
    import_timm,
    import_torchvision,
    read_card,
    save_weights,
    weights_path,
)
from .common import HELP_FORMAT, parameter_count


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="import and inspect weight files")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    q = wsub.add_parser(
        "import",
        help="convert Caffe, torchvision or timm weights to our format",
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
        "  goingdeeper weights import torchvision download --out tv_googlenet  # needs internet",
        formatter_class=HELP_FORMAT,
    )
    q.add_argument("kind", choices=["caffe", "bvlc", "torchvision", "timm"])
    q.add_argument(
        "source",
        help="caffe: the network's .prototxt (deploy or train_val); bvlc: GoogLeNet's "
        ".caffemodel or blob folder; "
        "a .pth or .safetensors file, or 'download' (torchvision's GoogLeNet, needs internet)",
    )
    q.add_argument(
        "caffemodel", nargs="?", help="caffe: the .caffemodel holding the prototxt's weights"
    )
    q.add_argument(
        "--out", required=True, help="output path (.safetensors; a .json card beside it)"
    )
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


def run_import(args: argparse.Namespace) -> int:
    if args.kind in ("caffe", "bvlc") and args.tag:
        raise UsageError("--tag names torchvision's or timm's weights; Caffe's have one transform")
    if (args.kind == "caffe") != (args.caffemodel is not None):
        raise UsageError(
            "give a .caffemodel after the .prototxt for `import caffe`, and only for it"
            if args.kind == "caffe"
            else f"`import {args.kind}` takes one source; the second is for `import caffe`"
        )
    if args.kind == "caffe" and args.aux:
        raise UsageError("--aux is for `import bvlc`: a Caffe deploy graph has no aux heads")
    writable(weights_path(args.out))
    if args.kind == "caffe":
        model, card = import_caffe(args.source, args.caffemodel)
    elif args.kind == "bvlc":
        model, card = import_bvlc(args.source, aux_logits=args.aux)
    elif args.kind == "timm":
        model, card = import_timm(args.source, tag=args.tag)
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
