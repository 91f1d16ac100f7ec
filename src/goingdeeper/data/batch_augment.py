"""GoogLeNet's training augmentation on whole batches of tensors, on whichever device they are:
JPEG bytes decoded in one call (`torchvision.io.decode_jpeg`, on the GPU when the batch goes
there), then per image the random-sized crop, its interpolation, the flip and Howard's
photometric distortions, and the weights' normalisation, without a trip through Pillow.

The draws are the PIL recipe's (`transforms.RandomSizedCrop.box`, the same area and aspect
ranges, the same interpolations with equal probability, the same factor ranges in a random
order), from one `torch.Generator` on the CPU, so a seed gives the same crops on any device.
The photometric operations compute what Pillow's `ImageEnhance` computes (brightness scales,
contrast blends with the mean grey, colour with the grey image), cut to 8 bits after each
as Pillow stores it: the result differs from the PIL path by at most a level or two per pixel.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.io import ImageReadMode, decode_jpeg

from ..errors import DataError, ImageError
from ..images import decode_image
from ..preprocess import Preprocessing
from .colour import PhotometricDistort
from .transforms import GOOGLENET_INTERPOLATIONS, RandomSizedCrop

# Pillow's resampling filters as tensor interpolation: its nearest neighbour samples pixel
# centres ("nearest-exact"); its box filter is `_box`.
_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact", "area": "area"}
_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_batch(images: Sequence[bytes], names: Sequence[str], device: torch.device) -> list:
    """Each image as a 3 x H x W uint8 tensor on `device`. JPEGs are decoded together by
    torchvision (nvJPEG on a GPU, libjpeg-turbo on the CPU); any other format, or a JPEG that
    torchvision cannot read (CMYK, damaged), goes through `images.decode_image`, so that every
    file a data set holds is read and a bad one fails with its usual message."""
    out: list[Tensor | None] = [None] * len(images)
    jpegs = [i for i, data in enumerate(images) if data[:3] == _JPEG_MAGIC]
    if jpegs:
        raw = [torch.frombuffer(bytearray(images[i]), dtype=torch.uint8) for i in jpegs]
        try:
            with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; it works
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one unreadable JPEG fails the call: each on its own below
            decoded = [None] * len(jpegs)
        for i, image in zip(jpegs, decoded, strict=True):
            out[i] = image
    for i, image in enumerate(out):
        if image is None:
            pil = decode_image(images[i], names[i])
            out[i] = _from_pil(pil).to(device)
    return out


def _from_pil(img: Image.Image) -> Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)  # one copy of the pixels


class BatchAugment:
    """The `googlenet` recipe on a list of decoded images: N x C x size x size network input.

    `photometric` and `flip` as in `transforms.train_transform`; `generator` (a CPU generator)
    makes the draws reproducible."""

    def __init__(
        self,
        size: int,
        preprocessing: Preprocessing,
        *,
        flip: bool = True,
        photometric: bool = True,
        interpolations: Sequence[str] = GOOGLENET_INTERPOLATIONS,
        generator: torch.Generator | None = None,
    ) -> None:
        self.size, self.preprocessing, self.flip = size, preprocessing, flip
        self.crop = RandomSizedCrop(size, interpolations=tuple(interpolations), generator=generator)
        self.distort = PhotometricDistort(generator=generator) if photometric else None
        self.generator = generator

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        if len(images) == 0:
            raise ImageError("an empty batch of images")
        crops = torch.stack([self._one(image) for image in images])  # N x 3 x s x s, 0..255
        return self.preprocessing.normalize(crops.permute(0, 2, 3, 1))

    def _one(self, image: Tensor) -> Tensor:
        left, top, w, h = self.crop.box(image.shape[-1], image.shape[-2])
        mode = _MODES[self.crop.interpolation()]
        patch = image[:, top : top + h, left : left + w].unsqueeze(0).float()
        if mode == "area":
            crop = _box(patch, self.size)[0]
        else:
            smooth = {"antialias": True, "align_corners": False} if mode != "nearest-exact" else {}
            crop = F.interpolate(patch, size=(self.size, self.size), mode=mode, **smooth)[0]
        crop = crop.clamp_(0, 255).round_()
        if self.distort is not None:
            crop = enhance(crop, self.distort.draw())
        if self.flip and torch.rand((), generator=self.generator).item() < 0.5:
            crop = crop.flip(-1)
        return crop


def _box(x: Tensor, size: int) -> Tensor:
    """Pillow's box filter: each output pixel the mean of the input pixels whose centres lie
    within half an output pixel of its own (one input pixel when enlarging), an axis at a time
    as a small matrix product."""
    rows = _box_weights(x.shape[-2], size, x.device)  # size x H
    cols = _box_weights(x.shape[-1], size, x.device)  # size x W
    return rows @ x @ cols.T


def _box_weights(length: int, size: int, device: torch.device) -> Tensor:
    scale = length / size
    centres = (torch.arange(size, device=device, dtype=torch.float64) + 0.5) * scale
    offsets = torch.arange(length, device=device, dtype=torch.float64) + 0.5 - centres[:, None]
    reach = offsets / max(scale, 1.0)  # in output pixels when shrinking
    inside = ((reach > -0.5) & (reach <= 0.5)).double()
    return (inside / inside.sum(1, keepdim=True)).float()


def enhance(rgb: Tensor, ops: Sequence[tuple[str, float]]) -> Tensor:
    """Pillow's `ImageEnhance` brightness, contrast and colour on a 3 x H x W tensor of 0..255
    values, each result clipped and cut to 8 bits as Pillow's `Image.blend` stores it. (The
    recipe's hue shift is off; this path refuses it rather than leave it out silently.)"""
    for name, factor in ops:
        if name == "brightness":
            grey = torch.zeros_like(rgb)
        elif name == "contrast":
            mean = _luma(rgb).mean()
            grey = torch.full_like(rgb, float(torch.floor(mean + 0.5)))
        elif name == "saturation":
            grey = _luma(rgb).expand_as(rgb)
        else:
            raise ImageError(f"the batch augmentation has no {name!r} operation")
        rgb = (grey + factor * (rgb - grey)).clamp_(0, 255).floor_()  # Pillow truncates
    return rgb


def _luma(rgb: Tensor) -> Tensor:
    """Pillow's 8-bit `convert("L")` of 0..255 values: 1 x H x W."""
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.float64, device=rgb.device)
    fixed = (rgb.to(torch.float64) * weights.view(3, 1, 1)).sum(0, keepdim=True)
    return torch.floor((fixed + 0x8000) / 65536).to(rgb.dtype)


class EncodedImages(Dataset):
    """A data set's images as stored (file or tar-member bytes) with their labels, for loader
    workers that only read: (bytes, label, name), or (None, label, message) for a file that
    cannot be read. Takes an `ImageDataset` or a `Subset` of one."""

    def __init__(self, ds: Any) -> None:
        self.indices = list(ds.indices) if isinstance(ds, Subset) else None
        self.ds = ds.dataset if isinstance(ds, Subset) else ds
        if not getattr(self.ds, "stores_encoded", False):
            raise DataError(f"{type(self.ds).__name__}: the tensor loader needs encoded images")

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.ds)

    def __getitem__(self, i: int) -> tuple[bytes | None, int, str]:
        index = self.indices[i] if self.indices is not None else i
        label, name = self.ds.targets[index], self.ds.describe(index)
        try:
            return self.ds.encoded(index), label, name
        except OSError as e:
            return None, label, f"{name}: cannot be read ({e.strerror})"


def collate_encoded(batch: Sequence[tuple]) -> tuple[list[bytes], Tensor, list[str], list[str]]:
    """(bytes, labels, names) of the readable images, and the messages of the others."""
    good = [sample for sample in batch if sample[0] is not None]
    labels = torch.tensor([sample[1] for sample in good], dtype=torch.long)
    return [s[0] for s in good], labels, [s[2] for s in good], [s[2] for s in batch if not s[0]]


class DeviceBatches:
    """Batches of a loader of `EncodedImages` decoded and augmented on `device`: what a
    training loop reads, (images, labels, messages of skipped images), like `collate_skip`'s."""

    def __init__(self, loader: DataLoader, augment: BatchAugment, device: torch.device) -> None:
        self.loader, self.augment, self.device = loader, augment, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for data, labels, names, skipped in self.loader:
            images, kept = [], []
            try:
                images, kept = decode_batch(data, names, self.device), list(range(len(data)))
            except ImageError:  # one bad image: decode each, keep the good ones
                for i in range(len(data)):
                    try:
                        images += decode_batch(data[i : i + 1], names[i : i + 1], self.device)
                        kept.append(i)
                    except ImageError as e:
                        skipped.append(str(e))
            if not images:
                yield torch.empty(0), torch.empty(0, dtype=torch.long), skipped
                continue
            yield self.augment(images), labels[kept].to(self.device), skipped


class PixelBatches:
    """Batches of a loader whose workers hand over 8-bit pixels (`Recipe.pixels`: N x H x W x 3
    uint8, a quarter of float32's bytes), moved to `device` and normalised there."""

    def __init__(self, loader: DataLoader, preprocessing: Preprocessing, device: torch.device):
        self.loader, self.preprocessing, self.device = loader, preprocessing, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, labels, skipped in self.loader:
            if x is not None and len(labels):
                x = self.preprocessing.normalize(x.to(self.device, non_blocking=True))
            yield x, labels, skipped
