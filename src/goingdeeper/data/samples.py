"""Labelled image lists for evaluation: (path, class index) pairs from the folder layouts people
keep ImageNet and its subsets in, every label decided by identity through a `ClassMap`.

class folders        root/<class>/<image>, a folder named by WordNet id (`n01440764`), class
                     name (`tench`, `great_white_shark`) or index; any subset of the classes
flat, WordNet ids    root/<wnid>_<anything>.JPEG: the imagenet-sample layout
                     (`n01440764_tench.JPEG`) and ImageNet's own train file names
flat, label file     root/ILSVRC2012_val_00000001.JPEG ... with a label file (given, or
                     `LOC_val_solution.csv` / the devkit's ground truth found in root or
                     beside it); see `labels.py` for the forms
shards               a folder `goingdeeper data shard` wrote: its `val` split (else `test`),
                     the shards' classes matched to the model's by WordNet id or name
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from ..errors import DataError
from ..images import image_files, is_hidden, load_image
from .classes import ClassMap, imagenet_class_ids, imagenet_class_names, wnid_prefix
from .dataset import LoadedImages
from .labels import LABEL_FILE_NAMES, read_labels, val_number
from .shards import is_shard_folder, read_manifest, shard_dataset

log = logging.getLogger(__name__)

Sample = tuple[Path, int]

CLASS_FOLDERS = "class folders"
FLAT_WNID = "flat, WordNet-id file names"
FLAT_LABELS = "flat, label file"


@dataclass
class Labelled:
    """A folder's images with their labels, how they were told apart, and the classes."""

    samples: Sequence[tuple]  # (path or image, label); images are decoded when asked for
    layout: str
    classes: ClassMap
    labels_from: str = ""  # the label file, for the flat ILSVRC layout

    def head(self, n: int | None) -> Labelled:
        """The first `n` images (all for None)."""
        if isinstance(self.samples, LoadedImages):
            return replace(self, samples=self.samples.head(n))
        return replace(self, samples=self.samples[:n])

    def name(self, i: int) -> str:
        """Image i as messages name it."""
        if isinstance(self.samples, LoadedImages):
            return self.samples.describe(i)
        return str(self.samples[i][0])

    def label(self, i: int) -> int:
        """Image i's class index, without decoding it."""
        if isinstance(self.samples, LoadedImages):
            return self.samples.label(i)
        return self.samples[i][1]

    def file_names(self) -> list[str] | None:
        """The images' own file names; None for shards, which hold them only inside."""
        if isinstance(self.samples, LoadedImages):
            return None
        return [Path(path).name for path, _ in self.samples]

    def image(self, i: int) -> Image.Image:
        """Image i as 8-bit RGB; `ImageError` when it cannot be decoded."""
        if isinstance(self.samples, LoadedImages):
            return self.samples.load(i)
        return load_image(self.samples[i][0])


def imagenet_classes() -> ClassMap:
    return ClassMap(imagenet_class_names(), imagenet_class_ids())


def labelled_images(
    root: str | Path, classes: ClassMap | None = None, labels: str | Path | None = None
) -> Labelled:
    """Every image under `root` with the index of its class in `classes`.

    `classes`: the model's class list; without it, class folders define the classes in sorted
    order (torchvision's ImageFolder rule) and WordNet ids mean the ImageNet-1k classes.
    `labels`: a label file for a flat folder of ILSVRC2012 validation photos.
    """
    root = existing_folder(root)
    if is_shard_folder(root):
        return _from_shards(root, classes)
    if labels is not None:
        return _flat_with_labels(root, classes or imagenet_classes(), Path(labels))
    folders = _class_folders(root)
    if folders:
        return _by_folder(root, folders, classes)
    files = image_files(root, recursive=False)
    if not files:
        raise DataError(
            f"{root}: no images; give class folders (root/<class>/<image>) or a flat folder of "
            "<wnid>_*.JPEG files or ILSVRC2012_val_*.JPEG photos with their label file"
        )
    found = _label_file_near(root) if val_number(files[0].name) else None
    if found is not None:
        return _flat_with_labels(root, classes or imagenet_classes(), found)
    return _by_wnid_prefix(root, files, classes or imagenet_classes())


def _class_folders(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    return [d for d in dirs if image_files(d, recursive=False)]


def _by_folder(root: Path, folders: list[Path], classes: ClassMap | None) -> Labelled:
    if classes is None:
        names = [f.name for f in folders]
        classes = ClassMap.of(names, names if all(wnid_prefix(n) == n for n in names) else ())
    index = classes.resolve_all([f.name for f in folders], str(root))
    samples = []
    for folder in folders:
        samples += [(path, index[folder.name]) for path in image_files(folder, recursive=False)]
    return Labelled(samples, CLASS_FOLDERS, classes)


def _by_wnid_prefix(root: Path, files: list[Path], classes: ClassMap) -> Labelled:
    unnamed = [f.name for f in files if wnid_prefix(f.name) is None]
    if unnamed:
        raise DataError(
            f"{root}: cannot tell the class of {unnamed[0]!r} ({len(unnamed)} such files): "
            "name flat files <wnid>_<anything>.JPEG, sort them into class folders, or give "
            "the label file of ILSVRC2012_val_* photos"
        )
    cache: dict[str, int] = {}
    samples = []
    for f in files:
        wnid = wnid_prefix(f.name)
        if wnid not in cache:
            cache[wnid] = classes.resolve(wnid, f"{root}/{f.name}")
        samples.append((f, cache[wnid]))
    return Labelled(samples, FLAT_WNID, classes)


def _label_file_near(root: Path) -> Path | None:
    for folder in (root, root.parent):
        for name in LABEL_FILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _flat_with_labels(root: Path, classes: ClassMap, labels: Path) -> Labelled:
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
    cache: dict[str, int] = {}
    samples = []
    for f in files:
        wnid = table[f.stem]
        if wnid not in cache:
            cache[wnid] = classes.resolve(wnid, f"{labels} ({f.name})")
        samples.append((f, cache[wnid]))
    return Labelled(samples, FLAT_LABELS, classes, labels_from=str(labels))


def _from_shards(root: Path, classes: ClassMap | None) -> Labelled:
    manifest = read_manifest(root)
    split = next((s for s in ("val", "test") if s in manifest.splits), next(iter(manifest.splits)))
    ds = shard_dataset(root, split)
    own = ClassMap.of(manifest.classes, manifest.class_ids)
    if classes is not None:
        tokens = own.ids or own.names
        index = classes.resolve_all(list(tokens), f"{root}:{split}")
        ds = ds.relabelled(classes.names, {i: index[t] for i, t in enumerate(tokens)})
    return Labelled(LoadedImages(ds), f"WebDataset shards ({split})", classes or own)


def existing_folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; give a folder of images")
    return path
