"""Labelled image lists for evaluation: (path, class index) pairs from the two folder layouts.

ImageFolder      root/<class>/<image>, classes in sorted folder order (torchvision's rule), or
                 mapped by name onto a model's class list
imagenet-sample  a flat folder of one photo per class, named <wnid>_<name>.JPEG, whose
                 sorted file names are the standard class order 0..999
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import DataError
from ..images import image_files, is_hidden

log = logging.getLogger(__name__)

Sample = tuple[Path, int]


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def image_folder_samples(
    root: str | Path, class_index: Mapping[str, int] | None = None
) -> list[Sample]:
    """(path, label) for every image of an ImageFolder tree root/<class>/<image>.

    Labels are the sorted folder positions, or `class_index[folder name]` when given (for a
    tree that holds only some of a model's classes).
    """
    root = _existing_folder(root)
    folders = _class_folders(root)
    if not folders:
        raise DataError(f"{root}: no class folders (expected root/<class>/<image>)")
    if class_index is not None:
        unknown = [f.name for f in folders if f.name not in class_index]
        if unknown:
            raise DataError(
                f"{root}: class folder {unknown[0]!r} is not one of the model's classes "
                f"({len(unknown)} unknown folders)"
            )
    samples = []
    for position, folder in enumerate(folders):
        label = position if class_index is None else class_index[folder.name]
        samples += [(path, label) for path in image_files(folder, recursive=False)]
    return samples


def imagenet_sample_samples(folder: str | Path) -> list[Sample]:
    """(path, label) for the flat imagenet-sample layout: sorted file names = labels 0..N-1."""
    folder = _existing_folder(folder)
    files = image_files(folder, recursive=False)
    if not files:
        raise DataError(f"{folder}: no image files")
    if len(files) != 1000:
        log.warning("%s: %d images; labels assume one image per class in order", folder, len(files))
    return [(path, label) for label, path in enumerate(files)]


def folder_samples(
    root: str | Path, class_index: Mapping[str, int] | None = None
) -> tuple[list[Sample], list[str]]:
    """Either layout, told apart by whether `root` holds class folders; also the class
    folder names (empty for the flat layout)."""
    root = _existing_folder(root)
    folders = [f for f in _class_folders(root) if image_files(f, recursive=False)]
    if folders:
        return image_folder_samples(root, class_index), [f.name for f in _class_folders(root)]
    if image_files(root, recursive=False):
        return imagenet_sample_samples(root), []
    raise DataError(
        f"{root}: no images; give an ImageFolder tree (root/<class>/<image>) or a flat folder "
        "of one image per class in sorted class order"
    )


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def samples_for_classes(root: str | Path, class_names: Sequence[str], num_classes: int):
    """A folder's samples labelled for a model with these classes: an ImageFolder tree by
    name when every folder is named after one of `class_names`, else in sorted folder order
    when the tree has them all (the ImageNet wnid layout); the flat layout as it is."""
    samples, folders = folder_samples(root)
    if not folders:
        return samples
    index = {_normal(n): i for i, n in enumerate(class_names)}
    if all(_normal(f) in index for f in folders):
        return folder_samples(root, {f: index[_normal(f)] for f in folders})[0]
    if len(folders) != num_classes:
        example = class_names[0] if class_names else "0"
        raise DataError(
            f"{root}: {len(folders)} class folders but the weights have {num_classes} classes; "
            f"name the folders after the classes (e.g. {example!r}) or give all {num_classes}"
        )
    return samples


def _existing_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; give a folder of images")
    return path
