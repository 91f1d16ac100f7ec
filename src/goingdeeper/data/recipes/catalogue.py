"""The training augmentations the papers describe, each declared once (`RECIPES`); every backend
reads its numbers from here.

- googlenet: GoogLeNet section 6: random-sized crops (8%..100% of the area, aspect ratio in
  [3/4, 4/3]), Howard's photometric distortions, a random interpolation, horizontal flips.
- vgg: VGG section 3.1: scale jittering (shorter side S ~ U[256, 512]), random crop, flips and
  AlexNet's RGB colour shift (PCA lighting).
- alexnet: AlexNet sections 2 and 4.1: 256 x 256 center square, random 227 crops (the paper
  says 224), flips, PCA lighting noise.
- zfnet: ZFNet section 3: 256 x 256 center square, then one of its 10 fixed 224 x 224
  sub-crops (the four corners and the center, each as it is or mirrored) drawn at random.
- simple: resize to size x size and flip (tiny images: digits, MNIST, CIFAR); with a card
  that pads (LeNet-5), resize to size - 2 x pad and add the black border.
- lenet: simple's geometry, then LeNet-5's distortions (LeCun et al. 1998, section III.C):
  a random planar affine map of translation, scaling, squeezing and horizontal shearing.
- none: resize to size x size only.

The 256 x 256 squares of alexnet and zfnet are the weights' own resize (scaled with the crop
size), so they come from the model's card, not from here.
"""

from __future__ import annotations

from ...errors import PreprocessingError
from .specs import (
    Affine,
    AreaCrop,
    Flip,
    Lighting,
    Photometric,
    Recipe,
    ScaleRange,
    SquareCrops,
    WholeImage,
)

# GoogLeNet section 6: "bilinear, area, nearest neighbor and cubic, with equal probability"
GOOGLENET_INTERPOLATIONS = ("bilinear", "area", "nearest", "bicubic")
# GoogLeNet section 6: "patches of the image whose size is distributed evenly between 8% and
# 100% of the image area with aspect ratio constrained to the interval [3/4, 4/3]"; 10 tries
# as torchvision's RandomResizedCrop
GOOGLENET_CROP = AreaCrop(
    area=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10, interpolations=GOOGLENET_INTERPOLATIONS
)
# Howard 2013 (arXiv:1312.5402) section 2.1, the "photometric distortions" GoogLeNet cites:
# contrast, brightness and colour each by a factor in [0.5, 1.5]; no hue shift
HOWARD = Photometric(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.0)
# AlexNet section 4.1: eigenvalues and eigenvectors of the covariance of ImageNet's RGB pixels
# (0..1 scale), as published with fb.resnet.torch; alpha_i ~ N(0, 0.1). The first
# eigenvector, (-0.57, -0.58, -0.58), is overall brightness.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
ALEXNET_LIGHTING = Lighting(std=0.1, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC)
# AlexNet section 4.1, GoogLeNet, VGG: an image or its mirror, with equal probability
FLIP = Flip(p=0.5)
# VGG section 3.1: S uniform in [S_min, S_max] = [256, 512] for 224 x 224 crops
VGG_SCALES = ScaleRange(scales=(256, 512), at=224)
# LeNet-5 (LeCun et al. 1998, section III.C: 0.95% -> 0.8% test error) names translation,
# scaling, squeezing and horizontal shearing but gives no ranges; these keep a digit inside
# its 32 x 32 field
LENET_AFFINE = Affine(shift=2.0, scale=0.1, squeeze=0.1, shear=0.15)


def _recipe(name: str, geometry, **switches) -> Recipe:
    return Recipe(name, geometry, HOWARD, ALEXNET_LIGHTING, FLIP, **switches)


_ALL = (
    _recipe("googlenet", GOOGLENET_CROP, photometric_on=True, backends=("pil", "tensor", "dali")),
    _recipe("vgg", VGG_SCALES, lighting_on=True),  # VGG 3.1 uses AlexNet's RGB colour shift
    _recipe("alexnet", SquareCrops(fixed=False), lighting_on=True),
    _recipe("zfnet", SquareCrops(fixed=True)),
    _recipe("simple", WholeImage(), backends=("pil", "tensor", "dali")),
    _recipe("lenet", WholeImage(distortion=LENET_AFFINE)),
    _recipe("none", WholeImage(), options=False),
)
# every recipe by name, in the order the guides list them
RECIPES: dict[str, Recipe] = {r.name: r for r in _ALL}
# recipes that train on the whole (small) image and so evaluate on it, resized, as well
WHOLE_IMAGE_RECIPES = tuple(name for name, r in RECIPES.items() if r.whole_image)
# the recipes the tensor loader runs on the device, and those DALI runs in its pipeline
TENSOR_RECIPES = tuple(name for name, r in RECIPES.items() if "tensor" in r.backends)
DALI_RECIPES = tuple(name for name, r in RECIPES.items() if "dali" in r.backends)


def recipe(name: str) -> Recipe:
    """The recipe called `name`, or a `PreprocessingError` listing them."""
    if name not in RECIPES:
        raise PreprocessingError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
