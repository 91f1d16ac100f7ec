"""Labelled image lists for evaluation: (path, class index) pairs from the two folder layouts.

ImageFolder      root/<class>/<image>, classes in sorted folder order (torchvision's rule)
imagenet-sample  a flat folder of one photo per class, named <wnid>_<name>.JPEG, whose
                 sorted file names are the standard class order 0..999
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

Sample = tuple[Path, int]


class DatasetError(ValueError):
    """A data folder that cannot be evaluated, with a message meant for a person."""


def _images_in(folder: Path) -> list[Path]:
    # Files with an image extension are listed even when unreadable: `evaluate` skips and
    # counts those, so a broken file is reported rather than silently left out.
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


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
        raise DatasetError(f"{root}: no class folders (expected root/<class>/<image>)")
    if class_index is not None:
        unknown = [f.name for f in folders if f.name not in class_index]
        if unknown:
            raise DatasetError(
                f"{root}: class folder {unknown[0]!r} is not one of the model's classes "
                f"({len(unknown)} unknown folders)"
            )
    samples = []
    for position, folder in enumerate(folders):
        label = position if class_index is None else class_index[folder.name]
        samples += [(path, label) for path in _images_in(folder)]
    return samples


def imagenet_sample_samples(folder: str | Path) -> list[Sample]:
    """(path, label) for the flat imagenet-sample layout: sorted file names = labels 0..N-1."""
    folder = _existing_folder(folder)
    files = _images_in(folder)
    if not files:
        raise DatasetError(f"{folder}: no image files")
    if len(files) != 1000:
        log.warning("%s: %d images; labels assume one image per class in order", folder, len(files))
    return [(path, label) for label, path in enumerate(files)]


def folder_samples(
    root: str | Path, class_index: Mapping[str, int] | None = None
) -> tuple[list[Sample], list[str]]:
    """Either layout, told apart by whether `root` holds class folders; also the class
    folder names (empty for the flat layout)."""
    root = _existing_folder(root)
    folders = [f for f in _class_folders(root) if _images_in(f)]
    if folders:
        return image_folder_samples(root, class_index), [f.name for f in _class_folders(root)]
    if _images_in(root):
        return imagenet_sample_samples(root), []
    raise DatasetError(
        f"{root}: no images; give an ImageFolder tree (root/<class>/<image>) or a flat folder "
        "of one image per class in sorted class order"
    )


def _existing_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder; give a folder of images")
    return path
