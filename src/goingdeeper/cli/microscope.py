"""`goingdeeper microscope`: a static web site of one network's units (opens from disk)."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from ..errors import UsageError
from ..files import writable
from ..microscope.site import SiteConfig, build_site, plan_site
from ..visualize.top9 import images_to_rank, spread_sample
from .common import HELP_FORMAT, WEIGHTS_HELP, add_image_limit, bar, load_any_weights, positive
from .visualize import parse_channels

MAX_FV_SIZE = 1024  # px: a 1024x1024 picture already takes minutes per channel

EXAMPLES = """\
examples:
  goingdeeper microscope --weights ../shared/data/bvlc-googlenet \\
      --data ../shared/data/imagenet-sample --out microscope \\
      --layers conv1,conv2,inception3a,inception4d --channels 0-15
  goingdeeper microscope --weights googlenet.bvlc_in1k --data photos/ \\
      --layers mixed4a --channels 97,130 --fv-steps 512 --device cuda
Run it again with the same --out to finish a site that was stopped: pieces already written
are kept. Open OUT/index.html in a browser.
"""


def add_parser(sub) -> argparse.ArgumentParser:
    """Add `microscope ...` to the main parser's subcommands; returns its parser."""
    p = sub.add_parser(
        "microscope",
        help="a web site of a network's units: feature visualisation, top-9, Grad-CAM",
        description="Build a static, self-contained web site of one network: its layers with "
        "their Table-1 row, per layer a grid of channels (feature visualisation by "
        "optimisation, top-9 dataset patches and their deconvnet projections), per photo "
        "Grad-CAM and occlusion for its top-5 classes, and a search box. Lucid's InceptionV1 "
        "names (mixed4a, conv2d0, ...) are accepted for GoogLeNet's layers.",
        epilog=EXAMPLES,
        formatter_class=HELP_FORMAT,
    )
    add_image_limit(p)
    p.add_argument("--weights", type=Path, required=True, metavar="W", help=WEIGHTS_HELP)
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="images for top-9 and photo pages: a folder, shards or an archive",
    )
    p.add_argument("--out", type=Path, default=Path("microscope"), help="the site's folder")
    p.add_argument("--layers", help="comma-separated (default: every layer with weights)")
    p.add_argument("--channels", help="e.g. 0-15 or 3,7,12 (default: every channel)")
    p.add_argument("--limit", type=int, help="rank only N images for the top-9 (spread evenly)")
    p.add_argument("--photos", type=int, default=8, help="photo pages (Grad-CAM, occlusion)")
    p.add_argument("--cam-layer", help="Grad-CAM's layer (default: the last with feature maps)")
    p.add_argument("--square", type=int, default=48, help="occlusion: grey square side (px)")
    p.add_argument("--stride", type=int, default=32, help="occlusion: step of the square (px)")
    p.add_argument("--fv-size", type=int, default=128, help="feature visualisation side (px)")
    p.add_argument("--fv-steps", type=int, default=256, help="optimisation steps per picture")
    p.add_argument("--fv-lr", type=float, default=0.05, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run_microscope)
    return p


def site_config(args: argparse.Namespace, layers: list[str]) -> SiteConfig:
    for option in ("fv_size", "fv_steps", "batch_size", "square", "stride"):
        positive(getattr(args, option), "--" + option.replace("_", "-"))
    if args.fv_size > MAX_FV_SIZE:
        raise UsageError(f"--fv-size must be at most {MAX_FV_SIZE} px, got {args.fv_size}")
    if not (math.isfinite(args.fv_lr) and 0 < args.fv_lr <= 10):
        raise UsageError(f"--fv-lr must lie in (0, 10], got {args.fv_lr}")
    return SiteConfig(
        layers=layers,
        channels=parse_channels(args.channels) if args.channels else None,
        fv_size=args.fv_size,
        fv_steps=args.fv_steps,
        fv_lr=args.fv_lr,
        seed=args.seed,
        cam_layer=args.cam_layer,
        batch_size=args.batch_size,
        occlusion_square=args.square,
        occlusion_stride=args.stride,
    )


def run_microscope(args: argparse.Namespace) -> int:
    """Check everything, build (or finish) the site, print what was made and its size."""
    writable(args.out, folder=True)
    positive(args.limit, "--limit")
    if args.photos < 0:
        raise UsageError(f"--photos must be 0 or more, got {args.photos}")
    layers = [name.strip() for name in (args.layers or "").split(",") if name.strip()]
    config = site_config(args, layers)
    every = images_to_rank(args.data)
    data = spread_sample(every, args.limit)
    photos = spread_sample(every, args.photos) if args.photos else None
    model, card = load_any_weights(args.weights, device=args.device)
    model.eval()
    plan_site(model, card, config)  # every name and number checked before the long work
    start = time.perf_counter()
    report = build_site(
        model, card, data, photos, args.out, config, progress=lambda items, desc: bar(items, desc)
    )
    minutes = (time.perf_counter() - start) / 60
    for kind, made in report.built.items():
        print(f"{kind}: {made} made, {report.skipped[kind]} already there")
    print(f"wrote {args.out / 'index.html'} ({report.bytes / 1e6:.1f} MB, {minutes:.1f} min)")
    return 0
