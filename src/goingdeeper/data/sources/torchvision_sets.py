"""torchvision's data set classes as `ImageDataset`s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torchvision.datasets
from PIL import Image

from ...errors import DataError
from ...images import to_rgb
from .dataset import ImageDataset
from .splits import check_split

TORCHVISION_DATASETS = {  # name -> how its constructor takes the split
    "MNIST": "train",
    "FashionMNIST": "train",
    "KMNIST": "train",
    "CIFAR10": "train",
    "CIFAR100": "train",
    "SVHN": "split",
    "STL10": "split",
}


class TorchvisionReader:
    """Images of a torchvision data set built without a transform."""

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset = dataset
        self.name = name

    def __call__(self, index: int) -> Image.Image:
        image = self.dataset[index][0]
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        return to_rgb(image)

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


def torchvision_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: Callable | None = None,
    download: bool = False,
) -> ImageDataset:
    """One of torchvision's data sets (`TORCHVISION_DATASETS`), downloaded into `root` when
    `download` is true (needs internet)."""
    canonical = {n.lower(): n for n in TORCHVISION_DATASETS}.get(name.lower())
    if canonical is None:
        raise DataError(
            f"unknown torchvision data set {name!r}; known: {', '.join(TORCHVISION_DATASETS)}"
        )
    if TORCHVISION_DATASETS[canonical] == "train":
        check_split(split, canonical)
        kwargs = {"train": split == "train"}
    else:
        kwargs = {"split": split}
    try:
        dataset = getattr(torchvision.datasets, canonical)(str(root), download=download, **kwargs)
    except (RuntimeError, OSError) as e:
        hint = "" if download else "; pass download=True (needs internet) to fetch it"
        raise DataError(f"torchvision {canonical} under {root}: {e}{hint}") from None
    except ValueError as e:  # an unknown split
        raise DataError(f"torchvision {canonical}: {e}") from None
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if targets is None:
        targets = [label for _, label in dataset]
    targets = [int(t) for t in targets]
    classes = list(getattr(dataset, "classes", [])) or [str(c) for c in range(max(targets) + 1)]
    return ImageDataset(
        list(enumerate(targets)),
        classes,
        transform,
        reader=TorchvisionReader(dataset, f"torchvision {canonical}:{split}"),
        origin=f"torchvision {canonical} {root}:{split}",
    )
