"""GoogLeNet's training augmentation on whole batches of tensors, on whichever device they are:
JPEG bytes decoded in one call (`torchvision.io.decode_jpeg`, on the GPU when the batch goes
there), then per image the random-sized crop, its interpolation, the flip and Howard's
photometric distortions, and the weights' normalisation, without a trip through Pillow.

The draws are the PIL recipe's (`pillow.RandomSizedCrop.box`), from the same spec
(`recipes.RECIPES["googlenet"]`: the area and aspect ranges, the interpolations with equal
probability, the factor ranges in a random order, the flip's probability), from one
`torch.Generator` on the CPU, so a seed gives the same crops on any device.
The photometric operations compute what Pillow's `ImageEnhance` computes (brightness scales,
contrast blends with the mean grey, colour with the grey image), cut to 8 bits after each
as Pillow stores it: the result differs from the PIL path by at most a level or two per pixel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.io import ImageReadMode, decode_jpeg

from ...errors import DataError, ImageError
from ...images import decode_image, open_encoded
from ...preprocess import Preprocessing
from ..recipes.catalogue import GOOGLENET_INTERPOLATIONS, RECIPES
from .pillow import PhotometricDistort, RandomSizedCrop

_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_batch(images: Sequence[bytes], names: Sequence[str], device: torch.device) -> list:
    """Each image as a 3 x H x W uint8 tensor on `device`. JPEGs are decoded together by
    torchvision (nvJPEG on a GPU, libjpeg-turbo on the CPU); any other format, or a JPEG that
    torchvision cannot read (CMYK, damaged), goes through `images.decode_image`, so that every
    file a data set holds is read and a bad one fails with its usual message. A JPEG's EXIF
    orientation is applied as Pillow applies it: every path shows a photo the same way up."""
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
            if image is not None:
                with open_encoded(images[i], names[i]) as opened:
                    out[i] = upright(image, opened.orientation)
    for i, image in enumerate(out):
        if image is None:
            pil = decode_image(images[i], names[i])
            out[i] = _from_pil(pil).to(device)
    return out


def upright(image: Tensor, orientation: int) -> Tensor:
    """A decoded C x H x W image as shown under its EXIF `orientation` (Pillow's
    `ImageOps.exif_transpose`): 2-4 mirror or turn it half way, 5-8 swap its sides."""
    h, w = -2, -1
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h, w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:  # mirrored about the main diagonal
        return image.transpose(h, w)
    if orientation == 6:  # a quarter turn clockwise
        return image.rot90(-1, (h, w))
    if orientation == 7:  # mirrored about the other diagonal
        return image.transpose(h, w).flip(h, w)
    if orientation == 8:  # a quarter turn anticlockwise
        return image.rot90(1, (h, w))
    return image


def _from_pil(img: Image.Image) -> Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)  # one copy of the pixels


# Pillow's resampling filters (Resample.c): name -> (support in input pixels at scale 1,
# index into `_filter_values`); nearest neighbour takes the pixel under the sample point.
_FILTERS = {"nearest": (0.5, 0), "area": (0.5, 1), "bilinear": (1.0, 2), "bicubic": (2.0, 3)}
_FILTERS["lanczos"] = (3.0, 4)
_PRECISION = 1 << 22  # Pillow's fixed-point coefficients for 8-bit images (PRECISION_BITS)


class BatchAugment:
    """The `googlenet` recipe on a list of decoded images: N x C x size x size network input,
    the whole batch at once.

    Per image, on the CPU and in the PIL recipe's order, the draws: the box and interpolation
    (`pillow.RandomSizedCrop` of the recipe's `AreaCrop`), the photometric operations and
    factors (`pillow.PhotometricDistort` of its `Photometric`), the flip (its `Flip`). Then, for
    the batch in a fixed number of device operations and no wait for the device: the images
    padded into one tensor; each crop resized as Pillow resizes (`_taps`: a separable filter
    over the box, horizontal pass then vertical, each cut to 8 bits), the flip folded into the
    horizontal taps (the output columns taken in reverse); the photometric operations as batched
    arithmetic with per-image factors (`enhance_batch`); the weights' normalisation.
    `photometric` and `flip` as in `pillow.train_transform`; `generator` (a CPU generator) makes
    the draws reproducible."""

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
        spec = RECIPES["googlenet"]
        self.size, self.preprocessing, self.flip = size, preprocessing, flip
        area, ratio, attempts = spec.geometry.area, spec.geometry.ratio, spec.geometry.attempts
        self.crop = RandomSizedCrop(
            size, area, ratio, tuple(interpolations), attempts, generator=generator
        )
        self.flip_p = spec.flip.p
        unknown = [name for name in self.crop.interpolations if name not in _FILTERS]
        if unknown:
            raise ImageError(f"the batch augmentation has no {unknown[0]!r} interpolation")
        self.distort = None
        if photometric:
            self.distort = PhotometricDistort.of(spec.photometric, generator=generator)
        if self.distort is not None and self.distort.hue > 0:
            raise ImageError("the batch augmentation has no hue shift; use loader=pil")
        self.generator = generator

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        if len(images) == 0:
            raise ImageError("an empty batch of images")
        device = images[0].device
        draws = self.draw([(int(im.shape[-1]), int(im.shape[-2])) for im in images])
        # Pillow resizes rows first where the height shrinks more than twice the width: the
        # images that do come second, so that each order is one slice of the batch
        order = [i for i, v in enumerate(draws.vertical_first) if not v]
        first = len(order)
        order += [i for i, v in enumerate(draws.vertical_first) if v]
        batch = _padded([images[i] for i in order])  # N x 3 x Hmax x Wmax, uint8
        params, nearest = _to(draws.params[order], device), _to(draws.nearest[order], device)
        back = _to(torch.tensor(order).argsort(), device)
        kind = params[:, 6]  # (indexing a device tensor by a list would copy the list there)
        cols = _taps(
            params[:, 0], params[:, 2], params[:, 4], kind, nearest[:, 0], self.size, draws.kx
        )
        rows = _taps(
            params[:, 1], params[:, 3], params[:, 5], kind, nearest[:, 1], self.size, draws.ky
        )
        flipped = params[:, 7].bool()[:, None, None]
        cols = tuple(torch.where(flipped, t.flip(1), t) for t in cols)
        parts = []
        if first:  # columns, then rows
            h = [t[:first] for t in cols], [t[:first] for t in rows]
            parts.append(_resample(_resample(batch[:first], *h[0], dim=3), *h[1], dim=2))
        if first < len(order):  # rows, then columns
            v = [t[first:] for t in rows], [t[first:] for t in cols]
            parts.append(_resample(_resample(batch[first:], *v[0], dim=2), *v[1], dim=3))
        crops = torch.cat(parts)[back].float()  # N x 3 x s x s, 0..255, in the images' order
        if self.distort is not None:
            crops = enhance_batch(crops, params[back, 8:11].long(), params[back, 11:14].float())
        return self.preprocessing.normalize(crops.permute(0, 2, 3, 1))

    def draw(self, sizes: Sequence[tuple[int, int]]) -> _Draws:
        """The draws for images of these (width, height), in the PIL recipe's order."""
        rows, vertical_first, kx, ky = [], [], 1, 1
        for width, height in sizes:
            left, top, w, h = self.crop.box(width, height)
            support, kind = _FILTERS[self.crop.interpolation()]
            ops = self.distort.draw() if self.distort is not None else []
            flip = self.flip and torch.rand((), generator=self.generator).item() < self.flip_p
            names = [_OPS.index(name) for name, _ in ops] + [0] * (3 - len(ops))
            factors = [factor for _, factor in ops] + [1.0] * (3 - len(ops))  # 1: unchanged
            sx, sy = w / self.size, h / self.size
            kx = max(kx, _ksize(support, sx))
            ky = max(ky, _ksize(support, sy))
            rows.append([left, top, sx, sy, width, height, kind, flip, *names, *factors])
            shrink = height - self.size
            vertical_first.append(shrink > 0 and shrink > 2 * (width - self.size))
        params = torch.tensor(rows, dtype=torch.float64)
        return _Draws(params, _nearest(params, self.size), vertical_first, kx, ky)


@dataclass(frozen=True)
class _Draws:
    """One batch's draws, on the CPU: per image (left, top, x scale, y scale, width, height,
    filter, flip, three operations, their three factors); the pixels nearest neighbour takes
    (N x 2 x size: columns, rows); whether Pillow resizes its rows first; the taps each
    resampling pass needs."""

    params: Tensor  # N x 14, float64
    nearest: Tensor  # N x 2 x size, int64
    vertical_first: list[bool]
    kx: int
    ky: int


def _nearest(params: Tensor, size: int) -> Tensor:
    """The input pixels Pillow's nearest neighbour takes (N x 2 x size: columns, rows; zeros
    for the images of other filters): its sample points summed one step at a time in float64
    (`ImagingScaleAffine`), as `np.cumsum` sums along a row, then truncated."""
    out = np.zeros((len(params), 2, size), dtype=np.int64)
    chosen = (params[:, 6] == _FILTERS["nearest"][1]).nonzero()[:, 0].numpy()
    if len(chosen):
        p = params[chosen].numpy()
        steps = np.repeat(p[:, [2, 3], None], size, axis=2)  # x and y scale
        steps[:, :, 0] = p[:, [0, 1]] + p[:, [2, 3]] * 0.5  # start + half a step
        out[chosen] = np.cumsum(steps, axis=2).astype(np.int64)
    return torch.from_numpy(out)


def _to(t: Tensor, device: torch.device) -> Tensor:
    """`t` on `device` without waiting: from page-locked memory on a GPU."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def _ksize(support: float, scale: float) -> int:
    """Pillow's number of taps for a filter of `support` at `scale` input pixels per output."""
    return math.ceil(support * max(scale, 1.0)) * 2 + 1


def _padded(images: Sequence[Tensor]) -> Tensor:
    """The images in one zero-padded N x 3 x Hmax x Wmax tensor (one copy each)."""
    height = max(int(im.shape[-2]) for im in images)
    width = max(int(im.shape[-1]) for im in images)
    batch = images[0].new_zeros((len(images), 3, height, width))
    for i, im in enumerate(images):
        batch[i, :, : im.shape[-2], : im.shape[-1]] = im
    return batch


def _filter_values(x: Tensor, kind: Tensor) -> Tensor:
    """Pillow's filters at `x` (in output pixels), each image's own by `kind`."""
    ax = x.abs()
    box = ((x > -0.5) & (x <= 0.5)).to(x.dtype)
    triangle = (1 - ax).clamp(min=0)
    a = -0.5
    cubic = torch.where(
        ax < 1,
        ((a + 2) * ax - (a + 3)) * ax * ax + 1,
        torch.where(ax < 2, (((ax - 5) * ax + 8) * ax - 4) * a, torch.zeros_like(ax)),
    )
    lanczos = torch.where(ax < 3, torch.sinc(x) * torch.sinc(x / 3), torch.zeros_like(ax))
    values = torch.stack([box, box, triangle, cubic, lanczos])  # nearest: see `_taps`
    return values.gather(0, kind.long().expand_as(x)[None])[0]


def _taps(
    start: Tensor, scale: Tensor, length: Tensor, kind: Tensor, nearest: Tensor, size: int, k: int
) -> tuple[Tensor, Tensor]:
    """Pillow's `precompute_coeffs` for a batch along one axis. Per image (N each): the box's
    `start`, its `scale` in input pixels per output pixel, the axis's `length`, the filter
    `kind` (`_FILTERS`); `nearest`: N x size, the pixels nearest neighbour takes. For each
    image and output pixel, the `k` input indices and weights (fixed-point, as Pillow rounds
    them for 8-bit images): N x size x k each."""
    n = start.shape[0]
    start, scale, length, kind = (v.view(n, 1, 1) for v in (start, scale, length, kind))
    support = torch.full_like(scale, 0.5)
    for support_of, index in _FILTERS.values():  # scalars only: no copy from the host
        support = torch.where(kind == index, support_of, support)
    stretch = scale.clamp(min=1.0)
    reach = support * stretch
    outputs = torch.arange(size, dtype=scale.dtype, device=scale.device).view(1, size, 1)
    centre = start + (outputs + 0.5) * scale
    first = torch.floor(centre - reach + 0.5).clamp(min=0)
    last = torch.minimum(torch.floor(centre + reach + 0.5), length)
    is_nearest = kind == 0
    taken = nearest.view(n, size, 1).to(scale.dtype).clamp(max=length - 1)
    first = torch.where(is_nearest, taken, first)
    last = torch.where(is_nearest, first + 1, last)
    index = first + torch.arange(k, dtype=scale.dtype, device=scale.device).view(1, 1, k)
    inside = index < last
    weights = _filter_values((index - centre + 0.5) / stretch, kind) * inside
    weights = torch.where(is_nearest, (index == first).to(weights.dtype), weights)
    total = weights.sum(-1, keepdim=True)
    weights = weights / torch.where(total == 0, 1.0, total)
    # Pillow's normalize_coeffs_8bpc: each weight rounded half away from zero to 1/2**22
    fixed = torch.trunc(weights * _PRECISION + 0.5 * torch.sign(weights))
    index = torch.where(inside, index, first).long()
    return index, fixed.int()


def _resample(x: Tensor, index: Tensor, weights: Tensor, *, dim: int) -> Tensor:
    """One pass of Pillow's resampling along `dim` (3: columns, 2: rows) of N x C x H x W
    8-bit values: each output the sum of its taps times their fixed-point weights, in 32-bit
    integers as Pillow sums them, rounded half up and clipped to 0..255 (int32)."""
    n, c, h, w = x.shape
    size, k = index.shape[1:]
    out_shape = (n, c, h, size) if dim == 3 else (n, c, size, w)
    view = (n, 1, 1, size) if dim == 3 else (n, 1, size, 1)
    total = torch.full(out_shape, _PRECISION // 2, dtype=torch.int32, device=x.device)
    for j in range(k):
        taken = x.gather(dim, index[:, :, j].view(view).expand(out_shape))
        total += taken.int() * weights[:, :, j].view(view)
    return total.bitwise_right_shift_(22).clamp_(0, 255)


# the photometric operations by index, as `BatchAugment.draw` codes them
_OPS = ("brightness", "contrast", "saturation")


def enhance_batch(rgb: Tensor, ops: Tensor, factors: Tensor) -> Tensor:
    """Pillow's `ImageEnhance` on a batch (N x 3 x H x W float, 0..255) with each image's own
    operations: step t applies operation `ops[:, t]` (an index into `_OPS`) by `factors[:, t]`,
    as batched arithmetic. Brightness blends with black, contrast with the image's mean grey,
    colour with its grey image; each result clipped and cut to 8 bits as `Image.blend` stores
    it (a float32 factor, truncation)."""
    for t in range(ops.shape[1]):
        luma = _luma(rgb)
        mean = torch.floor(luma.double().mean((2, 3), keepdim=True) + 0.5).to(rgb.dtype)
        op = ops[:, t].view(-1, 1, 1, 1)
        grey = torch.where(op == 1, mean, torch.where(op == 2, luma, torch.zeros_like(mean)))
        factor = factors[:, t].view(-1, 1, 1, 1).to(rgb.dtype)
        rgb = (grey + factor * (rgb - grey)).clamp_(0, 255).floor_()  # Pillow truncates
    return rgb


def enhance(rgb: Tensor, ops: Sequence[tuple[str, float]]) -> Tensor:
    """`enhance_batch` of one 3 x H x W image with the operations `PhotometricDistort.draw`
    gives. (The recipe's hue shift is off; this path refuses it rather than leave it out.)"""
    unknown = [name for name, _ in ops if name not in _OPS]
    if unknown:
        raise ImageError(f"the batch augmentation has no {unknown[0]!r} operation")
    codes = torch.tensor([[_OPS.index(name) for name, _ in ops]], device=rgb.device)
    factors = torch.tensor([[factor for _, factor in ops]], device=rgb.device)
    return enhance_batch(rgb[None], codes, factors)[0]


def _luma(rgb: Tensor) -> Tensor:
    """Pillow's 8-bit `convert("L")` of N x 3 x H x W values 0..255: N x 1 x H x W. In float32
    exactly: every product and sum is an integer below 2**24."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 0x8000) / 65536)


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
    """Batches of a loader whose workers hand over 8-bit pixels (`RecipeSteps.pixels`: N x H x W x 3
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
