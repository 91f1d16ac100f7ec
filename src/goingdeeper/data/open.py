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
from .shards import is_shard_folder, shard_dataset
from .stream import ShardStream
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
    stream: bool = False,
) -> ImageDataset | ShardStream:
    """One split of the data set that `spec` names.

    `spec`: "digits"; "torchvision:<Name>:<root>" (e.g. "torchvision:MNIST:~/data");
    a .tar / .tar.gz archive of `<split>/<class>/<image>`; or a folder holding WebDataset
    shards with their manifest (`goingdeeper data shard`), MNIST IDX files, CIFAR batches, an
    ImageFolder tree with `<split>/` subfolders, or one flat class tree, whose stratified fifth
    (seed 0) is 'test' and the rest 'train'. `classes`, when given, must be the data set's
    classes (the label order of a checkpoint, say). `stream`: shards are read front to back
    as a `ShardStream` (else at random, like any other source).
    """
    kind = source_kind(spec)
    path = Path(spec).expanduser()
    if kind == DIGITS:
        dataset = digits(split, transform)
    elif kind == TORCHVISION:
        _, name, root = (spec.split(":", 2) + ["", ""])[:3]
        if not name or not root:
            example = "torchvision:MNIST:~/data"
            raise DataError(f"{spec!r}: expected torchvision:<Name>:<root>, e.g. {example}")
        dataset = torchvision_dataset(name, Path(root).expanduser(), split, transform, download)
    elif kind == TAR:
        return tar_images(path, split, transform, classes)
    elif kind == SHARDS:
        stream_it = stream and split == "train"
        dataset = (ShardStream if stream_it else shard_dataset)(path, split, transform)
    elif kind == MNIST:
        dataset = mnist_idx(path, split, transform)
    elif kind == CIFAR:
        dataset = cifar_batches(path, split, transform)
    else:
        dataset = _open_folder(path, split, transform, classes)
    if classes is not None and list(classes) != dataset.classes:
        raise DataError(
            class_difference(dataset.origin, dataset.classes, "the expected list", classes)
        )
    return dataset


DIGITS = "scikit-learn digits"
TORCHVISION = "torchvision data set"
TAR = "tar archive of <split>/<class>/<image>"
SHARDS = "WebDataset shards"
MNIST = "MNIST IDX files"
CIFAR = "CIFAR batches"
SPLIT_FOLDERS = "class folders in <split>/ folders"
CLASS_TREE = "class folders (a stratified fifth held out as 'test')"
_SPLIT_FOLDERS = ("train", "test", "val", "valid", "validation")


def source_kind(spec: str) -> str:
    """What `spec` names, as `open_dataset` reads it (one of the constants above)."""
    if spec.lower() == "digits":
        return DIGITS
    if spec.lower().startswith("torchvision:"):
        return TORCHVISION
    path = Path(spec).expanduser()
    if path.is_file():
        if compression(path) or tarfile.is_tarfile(path):
            return TAR
        raise DataError(
            f"{path}: unknown format; expected a .tar/.tar.gz of <split>/<class>/<image>, "
            "a folder, 'digits' or 'torchvision:<Name>:<root>'"
        )
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder (nor 'digits', 'torchvision:...')")
    if is_shard_folder(path):
        return SHARDS
    if idx_path(path, "train", "images") or idx_path(path, "test", "images"):
        return MNIST
    markers = ("data_batch_1", "test_batch", "cifar-10-batches-py", "cifar-100-python")
    if any((path / m).exists() for m in markers) or (path / "meta").is_file():
        return CIFAR
    if any((path / s).is_dir() for s in _SPLIT_FOLDERS):
        return SPLIT_FOLDERS
    return CLASS_TREE


def _open_folder(
    path: Path, split: str, transform: Callable | None, classes: Sequence[str] | None
) -> ImageDataset:
    if (path / split).is_dir():
        return image_folder(path / split, transform, classes)
    if present := [s for s in _SPLIT_FOLDERS if (path / s).is_dir()]:
        raise DataError(f"{path}: no '{split}' folder (found: {', '.join(present)})")
    check_split(split, f"{path} (a flat class tree)")
    everything = image_folder(path, transform, classes)
    train, test = stratified_split(everything.targets, 0.2, seed=0)
    logger.info("%s: no train/test folders; holding out a stratified fifth as 'test'", path)
    return everything.subset(train if split == "train" else test, f"{path}:{split}")
