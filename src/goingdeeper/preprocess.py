"""The input transform a set of weights expects, stated in full and applied explicitly.

No model in this package hides an input transform: a weight set's card carries a
`Preprocessing`, and whoever feeds the model applies it (`predict`, `eval`, the trainers).
`Preprocessing.normalize` is the one place where pixels become network input.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from .errors import ImageError, PreprocessingError

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,  # OpenCV's INTER_AREA when shrinking
    "lanczos": Image.Resampling.LANCZOS,
}
CHANNEL_ORDERS = ("RGB", "BGR", "L")
TIMM_INTERPOLATIONS = {"area": "box"}  # the same Pillow filter under timm's name


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of 0..255 RGB values (last axis), computed as Pillow's `convert("L")`
    does for 8-bit images (fixed point, rounded), so that both give the same plane."""
    if rgb.dtype == np.uint8:
        r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side, add a border of `pad` black pixels (0 by default), center
    crop, then map pixels to the network's input.

    value = (pixel * scale - mean) / std, per channel, in `channel_order`; pixel is 0..255.
    `channel_order="L"` gives one grayscale plane (ITU-R 601 luma, as Pillow computes it), for
    networks of one input plane such as LeNet; it uses the first mean and std.
    """

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    note: str = field(default="", compare=False)
    # LeNet-5 section III.A: MNIST's 28x28 digits centred in a 32x32 field (resize 28, pad 2)
    pad: int = 0

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise PreprocessingError(
                f"channel_order must be 'RGB', 'BGR' or 'L', got {self.channel_order!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessingError(
                f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        for name in ("resize", "crop", "pad"):
            value = getattr(self, name)
            low = 0 if name == "pad" else 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 4096:
                raise PreprocessingError(
                    f"{name} must be a whole number of pixels from {low} to 4096, got {value!r}"
                )
        numbers = [self.scale, *self.mean, *self.std]
        if len(self.mean) != 3 or len(self.std) != 3:
            raise PreprocessingError(
                f"mean and std take 3 values each, got {len(self.mean)} and {len(self.std)}"
            )
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
            raise PreprocessingError(f"scale, mean and std must be finite numbers, got {numbers}")
        if self.scale <= 0 or min(self.std) <= 0:
            raise PreprocessingError(
                f"scale and std must be positive (a zero std divides by zero), got scale "
                f"{self.scale} and std {list(self.std)}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        if not isinstance(d, dict):
            raise PreprocessingError(f"preprocessing must be a table of fields, got {d!r}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise PreprocessingError(f"preprocessing: unknown field(s) {', '.join(unknown)}")
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                if not isinstance(d[key], list | tuple):
                    raise PreprocessingError(f"preprocessing {key}: 3 numbers, got {d[key]!r}")
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **changes) -> Preprocessing:
        """The same transform with some fields changed."""
        return Preprocessing.from_dict({**self.to_dict(), **changes})

    def scaled(self, crop: int) -> Preprocessing:
        """The same transform for another crop size, the resize scaled in proportion."""
        resize = round(self.resize * crop / self.crop)
        return self.replace(crop=crop, resize=resize, pad=self.pad_for(crop))

    def pad_for(self, crop: int) -> int:
        """The border scaled to another crop size (LeNet-5's 2 of 32 -> 4 of 64)."""
        return round(self.pad * crop / self.crop)

    def resize_shorter(self, img: Image.Image, size: int | None = None) -> Image.Image:
        new = shorter_side(img.size, self.resize if size is None else size)
        return img.resize(check_resized(img, new), INTERPOLATIONS[self.interpolation])

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "L" else 3

    def data_config(self) -> dict:
        """This transform in the keys of timm's `pretrained_cfg` (what
        `timm.data.resolve_data_config` reads): mean and std in 0..1 units, crop_pct = crop /
        resize. `channel_order` and `pad` have no timm key and come as they are: timm's
        transforms feed RGB, so a BGR or one-plane card is stated, not reproduced, there."""
        unit = 255.0 * self.scale  # value = (p - mean / unit) / (std / unit), p in 0..1
        planes = self.channels
        return {
            "input_size": (planes, self.crop, self.crop),
            "interpolation": TIMM_INTERPOLATIONS.get(self.interpolation, self.interpolation),
            "mean": tuple(m / unit for m in self.mean[:planes]),
            "std": tuple(s / unit for s in self.std[:planes]),
            "crop_pct": self.crop / self.resize,
            "crop_mode": "center",
            "channel_order": self.channel_order,
            "pad": self.pad,
        }

    def normalize(self, pixels: np.ndarray | Tensor) -> Tensor:
        """0..255 pixel values with the colour in the last axis (... x H x W x 3 RGB, or
        ... x H x W x 1 already one plane) to the network's input ... x C x H x W, float32:
        the channel order, then (pixel * scale - mean) / std per channel. A tensor stays on
        its device (a GPU batch is normalised there)."""
        if isinstance(pixels, Tensor):
            return self._normalize_tensor(pixels)
        x = np.asarray(pixels)
        if self.channel_order == "L" and x.shape[-1] == 3:
            x = luma(x)[..., None]
        elif self.channel_order == "BGR":
            x = x[..., ::-1]
        x = np.ascontiguousarray(np.moveaxis(x, -1, -3), dtype=np.float32)
        planes = x.shape[-3]
        x *= np.float32(self.scale)
        x -= np.asarray(self.mean[:planes], dtype=np.float32).reshape(planes, 1, 1)
        x /= np.asarray(self.std[:planes], dtype=np.float32).reshape(planes, 1, 1)
        return torch.from_numpy(x)

    def _normalize_tensor(self, pixels: Tensor) -> Tensor:
        x = pixels
        if self.channel_order == "L" and x.shape[-1] == 3:
            if x.dtype == torch.uint8:  # Pillow's fixed-point luma, as `luma` computes it
                r, g, b = (x[..., i].to(torch.int64) for i in range(3))
                x = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)[..., None]
            else:
                x = (x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114)[..., None]
        elif self.channel_order == "BGR":
            x = x.flip(-1)
        x = x.movedim(-1, -3).to(torch.float32).contiguous()
        planes = x.shape[-3]
        mean, std = _on_device(tuple(self.mean[:planes]), tuple(self.std[:planes]), x.device)
        return (x * self.scale - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """The inverse of `normalize` for three-plane inputs: N x 3 x H x W network input back
        to 0..255 RGB values, N x H x W x 3."""
        mean = torch.tensor(self.mean, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(3, 1, 1)
        pixels = (x * std + mean) / self.scale
        if self.channel_order == "BGR":
            pixels = pixels.flip(-3)
        return pixels.movedim(-3, -1)

    def to_tensor(self, img: Image.Image) -> Tensor:
        """An RGB PIL image (any size) to a normalised C x H x W float tensor."""
        if self.channel_order == "L":
            return self.normalize(np.asarray(img.convert("L"))[..., None])
        return self.normalize(np.asarray(img))

    def crop_image(self, img: Image.Image) -> Image.Image:
        """The geometric part: shorter side to `resize`, the border, the center crop."""
        return center_crop(add_border(self.resize_shorter(img), self.pad), self.crop)

    def __call__(self, img: Image.Image) -> Tensor:
        return self.to_tensor(self.crop_image(img))


def shorter_side(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) of an image of `size` resized so its shorter side is `shorter`."""
    w, h = size
    if w <= h:
        return shorter, max(1, round(h * shorter / w))
    return max(1, round(w * shorter / h)), shorter


def add_border(img: Image.Image, pad: int) -> Image.Image:
    """`pad` black pixels on every side (the image itself when pad is 0)."""
    return ImageOps.expand(img, border=pad, fill=0) if pad > 0 else img


# Images are bounded by what they become, not by their file: a 143-byte 20000 x 1 PNG resized to
# a shorter side of 256 would be 5,120,000 x 256 pixels (1.3 G, 4 GB as RGB bytes).
MAX_RESIZED_PIXELS = 2**25


def check_resized(img: Image.Image, new: tuple[int, int]) -> tuple[int, int]:
    """`new`, when an image resized to it stays within `MAX_RESIZED_PIXELS`; else an
    `ImageError` (the image is skipped and named, like an unreadable one)."""
    if new[0] * new[1] > MAX_RESIZED_PIXELS:
        w, h = img.size
        raise ImageError(
            f"a {w} x {h} image would become {new[0]:,} x {new[1]:,} pixels when resized for "
            f"the network (more than {MAX_RESIZED_PIXELS:,}); its sides are too unequal"
        )
    return new


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if w < size or h < size:  # smaller than the crop: upscale the shorter side to it first
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        img = img.resize(check_resized(img, new), Image.Resampling.BILINEAR)
        w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def mean_subtracted(
    mean: tuple[float, float, float], note: str, *, crop: int = 224, channel_order: str = "RGB"
) -> Preprocessing:
    """0..255 pixels minus a per-channel mean and nothing else, as the Caffe-era papers and
    models feed their networks; shorter side 256."""
    return Preprocessing(
        crop=crop, channel_order=channel_order, scale=1.0, mean=mean, std=(1.0, 1.0, 1.0), note=note
    )


# ImageNet statistics, as torchvision's weights expect them
IMAGENET_RGB = Preprocessing()
# BVLC Caffe models: BGR, 0..255, minus the per-channel mean (B 104, G 117, R 123)
CAFFE_BGR = mean_subtracted(
    (104.0, 117.0, 123.0), "BVLC Caffe: BGR, 0-255, mean (104, 117, 123)", channel_order="BGR"
)
# torchvision's GoogLeNet weights with transform_input=True fold ImageNet normalisation into
# (x - 0.5) / 0.5: here that transform is stated instead of hidden in the model
TORCHVISION_GOOGLENET = Preprocessing(
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    note="torchvision googlenet (transform_input=True): RGB, 0-1, (x - 0.5) / 0.5",
)


@functools.lru_cache(maxsize=16)
def _on_device(mean: tuple, std: tuple, device: torch.device) -> tuple[Tensor, Tensor]:
    """The normalisation's mean and std as C x 1 x 1 tensors on `device`, copied there once:
    a batch normalised on a GPU then waits for no copy from the host."""
    both = torch.tensor([mean, std], dtype=torch.float32).view(2, len(mean), 1, 1)
    if device.type == "cuda":
        both = both.pin_memory()
    both = both.to(device, non_blocking=True)
    return both[0], both[1]
