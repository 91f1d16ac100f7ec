"""The input transform a set of weights expects, stated in full and applied explicitly.

No model in this package hides an input transform: a weight set's card carries a
`Preprocessing`, and whoever feeds the model applies it (`predict`, `eval`, the trainers).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,  # OpenCV's INTER_AREA when shrinking
    "lanczos": Image.Resampling.LANCZOS,
}

# Pillow's default decompression-bomb limit is ~89 M pixels; real photos stay far below it.
MAX_IMAGE_PIXELS = 178_956_970


class ImageError(ValueError):
    """An image that cannot be used, with a message meant for a person."""


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
        if self.channel_order not in ("RGB", "BGR", "L"):
            raise ValueError(
                f"channel_order must be 'RGB', 'BGR' or 'L', got {self.channel_order!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if self.pad < 0:
            raise ValueError(f"pad must be 0 or more pixels, got {self.pad}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    def scaled(self, crop: int) -> Preprocessing:
        """The same transform for another crop size, the resize scaled in proportion."""
        resize = round(self.resize * crop / self.crop)
        values = {**self.to_dict(), "crop": crop, "resize": resize, "pad": self.pad_for(crop)}
        return Preprocessing(**{**values, "mean": self.mean, "std": self.std})

    def pad_for(self, crop: int) -> int:
        """The border scaled to another crop size (LeNet-5's 2 of 32 -> 4 of 64)."""
        return round(self.pad * crop / self.crop)

    def resize_shorter(self, img: Image.Image, size: int | None = None) -> Image.Image:
        size = self.resize if size is None else size
        w, h = img.size
        if w <= h:
            new = (size, max(1, round(h * size / w)))
        else:
            new = (max(1, round(w * size / h)), size)
        return img.resize(new, INTERPOLATIONS[self.interpolation])

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "L" else 3

    def to_tensor(self, img: Image.Image) -> Tensor:
        """An RGB PIL image (any size) to a normalised C x H x W float tensor."""
        if self.channel_order == "L":
            arr = np.asarray(img.convert("L"), dtype=np.float32)[None]  # 1 x H x W, 0..255
            t = torch.from_numpy(np.ascontiguousarray(arr)) * self.scale
            return (t - self.mean[0]) / self.std[0]
        arr = np.asarray(img, dtype=np.float32)  # H x W x 3, 0..255
        if self.channel_order == "BGR":
            arr = arr[..., ::-1]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1) * self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (t - mean) / std

    def crop_image(self, img: Image.Image) -> Image.Image:
        """The geometric part: shorter side to `resize`, the border, the center crop."""
        return center_crop(add_border(self.resize_shorter(img), self.pad), self.crop)

    def __call__(self, img: Image.Image) -> Tensor:
        return self.to_tensor(self.crop_image(img))


def add_border(img: Image.Image, pad: int) -> Image.Image:
    """`pad` black pixels on every side (the image itself when pad is 0)."""
    return ImageOps.expand(img, border=pad, fill=0) if pad > 0 else img


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if w < size or h < size:  # smaller than the crop: upscale the shorter side to it first
        scale = size / min(w, h)
        img = img.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
        )
        w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


# ImageNet statistics, as torchvision's weights expect them
IMAGENET_RGB = Preprocessing()
# BVLC Caffe models: BGR, 0..255, minus the per-channel mean (B 104, G 117, R 123)
CAFFE_BGR = Preprocessing(
    channel_order="BGR",
    scale=1.0,
    mean=(104.0, 117.0, 123.0),
    std=(1.0, 1.0, 1.0),
    note="BVLC Caffe: BGR, 0-255, mean (104, 117, 123)",
)
# torchvision's GoogLeNet weights with transform_input=True fold ImageNet normalisation into
# (x - 0.5) / 0.5: here that transform is stated instead of hidden in the model
TORCHVISION_GOOGLENET = Preprocessing(
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    note="torchvision googlenet (transform_input=True): RGB, 0-1, (x - 0.5) / 0.5",
)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: grayscale, palette, CMYK, 16-bit, alpha (on white)."""
    img = ImageOps.exif_transpose(img) if hasattr(img, "getexif") else img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB, or raise `ImageError` with a message for a person."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's "cannot identify", truncation
        raise ImageError(f"{path}: not a readable image ({e})") from None
