"""Folders of images, in the layouts people keep image sets and ImageNet in.

class folders        root/<class>/<image>, torchvision's `ImageFolder` layout: a folder named
                     by WordNet id (`n01440764`), class name (`tench`, `great_white_shark`) or
                     index; images may sit in subfolders of a class folder
split folders        root/train/<class>/<image>, root/test/... or root/val/...: each a split
flat, WordNet ids    root/<wnid>_<anything>.JPEG: the imagenet-sample layout
                     (`n01440764_tench.JPEG`) and ImageNet's own train file names
flat, label file     root/ILSVRC2012_val_00000001.JPEG ... with a label file (given, or
                     `LOC_val_solution.csv` / the devkit's ground truth found in root or beside
                     it); see `imagenet/labels.py` for the forms
photos               every image under root, at any depth, labels not read: for the tools
                     that rank or show images (top-9, the microscope)

The flat layouts' classes are the WordNet ids present, in ImageNet's order (sorted ids).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ...errors import DataError
from ...images import folder_images, image_files, is_hidden
from ..imagenet.classes import imagenet_classes, wnid_prefix
from ..imagenet.labels import LABEL_FILE_NAMES, read_labels
from .dataset import ImageDataset
from .splits import SPLIT_NAMES, log_ignored, match_classes


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
    found = class_folder_names(root)
    if not found:
        entries = [p for p in root.iterdir() if not is_hidden(p.name)]
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


UNLABELLED = "(unlabelled)"  # the one class of a folder read as photos


def photo_folder(root: str | Path) -> ImageDataset:
    """Every image file under `root` at any depth, sorted by path, as one class named
    `UNLABELLED`: what the image is of is not read. A `DataError` when there is none."""
    files = folder_images(root)
    return ImageDataset([(str(f), 0) for f in files], [UNLABELLED], origin=str(root))


def class_folder_names(root: Path) -> list[str]:
    """The class names of `root/<class>/<image>`: its folders, sorted, hidden ones left out;
    no image is listed."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def split_folders(root: Path) -> list[str]:
    """The split folders (`train/`, `test/`, `val/`, ...) directly in `root`."""
    return [s for s in SPLIT_NAMES if (root / s).is_dir()]


def has_class_folders(root: Path) -> bool:
    """Whether `root` holds a folder with images in it (a class folder)."""
    return any(
        p.is_dir() and not is_hidden(p.name) and image_files(p, recursive=False)
        for p in root.iterdir()
    )


def one_class_folder(root: Path, transform: Callable | None = None) -> ImageDataset | None:
    """A folder named by a WordNet id (`n01440764/`) as a class tree of that one class; None
    for a folder of another name."""
    if wnid_prefix(root.name) != root.name:
        return None
    files = image_files(root, recursive=False)
    if not files:
        return None
    samples = [(str(f), 0) for f in files]
    return ImageDataset(samples, [root.name], transform, origin=str(root))


def flat_wnid(root: Path, transform: Callable | None = None) -> ImageDataset:
    """`root/<wnid>_<anything>.JPEG`: each file's class is the WordNet id its name starts with."""
    files = image_files(root, recursive=False)
    if not files:
        raise DataError(
            f"{root}: no images; give class folders (root/<class>/<image>) or a flat folder of "
            "<wnid>_*.JPEG files or ILSVRC2012_val_*.JPEG photos with their label file"
        )
    unnamed = [f.name for f in files if wnid_prefix(f.name) is None]
    if unnamed:
        raise DataError(
            f"{root}: cannot tell the class of {unnamed[0]!r} ({len(unnamed)} such files): "
            "name flat files <wnid>_<anything>.JPEG, sort them into class folders, or give "
            "the label file of ILSVRC2012_val_* photos"
        )
    return _by_wnid(root, [(f, wnid_prefix(f.name), f"{root}/{f.name}") for f in files], transform)


def flat_labelled(root: Path, labels: Path, transform: Callable | None = None) -> ImageDataset:
    """`root/ILSVRC2012_val_*.JPEG` labelled by a label file (`imagenet.labels.read_labels`)."""
    table = read_labels(labels)
    files = image_files(root, recursive=False)
    if not files:
        raise DataError(f"{root}: no image files to label with {labels}")
    missing = [f.name for f in files if f.stem not in table]
    if missing:
        raise DataError(
            f"{root}: {len(missing)} images have no label in {labels} (first: {missing[0]!r}); "
            "is it the label file of these photos?"
        )
    return _by_wnid(root, [(f, table[f.stem], f"{labels} ({f.name})") for f in files], transform)


def _by_wnid(
    root: Path, files: list[tuple[Path, str, str]], transform: Callable | None
) -> ImageDataset:
    """Files with their WordNet ids, each an ImageNet-1k class; the classes those present."""
    for _, wnid, where in {wnid: (f, wnid, w) for f, wnid, w in files}.values():
        imagenet_classes().resolve(wnid, where)
    present = sorted({wnid for _, wnid, _ in files})
    index = {wnid: i for i, wnid in enumerate(present)}
    samples = [(str(f), index[wnid]) for f, wnid, _ in files]
    return ImageDataset(samples, present, transform, origin=str(root))


def label_file_near(root: Path) -> Path | None:
    """A label file of ILSVRC2012 photos in `root` or beside it."""
    for folder in (root, root.parent):
        for name in LABEL_FILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None
