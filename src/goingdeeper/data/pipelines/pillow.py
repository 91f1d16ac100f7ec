"""The Pillow pipeline: the training recipes (`recipes.catalogue`) as transforms of one image,
run in the loader workers, and the evaluation transform.

`train_transform` builds a recipe's steps from its spec, each ending in the model's stated
input transform (`Preprocessing`: channel order, scale, mean, std), so that no transform is
hidden. The colour steps are Howard's photometric distortions (brightness, contrast and
saturation with Pillow's ImageEnhance, in a random order) and AlexNet's PCA lighting noise.

All randomness comes from torch's generator (`torch.rand`, `torch.randint`, or a
`torch.Generator` given to a transform), never from `random` or numpy: `torch.manual_seed`
makes a run reproducible, and the DataLoader seeds torch differently in each worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import Tensor
from torchvision.transforms import Compose

from ...errors import PreprocessingError
from ...images import OpenedImage, to_rgb
from ...preprocess import (
    INTERPOLATIONS,
    Preprocessing,
    add_border,
    center_crop,
    check_resized,
    shorter_side,
)
from ..recipes import catalogue
from ..recipes.catalogue import (
    ALEXNET_LIGHTING,
    FLIP,
    GOOGLENET_CROP,
    GOOGLENET_INTERPOLATIONS,
    HOWARD,
    LENET_AFFINE,
    VGG_SCALES,
)
from ..recipes.specs import (
    Affine,
    AreaCrop,
    Lighting,
    Photometric,
    Recipe,
    ScaleRange,
    SquareCrops,
)


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform over low..high, both included."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _check_interpolation(name: str) -> None:
    if name not in INTERPOLATIONS:
        raise PreprocessingError(
            f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {name!r}"
        )


def _resize_shorter(img: Image.Image | OpenedImage, size: int, interpolation: str) -> Image.Image:
    """The shorter side to `size`; an opened image is decoded no larger than that needs, and
    resized to the size the whole image would have been."""
    new = check_resized(img, shorter_side(img.size, size))
    img = _decoded(img, new)
    return img.resize(new, INTERPOLATIONS[interpolation])


def _decoded(img: Image.Image | OpenedImage, at_least: tuple[int, int]) -> Image.Image:
    """`img` itself when decoded; an `OpenedImage` decoded at no less than `at_least` pixels
    (width, height), which for a JPEG may be 1/2, 1/4 or 1/8 of its size."""
    return img.decode(at_least) if isinstance(img, OpenedImage) else img


class RecipeSteps(Compose):
    """A training transform: its steps in order, the first of which may receive the image
    opened but not decoded (`takes_opened`), so that a JPEG is decoded only as large as the
    first resize needs (`ImageDataset` passes it so)."""

    def __init__(self, transforms: list[Callable], *, takes_opened: bool = False) -> None:
        super().__init__(transforms)
        self.takes_opened = takes_opened and getattr(transforms[0], "takes_opened", False)

    @property
    def pixels(self) -> bool:
        """Whether it ends in 8-bit pixels (H x W x 3) that the batch is normalised from."""
        return getattr(self.transforms[-1], "pixels", False)


@dataclass
class RandomSizedCrop:
    """An `AreaCrop`: a patch of a random share of the image area (uniform) with a random
    aspect ratio (uniform), resized to size x size with an interpolation drawn at random;
    GoogLeNet section 6's by default (`GOOGLENET_CROP`)."""

    size: int
    area: tuple[float, float] = GOOGLENET_CROP.area
    ratio: tuple[float, float] = GOOGLENET_CROP.ratio
    interpolations: Sequence[str] = GOOGLENET_CROP.interpolations
    attempts: int = GOOGLENET_CROP.attempts
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.interpolations = tuple(self.interpolations)
        if not self.interpolations:
            raise PreprocessingError("RandomSizedCrop needs at least one interpolation")
        for name in self.interpolations:
            _check_interpolation(name)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, w, h) of one random patch of a width x height image."""
        for _ in range(self.attempts):
            area = _uniform(*self.area, self.generator) * width * height
            ratio = _uniform(*self.ratio, self.generator)
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= width and 0 < h <= height:
                left = _randint(0, width - w, self.generator)
                return left, _randint(0, height - h, self.generator), w, h
        # nothing fitted (a very elongated image): the largest central patch the ratio allows
        w, h = width, height
        if w / h < self.ratio[0]:
            h = max(1, round(w / self.ratio[0]))
        elif w / h > self.ratio[1]:
            w = max(1, round(h * self.ratio[1]))
        return (width - w) // 2, (height - h) // 2, w, h

    def interpolation(self) -> str:
        """One of `interpolations`, each with equal probability."""
        return self.interpolations[_randint(0, len(self.interpolations) - 1, self.generator)]

    takes_opened = True

    def __call__(self, img: Image.Image | OpenedImage) -> Image.Image:
        width, height = img.size
        left, top, w, h = self.box(width, height)
        resample = INTERPOLATIONS[self.interpolation()]
        at_least = (math.ceil(width * self.size / w), math.ceil(height * self.size / h))
        img = _decoded(img, at_least)  # the patch keeps >= size pixels a side
        sx, sy = img.width / width, img.height / height
        box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        return img.resize((self.size, self.size), resample, box=box)


@dataclass
class RandomCrop:
    """A size x size patch at a uniformly random position (an image smaller than that is
    first scaled up so its shorter side is `size`)."""

    size: int
    generator: torch.Generator | None = field(default=None, repr=False)

    def __call__(self, img: Image.Image) -> Image.Image:
        if min(img.size) < self.size:
            img = _resize_shorter(img, self.size, "bilinear")
        w, h = img.size
        left = _randint(0, w - self.size, self.generator)
        top = _randint(0, h - self.size, self.generator)
        return img.crop((left, top, left + self.size, top + self.size))


@dataclass
class RandomHorizontalFlip:
    """Mirror left-right with probability p (`FLIP`: AlexNet section 4.1, GoogLeNet, VGG)."""

    p: float = FLIP.p
    generator: torch.Generator | None = field(default=None, repr=False)

    def __call__(self, img: Image.Image) -> Image.Image:
        if torch.rand((), generator=self.generator).item() < self.p:
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


@dataclass
class ScaleJitter:
    """A `ScaleRange` (VGG section 3.1, multi-scale training: `VGG_SCALES`): rescale so the
    shorter side is S, drawn uniformly from [s_min, s_max] for each image, then a random
    size x size crop."""

    size: int = VGG_SCALES.at
    scale: tuple[int, int] = VGG_SCALES.scales
    interpolation: str = "bilinear"
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_interpolation(self.interpolation)
        if not self.size <= self.scale[0] <= self.scale[1]:
            raise PreprocessingError(
                f"need size <= s_min <= s_max, got {self.size} and {self.scale}"
            )

    def draw_scale(self) -> int:
        """One training scale S."""
        return _randint(*self.scale, self.generator)

    takes_opened = True

    def __call__(self, img: Image.Image | OpenedImage) -> Image.Image:
        img = _resize_shorter(img, self.draw_scale(), self.interpolation)
        return RandomCrop(self.size, self.generator)(img)


@dataclass
class CenterSquare:
    """AlexNet section 2: rescale the shorter side to `size`, keep the central square."""

    size: int
    interpolation: str = "bilinear"

    takes_opened = True

    def __call__(self, img: Image.Image | OpenedImage) -> Image.Image:
        return center_crop(_resize_shorter(img, self.size, self.interpolation), self.size)


def five_crop_boxes(width: int, height: int, size: int) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of the center and the four corner `size` crops of a width x
    height image, in that order: center, top-left, top-right, bottom-left, bottom-right (the
    order and the rounding of the ten test views, `evaluate.views.crop_offsets`)."""
    right, bottom = width - size, height - size
    corners = [(right // 2, bottom // 2), (0, 0), (right, 0), (0, bottom), (right, bottom)]
    return [(x, y, x + size, y + size) for x, y in corners]


@dataclass
class FixedSubCrops:
    """ZFNet section 3: "10 different sub-crops of size 224x224 (corners + center with(out)
    horizontal flips)" of the 256 x 256 center square; one of them, uniformly at random, per
    image and epoch. Without `flip`, the five unmirrored ones."""

    size: int
    flip: bool = True
    generator: torch.Generator | None = field(default=None, repr=False)

    def views(self, img: Image.Image) -> list[Image.Image]:
        """All of them, in the order of the ten test views: the five crops (`five_crop_boxes`),
        then (with `flip`) their mirrors in the same order."""
        if min(img.size) < self.size:
            img = _resize_shorter(img, self.size, "bilinear")
        crops = [img.crop(box) for box in five_crop_boxes(*img.size, self.size)]
        mirrors = [c.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for c in crops]
        return crops + mirrors if self.flip else crops

    def __call__(self, img: Image.Image) -> Image.Image:
        if min(img.size) < self.size:
            img = _resize_shorter(img, self.size, "bilinear")
        index = _randint(0, 9 if self.flip else 4, self.generator)
        crop = img.crop(five_crop_boxes(*img.size, self.size)[index % 5])
        return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if index >= 5 else crop


@dataclass
class Border:
    """`pad` black pixels on every side (LeNet-5's digits, 28x28 centred in 32x32)."""

    pad: int

    def __call__(self, img: Image.Image) -> Image.Image:
        return add_border(img, self.pad)


@dataclass
class AffineDistort:
    """An `Affine` distortion, LeNet-5's by default (`LENET_AFFINE`; LeCun et al. 1998, section
    III.C: "horizontal and vertical translations, scaling, squeezing (simultaneous horizontal
    compression and vertical elongation, or the reverse), and horizontal shearing"), combined
    into one affine map about the image centre. Uncovered pixels are black, the background of
    the digits."""

    shift: float = LENET_AFFINE.shift  # pixels of a 32-pixel image, each way, uniform
    scale: float = LENET_AFFINE.scale  # factor uniform in [1 - scale, 1 + scale]
    squeeze: float = LENET_AFFINE.squeeze  # x times s, y divided by s, s within 1 +- squeeze
    shear: float = LENET_AFFINE.shear  # x += k * y, k uniform in [-shear, shear]
    interpolation: str = "bilinear"
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.interpolation not in ("nearest", "bilinear", "bicubic"):  # what PIL can warp with
            raise PreprocessingError(
                f"interpolation must be nearest, bilinear or bicubic, got {self.interpolation!r}"
            )
        Affine(self.shift, self.scale, self.squeeze, self.shear)  # its ranges checked

    @classmethod
    def of(cls, spec: Affine, **kwargs) -> AffineDistort:
        """The distortion a recipe's `Affine` spec declares."""
        return cls(spec.shift, spec.scale, spec.squeeze, spec.shear, **kwargs)

    def scaled(self, factor: float) -> AffineDistort:
        """The same distortion with every range times `factor` (shift, shear, and the distance
        of scale and squeeze from 1)."""
        return replace(
            self,
            shift=self.shift * factor,
            scale=self.scale * factor,
            squeeze=self.squeeze * factor,
            shear=self.shear * factor,
        )

    def draw(self, width: int, height: int) -> np.ndarray:
        """One random map as a 2 x 3 matrix taking input (x, y) to output pixel positions."""
        s = _uniform(1 - self.scale, 1 + self.scale, self.generator)
        q = _uniform(1 - self.squeeze, 1 + self.squeeze, self.generator)
        k = _uniform(-self.shear, self.shear, self.generator)
        reach = self.shift * min(width, height) / 32
        tx = _uniform(-reach, reach, self.generator)
        ty = _uniform(-reach, reach, self.generator)
        linear = np.array([[s * q, s * q * k], [0.0, s / q]])  # scale . squeeze . shear
        centre = np.array([width / 2, height / 2])
        offset = centre + np.array([tx, ty]) - linear @ centre
        return np.hstack([linear, offset[:, None]])

    @staticmethod
    def apply(img: Image.Image, matrix: np.ndarray, interpolation: str = "bilinear") -> Image.Image:
        """Warp `img` by `matrix` (input -> output positions), same size, black outside."""
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        fill = 0 if img.mode in ("L", "I", "F", "1") else (0,) * len(img.getbands())
        return img.transform(
            img.size,
            Image.Transform.AFFINE,
            tuple(inverse.ravel().tolist()),
            resample=INTERPOLATIONS[interpolation],
            fillcolor=fill,
        )

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.apply(img, self.draw(*img.size), self.interpolation)


@dataclass
class Resize:
    """Resize to size x size, ignoring the aspect ratio (tiny images such as digits)."""

    size: int
    interpolation: str = "bilinear"

    takes_opened = True

    def __call__(self, img: Image.Image | OpenedImage) -> Image.Image:
        img = _decoded(img, (self.size, self.size))
        return img.resize((self.size, self.size), INTERPOLATIONS[self.interpolation])


_ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "contrast": ImageEnhance.Contrast,
    "saturation": ImageEnhance.Color,  # Pillow's "color" enhancement is saturation
}


@dataclass
class PhotometricDistort:
    """A `Photometric` spec with PIL's ImageEnhance, Howard's by default (`HOWARD`: the
    "photometric distortions" GoogLeNet section 6 cites, arXiv:1312.5402 section 2.1, which
    change contrast, brightness and color in a random order, each by a factor within 1 +- its
    spread; 1 leaves the image unchanged). `hue` (not in Howard, off by default) also shifts
    the hue by up to +-hue of a turn."""

    brightness: float = HOWARD.brightness
    contrast: float = HOWARD.contrast
    saturation: float = HOWARD.saturation
    hue: float = HOWARD.hue
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        Photometric(self.brightness, self.contrast, self.saturation, self.hue)  # checked

    @classmethod
    def of(cls, spec: Photometric, **kwargs) -> PhotometricDistort:
        """The distortions a recipe's `Photometric` spec declares."""
        return cls(spec.brightness, spec.contrast, spec.saturation, spec.hue, **kwargs)

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


# Pillow's HSV hue: one turn in the 8 bits of a channel
_HUE_LEVELS = np.iinfo(np.uint8).max + 1


def _shift_hue(img: Image.Image, turns: float) -> Image.Image:
    hsv = np.array(img.convert("HSV"))
    shifted = hsv[..., 0].astype(np.int32) + round(turns * _HUE_LEVELS)
    hsv[..., 0] = (shifted % _HUE_LEVELS).astype(np.uint8)
    return Image.fromarray(hsv, "HSV").convert("RGB")


@dataclass
class PCALighting:
    """A `Lighting` spec, AlexNet section 4.1's by default (`ALEXNET_LIGHTING`): add
    sum_i alpha_i * eigval_i * eigvec_i to every pixel, with alpha_i ~ N(0, std) drawn once per
    image, from ImageNet's RGB eigen-decomposition. Works on a 3 x H x W tensor of RGB values
    in 0..1, before normalisation; no clipping (the paper does not clip)."""

    std: float = ALEXNET_LIGHTING.std
    eigval: tuple[float, float, float] = ALEXNET_LIGHTING.eigval
    eigvec: tuple[tuple[float, float, float], ...] = ALEXNET_LIGHTING.eigvec
    generator: torch.Generator | None = field(default=None, repr=False)

    @classmethod
    def of(cls, spec: Lighting, **kwargs) -> PCALighting:
        """The noise a recipe's `Lighting` spec declares."""
        return cls(spec.std, spec.eigval, spec.eigvec, **kwargs)

    def offset(self, alpha: Tensor | None = None) -> Tensor:
        """The RGB offset eigvec @ (alpha * eigval); alpha drawn ~ N(0, std) when not given."""
        if alpha is None:
            alpha = torch.randn(3, generator=self.generator) * self.std
        eigvec = torch.tensor(self.eigvec, dtype=torch.float32)
        return eigvec @ (alpha.float() * torch.tensor(self.eigval, dtype=torch.float32))

    def __call__(self, rgb: Tensor) -> Tensor:
        return rgb + self.offset().to(rgb.dtype).view(3, 1, 1)


def to_unit_tensor(img: Image.Image) -> Tensor:
    """An RGB image as a 3 x H x W float tensor of values in 0..1."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


@dataclass
class ToModelInput:
    """The last step of every recipe: an image to the network's input with `preprocessing`'s
    channel order, scale, mean and std (any mode is first made RGB). With `lighting`, the
    image passes through RGB values in 0..1 so the noise is added before normalisation."""

    preprocessing: Preprocessing
    lighting: Callable[[Tensor], Tensor] | None = None
    pixels: bool = False

    def __post_init__(self) -> None:
        if self.pixels and self.lighting is not None:
            raise PreprocessingError("lighting noise is added to values, not to 8-bit pixels")

    def __call__(self, img: Image.Image) -> Tensor:
        if img.mode != "RGB":
            img = to_rgb(img)
        if self.pixels:  # H x W x 3 uint8: a quarter of the bytes to pass to the trainer
            return torch.from_numpy(np.array(img))
        if self.lighting is None:
            return self.preprocessing.to_tensor(img)
        lit = self.lighting(to_unit_tensor(img))  # 3 x H x W, RGB in 0..1
        return self.preprocessing.normalize(lit.permute(1, 2, 0) * 255.0)


def train_transform(
    recipe: str,
    size: int,
    preprocessing: Preprocessing,
    *,
    flip: bool = True,
    photometric: bool | None = None,
    interpolations: Sequence[str] = GOOGLENET_INTERPOLATIONS,
    pca_lighting: bool | None = None,
    scale_jitter: tuple[int, int] | int | None = None,
    distortion: float = 1.0,
    draft: bool = True,
    pixels: bool = False,
) -> RecipeSteps:
    """The training transform of a recipe (`recipes.RECIPES`), PIL image -> tensor.

    `photometric` and `pca_lighting` default (None) to what the recipe's paper did
    (`Recipe.photometric_on`, `Recipe.lighting_on`); True or False forces them.
    `scale_jitter`: vgg's (s_min, s_max), or one int for a fixed S; default (256, 512) scaled
    by size / 224. `interpolations`: googlenet's choices. `distortion`: lenet's AffineDistort
    ranges times this factor (0 turns it off). "none" ignores every option.
    Pass flip=False for data whose mirror image changes its meaning (digits).
    `draft`: the first step may take the image opened, not decoded, and decode a JPEG at 1/2,
    1/4 or 1/8 of its size when its resize will shrink it at least that much (`RecipeSteps`).
    `pixels`: end in 8-bit H x W x 3 pixels, normalised later on the whole batch
    (`Preprocessing.normalize`), where no lighting noise needs values (`RecipeSteps.pixels`).
    """
    spec = catalogue.recipe(recipe)
    if size <= 0:
        raise PreprocessingError(f"size must be positive, got {size}")
    if distortion < 0:
        raise PreprocessingError(f"distortion must be >= 0, got {distortion}")
    steps = _geometry(spec, size, preprocessing, interpolations, scale_jitter, distortion, flip)
    if not spec.options:
        return RecipeSteps([*steps, ToModelInput(preprocessing, pixels=pixels)], takes_opened=draft)
    if photometric is None:
        photometric = spec.photometric_on
    if pca_lighting is None:
        pca_lighting = spec.lighting_on
    if photometric:
        steps.append(PhotometricDistort.of(spec.photometric))
    sub_crops = isinstance(spec.geometry, SquareCrops) and spec.geometry.fixed
    if flip and not sub_crops:  # zfnet's ten sub-crops hold their mirrors
        steps.append(RandomHorizontalFlip(spec.flip.p))
    lighting = PCALighting.of(spec.lighting) if pca_lighting else None
    steps.append(ToModelInput(preprocessing, lighting, pixels=pixels and lighting is None))
    return RecipeSteps(steps, takes_opened=draft)


def _geometry(
    spec: Recipe,
    size: int,
    preprocessing: Preprocessing,
    interpolations: Sequence[str],
    scale_jitter: tuple[int, int] | int | None,
    distortion: float = 1.0,
    flip: bool = True,
) -> list[Callable]:
    interpolation, geometry = preprocessing.interpolation, spec.geometry
    if isinstance(geometry, AreaCrop):
        area, ratio, attempts = geometry.area, geometry.ratio, geometry.attempts
        return [RandomSizedCrop(size, area, ratio, tuple(interpolations), attempts)]
    if isinstance(geometry, ScaleRange):
        return [ScaleJitter(size, vgg_scales(size, scale_jitter, geometry), interpolation)]
    if isinstance(geometry, SquareCrops):  # the weights' resize: 256, scaled with the crop
        square = eval_transform(size, preprocessing).resize
        crops = FixedSubCrops(size, flip) if geometry.fixed else RandomCrop(size)
        return [CenterSquare(square, interpolation), crops]
    pad = preprocessing.pad_for(size)  # LeNet-5: 28x28 + 2 -> 32x32
    steps: list[Callable] = [Resize(size - 2 * pad, interpolation)]
    if pad:
        steps.append(Border(pad))
    if geometry.distortion is not None and distortion > 0:
        steps.append(AffineDistort.of(geometry.distortion).scaled(distortion))
    return steps


def vgg_scales(
    size: int, scale_jitter: Sequence[int] | int | None = None, default: ScaleRange = VGG_SCALES
) -> tuple[int, int]:
    """The vgg recipe's (S_min, S_max): `scale_jitter` as given (one int or one value: a fixed
    S), or by default the recipe's range (section 3.1's [256, 512]) scaled by size / 224."""
    if scale_jitter is None or (not isinstance(scale_jitter, int) and not scale_jitter):
        return default.for_size(size)
    if isinstance(scale_jitter, int):
        return scale_jitter, scale_jitter
    return scale_jitter[0], scale_jitter[-1]


def eval_transform(size: int, preprocessing: Preprocessing) -> Preprocessing:
    """The weights' preprocessing for `size` x `size` inputs: itself when size is its crop,
    else scaled in proportion (`Preprocessing.scaled`: 256/224 -> 37/32 for CIFAR's 32)."""
    return preprocessing if size == preprocessing.crop else preprocessing.scaled(size)
