"""Small data sets held decoded: every image decoded once into one uint8 tensor (in memory, or
on the GPU that trains), and each batch cut from it and augmented where it lies. CIFAR, MNIST
and the digits then need no loader worker and no decoding after the first epoch.

Pixel arrays (MNIST's IDX files, CIFAR's batches, the digits) are taken as they are; images
stored as files or tar members (CIFAR as JPEGs) are decoded once, in threads, when they all
have one size and fit in `MAX_HELD_BYTES`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Subset

from ...errors import ImageError
from ...preprocess import Preprocessing
from ..recipes.catalogue import RECIPES
from ..sources.dataset import ArrayReader

MAX_HELD_BYTES = 4 << 30
# decoded sets, kept while their data set lives, on each device they were asked for: one
# decoding and one copy to the device per run, not one per epoch
_HELD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Held:
    """Every image of a data set as N x 3 x H x W uint8 on a device, with its labels, which
    images could be decoded (`readable`) and the messages of the others."""

    def __init__(
        self, pixels: Tensor, labels: Tensor, readable: Tensor, skipped: list[str]
    ) -> None:
        self.pixels, self.labels, self.readable, self.skipped = pixels, labels, readable, skipped

    def to(self, device: torch.device) -> Held:
        return Held(self.pixels.to(device), self.labels.to(device), self.readable, self.skipped)


def _unwrap(ds: Any) -> tuple[Any, list[int]]:
    if isinstance(ds, Subset):
        return ds.dataset, list(ds.indices)
    return ds, list(range(len(ds)))


def held(ds: Any, device: torch.device) -> Held | None:
    """`ds` (an `ImageDataset` or a `Subset` of one) decoded into one tensor on `device`, once
    per data set; None when its images differ in size or would take more than
    `MAX_HELD_BYTES`."""
    if ds not in _HELD:
        _HELD[ds] = {"decoded": _decode_all(ds)}
    copies = _HELD[ds]
    if copies["decoded"] is None:
        return None
    if str(device) not in copies:
        copies[str(device)] = copies["decoded"].to(device)
    return copies[str(device)]


def _decode_all(ds: Any) -> Held | None:
    base, indices = _unwrap(ds)
    labels = torch.tensor([base.targets[i] for i in indices], dtype=torch.long)
    if isinstance(base.reader, ArrayReader):
        images = base.reader.images[[base.samples[i][0] for i in indices]]
        if images.nbytes * (3 if images.ndim == 3 else 1) > MAX_HELD_BYTES:
            return None
        pixels = _planes(torch.from_numpy(np.ascontiguousarray(images)))
        return Held(pixels, labels, torch.ones(len(indices), dtype=torch.bool), [])
    if not getattr(base, "stores_encoded", False) or not indices:
        return None
    size = _one_size(base, indices[:16])
    if size is None or size[0] * size[1] * 3 * len(indices) > MAX_HELD_BYTES:
        return None
    shape = (size[1], size[0], 3)  # what `load` gives: 8-bit RGB, rows first
    pixels = torch.zeros((len(indices), *shape), dtype=torch.uint8)

    def decode(k: int) -> str | None:
        try:
            image = np.array(base.decode(indices[k]))
        except ImageError as e:
            return str(e)
        if image.shape != shape:
            raise _SizesDiffer
        pixels[k] = torch.from_numpy(image)
        return None

    pool = ThreadPoolExecutor(max_workers=8)
    try:
        problems = list(pool.map(decode, range(len(indices))))
    except _SizesDiffer:
        return None
    finally:
        pool.shutdown(cancel_futures=True)
    readable = torch.tensor([problem is None for problem in problems])
    skipped = [problem for problem in problems if problem is not None]
    return Held(_planes(pixels), labels, readable, skipped)


def _one_size(base: Any, indices: list[int]) -> tuple[int, int] | None:
    """The one (width, height) these images' headers give, None when they give several or
    none (a quick look before decoding them all)."""
    sizes = set()
    for i in indices:
        try:
            with base.open(i) as opened:  # the size `load` will give (EXIF turns included)
                sizes.add(opened.size)
        except ImageError:
            continue  # decoding will say what is wrong with it
    return sizes.pop() if len(sizes) == 1 else None


class _SizesDiffer(Exception):
    """Raised inside `_decode_all` when an image's size is not the first one's."""


def _planes(images: Tensor) -> Tensor:
    """N x H x W (grayscale, repeated into three planes as `images.to_rgb` does) or
    N x H x W x 3 to N x 3 x H x W."""
    if images.ndim == 3:
        return images[:, None].expand(-1, 3, -1, -1).contiguous()
    return images.permute(0, 3, 1, 2).contiguous()


class WholeImageAugment:
    """The `simple` recipe on a batch: each image resized to size - 2 x pad (bilinear), the
    card's black border, a mirror with the recipe's probability, the weights' normalisation."""

    def __init__(
        self,
        size: int,
        preprocessing: Preprocessing,
        *,
        flip: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.pad = preprocessing.pad_for(size)
        self.size, self.preprocessing, self.flip = size, preprocessing, flip
        self.generator, self.flip_p = generator, RECIPES["simple"].flip.p

    def __call__(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        x = torch.stack(list(images)) if not isinstance(images, Tensor) else images
        inner = self.size - 2 * self.pad
        x = x.float()
        if x.shape[-2:] != (inner, inner):
            x = F.interpolate(x, size=(inner, inner), mode="bilinear", antialias=True)
            x = x.clamp_(0, 255).round_()
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        if self.flip:
            mirror = torch.rand(len(x), generator=self.generator) < self.flip_p
            x[mirror.to(x.device)] = x[mirror.to(x.device)].flip(-1)
        return self.preprocessing.normalize(x.permute(0, 2, 3, 1))


class HeldBatches:
    """One epoch of batches cut from a `Held` set in the sampler's order and augmented on its
    device: (images, labels, messages of the left-out images in the first batch)."""

    def __init__(self, data: Held, order: Sequence[int], batch_size: int, augment) -> None:
        self.data, self.batch_size, self.augment = data, batch_size, augment
        self.order = [i for i in order if data.readable[i]]

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self):
        device = self.data.pixels.device
        if not self.order:  # nothing readable: the loop sees what was left out, and stops
            yield torch.empty(0), torch.empty(0, dtype=torch.long), list(self.data.skipped)
        for start in range(0, len(self.order), self.batch_size):
            index = torch.tensor(self.order[start : start + self.batch_size], device=device)
            skipped = list(self.data.skipped) if start == 0 else []
            yield self.augment(self.data.pixels[index]), self.data.labels[index], skipped
