"""The one dataset type: samples of (image source, label) read by a reader, the item protocol
every source follows, and the collate function that drops bad images.

Bad images never end an epoch. Grayscale, palette, CMYK, 16-bit and alpha images are converted
to 8-bit RGB (`images.to_rgb`); an image that cannot be decoded (zero bytes, truncated,
corrupt, not an image, beyond the decompression-bomb limit) is a `Skipped` record where the
image would be: `load(i)` and `__getitem__` return it, and `collate_skip` hands its message to
the trainer, which counts and names them. Problems with the data set as a whole (a missing
or empty folder, classes that differ between train and test, an unknown format) are one
`DataError` before training starts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from ...errors import DataError, ImageError
from ...images import OpenedImage, load_image, open_file, to_rgb

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A sample that cannot be used, in place of its image: which one, the name messages use
    for it, and why, in one line; `str()` is "<name>: <reason>"."""

    index: int
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"

    @classmethod
    def of(cls, index: int, name: str, error: Exception) -> Skipped:
        """The record of an error that names the sample (an `ImageError`'s "<name>: ...")."""
        message = " ".join(str(error).split())
        reason = message.removeprefix(f"{name}: ") if message.startswith(f"{name}: ") else message
        return cls(index, name, reason)


class ImageDataset(Dataset):
    """Samples of (image source, label), read by a `reader` and mapped by `transform`.

    `load(i)` returns `(image, label)`, the image as 8-bit RGB, and `__getitem__(i)`
    `(transform(image), label)`; both return a `Skipped` record when the image cannot be used.
    `decode(i)` is the image alone, raising `ImageError`. Use `collate_skip` as the
    DataLoader's `collate_fn` to drop skipped samples and report them.
    The reader is a callable `source -> RGB PIL image` raising `ImageError`, with a
    `describe(source) -> str`; the default reads image files with `images.load_image`. A
    reader with `open(source)` (files, tar members, shards) gives a transform that declares
    `takes_opened` the image opened but not decoded (`images.OpenedImage`), so that it decodes
    no more pixels than it needs.
    """

    streamed = False  # read at random (a `ShardStream` is read front to back)

    def __init__(
        self,
        samples: Sequence[tuple[Any, int]],
        classes: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        reader: Any = None,
        origin: str = "",
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.targets = [int(label) for _, label in self.samples]
        self.transform = transform
        self.reader = reader if reader is not None else FileReader()
        self.origin = origin
        if self.targets and not (min(self.targets) >= 0 and max(self.targets) < len(classes)):
            raise DataError(
                f"{origin or 'data set'}: labels must lie in 0..{len(classes) - 1} "
                f"(one per class), got {min(self.targets)}..{max(self.targets)}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({len(self)} samples, {len(self.classes)} classes, "
            f"from {self.origin or '?'})"
        )

    def describe(self, i: int) -> str:
        """The name of sample i's source, as messages show it."""
        return self.reader.describe(self.samples[i][0])

    def file_names(self) -> list[str] | None:
        """The images' own file names (`ILSVRC2012_val_00000001.JPEG`), for sets of image
        files; None for images held in archives, shards or arrays."""
        if not isinstance(self.reader, FileReader):
            return None
        return [Path(source).name for source, _ in self.samples]

    @property
    def stores_encoded(self) -> bool:
        """Whether the images are stored encoded (files, tar members), not as pixel arrays."""
        return hasattr(self.reader, "encoded")

    def encoded(self, i: int) -> bytes:
        """Sample i's bytes as stored (an image file, a tar member), not decoded: for a batch
        decoder (`data.pipelines.tensor`); a `DataError` for a source that holds none."""
        if not self.stores_encoded:
            raise DataError(f"{self.origin}: its images are not stored as encoded files")
        return self.reader.encoded(self.samples[i][0])

    def load(self, i: int) -> tuple[Image.Image, int] | Skipped:
        """Sample i as (8-bit RGB image, label), or the `Skipped` record saying why not."""
        try:
            return self.decode(i), self.targets[i]
        except ImageError as e:
            return Skipped.of(i, self.describe(i), e)

    def decode(self, i: int) -> Image.Image:
        """Sample i as an 8-bit RGB image; raises `ImageError` when it cannot be used."""
        with self._reading(i):
            return self.reader(self.samples[i][0])

    def open(self, i: int) -> OpenedImage:
        """Sample i opened, its header read and checked, not decoded (`images.OpenedImage`),
        from a reader that stores encoded images; raises `ImageError`."""
        with self._reading(i):
            return self.reader.open(self.samples[i][0])

    @contextlib.contextmanager
    def _reading(self, i: int) -> Iterator[None]:
        """A reader's failure on sample i as an `ImageError` naming it."""
        try:
            yield
        except ImageError:
            raise
        except Exception as e:  # Pillow's decoders raise struct.error, IndexError, ... on bad files
            raise ImageError(f"{self.describe(i)}: cannot decode ({type(e).__name__}: {e})") from e

    def __getitem__(self, i: int) -> tuple[Any, int] | Skipped:
        label = self.targets[i]
        try:
            if getattr(self.transform, "takes_opened", False) and hasattr(self.reader, "open"):
                return self.transform(self.open(i)), label  # it decodes what it needs
            image = self.decode(i)
        except ImageError as e:
            return Skipped.of(i, self.describe(i), e)
        return (self.transform(image) if self.transform is not None else image), label

    @classmethod
    def in_memory(cls, pairs: Sequence[tuple[Any, int]]) -> ImageDataset:
        """(PIL image or image file, class index) pairs as a data set; its classes are the
        indices 0..largest label."""
        pairs = list(pairs)
        top = max((int(label) for _, label in pairs), default=-1)
        return cls(pairs, [str(c) for c in range(top + 1)], reader=PairReader(), origin="pairs")

    def with_transform(self, transform: Callable | None) -> ImageDataset:
        """The same samples mapped by `transform`."""
        return ImageDataset(
            self.samples, self.classes, transform, reader=self.reader, origin=self.origin
        )

    def relabelled(self, classes: Sequence[str], labels: dict[int, int]) -> ImageDataset:
        """The same images as classes of a longer list: label l becomes `labels[l]`."""
        samples = [(source, labels[label]) for source, label in self.samples]
        return ImageDataset(
            samples, classes, self.transform, reader=self.reader, origin=self.origin
        )

    def subset(self, indices: Sequence[int], origin: str | None = None) -> ImageDataset:
        """The samples at `indices`, sharing this data set's reader, classes and transform."""
        return ImageDataset(
            [self.samples[i] for i in indices],
            self.classes,
            self.transform,
            reader=self.reader,
            origin=self.origin if origin is None else origin,
        )


def collate_skip(batch: Sequence[tuple | Skipped]) -> tuple[Tensor, Tensor, list[str]]:
    """Default-collate the good samples; the third item names the skipped ones.

    Each `Skipped` sample contributes its one-line message ("<source>: <what is wrong>"). When
    every sample of the batch was skipped, the images and labels are empty tensors
    (`len(labels) == 0`) and the caller skips the step.
    """
    good = [sample for sample in batch if not isinstance(sample, Skipped)]
    skipped = [str(sample) for sample in batch if isinstance(sample, Skipped)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, labels = default_collate(good)
    return images, labels, skipped


# ---------------------------------------------------------------------------------------------
# Readers: source -> RGB PIL image


class FileReader:
    """Image files on disk, through `images.load_image`."""

    def __call__(self, source: str) -> Image.Image:
        return load_image(source)

    def describe(self, source: str) -> str:
        return str(source)

    def encoded(self, source: str) -> bytes:
        """The file's bytes, for a decoder of its own (`data.pipelines.tensor`)."""
        return Path(source).read_bytes()

    def open(self, source: str) -> OpenedImage:
        return open_file(source)


class ArrayReader:
    """Images held in a uint8 array, N x H x W (grayscale) or N x H x W x 3 (RGB)."""

    def __init__(self, images: np.ndarray, name: str) -> None:
        self.images = images
        self.name = name

    def __call__(self, index: int) -> Image.Image:
        return to_rgb(Image.fromarray(self.images[index]))

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


class PairReader:
    """The images of (image, label) pairs: PIL images held in memory, or image files."""

    def __call__(self, item: Image.Image | str | Path) -> Image.Image:
        if isinstance(item, Image.Image):
            return item if item.mode == "RGB" else to_rgb(item)
        return load_image(item)

    def describe(self, item: Image.Image | str | Path) -> str:
        if isinstance(item, Image.Image):
            return f"<{item.mode} image {item.width}x{item.height}>"
        return str(item)
