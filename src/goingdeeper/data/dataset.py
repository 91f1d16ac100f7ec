"""The one dataset type: samples of (image source, label) read by a reader, with the helpers
every source shares (splits, class lists, the collate function that drops bad images).

Bad images never end an epoch. Grayscale, palette, CMYK, 16-bit and alpha images are converted
to 8-bit RGB (`images.to_rgb`); an image that cannot be decoded (zero bytes, truncated,
corrupt, not an image, beyond the decompression-bomb limit) makes `__getitem__` return
`(None, label, message)`, and `collate_skip` hands the messages to the trainer, which counts
and names them. Problems with the data set as a whole (a missing or empty folder, classes that
differ between train and test, an unknown format) are one `DataError` before training starts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Subset, default_collate

from ..errors import DataError, ImageError
from ..images import OpenedImage, load_image, open_file, to_rgb

logger = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Samples of (image source, label), read by a `reader` and mapped by `transform`.

    `__getitem__(i)` returns `(transform(image), label)`, or `(None, label, message)` when the
    image cannot be used; `message` is one line, "<source>: <what is wrong>". Use
    `collate_skip` as the DataLoader's `collate_fn` to drop such samples and report them.
    The reader is a callable `source -> RGB PIL image` raising `ImageError`, with a
    `describe(source) -> str`; the default reads image files with `images.load_image`. A
    reader with `open(source)` (files, tar members, shards) gives a transform that declares
    `takes_opened` the image opened but not decoded (`images.OpenedImage`), so that it decodes
    no more pixels than it needs.
    """

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

    @property
    def stores_encoded(self) -> bool:
        """Whether the images are stored encoded (files, tar members), not as pixel arrays."""
        return hasattr(self.reader, "encoded")

    def encoded(self, i: int) -> bytes:
        """Sample i's bytes as stored (an image file, a tar member), not decoded: for a batch
        decoder (`data.batch_augment`); a `DataError` for a source that holds none."""
        if not self.stores_encoded:
            raise DataError(f"{self.origin}: its images are not stored as encoded files")
        return self.reader.encoded(self.samples[i][0])

    def load(self, i: int) -> Image.Image:
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

    def __getitem__(self, i: int) -> tuple[Any, int] | tuple[None, int, str]:
        label = self.targets[i]
        try:
            if getattr(self.transform, "takes_opened", False) and hasattr(self.reader, "open"):
                return self.transform(self.open(i)), label  # it decodes what it needs
            image = self.load(i)
        except ImageError as e:
            return None, label, str(e)
        return (self.transform(image) if self.transform is not None else image), label

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


class LoadedImages:
    """(PIL image, label) pairs of a data set, decoded when asked for (slices too): what
    `evaluate` takes. An image that cannot be decoded comes as its name, which the evaluator
    counts and names. `limit`: that many images spread over the set (like `limit_test`)."""

    def __init__(self, ds, limit: int = 0):
        indices = list(range(len(ds)))
        while isinstance(ds, Subset):
            indices = [ds.indices[i] for i in indices]
            ds = ds.dataset
        if limit:
            indices = [indices[i] for i in spread(limit, len(indices))]
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def head(self, n: int | None) -> LoadedImages:
        """The first `n` images (all for None), still decoded only when asked for."""
        out = LoadedImages.__new__(LoadedImages)
        out.ds, out.indices = self.ds, self.indices[:n]
        return out

    def describe(self, i: int) -> str:
        return self.ds.describe(self.indices[i])

    def load(self, i: int) -> Image.Image:
        """Image i decoded; `ImageError` when it cannot be."""
        return self.ds.load(self.indices[i])

    def label(self, i: int) -> int:
        return self.ds.targets[self.indices[i]]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k = self.indices[i]
        try:
            return self.ds.load(k), self.ds.targets[k]
        except ImageError:
            return self.ds.describe(k), self.ds.targets[k]


def collate_skip(batch: Sequence[tuple]) -> tuple[Tensor, Tensor, list[str]]:
    """Default-collate the good samples; the third item names the skipped ones.

    Each skipped sample contributes its one-line message ("<source>: <what is wrong>"). When
    every sample of the batch was skipped, the images and labels are empty tensors
    (`len(labels) == 0`) and the caller skips the step.
    """
    good = [sample for sample in batch if sample[0] is not None]
    skipped = [sample[2] for sample in batch if sample[0] is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, labels = default_collate(good)
    return images, labels, skipped


def stratified_split(
    targets: Sequence[int], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of (train, test): round(test_fraction * n) of each class's n samples to test.

    Deterministic for a seed (torch's generator, the same on every platform).
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(list(targets), dtype=torch.long)
    train: list[int] = []
    test: list[int] = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        k = round(len(members) * test_fraction)
        test += members[:k].tolist()
        train += members[k:].tolist()
    return sorted(train), sorted(test)


def check_splits(train: ImageDataset, test: ImageDataset) -> None:
    """DataError unless both splits have samples and the same classes in the same order."""
    for name, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise DataError(f"the {name} split is empty ({ds.origin or 'no source'})")
    if train.classes != test.classes:
        raise DataError(class_difference("train", train.classes, "test", test.classes))


def class_difference(name_a: str, a: Sequence[str], name_b: str, b: Sequence[str]) -> str:
    parts = []
    if only := sorted(set(a) - set(b)):
        parts.append(f"only in {name_a}: {some(only)}")
    if only := sorted(set(b) - set(a)):
        parts.append(f"only in {name_b}: {some(only)}")
    if not parts:
        parts.append("the same names in a different order, so the labels would not match")
    return f"{name_a} has {len(a)} classes, {name_b} has {len(b)}: " + "; ".join(parts)


def some(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def match_classes(found: list[str], expected: Sequence[str] | None, where: str) -> list[str]:
    """The label order: `expected` when given (it must name the same classes), else `found`."""
    if expected is None:
        return found
    expected = list(expected)
    if sorted(found) != sorted(expected):
        raise DataError(class_difference(where, found, "the expected class list", expected))
    return expected


def check_split(split: str, kind: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"{kind} has the splits 'train' and 'test', got {split!r}")


def spread(n: int, total: int) -> list[int]:
    """n indices spread evenly over range(total): folders and archives list their samples class
    by class, so the first n would hold only the first classes."""
    if n >= total:
        return list(range(total))
    return [i * total // n for i in range(n)]


def log_ignored(ignored: list[str], where: object) -> None:
    if ignored:
        logger.warning(
            "%s: ignored %d files that are not images by their extension, e.g. %s",
            where,
            len(ignored),
            some(ignored, 3),
        )


# ---------------------------------------------------------------------------------------------
# Readers: source -> RGB PIL image


class FileReader:
    """Image files on disk, through `images.load_image`."""

    def __call__(self, source: str) -> Image.Image:
        return load_image(source)

    def describe(self, source: str) -> str:
        return str(source)

    def encoded(self, source: str) -> bytes:
        """The file's bytes, for a decoder of its own (`data.batch_augment`)."""
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
