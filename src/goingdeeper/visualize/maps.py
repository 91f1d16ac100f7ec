"""Filters, feature maps and per-image deconvnet projections as picture grids.

Zeiler & Fergus 2013 (arXiv:1311.2901) show the first-layer filters (Fig. 6) and, for single
images, feature maps and the projection of their strongest activations (Fig. 7 (b), (c));
these are the same views for any model here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from ..analysis.trace import layer_names, record, unknown_layer
from ..errors import VisualizeError
from . import pictures
from .deconv import Reconstruction, check_channels
from .top9 import RECON_PERCENTILE


def find_conv(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """The first convolution of the model, or of the module named `layer` (e.g. conv1)."""
    modules = dict(model.named_modules())
    if layer is not None and (layer not in modules or layer == ""):
        raise unknown_layer(layer, layer_names(model))
    root = modules[layer] if layer is not None else model
    prefix = f"{layer}." if layer else ""
    for name, module in root.named_modules():
        if isinstance(module, nn.Conv2d):
            return (f"{prefix}{name}" if name else (layer or "")), module
    raise VisualizeError(f"{layer or 'the model'} has no convolution to show")


def filter_tiles(
    weight: Tensor, *, channel_order: str = "RGB", tile: int = 28
) -> list[Image.Image]:
    """One tile per filter (out x in x kh x kw): colour for 3 inputs, grey for 1.

    Each filter is scaled on its own with zero at mid-grey, so the sign of every weight shows;
    BGR filters (BVLC) are flipped to RGB for display.
    """
    if weight.dim() != 4 or weight.shape[1] not in (1, 3):
        raise VisualizeError(
            f"filters are drawn for a layer that reads 1 or 3 channels (the first layer); "
            f"this one has weights of shape {tuple(weight.shape)}"
        )
    tiles = []
    for w in weight.detach().float().cpu():
        if w.shape[0] == 3:
            w = pictures.to_rgb_order(w, channel_order)
        img = pictures.image_of(pictures.signed_to_uint8(w))
        tiles.append(pictures.fit_tile(img, tile, smooth=False))
    return tiles


def filter_grid(
    weight: Tensor, *, channel_order: str = "RGB", tile: int = 28, cols: int = 8
) -> Image.Image:
    """The filters of a first layer as a grid of tiles (ZFNet Fig. 6)."""
    return pictures.grid(filter_tiles(weight, channel_order=channel_order, tile=tile), cols)


def feature_maps(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    """C x H x W: the output of `layer` for one image `x` (3 x H x W), in eval mode."""
    device = next(model.parameters()).device
    trace = record(model, x.unsqueeze(0).to(device), keep=[layer])
    check_channels(trace, layer, [])
    return trace.outputs[layer][0].float().cpu()


def map_tile(fmap: Tensor, tile: int) -> Image.Image:
    """One H x W map along viridis, its own min..max (zero stays dark for ReLU outputs)."""
    lo, hi = min(float(fmap.min()), 0.0), float(fmap.max())
    scaled = (fmap - lo) / (hi - lo) if hi > lo else torch.zeros_like(fmap)
    img = pictures.image_of(pictures.colormap(scaled.numpy()))
    return pictures.fit_tile(img, tile, smooth=False)


def feature_map_grid(
    maps: Tensor, channels: Sequence[int], *, tile: int = 64, cols: int = 8
) -> Image.Image:
    """Chosen channels of a C x H x W output, one captioned tile each."""
    tiles = [pictures.captioned(map_tile(maps[c], tile), str(c), size=10) for c in channels]
    return pictures.grid(tiles, min(cols, len(tiles)), gap=3)


def deconv_picture(
    view: Image.Image,
    recons: Sequence[Reconstruction],
    *,
    channel_order: str = "RGB",
    tile: int = 112,
    cols: int = 4,
) -> Image.Image:
    """The image beside the projection of each chosen activation (whole image, zero = grey)."""
    tiles = []
    for r in recons:
        shown = pictures.to_rgb_order(r.image, channel_order)
        img = pictures.image_of(pictures.signed_to_uint8(shown, percentile=RECON_PERCENTILE))
        caption = f"ch {r.channel} at ({r.position[0]}, {r.position[1]}): {r.value:.3g}"
        tiles.append(pictures.captioned(pictures.fit_tile(img, tile), caption, size=10))
    left = pictures.captioned(pictures.fit_tile(view, tile * 2), "input")
    return pictures.side_by_side([left, pictures.grid(tiles, min(cols, len(tiles)), gap=3)])
