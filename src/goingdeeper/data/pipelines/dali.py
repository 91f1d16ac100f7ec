"""GoogLeNet's training augmentation in an NVIDIA DALI pipeline (`loader=dali`): the images as
stored are read by the loader workers in the order of the epoch's sampler, their headers
checked, and each batch decoded, cropped, resized, distorted and flipped by DALI, on the GPU
that trains ("mixed" decoding: nvJPEG and the hardware decoder) or on the CPU. Labels come from
our data sets, read beside the bytes, never from a DALI reader listing folders.

Section 6 of the paper (Szegedy et al. 2014, arXiv:1409.4842) as the PIL recipe runs it
(`pillow.train_transform("googlenet")`), from the same spec (`recipes.RECIPES`), and where
DALI departs from it:

- crops: `decoders.image_random_crop` with the recipe's `AreaCrop` (8%..100% of the area, aspect
  ratio 3/4..4/3, 10 attempts), as DALI draws them: the ratio log-uniform (the PIL recipe's is
  uniform), and when no attempt fits, the largest patch the ratio allows at a random place (the
  PIL recipe's is central).
- interpolation: one drawn per image with equal probability, as `resize` takes a filter per
  sample. Bilinear, cubic and nearest are DALI's linear, cubic and nearest filters (antialiased
  when shrinking, as Pillow's are). DALI has no box filter ("area"); its Gaussian filter is the
  closest to Pillow's box of the ones it has (a mean difference of 2.1 levels per pixel on
  ImageNet photos, against 2.6 for its triangular filter), so "area" draws that.
- Howard's photometric distortions (arXiv:1312.5402, section 2.1): contrast, brightness and
  colour, each by a factor uniform in the recipe's `Photometric` range ([0.5, 1.5]), computed as
  Pillow's `ImageEnhance` computes them (contrast blends with the mean grey, colour with the
  grey image, each result clipped and cut to 8 bits; to the bit, colour within a level), but in
  one fixed order, Howard's (contrast, brightness, colour), where the PIL recipe draws a random
  order for each image.
- flips: horizontal with the recipe's `Flip` probability, 1/2 (`flip`).

The `simple` recipe (whole image resized to size x size in the weights' interpolation, the
card's black border, flips) runs too. The pipeline's seed comes from the epoch's generator, so
a run repeats under its seed. JPEGs go to DALI as stored; any other image, or a JPEG cut short
(no end marker), is decoded by Pillow as every reader of the package decodes it and passed on
uncompressed, as the tensor loader does. A JPEG DALI still cannot decode fails its batch: the
batch is then decoded image by image with Pillow, the unreadable images are skipped and named,
and the rest runs again. Each batch runs when the loop asks for it, and its output is ready on
the host before it is copied (on a GPU, device to device) into the batch the model takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from ...errors import ConfigError, DataError, ImageError
from ...images import decode_image, open_encoded
from ...preprocess import Preprocessing
from ..recipes.catalogue import DALI_RECIPES, GOOGLENET_INTERPOLATIONS, RECIPES
from ..recipes.specs import Recipe
from .tensor import EncodedImages

MISSING = "loader=dali needs NVIDIA DALI: pip install 'goingdeeper[dali]'"
# Pillow's filters (`preprocess.INTERPOLATIONS`) as DALI's; "area": the closest (see above)
DALI_FILTERS = {
    "bilinear": "INTERP_LINEAR",
    "bicubic": "INTERP_CUBIC",
    "nearest": "INTERP_NN",
    "area": "INTERP_GAUSSIAN",
    "lanczos": "INTERP_LANCZOS3",
}
_JPEG_MAGIC, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
# the order of Howard's distortions, which `photometric` applies (the spec's names)
_HOWARD_ORDER = ("contrast", "brightness", "saturation")


def require_dali() -> SimpleNamespace:
    """DALI's modules (`fn`, `types`, `math`, `Pipeline`, `feed_ndarray`), or one-line
    `ConfigError` saying how to install it."""
    try:
        from nvidia.dali import fn, types
        from nvidia.dali import math as dmath
        from nvidia.dali.pipeline import Pipeline
        from nvidia.dali.plugin.pytorch import feed_ndarray
    except ImportError:
        raise ConfigError(MISSING) from None
    return SimpleNamespace(
        fn=fn, types=types, math=dmath, Pipeline=Pipeline, feed_ndarray=feed_ndarray
    )


@dataclass(frozen=True)
class DaliRecipe:
    """What the pipeline does to each image: `recipe` (googlenet or simple) at `size` x `size`;
    `photometric` and `flip` as in `pillow.train_transform`; `interpolations`: googlenet's
    choices; `interpolation` and `pad`: simple's resize and border (the weights' card)."""

    recipe: str
    size: int
    flip: bool = True
    photometric: bool = True
    interpolations: tuple[str, ...] = GOOGLENET_INTERPOLATIONS
    interpolation: str = "bilinear"
    pad: int = 0

    @classmethod
    def of(
        cls,
        recipe: str,
        size: int,
        preprocessing: Preprocessing,
        flip: bool = True,
        photometric: bool | None = None,
        interpolations: Sequence[str] = GOOGLENET_INTERPOLATIONS,
    ) -> DaliRecipe:
        """A training recipe as `pillow.train_transform` takes it (`photometric` None:
        what the recipe's paper did), with simple's resize and border from `preprocessing`."""
        if photometric is None:
            photometric = recipe in RECIPES and RECIPES[recipe].photometric_on
        return cls(
            recipe,
            size,
            flip=flip,
            photometric=photometric,
            interpolations=tuple(interpolations),
            interpolation=preprocessing.interpolation,
            pad=preprocessing.pad_for(size),
        )

    @property
    def spec(self) -> Recipe:
        """The recipe's declared numbers (`recipes.RECIPES`)."""
        return RECIPES[self.recipe]

    def __post_init__(self) -> None:
        if self.recipe not in DALI_RECIPES:
            raise ConfigError(
                f"loader=dali runs the {' and '.join(DALI_RECIPES)} recipes, got {self.recipe!r}"
            )
        unknown = [n for n in (*self.interpolations, self.interpolation) if n not in DALI_FILTERS]
        if unknown or not self.interpolations:
            raise ConfigError(
                f"loader=dali interpolates with {', '.join(DALI_FILTERS)}, got "
                f"{unknown[0] if unknown else 'none'!r}"
            )


def prepare(data: bytes, name: str) -> bytes:
    """What the pipeline decodes: a JPEG as stored, once its header is checked
    (`images.open_encoded`: unreadable, empty, too many pixels, sides too unequal); any other
    image, or a JPEG without its end marker (cut short), decoded by Pillow and passed as an
    uncompressed PPM. Raises `ImageError`."""
    opened = open_encoded(data, name)
    if data[:3] == _JPEG_MAGIC and data.rstrip(b"\0")[-2:] == _JPEG_END:
        return data
    return _ppm(opened.decode())


def _ppm(img: Image.Image) -> bytes:
    """An 8-bit RGB image as a binary PPM, which DALI decodes as it is."""
    return b"P6\n%d %d\n255\n" % img.size + img.tobytes()


def collate_prepared(batch: Sequence[tuple]) -> tuple[list[bytes], Tensor, list[str], list[str]]:
    """A batch of `EncodedImages` samples, in the loader workers: the `prepare`d bytes, labels
    and names of the usable images, and the messages of the others."""
    data, labels, names, skipped = [], [], [], []
    for encoded, label, name in batch:
        if encoded is None:  # the file could not be read: `name` is its message
            skipped.append(name)
            continue
        try:
            data.append(prepare(encoded, name))
        except ImageError as e:
            skipped.append(str(e))
            continue
        labels.append(label)
        names.append(name)
    return data, torch.tensor(labels, dtype=torch.long), names, skipped


def dali_batches(
    ds: Any,
    batch_size: int,
    recipe: DaliRecipe,
    sampler: Sampler | None,
    generator: torch.Generator,
    device: torch.device,
    preprocessing: Preprocessing,
    workers: int = 0,
) -> DaliBatches:
    """One epoch of `ds` (an `ImageDataset` storing encoded images, or a `Subset` of one) in
    the order of `sampler`, decoded and augmented by DALI on `device`: what a training loop
    reads, (images, labels, messages of skipped images), like `DeviceBatches`. The pipeline's
    seed is drawn from `generator` (the epoch's)."""
    require_dali()
    reader = DataLoader(
        EncodedImages(ds),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_prepared,
        generator=generator,
        persistent_workers=workers > 0,  # for a loader read more than once
    )
    draws = torch.Generator().manual_seed(generator.initial_seed() + 1)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=draws))
    threads = max(1, workers)
    return DaliBatches(reader, recipe, device, preprocessing, seed=seed, threads=threads)


class DaliBatches:
    """Batches of a loader of prepared bytes decoded and augmented by a DALI pipeline: (images
    N x C x size x size float on `device`, labels on `device`, messages of skipped images).
    The pipeline is built at the first batch and kept: a second pass over the batches (another
    epoch of a loader built once) runs on it, its draws going on where the first left them."""

    def __init__(
        self,
        reader: DataLoader,
        recipe: DaliRecipe,
        device: torch.device,
        preprocessing: Preprocessing,
        *,
        seed: int,
        threads: int = 1,
    ) -> None:
        self.reader, self.recipe, self.device = reader, recipe, torch.device(device)
        self.preprocessing, self.seed, self.threads = preprocessing, seed, threads
        self.feed = require_dali().feed_ndarray
        self._pipe = None

    def __len__(self) -> int:
        return len(self.reader)

    def __iter__(self):
        for k, (data, labels, names, skipped) in enumerate(self.reader):
            pixels = None
            if data:
                pipe = self._pipe = self._pipe or self._pipeline(self.seed)
                try:
                    pixels = self._run(pipe, data)
                except RuntimeError:  # a JPEG DALI cannot decode; the pipeline is spent
                    pipe = self._pipe = self._pipeline(self.seed + k + 1)
                    kept = _screen(data, names, skipped)
                    data, labels = [data[i] for i in kept], labels[kept]
                    pixels = self._run_again(pipe, data, [names[i] for i in kept])
            if pixels is None:
                yield torch.empty(0), torch.empty(0, dtype=torch.long), skipped
                continue
            yield self.preprocessing.normalize(pixels), labels.to(self.device), skipped

    def _pipeline(self, seed: int):
        size = self.reader.batch_size
        return build_pipeline(
            self.recipe, batch_size=size, device=self.device, seed=seed, threads=self.threads
        )

    def _run(self, pipe, data: Sequence[bytes]) -> Tensor:
        """The pipeline's output for one batch of prepared bytes: N x size x size x 3 uint8 on
        the device, copied there from DALI's buffers (device to device on a GPU)."""
        pipe.feed_input("encoded", [np.frombuffer(d, dtype=np.uint8) for d in data])
        (images,) = pipe.run()
        images = images.as_tensor()
        out = torch.empty(images.shape(), dtype=torch.uint8, device=self.device)
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        return self.feed(images, out, cuda_stream=stream)

    def _run_again(self, pipe, data: list[bytes], names: list[str]) -> Tensor | None:
        """A screened batch (every image decoded by Pillow): None when nothing is left, one
        `DataError` when DALI still fails on it."""
        if not data:
            return None
        try:
            return self._run(pipe, data)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-2:]
            raise DataError(
                f"DALI cannot decode a batch that Pillow reads ({', '.join(names[:3])}"
                f"{' ...' if len(names) > 3 else ''}): {' '.join(first)}; use loader=pil"
            ) from None


def _screen(data: list[bytes], names: list[str], skipped: list[str]) -> list[int]:
    """Which images of a batch DALI failed on Pillow decodes (their bytes replaced by what it
    decoded, which DALI reads as it is); the others' messages are added to `skipped`."""
    kept = []
    for i, name in enumerate(names):
        try:
            data[i] = _ppm(decode_image(data[i], name))
        except ImageError as e:
            skipped.append(str(e))
            continue
        kept.append(i)
    return kept


def build_pipeline(
    recipe: DaliRecipe, *, batch_size: int, device: torch.device, seed: int, threads: int = 1
):
    """A built DALI pipeline of `recipe`, fed by the external source "encoded" (a batch of up to
    `batch_size` encoded images) and giving N x size x size x 3 uint8. On a CUDA device it
    decodes there ("mixed") and augments there; else on the CPU (`device_id=None`)."""
    dali = require_dali()
    on_gpu = torch.device(device).type == "cuda"
    device_id = None
    if on_gpu:
        device_id = device.index if device.index is not None else torch.cuda.current_device()
    pipe = dali.Pipeline(
        batch_size=batch_size,
        num_threads=threads,
        device_id=device_id,
        seed=seed,
        prefetch_queue_depth=1,
        exec_async=False,
        exec_pipelined=False,
    )
    with pipe:
        encoded = dali.fn.external_source(
            name="encoded", batch=True, dtype=dali.types.UINT8, ndim=1
        )
        if recipe.recipe == "googlenet":
            images = _crop(dali, encoded, recipe, "mixed" if on_gpu else "cpu")
        else:
            images = _whole(dali, encoded, recipe, "mixed" if on_gpu else "cpu")
        if recipe.photometric:  # Howard's order: contrast, brightness, colour
            ranges = [recipe.spec.photometric.factors(name) for name in _HOWARD_ORDER]
            factors = [dali.fn.random.uniform(range=list(r)) for r in ranges]
            if on_gpu:  # the factors join GPU arithmetic
                factors = [f.gpu() for f in factors]
            images = photometric(dali, images, *factors)
        if recipe.flip:
            coin = dali.fn.random.coin_flip(probability=recipe.spec.flip.p)
            images = dali.fn.flip(images, horizontal=coin)
        pipe.set_outputs(images)
    pipe.build()
    return pipe


def _crop(dali, encoded, recipe: DaliRecipe, decoder: str):
    """The recipe's `AreaCrop` (GoogLeNet section 6): a random patch decoded, resized with a
    filter drawn per image."""
    crop = recipe.spec.geometry
    images = dali.fn.decoders.image_random_crop(
        encoded,
        device=decoder,
        output_type=dali.types.RGB,
        random_area=list(crop.area),
        random_aspect_ratio=list(crop.ratio),
        num_attempts=crop.attempts,
    )
    filters = [getattr(dali.types, DALI_FILTERS[name]) for name in recipe.interpolations]
    interp = dali.fn.random.choice(filters) if len(filters) > 1 else filters[0]
    size = [recipe.size, recipe.size]
    return dali.fn.resize(images, size=size, interp_type=interp, antialias=True)


def _whole(dali, encoded, recipe: DaliRecipe, decoder: str):
    """The simple recipe: the whole image resized to size - 2 x pad, then the black border."""
    images = dali.fn.decoders.image(encoded, device=decoder, output_type=dali.types.RGB)
    inner = recipe.size - 2 * recipe.pad
    interp = getattr(dali.types, DALI_FILTERS[recipe.interpolation])
    images = dali.fn.resize(images, size=[inner, inner], interp_type=interp, antialias=True)
    if recipe.pad:
        size = [recipe.size, recipe.size]
        images = dali.fn.crop(images, crop=size, out_of_bounds_policy="pad", fill_values=0)
    return images


def photometric(dali, images, contrast, brightness, colour):
    """Howard's contrast, brightness and colour, in that order, on a batch of H x W x 3 uint8
    images (DALI nodes; the factors: one per image), as Pillow's `ImageEnhance` computes them:
    a blend with the mean grey (rounded), with black, with the grey image (Pillow's luma), each
    result clipped and cut to 8 bits. Contrast and brightness are one expression (one pass)."""
    fn, m, types = dali.fn, dali.math, dali.types

    def grey(x):  # H x W x 1, Pillow's convert("L")
        return fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY)

    def cut(x):  # Pillow's 8 bits: clipped, then truncated
        return m.floor(m.clamp(x, 0, 255))

    mean = m.floor(fn.reductions.mean(grey(images)) + 0.5)
    images = fn.cast(cut(brightness * cut(mean + contrast * (images - mean))), dtype=types.UINT8)
    base = fn.cast(grey(images), dtype=types.FLOAT)  # uint8 - uint8 would wrap
    return fn.cast(cut(base + colour * (images - base)), dtype=types.UINT8)
