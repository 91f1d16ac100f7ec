"""ImageFolder trees: `root/<class>/<image>`, the layout of torchvision's `ImageFolder`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import DataError
from ..images import image_files, is_hidden
from .dataset import ImageDataset, log_ignored, match_classes


def image_folder(
    root: str | Path,
    transform: Callable | None = None,
    classes: Sequence[str] | None = None,
) -> ImageDataset:
    """`root/<class>/<image>` (images may sit in subfolders of a class folder).

    Classes are the sorted folder names, or `classes` in its order, which must name the same
    folders. Hidden files and folders are skipped, files without an image extension ignored
    with a warning; an empty class folder is a `DataError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    entries = [p for p in root.iterdir() if not is_hidden(p.name)]
    found = sorted(p.name for p in entries if p.is_dir())
    if not found:
        what = "it is empty" if not entries else f"found {len(entries)} files directly in it"
        raise DataError(f"{root}: no class folders, expected {root}/<class>/<image> ({what})")
    names = match_classes(found, classes, str(root))
    samples: list[tuple[str, int]] = []
    ignored: list[str] = []
    for label, name in enumerate(names):
        files = image_files(root / name, ignored=ignored)
        if not files:
            raise DataError(f"{root / name}: class folder without image files")
        samples += [(str(f), label) for f in files]
    log_ignored(ignored, root)
    return ImageDataset(samples, names, transform, origin=str(root))
