"""`open_dataset`: one split of the data set a single string names, whatever its format."""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import DataError
from .cifar import cifar_batches
from .dataset import ImageDataset, check_split, class_difference, stratified_split
from .digits import digits
from .folder import image_folder
from .mnist import idx_path, mnist_idx
from .tar import compression, tar_images
from .torchvision_sets import torchvision_dataset

logger = logging.getLogger(__name__)


def open_dataset(
    spec: str,
    split: str,
    transform: Callable | None = None,
    classes: Sequence[str] | None = None,
    *,
    download: bool = False,
) -> ImageDataset:
    """One split of the data set that `spec` names.

    `spec`: "digits"; "torchvision:<Name>:<root>" (e.g. "torchvision:MNIST:~/data");
    a .tar / .tar.gz archive of `<split>/<class>/<image>`; or a folder holding MNIST IDX
    files, CIFAR batches, an ImageFolder tree with `<split>/` subfolders, or one flat class
    tree, whose stratified fifth (seed 0) is 'test' and the rest 'train'. `classes`, when
    given, must be the data set's classes (the label order of a checkpoint, say).
    """
    if spec.lower() == "digits":
        dataset = digits(split, transform)
    elif spec.lower().startswith("torchvision:"):
        _, name, root = (spec.split(":", 2) + ["", ""])[:3]
        if not name or not root:
            example = "torchvision:MNIST:~/data"
            raise DataError(f"{spec!r}: expected torchvision:<Name>:<root>, e.g. {example}")
        dataset = torchvision_dataset(name, Path(root).expanduser(), split, transform, download)
    else:
        path = Path(spec).expanduser()
        if path.is_file():
            if compression(path) or tarfile.is_tarfile(path):
                return tar_images(path, split, transform, classes)
            raise DataError(
                f"{path}: unknown format; expected a .tar/.tar.gz of <split>/<class>/<image>, "
                "a folder, 'digits' or 'torchvision:<Name>:<root>'"
            )
        if not path.is_dir():
            raise DataError(f"{path}: no such file or folder (nor 'digits', 'torchvision:...')")
        dataset = _open_folder(path, split, transform, classes)
    if classes is not None and list(classes) != dataset.classes:
        raise DataError(
            class_difference(dataset.origin, dataset.classes, "the expected list", classes)
        )
    return dataset


_SPLIT_FOLDERS = ("train", "test", "val", "valid", "validation")


def _open_folder(
    path: Path, split: str, transform: Callable | None, classes: Sequence[str] | None
) -> ImageDataset:
    if idx_path(path, "train", "images") or idx_path(path, "test", "images"):
        return mnist_idx(path, split, transform)
    markers = ("data_batch_1", "test_batch", "cifar-10-batches-py", "cifar-100-python")
    if any((path / m).exists() for m in markers) or (path / "meta").is_file():
        return cifar_batches(path, split, transform)
    if (path / split).is_dir():
        return image_folder(path / split, transform, classes)
    if present := [s for s in _SPLIT_FOLDERS if (path / s).is_dir()]:
        raise DataError(f"{path}: no '{split}' folder (found: {', '.join(present)})")
    check_split(split, f"{path} (a flat class tree)")
    everything = image_folder(path, transform, classes)
    train, test = stratified_split(everything.targets, 0.2, seed=0)
    logger.info("%s: no train/test folders; holding out a stratified fifth as 'test'", path)
    return everything.subset(train if split == "train" else test, f"{path}:{split}")
