"""Colour augmentation: the photometric distortions GoogLeNet section 6 cites (Howard 2013:
brightness, contrast and saturation with Pillow's ImageEnhance, in a random order) and
AlexNet's PCA lighting noise (section 4.1). Draws come from torch's generator, as in
`transforms`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import Tensor

from ..errors import PreprocessingError

# AlexNet section 4.1: eigenvalues and eigenvectors of the covariance of ImageNet's RGB pixels
# (0..1 scale), as published with fb.resnet.torch. Rows are R, G, B; column j is eigenvector j
# (the first, (-0.57, -0.58, -0.58), is overall brightness).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


_ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "contrast": ImageEnhance.Contrast,
    "saturation": ImageEnhance.Color,  # Pillow's "color" enhancement is saturation
}


@dataclass
class PhotometricDistort:
    """The "photometric distortions" GoogLeNet section 6 cites: Howard 2013 (arXiv:1312.5402)
    section 2.1 changes contrast, brightness and color with PIL's ImageEnhance, in a random
    order, each by a factor uniform in [0.5, 1.5] (1 leaves the image unchanged): a spread of
    0.5. `hue` (not in Howard, off by default) also shifts the hue by up to +-hue of a turn."""

    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.0
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in _ENHANCERS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PreprocessingError(
                    f"{name} spread must lie in [0, 1], got {getattr(self, name)}"
                )
        if not 0.0 <= self.hue <= 0.5:
            raise PreprocessingError(f"hue shift must lie in [0, 0.5] of a turn, got {self.hue}")

    def draw(self) -> list[tuple[str, float]]:
        """The operations of one application, in order, with their factors (hue: its shift)."""
        spreads = [(name, getattr(self, name)) for name in (*_ENHANCERS, "hue")]
        spreads = [(name, s) for name, s in spreads if s > 0]
        order = torch.randperm(len(spreads), generator=self.generator).tolist()
        ops = []
        for name, s in (spreads[i] for i in order):
            low, high = (-s, s) if name == "hue" else (1.0 - s, 1.0 + s)
            ops.append((name, low + (high - low) * torch.rand((), generator=self.generator).item()))
        return ops

    @staticmethod
    def apply(img: Image.Image, ops: Sequence[tuple[str, float]]) -> Image.Image:
        for name, factor in ops:
            if name == "hue":
                img = _shift_hue(img, factor)
            else:
                img = _ENHANCERS[name](img).enhance(factor)
        return img

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.apply(img, self.draw())


def _shift_hue(img: Image.Image, turns: float) -> Image.Image:
    hsv = np.array(img.convert("HSV"))
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + round(turns * 256)) % 256).astype(np.uint8)
    return Image.fromarray(hsv, "HSV").convert("RGB")


@dataclass
class PCALighting:
    """AlexNet section 4.1: add sum_i alpha_i * eigval_i * eigvec_i to every pixel, with
    alpha_i ~ N(0, 0.1) drawn once per image; ImageNet's RGB eigen-decomposition by default.
    Works on a 3 x H x W tensor of RGB values in 0..1, before normalisation; no clipping (the
    paper does not clip)."""

    std: float = 0.1
    eigval: tuple[float, float, float] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, float, float], ...] = IMAGENET_EIGVEC
    generator: torch.Generator | None = field(default=None, repr=False)

    def offset(self, alpha: Tensor | None = None) -> Tensor:
        """The RGB offset eigvec @ (alpha * eigval); alpha drawn ~ N(0, std) when not given."""
        if alpha is None:
            alpha = torch.randn(3, generator=self.generator) * self.std
        eigvec = torch.tensor(self.eigvec, dtype=torch.float32)
        return eigvec @ (alpha.float() * torch.tensor(self.eigval, dtype=torch.float32))

    def __call__(self, rgb: Tensor) -> Tensor:
        return rgb + self.offset().to(rgb.dtype).view(3, 1, 1)
