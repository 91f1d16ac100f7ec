"""Turning tensors into pictures: display scaling, tiles, grids, a colour map, PNG files.

Pillow only (no plotting library): every picture is an RGB `PIL.Image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..files import atomic_write

BACKGROUND = (255, 255, 255)
FRAME = (24, 24, 24)  # behind tiles: where a patch runs past the image edge
TEXT = (0, 0, 0)

# Viridis (matplotlib's default colour map), sampled at 0, 1/4, 1/2, 3/4, 1: perceptually even
# and readable in grey, so a heat map's order survives printing.
_VIRIDIS = np.array(
    [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) to uint8 RGB (shape + (3,)) along viridis."""
    v = np.clip(np.nan_to_num(values.astype(np.float64)), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    low = np.minimum(v.astype(int), len(_VIRIDIS) - 2)
    t = (v - low)[..., None]
    rgb = _VIRIDIS[low] * (1 - t) + _VIRIDIS[low + 1] * t
    return np.round(rgb).astype(np.uint8)


def to_rgb_order(chw: Tensor, channel_order: str) -> Tensor:
    """A 3 x H x W tensor in the network's channel order, as RGB (BVLC weights read BGR)."""
    return chw.flip(0) if channel_order == "BGR" else chw


def signed_to_uint8(chw: Tensor, *, percentile: float = 100.0) -> np.ndarray:
    """H x W x C uint8 with zero at mid-grey and +-scale at white/black, as ZFNet shows its
    reconstructions and filters. `scale` is the `percentile` of |values| (clipping beyond)."""
    arr = chw.detach().float().cpu().numpy()
    mags = np.abs(arr)
    scale = float(np.percentile(mags, percentile)) if percentile < 100 else float(mags.max())
    if scale <= 0:
        scale = 1.0
    out = np.clip(0.5 + 0.5 * arr / scale, 0.0, 1.0)
    return np.round(out.transpose(1, 2, 0) * 255).astype(np.uint8)


def range_to_uint8(chw: Tensor) -> np.ndarray:
    """H x W x C uint8, the tensor's own min..max stretched to 0..255."""
    arr = chw.detach().float().cpu().numpy()
    lo, hi = float(arr.min()), float(arr.max())
    out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.round(out.transpose(1, 2, 0) * 255).astype(np.uint8)


def image_of(hwc: np.ndarray) -> Image.Image:
    """uint8 H x W x 1|3 to an RGB image."""
    if hwc.ndim == 2 or hwc.shape[-1] == 1:
        return Image.fromarray(hwc.reshape(hwc.shape[0], hwc.shape[1]), "L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(hwc), "RGB")


def crop_box(img: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The (top, left, bottom, right) box of `img`, clipped to it."""
    top, left, bottom, right = box
    w, h = img.size
    return img.crop((max(left, 0), max(top, 0), min(right, w), min(bottom, h)))


def fit_tile(img: Image.Image, size: int, *, smooth: bool = True) -> Image.Image:
    """`img` scaled to fit a size x size tile, aspect kept, centred on the frame colour."""
    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.LANCZOS if smooth and scale < 1 else Image.Resampling.NEAREST
    if smooth and scale > 1:
        resample = Image.Resampling.BICUBIC
    tile = Image.new("RGB", (size, size), FRAME)
    tile.paste(img.resize(new, resample), ((size - new[0]) // 2, (size - new[1]) // 2))
    return tile


def grid(
    tiles: Sequence[Image.Image],
    cols: int,
    *,
    gap: int = 2,
    background: tuple[int, int, int] = BACKGROUND,
) -> Image.Image:
    """Tiles of equal size in rows of `cols`, `gap` pixels apart (and around)."""
    if not tiles:
        raise ValueError("no tiles to lay out")
    w, h = tiles[0].size
    rows = -(-len(tiles) // cols)
    out = Image.new("RGB", (cols * (w + gap) + gap, rows * (h + gap) + gap), background)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out.paste(tile, (gap + c * (w + gap), gap + r * (h + gap)))
    return out


def side_by_side(images: Sequence[Image.Image], *, gap: int = 6) -> Image.Image:
    """Images left to right, tops aligned."""
    width = sum(i.size[0] for i in images) + gap * (len(images) - 1)
    height = max(i.size[1] for i in images)
    out = Image.new("RGB", (width, height), BACKGROUND)
    x = 0
    for img in images:
        out.paste(img, (x, 0))
        x += img.size[0] + gap
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def captioned(img: Image.Image, text: str, *, size: int = 12, fit: bool = False) -> Image.Image:
    """`img` with a line of text above it; with `fit`, widened so that the text is never cut."""
    band, font = size + 6, _font(size)
    width = img.size[0]
    if fit:
        width = max(width, int(ImageDraw.Draw(img).textlength(text, font=font)) + 6)
    out = Image.new("RGB", (width, img.size[1] + band), BACKGROUND)
    out.paste(img, (0, band))
    ImageDraw.Draw(out).text((3, 2), text, fill=TEXT, font=font)
    return out


def stacked(images: Sequence[Image.Image], *, gap: int = 6) -> Image.Image:
    """Images top to bottom, left edges aligned."""
    width = max(i.size[0] for i in images)
    height = sum(i.size[1] for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, height), BACKGROUND)
    y = 0
    for img in images:
        out.paste(img, (0, y))
        y += img.size[1] + gap
    return out


def save_png(
    img: Image.Image, path: str | Path, *, max_side: int | None = None, colors: int | None = None
) -> Path:
    """Write a PNG (folders created); optionally downscaled and reduced to a palette."""
    path = Path(path)
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    if colors:
        img = img.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG", optimize=True))
    return path
