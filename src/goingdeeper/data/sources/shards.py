"""WebDataset shards: data sets as a few large `.tar` files, written once and read in sequence.

A shard folder holds `<split>-000000.tar`, `<split>-000001.tar`, ... and `manifest.json`. Each
sample is three members sharing a key: the image as it was stored (`000042.jpg`, `.png`, ...;
never re-encoded, except images that only existed as arrays, which become PNG), its class index
(`000042.cls`) and a little JSON (`000042.json`: class name, WordNet id, the source's own file
name, which keeps ILSVRC2012_val_* numbers for ReaL). `.cls` is the index of the class among
the classes the data is known by: ImageNet-1k's standard index for classes with its WordNet
ids (English springer is 217, whichever ten classes a set holds), else the class's place in
the data's own list. The manifest gives the classes (each one's own name, readable name,
WordNet id and `.cls` value side by side), and per shard its images, bytes, SHA-256 and labels
(indices into the manifest's classes), so that a reader knows every count before it opens a
file. Shards of the first format (`goingdeeper.shards/1`, `.cls` the index in the data's own
list) read as before.

The shards are written with the webdataset library's `TarWriter`, and any WebDataset reader
reads them (`webdataset.WebDataset(urls).decode("pil")` yields `{"jpg": ..., "cls": ...}`).
Here they are read from a file system (local or mounted) two ways, both through the tar
headers and each member's offset (`tar.TarArchive`, four times faster than going through the
webdataset pipeline and able to pass over other readers' samples without reading them):
`shard_dataset` reads any sample at random (evaluation, and training in exactly the order a
folder gives); `ShardStream` reads each shard front to back, split across DDP ranks and
DataLoader workers, so that no sample is read twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from ...errors import DataError
from ...files import atomic_write
from ...images import OpenedImage, decode_image, is_image_name
from ..imagenet.classes import ClassMap, imagenet_class_ids, imagenet_names_of
from .dataset import ImageDataset
from .tar import TarArchive, TarMember

FORMAT = "goingdeeper.shards/2"
FIRST_FORMAT = "goingdeeper.shards/1"  # `.cls` was the index in the shards' own class list
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgt", 1):
    _UNITS |= {_letter: 1000**_power, f"{_letter}b": 1000**_power, f"{_letter}ib": 1024**_power}


def parse_size(text: str) -> int:
    """Bytes from sizes such as '1GB', '500MB', '64MiB' or '2000000'."""
    found = _SIZE.match(str(text))
    unit = found.group(2).lower() if found else ""
    if not found or unit not in _UNITS:
        raise DataError(f"shard size {text!r}: expected a size such as 1GB, 500MB or 64MiB")
    size = int(float(found.group(1)) * _UNITS[unit])
    if size < 10_000:
        raise DataError(f"shard size {text!r} is below 10 kB; give at least a few MB")
    return size


@dataclass(frozen=True)
class Shard:
    name: str  # file name in the shard folder
    images: int
    bytes: int
    sha256: str
    labels: tuple[int, ...]  # of its samples, in order


@dataclass(frozen=True)
class ShardSet:
    """A shard folder's manifest: the classes and each split's shards."""

    folder: Path
    classes: tuple[str, ...]
    class_ids: tuple[str, ...]
    splits: dict[str, tuple[Shard, ...]]
    source: str = ""
    cls: tuple[int, ...] = ()  # each class's `.cls` value (its index where the data is known)
    class_names: tuple[str, ...] = ()  # readable: ImageNet's names for its WordNet ids

    def shards(self, split: str) -> tuple[Shard, ...]:
        if split not in self.splits:
            raise DataError(
                f"{self.folder}: no '{split}' shards (it has: {', '.join(self.splits)})"
            )
        return self.splits[split]

    def images(self, split: str) -> int:
        return sum(s.images for s in self.shards(split))

    def per_class(self, split: str) -> Counter:
        return Counter(label for s in self.shards(split) for label in s.labels)

    def path(self, shard: Shard) -> Path:
        return self.folder / shard.name

    def check_files(self, split: str) -> tuple[Shard, ...]:
        """The split's shards, each file present, of the size and SHA-256 the manifest states
        (a shard cut short, replaced or changed in place is one error before reading, not a
        failure or a wrong label mid-epoch). Each file is hashed once, streamed."""
        shards = self.shards(split)
        for shard in shards:
            path = self.path(shard)
            if not path.is_file():
                raise DataError(f"{path}: shard missing (named in {self.folder / MANIFEST})")
            size = path.stat().st_size
            if size != shard.bytes:
                raise DataError(
                    f"{path}: {size:,} bytes, the manifest says {shard.bytes:,}; the shard was "
                    "cut short or replaced: write the shards again"
                )
        total = sum(shard.bytes for shard in shards)
        if total > 1 << 30:  # a few seconds a GB: said before it starts
            log.info(
                "%s: checking the SHA-256 of %d shards (%.1f GB)",
                self.folder,
                len(shards),
                total / 1e9,
            )
        for shard in shards:  # hashed once every file is known to be there
            if file_sha256(self.path(shard)) != shard.sha256:
                raise DataError(
                    f"{self.path(shard)}: SHA-256 differs from the manifest's; the shard was "
                    "changed: write the shards again"
                )
        return shards


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> ShardSet:
    """The manifest of a shard folder, checked for the fields readers rely on."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") not in (FORMAT, FIRST_FORMAT):
            raise DataError(f"{path}: format {raw.get('format')!r}, expected {FORMAT}")
        splits = {
            split: tuple(
                Shard(s["name"], int(s["images"]), int(s["bytes"]), s["sha256"], tuple(s["labels"]))
                for s in entry["shards"]
            )
            for split, entry in raw["splits"].items()
        }
        classes = tuple(raw["classes"])
        manifest = ShardSet(
            folder,
            classes,
            tuple(raw.get("class_ids", ())),
            splits,
            raw["source"],
            tuple(int(c) for c in raw.get("cls", range(len(classes)))),
            tuple(raw.get("class_names", classes)),
        )
        if len(manifest.cls) != len(classes) or len(manifest.class_names) != len(classes):
            raise ValueError("one .cls value and one name per class expected")
    except FileNotFoundError:
        raise DataError(f"{folder}: no {MANIFEST}; not a shard folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{path}: not a readable shard manifest ({type(e).__name__}: {e})"
        ) from None
    for shards in splits.values():
        for s in shards:
            if len(s.labels) != s.images or any(
                not 0 <= c < len(manifest.classes) for c in s.labels
            ):
                raise DataError(f"{path}: shard {s.name}: labels do not match its images")
            if Path(s.name).name != s.name:
                raise DataError(f"{path}: shard name {s.name!r} must be a plain file name")
    return manifest


# --- writing ---------------------------------------------------------------------------------


def _webdataset():
    """The webdataset module, imported when shards are written (reading needs only `tarfile`),
    or a one-line `DataError` saying how to install it."""
    try:
        import webdataset
    except ImportError:
        raise DataError(
            "writing shards needs the webdataset package; install it (pip install webdataset)"
        ) from None
    return webdataset


class _Writer:
    """Shards of one split, each closed when the next sample would take it past `limit`."""

    def __init__(self, folder: Path, split: str, limit: int, wds) -> None:
        self.folder, self.split, self.limit, self.wds = folder, split, limit, wds
        self.done: list[dict] = []
        self._tar = None
        self._file = None
        self._labels: list[int] = []
        self._bytes = 0

    def add(self, key: str, image: bytes, ext: str, label: int, cls: int, meta: dict) -> None:
        """One sample: `label` indexes the manifest's classes, `cls` is what `.cls` holds."""
        size = sum(_member_bytes(n) for n in (len(image), len(str(cls)), len(json.dumps(meta))))
        if self._tar is not None and _tar_bytes(self._bytes + size) > self.limit:
            self._close()
        if self._tar is None:
            name = f"{self.split}-{len(self.done):06d}.tar"
            self._file = open(self.folder / f".{name}.partial", "wb")  # noqa: SIM115
            self._tar = self.wds.TarWriter(
                self._file, user="", group="", mtime=0, encoder=False, format=tarfile.USTAR_FORMAT
            )
            self._name, self._labels, self._bytes = name, [], 0
        text = json.dumps(meta).encode()  # ASCII: its length is the member's
        record = {"__key__": key, ext: image, "cls": str(cls).encode(), "json": text}
        self._tar.write(record)
        self._labels.append(label)
        self._bytes += size

    def _close(self) -> None:
        self._tar.close()
        self._file.close()
        partial = self.folder / f".{self._name}.partial"
        sha256 = file_sha256(partial)
        partial.replace(self.folder / self._name)
        self.done.append(
            {
                "name": self._name,
                "images": len(self._labels),
                "bytes": (self.folder / self._name).stat().st_size,
                "sha256": sha256,
                "labels": self._labels,
            }
        )
        self._tar = self._file = None

    def finish(self) -> list[dict]:
        if self._tar is not None:
            self._close()
        return self.done

    def abort(self) -> None:
        """Close the shard being written without finishing it (its file is deleted after)."""
        if self._tar is not None:
            self._tar.tarstream.fileobj.closed = True  # tarfile writes nothing more, not even
            self._file.close()  # when collected, where a full disk would fail it once more
            self._tar = self._file = None


def _member_bytes(size: int) -> int:
    """A tar member's share of the file: a 512-byte header and its data in 512-byte blocks."""
    return 512 + -(-size // 512) * 512


def _tar_bytes(members: int) -> int:
    """The file size of a tar whose members take `members` bytes: two zero blocks at the end,
    then padding to tar's 10,240-byte records."""
    return -(-(members + 1024) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def known_index(classes: ClassMap) -> list[int]:
    """Each class's index among the classes the data is known by: ImageNet-1k's standard index
    when every class has one of its WordNet ids, else its place in `classes`."""
    if classes.ids and imagenet_names_of(classes.ids) is not None:
        standard = {wnid: i for i, wnid in enumerate(imagenet_class_ids())}
        return [standard[wnid] for wnid in classes.ids]
    return list(range(len(classes)))


def write_shards(
    splits: dict[str, ImageDataset],
    out: str | Path,
    shard_size: int,
    *,
    classes: ClassMap | None = None,
    source: str = "",
    progress: Callable[[int], None] | None = None,
) -> ShardSet:
    """Write each split's samples, in order, as shards of at most `shard_size` bytes (a shard
    holds one sample at least); the manifest last, so a folder with one is complete.
    `classes`: the splits' classes with their WordNet ids, when known."""
    wds = _webdataset()
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DataError(f"{out}: already holds shards ({MANIFEST}); give an empty or new folder")
    names = next(iter(splits.values())).classes
    if any(ds.classes != names for ds in splits.values()):
        raise DataError("the splits have different classes; shards keep one class list")
    classes = classes if classes is not None else ClassMap(names)
    if list(classes.names) != names:
        raise DataError("the class map given does not name the splits' classes")
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write_splits(out, splits, shard_size, source, classes, progress, wds)
    except BaseException:  # a full disk, an interrupt: no half-written set is left behind
        for split in splits:
            for path in [*out.glob(f"{split}-*.tar"), *out.glob(f".{split}-*.tar.partial")]:
                path.unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()
        raise


def _write_splits(
    out: Path,
    splits: dict[str, ImageDataset],
    shard_size: int,
    source: str,
    classes: ClassMap,
    progress: Callable[[int], None] | None,
    wds,
) -> ShardSet:
    cls = known_index(classes)
    entries = {}
    for split, ds in splits.items():
        writer = _Writer(out, split, shard_size, wds)
        try:
            for i in range(len(ds)):
                image, ext, name = encoded(ds, i)
                label = ds.targets[i]
                meta = {"class": classes.names[label], "source": name}
                if classes.ids:
                    meta["wnid"] = classes.ids[label]
                writer.add(f"{i:08d}", image, ext, label, cls[label], meta)
                if progress is not None:
                    progress(1)
            shards = writer.finish()
        except BaseException:
            writer.abort()
            raise
        entries[split] = {"images": len(ds), "shards": shards}
    manifest = {
        "format": FORMAT,
        "source": source,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": list(classes.names),
        "class_ids": list(classes.ids),
        "class_names": (imagenet_names_of(classes.ids) if classes.ids else None)
        or list(classes.names),
        "cls": cls,
        "splits": entries,
    }
    text = json.dumps(manifest, ensure_ascii=False, separators=(",", ":"))
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(text + "\n"))
    return read_manifest(out)


def encoded(ds: ImageDataset, i: int) -> tuple[bytes, str, str]:
    """Sample i as stored: its bytes, their extension and the source's own name. Files and tar
    members are copied byte for byte; images held as arrays become lossless PNG."""
    source = ds.samples[i][0]
    reader = ds.reader
    if isinstance(reader, TarArchive):
        name = source.name
        return reader.read(source), Path(name).suffix.lstrip(".").lower(), Path(name).name
    if isinstance(source, str | Path) and is_image_name(str(source)):
        path = Path(source)
        try:
            return path.read_bytes(), path.suffix.lstrip(".").lower(), path.name
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e})") from None
    buffer = io.BytesIO()
    ds.decode(i).save(buffer, format="PNG")
    return buffer.getvalue(), "png", ds.describe(i)


# --- reading: random access ------------------------------------------------------------------


class ShardSample(NamedTuple):
    shard: int
    member: TarMember


class ShardReader:
    """The reader of `shard_dataset`'s samples: each shard read in place at member offsets."""

    def __init__(self, paths: list[Path]) -> None:
        self.archives = [TarArchive(p) for p in paths]

    def __call__(self, sample: ShardSample) -> Image.Image:
        archive = self.archives[sample.shard]
        return decode_image(archive.read(sample.member), archive.describe(sample.member))

    def describe(self, sample: ShardSample) -> str:
        return self.archives[sample.shard].describe(sample.member)

    def encoded(self, sample: ShardSample) -> bytes:
        """The image's bytes as stored, for a decoder of its own (`data.pipelines.tensor`)."""
        return self.archives[sample.shard].read(sample.member)

    def open(self, sample: ShardSample) -> OpenedImage:
        return self.archives[sample.shard].open(sample.member)


def shard_dataset(
    folder: str | Path, split: str, transform: Callable | None = None
) -> ImageDataset:
    """A split of a shard folder as an `ImageDataset` (samples in the order written)."""
    manifest = read_manifest(folder)
    shards = manifest.check_files(split)
    reader = ShardReader([manifest.path(s) for s in shards])
    samples = []
    for index, (shard, archive) in enumerate(zip(shards, reader.archives, strict=True)):
        images = shard_images(archive, shard, manifest.cls)
        samples += [
            (ShardSample(index, m), label) for m, label in zip(images, shard.labels, strict=True)
        ]
    return ImageDataset(
        samples, manifest.classes, transform, reader=reader, origin=f"{folder}:{split}"
    )


def shard_images(archive: TarArchive, shard: Shard, known: Sequence[int]) -> list[TarMember]:
    """The image members of a shard in order (their labels are `shard.labels`), checked
    against the manifest's count, and each label against the sample's own `.cls` (`known`:
    each class's `.cls` value)."""
    members = archive.members()
    images = [m for m in members if is_image_name(m.name)]
    if len(images) != shard.images:
        raise DataError(
            f"{archive.path}: {len(images)} images, the manifest says {shard.images}; "
            "the shard was changed or cut short"
        )
    cls = {m.name[: -len(".cls")]: m for m in members if m.name.endswith(".cls")}
    for image, label in zip(images, shard.labels, strict=True):
        key = image.name.rsplit(".", 1)[0]
        stated = archive.read(cls[key]).strip() if key in cls else b""
        if stated != str(known[label]).encode():
            raise DataError(
                f"{archive.path}: {key}.cls says {stated[:20].decode('latin-1')!r}, the manifest "
                f"says {known[label]}; the manifest or the shard was changed: write the shards "
                "again"
            )
    return images


def verify_shards(manifest: ShardSet, progress: Callable[[int], None] | None = None) -> list[str]:
    """The shards whose size or SHA-256 differs from the manifest's (empty when all agree)."""
    bad = []
    for shards in manifest.splits.values():
        for shard in shards:
            path = manifest.path(shard)
            if not path.is_file() or path.stat().st_size != shard.bytes:
                bad.append(f"{shard.name}: {'missing' if not path.is_file() else 'size differs'}")
                continue
            if file_sha256(path) != shard.sha256:
                bad.append(f"{shard.name}: SHA-256 differs")
            if progress is not None:
                progress(shard.images)
    return bad
