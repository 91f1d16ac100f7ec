"""A data source as a whole: its splits, its layout and its classes, for `goingdeeper data
info` (what it is, before anyone trains on it) and `goingdeeper data shard` (the same images
written as shards).

Sources `open_dataset` reads give the splits training sees (`train` and `test`). A folder of
ImageNet validation photos (flat `<wnid>_*.JPEG`, or `ILSVRC2012_val_*` with a label file)
is one split, `val`; `as_split` makes any folder one split of that name, its classes found as
`eval` finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, ImageError
from ..images import image_files
from .classes import imagenet_names_of
from .dataset import ImageDataset
from .open import CLASS_TREE, SHARDS, open_dataset, source_kind
from .samples import labelled_images
from .shards import read_manifest


@dataclass
class Source:
    spec: str
    layout: str
    splits: dict[str, ImageDataset]
    class_ids: list[str]

    @property
    def classes(self) -> list[str]:
        return next(iter(self.splits.values())).classes

    def readable_names(self) -> list[str]:
        """The class names, with ImageNet's names for classes named by WordNet id."""
        named_by_id = self.classes == self.class_ids
        return (imagenet_names_of(self.classes) if named_by_id else None) or self.classes


def open_source(spec: str, labels: str | Path | None = None, as_split: str = "") -> Source:
    """Every split of `spec` (see the module's note); a `DataError` when it has none."""
    kind = source_kind(spec)
    path = Path(spec).expanduser()
    flat = kind == CLASS_TREE and not _has_class_folders(path)
    if as_split or labels is not None or flat:
        found = labelled_images(path, labels=labels)
        layout = found.layout + (f" ({found.labels_from})" if found.labels_from else "")
        samples = [(str(p), label) for p, label in found.samples]
        ds = ImageDataset(samples, found.classes.names, origin=str(path))
        return Source(spec, layout, {as_split or "val": ds}, list(found.classes.ids))
    manifest = read_manifest(path) if kind == SHARDS else None
    splits = {}
    for split in manifest.splits if manifest else ("train", "test"):
        try:
            splits[split] = open_dataset(spec, split)
        except DataError:
            if split == "train":
                raise
    classes = next(iter(splits.values())).classes
    ids = manifest.class_ids if manifest else (classes if imagenet_names_of(classes) else [])
    return Source(spec, kind, splits, list(ids))


def _has_class_folders(path: Path) -> bool:
    return any(p.is_dir() and image_files(p, recursive=False) for p in path.iterdir())


def unreadable(
    ds: ImageDataset, progress: Callable[[int], None] | None = None, threads: int = 8
) -> list[str]:
    """The samples that cannot be decoded, each as one line (source: what is wrong)."""

    def check(i: int) -> str | None:
        try:
            ds.load(i)
        except ImageError as e:
            return str(e)
        return None

    bad = []
    with ThreadPoolExecutor(threads) as pool:
        for message in pool.map(check, range(len(ds)), chunksize=64):
            if message is not None:
                bad.append(message)
            if progress is not None:
                progress(1)
    return bad
