"""Occlusion sensitivity (Zeiler & Fergus 2013, arXiv:1311.2901, section 4.2, Fig. 7).

"Systematically occluding different portions of the input image with a grey square, and
monitoring the output of the classifier": where covering the image makes the probability of
the class fall, that part of the image is what the network relies on.

The grey square is the preprocessing's mean pixel, i.e. zeros in the network's input space:
the same "grey" for BGR 0-255 (BVLC) and for ImageNet-normalised RGB inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..analysis.trace import evaluating
from ..errors import VisualizeError
from . import pictures
from .top9 import Progress, no_progress


def positions(length: int, size: int, stride: int) -> list[int]:
    """Start of each square along one side: every `stride`, the last one flush with the edge."""
    if not 0 < size <= length:
        raise VisualizeError(f"the occluding square ({size}) must fit the image ({length})")
    if stride < 1:
        raise VisualizeError(f"stride must be at least 1, got {stride}")
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


@dataclass
class OcclusionMap:
    """p(target) with the square at each position, and the picture-sized map it gives."""

    target: int
    unoccluded: float  # p(target) of the whole image
    probs: Tensor  # len(tops) x len(lefts)
    tops: list[int]
    lefts: list[int]
    size: int

    def per_pixel(self, height: int, width: int) -> np.ndarray:
        """H x W: for each pixel, the mean p(target) over the squares that covered it."""
        total = np.zeros((height, width))
        count = np.zeros((height, width))
        for i, top in enumerate(self.tops):
            for j, left in enumerate(self.lefts):
                total[top : top + self.size, left : left + self.size] += float(self.probs[i, j])
                count[top : top + self.size, left : left + self.size] += 1
        return total / np.maximum(count, 1)


def _occluded(x: Tensor, boxes: Iterable[tuple[int, int]], size: int) -> Tensor:
    batch = []
    for top, left in boxes:
        y = x.clone()
        y[:, top : top + size, left : left + size] = 0.0  # the mean pixel: grey
        batch.append(y)
    return torch.stack(batch)


def occlusion_sensitivity(
    model: nn.Module,
    x: Tensor,
    target: int | None = None,
    *,
    size: int = 48,
    stride: int = 16,
    batch_size: int = 32,
    progress: Progress = no_progress,
) -> OcclusionMap:
    """Slide a grey `size` square over `x` (3 x H x W) and record p(target) at each position.

    `target`: a class index (default: the class the network predicts for the whole image).
    """
    targets = None if target is None else [target]
    (result,) = occlusion_maps(
        model, x, targets, size=size, stride=stride, batch_size=batch_size, progress=progress
    )
    return result


def occlusion_maps(
    model: nn.Module,
    x: Tensor,
    targets: list[int] | None = None,
    *,
    size: int = 48,
    stride: int = 16,
    batch_size: int = 32,
    progress: Progress = no_progress,
) -> list[OcclusionMap]:
    """`occlusion_sensitivity` for several classes from one sweep of the square: the forward
    passes are shared and each class reads its own column of the softmax. `targets`: class
    indices (default: the one the network predicts for the whole image)."""
    device = next(model.parameters()).device
    x = x.to(device)
    tops, lefts = positions(x.shape[1], size, stride), positions(x.shape[2], size, stride)
    boxes = [(t, left) for t in tops for left in lefts]
    with evaluating(model), torch.no_grad():
        whole = torch.softmax(model(x.unsqueeze(0)), dim=1)[0]
        targets = [int(whole.argmax())] if targets is None else list(targets)
        if bad := [t for t in targets if not 0 <= t < whole.numel()]:
            raise VisualizeError(f"class {bad[0]} is not one of the {whole.numel()} classes")
        probs = []
        for start in progress(range(0, len(boxes), batch_size), "occlusion"):
            batch = _occluded(x, boxes[start : start + batch_size], size)
            probs.append(torch.softmax(model(batch), dim=1)[:, targets].cpu())
    grid = torch.cat(probs)
    return [
        OcclusionMap(
            t, float(whole[t]), grid[:, k].reshape(len(tops), len(lefts)), tops, lefts, size
        )
        for k, t in enumerate(targets)
    ]


def occlusion_picture(view: Image.Image, result: OcclusionMap, label: str = "") -> Image.Image:
    """The image, the map of p(class) (viridis: dark = the class became unlikely) and the
    map over the image, as ZFNet Fig. 7 (b)."""
    w, h = view.size
    heat = result.per_pixel(h, w)
    lo, hi = float(heat.min()), float(heat.max())
    scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colour = pictures.colormap(scaled)
    overlay = Image.blend(view.convert("RGB"), pictures.image_of(colour), 0.55)
    name = label or f"class {result.target}"
    caption = (
        f"p({name}) under a grey {result.size}px square: {lo:.2f} (dark) to {hi:.2f} (bright); "
        f"whole image {result.unoccluded:.2f}"
    )
    row = pictures.side_by_side([view.convert("RGB"), pictures.image_of(colour), overlay])
    return pictures.captioned(row, caption, fit=True)
