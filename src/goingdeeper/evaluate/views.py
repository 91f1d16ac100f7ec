"""Test-time views: pure functions from one RGB image to a stack of normalised crops.

    one_crop   the single center crop of the weights' own preprocessing (resize, crop)
    ten_crops  "10", AlexNet's protocol (Krizhevsky et al. 2012, section 4.1): the four corner
               crops and the center crop of the 256x256 image, and their mirrors; that image
               is the central square of the image with shorter side 256 (section 2)
    ten_crops_rect  "10-rect": the corners of the whole shorter-side-256 rectangle instead
    ten_crops_warp  "10-warp": the corners and center of the whole image warped (aspect not
               kept) to 256x256, as Caffe's `oversample` does; the BVLC model zoo's reference
               figures are single crops, the center of that warped image (view 0 here)
    crops_144  GoogLeNet's protocol (Szegedy et al. 2014, section 7): 4 scales x 3 squares
               x (4 corners + center + whole square) x 2 mirrors
    crops_150  VGG's multi-crop protocol (Simonyan & Zisserman 2014, section 3.2; results in
               section 4.3, Table 5): 3 scales Q x a regular 5x5 grid of crops x 2 mirrors

Each function returns views x C x crop x crop, in a fixed documented order; the image is
decoded by the caller once, and resized once per scale here. Crops are slices of the resized
image, cut and mirrored as uint8 pixels and normalised once per stack by
`Preprocessing.normalize`, which `to_tensor` uses too: the center view of `ten_crops` is bit
for bit the weights' own one-crop input. (Cutting uint8 pixels moves a quarter of the bytes
that cutting floats would, and one NumPy pass per stack keeps many small copies from waiting
on each other's threads when the cores are shared.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from ..data.pipelines.pillow import five_crop_boxes
from ..preprocess import INTERPOLATIONS, Preprocessing, add_border, check_resized
from .dense import DENSE_SCALES

# Section 7: "resize the image to 4 scales where the shorter dimension (height or width) is
# 256, 288, 320 and 352 respectively"; stated for 224x224 crops.
SCALES_144 = (256, 288, 320, 352)


def crop_offsets(width: int, height: int, size: int) -> list[tuple[int, int]]:
    """(left, top) of the center and the four corner crops of `size` in a width x height image.

    The center offset rounds down exactly like `preprocess.center_crop`, so the center view
    equals the one-crop view. The same boxes as ZFNet's ten training sub-crops
    (`data.pipelines.pillow.five_crop_boxes`).
    """
    return [(left, top) for left, top, _, _ in five_crop_boxes(width, height, size)]


def square_offsets(width: int, height: int) -> list[tuple[int, int]]:
    """(left, top) of the three squares of section 7: left, center, right for a landscape
    image; top, center, bottom for a portrait one (a square image gives one square 3 times)."""
    if width >= height:
        side = height
        return [(0, 0), ((width - side) // 2, 0), (width - side, 0)]
    side = width
    return [(0, 0), (0, (height - side) // 2), (0, height - side)]


def _resized(image: Image.Image, pre: Preprocessing, shorter: int) -> Image.Image:
    # Resizing the shorter side upscales small images too; with a resize below the crop
    # (an unusual card) the shorter side is raised to the crop so every crop lies inside.
    # A card's border (`pad`) scales with the shorter side and counts towards the crop.
    pad = round(pre.pad * shorter / pre.resize)
    return add_border(pre.resize_shorter(image, max(shorter, pre.crop - 2 * pad)), pad)


def _five(pixels: np.ndarray, size: int) -> list[np.ndarray]:
    return [
        pixels[top : top + size, left : left + size]
        for left, top in crop_offsets(pixels.shape[1], pixels.shape[0], size)
    ]


def _with_mirrors(views: list[np.ndarray]) -> list[np.ndarray]:
    """The views followed by their horizontal mirrors, in the same order."""
    return views + [v[:, ::-1] for v in views]


def one_crop(image: Image.Image, pre: Preprocessing) -> Tensor:
    """1 x 3 x crop x crop: shorter side to `pre.resize`, center crop (the weights' transform)."""
    return pre(image).unsqueeze(0)


def ten_crops(image: Image.Image, pre: Preprocessing) -> Tensor:
    """10 x 3 x crop x crop, AlexNet's: center, top-left, top-right, bottom-left, bottom-right
    crops of the central square of the image resized to `pre.resize`, then the mirrors of
    those five in the same order. View 0 is `one_crop` (the center of the whole image, which
    is the square's center to within the rounding of half a pixel)."""
    pixels = np.asarray(_resized(image, pre, pre.resize))
    h, w = pixels.shape[:2]
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    corners = _five(pixels[top : top + side, left : left + side], pre.crop)[1:]
    return pre.normalize(np.stack(_with_mirrors([_five(pixels, pre.crop)[0], *corners])))


def ten_crops_rect(image: Image.Image, pre: Preprocessing) -> Tensor:
    """10 x 3 x crop x crop: the five crops of `ten_crops` taken from the whole image resized
    to `pre.resize` (its corners, not its central square's), then their mirrors."""
    pixels = np.asarray(_resized(image, pre, pre.resize))
    return pre.normalize(np.stack(_with_mirrors(_five(pixels, pre.crop))))


def ten_crops_warp(image: Image.Image, pre: Preprocessing) -> Tensor:
    """10 x 3 x crop x crop, Caffe's `oversample`: the image warped to `pre.resize` squared,
    then its center and four corner crops and their mirrors, in `ten_crops`' order."""
    side = max(pre.resize, pre.crop - 2 * pre.pad)
    warped = image.resize(check_resized(image, (side, side)), INTERPOLATIONS[pre.interpolation])
    pixels = np.asarray(add_border(warped, pre.pad))
    return pre.normalize(np.stack(_with_mirrors(_five(pixels, pre.crop))))


def scales_144(pre: Preprocessing) -> tuple[int, ...]:
    """Section 7's shorter sides 256..352, scaled by crop/224 for other input sizes."""
    return tuple(round(s * pre.crop / 224) for s in SCALES_144)


def crops_144(image: Image.Image, pre: Preprocessing) -> Tensor:
    """144 x 3 x crop x crop, section 7 of the GoogLeNet paper.

    Order: for each scale (shorter side 256, 288, 320, 352), for each square (left, center,
    right; or top, center, bottom), the six views center, top-left, top-right, bottom-left,
    bottom-right, whole square resized to the crop; then the mirrors of those six.
    """
    size = pre.crop
    resample = INTERPOLATIONS[pre.interpolation]
    views: list[np.ndarray] = []
    for shorter in scales_144(pre):
        scaled = _resized(image, pre, shorter)
        pixels = np.asarray(scaled)
        side = min(scaled.size)
        for left, top in square_offsets(*scaled.size):
            square = pixels[top : top + side, left : left + side]
            box = (left, top, left + side, top + side)
            whole = np.asarray(scaled.resize((size, size), resample, box=box))
            views += _with_mirrors([*_five(square, size), whole])
    return pre.normalize(np.stack(views))


def grid_offsets(width: int, height: int, size: int, n: int = 5) -> list[tuple[int, int]]:
    """(left, top) of an n x n regular grid of `size` crops spanning a width x height image,
    row by row: the first and last crops touch the borders, the others evenly between."""
    xs = [round(i * (width - size) / (n - 1)) for i in range(n)]
    ys = [round(j * (height - size) / (n - 1)) for j in range(n)]
    return [(x, y) for y in ys for x in xs]


def scales_150(pre: Preprocessing) -> tuple[int, ...]:
    """VGG's test scales Q = 256, 384, 512, scaled by crop/224 for other input sizes."""
    return tuple(round(q * pre.crop / 224) for q in DENSE_SCALES)


def crops_150(image: Image.Image, pre: Preprocessing) -> Tensor:
    """150 x 3 x crop x crop, VGG's multi-crop evaluation (section 3.2: "50 crops per scale
    (5 x 5 regular grid with 2 flips), for a total of 150 crops over 3 scales").

    Order: for each scale Q (256, 384, 512), the 25 grid crops row by row (`grid_offsets`),
    then their mirrors in the same order.
    """
    views: list[np.ndarray] = []
    for q in scales_150(pre):
        pixels = np.asarray(_resized(image, pre, q))
        h, w = pixels.shape[:2]
        c = pre.crop
        views += _with_mirrors([pixels[y : y + c, x : x + c] for x, y in grid_offsets(w, h, c)])
    return pre.normalize(np.stack(views))


VIEW_FUNCTIONS: dict[str, Callable[[Image.Image, Preprocessing], Tensor]] = {
    "1": one_crop,
    "10": ten_crops,
    "10-rect": ten_crops_rect,
    "10-warp": ten_crops_warp,
    "144": crops_144,
    "150": crops_150,
}


def num_views(views: str, dense_scales: Sequence[int] = DENSE_SCALES) -> int:
    """How many views a protocol takes per image (and so forward passes per model)."""
    dense = 2 * len(dense_scales)
    if views.startswith("dense"):  # "dense", or "dense+150": both, their posteriors averaged
        return dense + (150 if views == "dense+150" else 0)
    return int(views.split("-")[0])
