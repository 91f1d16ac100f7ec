"""Make the README's pictures: ZFNet's views of the real BVLC GoogLeNet.

    .venv/bin/python benchmarks/make_visualizations.py            # a few minutes on 2 CPU cores

Reads `../shared/data` (or $GOINGDEEPER_DATA): the BVLC GoogLeNet blobs and the ImageNet
sample (one photo per class). Writes to docs/images/:
- top9_conv1.png, top9_inception3a.png, top9_inception4d.png: Zeiler & Fergus 2013
  (arXiv:1311.2901) Fig. 2 for GoogLeNet: per channel, the 9 strongest activations over the
  photos, deconvnet reconstruction (left) beside the image patch (right);
- filters_conv1.png: the 64 first-layer 7x7 filters (Fig. 6);
- occlusion_afghan_hound.png: p(Afghan hound) as a grey square slides over the photo (Fig. 7);
- deconv_inception4d_afghan_hound.png: the photo's 8 strongest inception4d channels projected
  back to pixels.
Each PNG is kept under 300 KB (palette, then downscaled if needed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from goingdeeper.images import load_image
from goingdeeper.visualize import (
    deconv,
    deconv_picture,
    feature_maps,
    filter_grid,
    images_to_rank,
    network_view,
    occlusion_picture,
    occlusion_sensitivity,
    top9_grid,
    top_activations,
)
from goingdeeper.visualize.pictures import captioned, save_png
from goingdeeper.weights import import_bvlc

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GOINGDEEPER_DATA", REPO.parent / "shared" / "data"))
MAX_BYTES = 300_000

# layer -> channels shown (the first 8 of each: no cherry-picking)
TOP9 = {"conv1": range(8), "inception3a": range(8), "inception4d": range(8)}
OCCLUSION_IMAGE = "n02088094_Afghan_hound.JPEG"  # one of ZFNet Fig. 7's three examples
AFGHAN_HOUND = 160  # its ImageNet class index


def save_small(img: Image.Image, path: Path) -> Path:
    """Full colour if small enough, else a 256-colour palette, else smaller until it fits."""
    save_png(img, path)
    side = max(img.size)
    while path.stat().st_size > MAX_BYTES:
        save_png(img, path, max_side=side, colors=256)
        side = int(side * 0.85)
    return path


def bar(items, desc: str):
    return tqdm(items, desc=desc, unit="img" if desc != "occlusion" else "batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--limit", type=int, default=300, help="photos to rank for top-9")
    args = parser.parse_args()

    model, card = import_bvlc(args.data / "bvlc-googlenet")
    prep = card.preprocessing
    written = []
    start = time.perf_counter()

    images = images_to_rank(args.data / "imagenet-sample", args.limit)
    result = top_activations(model, prep, images, list(TOP9), range(8), progress=bar)
    for layer, entries in result.entries.items():
        title = (
            f"BVLC GoogLeNet {layer}: top-9 activations of channels 0-7 over {result.images} "
            "ImageNet photos (left: deconvnet, right: image patch)"
        )
        img = top9_grid(entries, tile=48, cols=4, title=title)
        written.append(save_small(img, args.out / f"top9_{layer}.png"))

    conv1 = model.conv1.conv
    img = filter_grid(conv1.weight, channel_order=prep.channel_order, tile=42, cols=8)
    title = "BVLC GoogLeNet conv1: 64 filters 7x7 (BGR shown as RGB, zero = grey)"
    written.append(save_small(captioned(img, title, fit=True), args.out / "filters_conv1.png"))

    view = network_view(prep, load_image(args.data / "imagenet-sample" / OCCLUSION_IMAGE))
    x = prep.to_tensor(view)
    occ = occlusion_sensitivity(model, x, AFGHAN_HOUND, size=48, stride=8, progress=bar)
    img = occlusion_picture(view, occ, card.class_names[AFGHAN_HOUND])
    written.append(save_small(img, args.out / "occlusion_afghan_hound.png"))

    strongest = feature_maps(model, x, "inception4d").flatten(1).amax(1).topk(8).indices
    recons = deconv(model, x, "inception4d", strongest.tolist())
    img = deconv_picture(view, recons, channel_order=prep.channel_order, tile=112, cols=4)
    img = captioned(
        img, "BVLC GoogLeNet inception4d: the 8 strongest channels, projected back", fit=True
    )
    written.append(save_small(img, args.out / "deconv_inception4d_afghan_hound.png"))

    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
