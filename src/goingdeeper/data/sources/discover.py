"""`discover`: what a path holds, as a `Source`: its layout said in words, its classes and its
splits by name, each an `ImageDataset`. Every command opens data through it, so that
`train`, `eval`, `predict --data`, `data info` and `data shard` read any path the same way.

What a path may be (checked in this order):

- `digits`, or `torchvision:<Name>:<root>` (e.g. `torchvision:MNIST:~/data`): `train`, `test`
- a .tar / .tar.gz archive of `[top/]<split>/<class>/<image>`: the splits it holds
- a folder of WebDataset shards with their manifest (`goingdeeper data shard`)
- MNIST IDX files, CIFAR batches: `train`, `test`
- split folders, `root/<split>/<class>/<image>` (ImageNet's own `train/` + `val/` among them)
- class folders, `root/<class>/<image>`: one split, `all`
- one folder named by a WordNet id (`n01440764/`): one class, one split, `all`
- a flat folder of `<wnid>_*.JPEG`, or of `ILSVRC2012_val_*` photos with their label file
  (given, or found in the folder or beside it): one split, `all`

With `unlabelled`, a folder is every image under it, at any depth, whatever its layout, and
no label is read: the images alone, for the tools that rank or show them.

A source of one split is divided into `train` and `test` only when asked (`with_holdout`), and
`Source.holdout` says so in one line.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from ...errors import DataError
from ...images import image_files
from ..imagenet.classes import ClassMap, data_classes, imagenet_names_of, wnid_prefix
from ..imagenet.labels import val_number
from .cifar import cifar_batches
from .dataset import ImageDataset
from .digits import digits
from .folder import (
    class_folder_names,
    flat_labelled,
    flat_wnid,
    has_class_folders,
    image_folder,
    label_file_near,
    one_class_folder,
    photo_folder,
    split_folders,
)
from .mnist import idx_path, mnist_idx
from .shards import is_shard_folder, read_manifest, shard_dataset
from .splits import stratified_split
from .stream import ShardStream
from .tar import compression, tar_images, tar_splits
from .torchvision_sets import torchvision_dataset

DIGITS = "scikit-learn digits"
TORCHVISION = "torchvision data set"
TAR = "tar archive of <split>/<class>/<image>"
SHARDS = "WebDataset shards"
MNIST = "MNIST IDX files"
CIFAR = "CIFAR batches"
SPLIT_FOLDERS = "class folders in <split>/ folders"
CLASS_FOLDERS = "class folders"
ONE_CLASS = "one class folder, named by its WordNet id"
FLAT_WNID = "flat, WordNet-id file names"
FLAT_LABELS = "flat, label file"
PHOTOS = "photos, every image under the folder (labels not read)"

ALL = "all"  # the one split of a folder without split folders
SCORED = ("test", "val", "validation", "valid")  # the split a model is scored on, in this order

Opener = Callable[[str, bool], "ImageDataset | ShardStream"]


@dataclass(frozen=True)
class Source:
    """A data set as a whole: what `path` is (`layout`, in words), its classes (names, and
    WordNet ids where known), its splits by name, and the line saying how a split was held out
    (`holdout`, empty when none was). `known`: the classes every split is labelled in (a
    model's), when not the data's own."""

    path: str
    layout: str
    classes: ClassMap
    splits: tuple[str, ...]
    opener: Opener = field(repr=False, compare=False)
    holdout: str = ""
    known: ClassMap | None = None

    def split(
        self, name: str, transform: Callable | None = None, *, stream: bool = False
    ) -> ImageDataset | ShardStream:
        """Split `name` mapped by `transform`; a one-line `DataError` naming the splits there
        when it has none of that name. `stream`: shards read front to back (`ShardStream`)."""
        if name not in self.splits:
            raise DataError(f"{self.path}: no '{name}' split (found: {', '.join(self.splits)})")
        ds = self.opener(name, stream)
        if isinstance(ds, ShardStream):
            ds.transform = transform
        else:
            ds = ds.with_transform(transform)
        if self.known is not None and list(self.known.names) != ds.classes:
            tokens = ds.classes  # by WordNet id when both sides know them, else as named
            if self.known.ids and self.classes.ids and list(self.classes.names) == ds.classes:
                tokens = list(self.classes.ids)
            index = self.known.resolve_all(tokens, f"{self.path}:{name}")
            ds = ds.relabelled(self.known.names, {i: index[t] for i, t in enumerate(tokens)})
        return ds

    def scored_split(self) -> str:
        """The split a model is scored on: `test`, else `val` (ImageNet's own layout), else the
        only split."""
        found = [s for s in SCORED if s in self.splits]
        if found:
            return found[0]
        if len(self.splits) == 1:
            return self.splits[0]
        raise DataError(
            f"{self.path}: no split to score on among {', '.join(self.splits)}; name one "
            f"'test' or 'val', or hold one out (--holdout 0.2)"
        )

    def readable_names(self) -> list[str]:
        """The class names, with ImageNet's names for classes named by WordNet id."""
        names = list(self.classes.names)
        named_by_id = names == list(self.classes.ids)
        return (imagenet_names_of(names) if named_by_id else None) or names

    def with_holdout(self, fraction: float, seed: int = 0) -> Source:
        """This source with its one split (or its `train` split, when it has no other) divided
        into `train` and `test`: a stratified `fraction` of each class held out as `test`."""
        if not 0.0 < fraction < 1.0:
            raise DataError(f"--holdout must lie strictly between 0 and 1, got {fraction}")
        if len(self.splits) == 1:
            base = self.splits[0]
        elif "train" in self.splits and not any(s in self.splits for s in SCORED):
            base = "train"
        else:
            raise DataError(
                f"{self.path}: already has the splits {', '.join(self.splits)}; --holdout "
                "divides a source of one split"
            )
        whole = self.opener(base, False)
        train, test = stratified_split(whole.targets, fraction, seed)
        if not train or not test:
            empty = "test" if not test else "train"
            raise DataError(
                f"{self.path}: holding out {fraction:g} of each class of '{base}' "
                f"({len(whole)} images, {len(set(whole.targets))} classes) leaves '{empty}' "
                "empty; give more images or another --holdout"
            )

        @cache
        def divided(name: str) -> ImageDataset:
            return whole.subset(train if name == "train" else test, f"{self.path}:{name}")

        said = (
            f"{self.path}: held out a stratified {fraction:g} of each class of '{base}' as "
            f"'test' (seed {seed}); the rest is 'train'"
        )
        return replace(
            self, splits=("train", "test"), opener=lambda name, _: divided(name), holdout=said
        )


def discover(
    path: str | Path,
    labels: str | Path | None = None,
    *,
    known: ClassMap | None = None,
    as_split: str = "",
    download: bool = False,
    unlabelled: bool = False,
) -> Source:
    """What `path` holds (see the module's note), opened as a `Source`.

    `labels`: the label file of a flat folder of ILSVRC2012 validation photos. `known`: the
    classes a model knows; each split's labels become indices into them, every class of the
    data resolved by identity (WordNet id, name or index). `as_split`: a folder's images as
    one split of that name. `download`: torchvision's sets may be downloaded. `unlabelled`:
    only the images are wanted; a folder is read as photos (see the module's note).
    """
    spec = str(path)
    if unlabelled and labels is None and (_is_folder(spec) or _missing_folder(spec)):
        root = _existing_folder(Path(spec).expanduser())
        photos = photo_folder(root)
        classes = ClassMap(photos.classes)
        return Source(str(root), PHOTOS, classes, (as_split or ALL,), lambda *_: photos)
    if labels is not None or _is_folder(spec):
        return _folder_source(Path(spec).expanduser(), labels, known, as_split)
    layout, splits, opener = _format(spec, download)
    opener = _cached(opener, streams=layout == SHARDS)
    if layout == SHARDS:  # the manifest names the classes: no shard is opened (and hashed)
        manifest = read_manifest(Path(spec).expanduser())
        classes = ClassMap(manifest.classes, manifest.class_ids)
    else:
        first = opener(splits[0], False).classes
        classes = ClassMap(first, first if all(wnid_prefix(c) == c for c in first) else ())
    return _named(Source(spec, layout, classes, splits, opener, known=known), as_split)


def _named_set(spec: str) -> bool:
    """`digits` or `torchvision:<Name>:<root>`: a set named, not a path."""
    return spec.lower() == "digits" or spec.lower().startswith("torchvision:")


def _is_folder(spec: str) -> bool:
    """A folder of images: not a named set, not shards, MNIST or CIFAR."""
    if _named_set(spec):
        return False
    path = Path(spec).expanduser()
    if not path.is_dir() or is_shard_folder(path):
        return False
    return _array_format(path) is None


def _missing_folder(spec: str) -> bool:
    """A path that names nothing, where a folder of photos is expected."""
    return not _named_set(spec) and not Path(spec).expanduser().exists()


def _array_format(path: Path) -> str | None:
    if idx_path(path, "train", "images") or idx_path(path, "test", "images"):
        return MNIST
    markers = ("data_batch_1", "test_batch", "cifar-10-batches-py", "cifar-100-python")
    if any((path / m).exists() for m in markers) or (path / "meta").is_file():
        return CIFAR
    return None


def _format(spec: str, download: bool) -> tuple[str, tuple[str, ...], Opener]:
    """The layout, splits and opener of a source that is not a folder of images."""
    if spec.lower() == "digits":
        return DIGITS, ("train", "test"), lambda split, _: digits(split)
    if spec.lower().startswith("torchvision:"):
        _, name, root = (spec.split(":", 2) + ["", ""])[:3]
        if not name or not root:
            example = "torchvision:MNIST:~/data"
            raise DataError(f"{spec!r}: expected torchvision:<Name>:<root>, e.g. {example}")
        root_path = Path(root).expanduser()
        return (
            TORCHVISION,
            ("train", "test"),
            lambda split, _: torchvision_dataset(name, root_path, split, None, download),
        )
    path = Path(spec).expanduser()
    if path.is_file():
        if compression(path) or tarfile.is_tarfile(path):
            return TAR, tar_splits(path), lambda split, _: tar_images(path, split)
        raise DataError(
            f"{path}: unknown format; expected a .tar/.tar.gz of <split>/<class>/<image>, "
            "a folder, 'digits' or 'torchvision:<Name>:<root>'"
        )
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder (nor 'digits', 'torchvision:...')")
    if is_shard_folder(path):
        manifest = read_manifest(path)

        def shards(split: str, stream: bool) -> ImageDataset | ShardStream:
            return ShardStream(path, split) if stream else shard_dataset(path, split)

        return SHARDS, tuple(manifest.splits), shards
    if _array_format(path) == MNIST:
        return MNIST, ("train", "test"), lambda split, _: mnist_idx(path, split)
    return CIFAR, ("train", "test"), lambda split, _: cifar_batches(path, split)


def _cached(opener: Opener, streams: bool = False) -> Opener:
    """Each split opened once (a folder listed, an archive indexed, shards hashed); a source
    that `streams` makes each stream anew, since each is configured for its readers."""
    opened: dict[str, ImageDataset] = {}

    def open_split(name: str, stream: bool) -> ImageDataset | ShardStream:
        if stream and streams:
            return opener(name, True)
        if name not in opened:
            opened[name] = opener(name, False)
        return opened[name]

    return open_split


def _folder_source(
    root: Path, labels: str | Path | None, known: ClassMap | None, as_split: str
) -> Source:
    _existing_folder(root)
    if labels is None and (present := split_folders(root)):
        opener = _cached(lambda split, _: image_folder(root / split))
        classes = _classes(class_folder_names(root / present[0]), str(root), known)
        source = Source(str(root), SPLIT_FOLDERS, classes, tuple(present), opener, known=known)
        return _named(source, as_split)
    layout, ds = _one_split(root, labels)
    classes = _classes(ds.classes, str(root), known)
    return Source(str(root), layout, classes, (as_split or ALL,), lambda *_: ds, known=known)


def _existing_folder(root: Path) -> Path:
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give a folder of images")
    return root


def _one_split(root: Path, labels: str | Path | None) -> tuple[str, ImageDataset]:
    """The layout and images of a folder without split folders."""
    if labels is not None:
        return f"{FLAT_LABELS} ({labels})", flat_labelled(root, Path(labels))
    if has_class_folders(root):
        return CLASS_FOLDERS, image_folder(root)
    files = image_files(root, recursive=False)
    found = label_file_near(root) if files and val_number(files[0].name) else None
    if found is not None:
        return f"{FLAT_LABELS} ({found})", flat_labelled(root, found)
    if files and any(wnid_prefix(f.name) is None for f in files):
        one = one_class_folder(root)
        if one is not None:
            return ONE_CLASS, one
    return FLAT_WNID, flat_wnid(root)


def _classes(names: list[str], where: str, known: ClassMap | None) -> ClassMap:
    """The data's classes; with WordNet ids found for ImageNet's class names only when no
    model's classes are given (those resolve the names themselves)."""
    if known is None:
        return data_classes(names, where)
    return ClassMap(names, names if all(wnid_prefix(n) == n for n in names) else ())


def _named(source: Source, as_split: str) -> Source:
    """A source of one split under the name `as_split` (a folder's images as `val`, say)."""
    if not as_split or source.splits == (as_split,):
        return source
    if len(source.splits) != 1:
        raise DataError(
            f"{source.path}: --as-split names the one split of a folder, and it has "
            f"{', '.join(source.splits)}"
        )
    opener, only = source.opener, source.splits[0]
    return replace(source, splits=(as_split,), opener=lambda _, stream: opener(only, stream))
