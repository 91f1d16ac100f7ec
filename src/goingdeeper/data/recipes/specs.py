"""What an augmentation recipe is made of, as frozen values that every backend reads (the Pillow
transforms, the tensor batches, the held sets, DALI): the geometry (a random-area crop, a
scale range, crops of a square, the whole image), the photometric distortions, the lighting
noise and the flip. No backend holds a number of its own; `catalogue` fills these in from the
papers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import PreprocessingError


@dataclass(frozen=True)
class AreaCrop:
    """A patch whose share of the image area and whose aspect ratio (width / height) are each
    drawn uniformly from their range, tried `attempts` times before the largest central patch
    the ratio allows; resized with one of `interpolations`, each with equal probability."""

    area: tuple[float, float]
    ratio: tuple[float, float]
    attempts: int
    interpolations: tuple[str, ...]


@dataclass(frozen=True)
class ScaleRange:
    """Multi-scale training: the shorter side rescaled to S, drawn uniformly from `scales`
    (S_min, S_max) as given for crops of `at` pixels, then a random crop."""

    scales: tuple[int, int]
    at: int

    def for_size(self, size: int) -> tuple[int, int]:
        """(S_min, S_max) for crops of `size` pixels: the range scaled by size / at."""
        low, high = self.scales
        return round(low * size / self.at), round(high * size / self.at)


@dataclass(frozen=True)
class SquareCrops:
    """The shorter side rescaled to the weights' resize, the central square kept, then one crop
    of it: at a random place, or (`fixed`) one of the ten fixed sub-crops (the four corners and
    the centre, each as it is or mirrored)."""

    fixed: bool


@dataclass(frozen=True)
class Affine:
    """A random planar affine map about the image centre: a shift of up to `shift` pixels of a
    32-pixel image each way (scaled with the image), a scale factor within 1 +- `scale`, a
    squeeze (x times s, y divided by s) with s within 1 +- `squeeze`, and a horizontal shear
    x += k * y with k within +- `shear`."""

    shift: float
    scale: float
    squeeze: float
    shear: float

    def __post_init__(self) -> None:
        for name in ("scale", "squeeze"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise PreprocessingError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.shift < 0 or self.shear < 0:
            raise PreprocessingError(
                f"shift and shear must be >= 0, got {self.shift} and {self.shear}"
            )


@dataclass(frozen=True)
class WholeImage:
    """The whole image resized to the input size (less the card's border), with an optional
    random affine `distortion` after it."""

    distortion: Affine | None = None


@dataclass(frozen=True)
class Photometric:
    """Colour distortions: brightness, contrast and saturation each by a factor uniform in
    1 +- its spread (0 leaves it alone), in a random order per image; `hue` shifts the hue by
    up to +- that share of a turn."""

    brightness: float
    contrast: float
    saturation: float
    hue: float

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PreprocessingError(
                    f"{name} spread must lie in [0, 1], got {getattr(self, name)}"
                )
        if not 0.0 <= self.hue <= 0.5:
            raise PreprocessingError(f"hue shift must lie in [0, 0.5] of a turn, got {self.hue}")

    def factors(self, name: str) -> tuple[float, float]:
        """The range a factor of `name` (brightness, contrast, saturation) is drawn from."""
        spread = getattr(self, name)
        return 1.0 - spread, 1.0 + spread


@dataclass(frozen=True)
class Lighting:
    """Noise along the principal components of the RGB pixels: sum_i alpha_i * eigval_i *
    eigvec_i added to every pixel (values in 0..1), alpha_i ~ N(0, std) once per image.
    `eigvec` rows are R, G, B; column j is eigenvector j."""

    std: float
    eigval: tuple[float, float, float]
    eigvec: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class Flip:
    """A left-right mirror with probability `p`."""

    p: float


@dataclass(frozen=True)
class Recipe:
    """One training augmentation: its `geometry`, then (when on) the `photometric`
    distortions, the `flip` and the `lighting` noise, ending in the weights' input transform.

    `photometric_on` and `lighting_on`: what the recipe's paper did, which a run may override.
    `options`: whether the recipe takes a run's switches at all (`none` ignores them).
    `backends`: the loaders that run it ("pil", "tensor", "dali")."""

    name: str
    geometry: AreaCrop | ScaleRange | SquareCrops | WholeImage
    photometric: Photometric
    lighting: Lighting
    flip: Flip
    photometric_on: bool = False
    lighting_on: bool = False
    options: bool = True
    backends: tuple[str, ...] = ("pil",)

    @property
    def whole_image(self) -> bool:
        """Whether it trains on the whole (small) image, and so evaluates on it too."""
        return isinstance(self.geometry, WholeImage)
