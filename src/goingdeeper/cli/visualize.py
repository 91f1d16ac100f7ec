"""`goingdeeper visualize ACTION`: ZFNet's views of a network, written as PNG files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import VisualizeError
from ..files import writable
from ..images import load_image
from ..models.base import example_input
from ..visualize import (
    deconv,
    deconv_picture,
    feature_map_grid,
    feature_maps,
    filter_grid,
    find_conv,
    images_to_rank,
    network_view,
    occlusion_picture,
    occlusion_sensitivity,
    pictures,
    record,
    top9_grid,
    top_activations,
)
from ..weights import WeightsCard, import_bvlc, open_weights
from .common import HELP_FORMAT, WEIGHTS_HELP, add_image_limit, bar, positive

ACTIONS = ("deconv", "top9", "filters", "maps", "occlusion")

EXAMPLES = """\
examples:
  goingdeeper visualize filters --bvlc ../shared/data/bvlc-googlenet
  goingdeeper visualize filters --weights googlenet.bvlc_in1k
  goingdeeper visualize top9 --bvlc ../shared/data/bvlc-googlenet --layer conv1,inception3a \\
      --data ../shared/data/imagenet-sample --limit 300 --channels 0-7
  goingdeeper visualize deconv --weights bvlc_googlenet.safetensors --layer inception4d \\
      --image cat.jpg
  goingdeeper visualize maps --weights bvlc_googlenet.safetensors --layer conv2 --image cat.jpg
  goingdeeper visualize occlusion --weights bvlc_googlenet.safetensors --image cat.jpg
"""

HELP = {
    "deconv": "project the strongest activations of one image back to pixels (ZFNet sec. 2.1)",
    "top9": "per channel, the 9 strongest activations over a set of images: reconstruction, patch",
    "filters": "the first layer's filters as colour tiles",
    "maps": "the feature maps of one image at a layer",
    "occlusion": "p(class) as a grey square slides over the image (ZFNet Fig. 7)",
}


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `visualize ACTION ...` to the main parser's subcommands; returns its parser."""
    p = sub.add_parser(
        "visualize",
        help="look inside: deconvnet, top-9 activations, filters, feature maps, occlusion",
        description="ZFNet's views of a network (Zeiler & Fergus 2013, arXiv:1311.2901), "
        "written as PNG files. Actions: "
        + "; ".join(f"{name}: {text}" for name, text in HELP.items()),
        epilog=EXAMPLES,
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("action", choices=ACTIONS)
    add_image_limit(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, metavar="W", help=WEIGHTS_HELP)
    source.add_argument("--bvlc", type=Path, metavar="FOLDER", help="BVLC GoogLeNet blobs")
    p.add_argument(
        "--layer",
        help="module name: conv1, conv2, inception3a ... inception5b, inception4d.branch3x3 "
        "(top9: several, comma-separated; filters: default the first convolution)",
    )
    p.add_argument(
        "--channels",
        help="e.g. 0-15 or 3,7,12 (default: top9 the first 16, maps the first 64, "
        "deconv the 16 strongest in the image)",
    )
    p.add_argument("--image", type=Path, help="deconv, maps, occlusion: the image")
    p.add_argument(
        "--data",
        type=Path,
        help="top9: images to rank: a folder (searched recursively), shards or an archive",
    )
    p.add_argument(
        "--limit", type=int, help="top9: use N images, spread evenly over the sorted set"
    )
    p.add_argument("--out", type=Path, default=Path("visualizations"), help="output folder")
    p.add_argument(
        "--class",
        dest="target_class",
        type=int,
        help="occlusion: class index (default: the predicted class)",
    )
    p.add_argument("--square", type=int, default=48, help="occlusion: grey square side (px)")
    p.add_argument("--stride", type=int, default=16, help="occlusion: step of the square (px)")
    p.add_argument("--tile", type=int, default=64, help="tile side in the grids (px)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run_visualize)
    return p


# --- helpers -----------------------------------------------------------------------------------


MAX_CHANNEL = 1 << 16  # wider than any layer of any model here, by far


def parse_channels(text: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]; each number below `MAX_CHANNEL`, checked before the list
    is built."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
            elif part:
                lo = hi = int(part)
            else:
                continue
            if hi >= MAX_CHANNEL:
                raise VisualizeError(
                    f"--channels {part}: channel {hi} is beyond any layer (they have under "
                    f"{MAX_CHANNEL:,} channels)"
                )
            out.extend(range(lo, hi + 1))
    except ValueError:
        raise VisualizeError(
            f"--channels expects numbers and ranges such as 0-15 or 3,7,12; got {text!r}"
        ) from None
    if not out:
        raise VisualizeError(f"--channels names no channel: {text!r}")
    return list(dict.fromkeys(out))


def load_model(args: argparse.Namespace) -> tuple[nn.Module, WeightsCard]:
    if args.bvlc is not None:
        model, card = import_bvlc(args.bvlc)
    elif args.weights is not None:
        model, card = open_weights(args.weights)
    else:
        raise VisualizeError(
            "give the weights: --weights googlenet.bvlc_in1k (a name of `goingdeeper weights "
            "list`) or FILE.safetensors, or --bvlc FOLDER (BVLC GoogLeNet blobs)"
        )
    return model.to(torch.device(args.device)).eval(), card


def _layers_of(model: nn.Module, card: WeightsCard) -> list[str]:
    return record(model, example_input(model, 1, card.preprocessing.crop)).layers


def _need_layer(args: argparse.Namespace, model: nn.Module, card: WeightsCard) -> list[str]:
    if not args.layer:
        raise VisualizeError(
            f"{args.action} needs --layer; the layers of this model are: "
            f"{', '.join(_layers_of(model, card))}"
        )
    layers = [name.strip() for name in args.layer.split(",") if name.strip()]
    if len(layers) > 1 and args.action != "top9":
        raise VisualizeError(f"{args.action} takes one --layer, got {args.layer!r}")
    return layers


def _need_image(args: argparse.Namespace, card: WeightsCard):
    if args.image is None:
        raise VisualizeError(f"{args.action} needs --image FILE")
    view = network_view(card.preprocessing, load_image(args.image))
    return view, card.preprocessing.to_tensor(view)


def _safe(name: str) -> str:
    return name.replace("/", "_")


# --- actions -------------------------------------------------------------------------------------


def _deconv(args, model, card) -> list[Path]:
    (layer,) = _need_layer(args, model, card)
    view, x = _need_image(args, card)
    fmaps = feature_maps(model, x, layer)
    if args.channels:
        channels = parse_channels(args.channels)
    else:  # the channels this image drives hardest
        strength = fmaps.flatten(1).amax(1)
        channels = strength.topk(min(16, strength.numel())).indices.tolist()
    recons = deconv(model, x, layer, channels)
    img = deconv_picture(view, recons, channel_order=card.preprocessing.channel_order)
    title = f"deconvnet projections, {layer}, {args.image.name}"
    path = args.out / f"deconv_{_safe(layer)}_{args.image.stem}.png"
    return [pictures.save_png(pictures.captioned(img, title, size=14, fit=True), path)]


def _top9(args, model, card) -> list[Path]:
    layers = _need_layer(args, model, card)
    if args.data is None:
        raise VisualizeError(
            "top9 needs --data: images to rank (a folder, shards or an archive; a validation "
            "set, say)"
        )
    images = images_to_rank(args.data, args.limit)
    channels = parse_channels(args.channels) if args.channels else list(range(16))
    result = top_activations(
        model,
        card.preprocessing,
        images,
        layers,
        channels,
        batch_size=args.batch_size,
        progress=_progress,
    )
    if result.skipped:
        print(
            f"goingdeeper: skipped {len(result.skipped)} unreadable images "
            f"(first: {result.skipped[0]})",
            file=sys.stderr,
        )
    paths = []
    for layer, entries in result.entries.items():
        title = (
            f"{layer}: top-9 activations over {result.images} images "
            "(left: deconvnet reconstruction, right: image patch)"
        )
        img = top9_grid(entries, tile=args.tile, title=title)
        paths.append(pictures.save_png(img, args.out / f"top9_{_safe(layer)}.png"))
    return paths


def _filters(args, model, card) -> list[Path]:
    name, conv = find_conv(model, args.layer)
    img = filter_grid(conv.weight, channel_order=card.preprocessing.channel_order, tile=args.tile)
    title = f"{name}: {conv.out_channels} filters {conv.kernel_size[0]}x{conv.kernel_size[1]}"
    path = args.out / f"filters_{_safe(name)}.png"
    return [pictures.save_png(pictures.captioned(img, title, size=14, fit=True), path)]


def _maps(args, model, card) -> list[Path]:
    (layer,) = _need_layer(args, model, card)
    view, x = _need_image(args, card)
    fmaps = feature_maps(model, x, layer)
    channels = parse_channels(args.channels) if args.channels else list(range(min(64, len(fmaps))))
    bad = [c for c in channels if not 0 <= c < len(fmaps)]
    if bad:
        raise VisualizeError(f"layer {layer!r} has channels 0-{len(fmaps) - 1}, got {bad[0]}")
    grid = feature_map_grid(fmaps, channels, tile=args.tile)
    img = pictures.side_by_side([pictures.captioned(view, args.image.name), grid])
    title = f"{layer}: feature maps {fmaps.shape[1]}x{fmaps.shape[2]} (viridis, each map 0..max)"
    path = args.out / f"maps_{_safe(layer)}_{args.image.stem}.png"
    return [pictures.save_png(pictures.captioned(img, title, size=14, fit=True), path)]


def _occlusion(args, model, card) -> list[Path]:
    view, x = _need_image(args, card)
    result = occlusion_sensitivity(
        model,
        x,
        args.target_class,
        size=args.square,
        stride=args.stride,
        batch_size=args.batch_size,
        progress=_progress,
    )
    names = card.class_names
    label = names[result.target] if result.target < len(names) else ""
    img = occlusion_picture(view, result, label)
    path = args.out / f"occlusion_{args.image.stem}_{result.target}.png"
    return [pictures.save_png(img, path)]


def _progress(items, desc: str):
    return bar(items, desc, unit="batch" if desc == "occlusion" else "img")


ACTION_FUNCTIONS = {
    "deconv": _deconv,
    "top9": _top9,
    "filters": _filters,
    "maps": _maps,
    "occlusion": _occlusion,
}


def run_visualize(args: argparse.Namespace) -> int:
    """Run one `visualize` action; print the files written."""
    writable(args.out, folder=True)
    for option in ("tile", "square", "stride", "batch_size"):
        positive(getattr(args, option), "--" + option.replace("_", "-"))
    model, card = load_model(args)
    for path in ACTION_FUNCTIONS[args.action](args, model, card):
        print(f"wrote {path}")
    return 0
