"""Image classification data: every source becomes one `ImageDataset` of (image, label).

Sources (SPEC part 3): an ImageFolder tree (`root/<class>/<image>`), a tar archive of such a
tree read in place, MNIST's official IDX files, CIFAR's official python batches,
scikit-learn's bundled handwritten digits (no download) and torchvision's dataset classes.
`open_dataset` picks one from a single string; `check_splits` compares train and test.

Bad images never end an epoch. Grayscale, palette, CMYK, 16-bit and alpha images are converted
to 8-bit RGB (`preprocess.to_rgb`); an image that cannot be decoded (zero bytes, truncated,
corrupt, not an image, beyond the decompression-bomb limit) makes `__getitem__` return
`(None, label, message)`, and `collate_skip` hands the messages to the trainer, which counts
and names them. Problems with the data set as a whole (a missing or empty folder, classes that
differ between train and test, an unknown format) are one `DataError` before training starts.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import importlib
import importlib.util
import io
import logging
import lzma
import os
import pickle
import struct
import tarfile
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from .. import preprocess
from ..preprocess import ImageError, load_image, to_rgb

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
# Random access into a gzip stream is slow, so a compressed archive is decompressed once into
# memory; past this size, decompress it to a plain .tar on disk, which is read in place.
MAX_ARCHIVE_BYTES = 4 << 30
# The official CIFAR-10 label names (batches.meta), used when the meta file is absent.
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TORCHVISION_DATASETS = {  # name -> how its constructor takes the split
    "MNIST": "train",
    "FashionMNIST": "train",
    "KMNIST": "train",
    "CIFAR10": "train",
    "CIFAR100": "train",
    "SVHN": "split",
    "STL10": "split",
}


class DataError(ValueError):
    """A data set that cannot be used, with a one-line message meant for a person."""


# ---------------------------------------------------------------------------------------------
# The data set and its collate function


class ImageDataset(Dataset):
    """Samples of (image source, label), read by a `reader` and mapped by `transform`.

    `__getitem__(i)` returns `(transform(image), label)`, or `(None, label, message)` when the
    image cannot be used; `message` is one line, "<source>: <what is wrong>". Use
    `collate_skip` as the DataLoader's `collate_fn` to drop such samples and report them.
    The reader is a callable `source -> RGB PIL image` raising `ImageError`, with a
    `describe(source) -> str`; the default reads image files with `preprocess.load_image`.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Any, int]],
        classes: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        reader: Any = None,
        origin: str = "",
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.targets = [int(label) for _, label in self.samples]
        self.transform = transform
        self.reader = reader if reader is not None else FileReader()
        self.origin = origin
        if self.targets and not (min(self.targets) >= 0 and max(self.targets) < len(classes)):
            raise DataError(
                f"{origin or 'data set'}: labels must lie in 0..{len(classes) - 1} "
                f"(one per class), got {min(self.targets)}..{max(self.targets)}"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({len(self)} samples, {len(self.classes)} classes, "
            f"from {self.origin or '?'})"
        )

    def describe(self, i: int) -> str:
        """The name of sample i's source, as messages show it."""
        return self.reader.describe(self.samples[i][0])

    def load(self, i: int) -> Image.Image:
        """Sample i as an 8-bit RGB image; raises `ImageError` when it cannot be used."""
        try:
            return self.reader(self.samples[i][0])
        except ImageError:
            raise
        except Exception as e:  # Pillow's decoders raise struct.error, IndexError, ... on bad files
            raise ImageError(f"{self.describe(i)}: cannot decode ({type(e).__name__}: {e})") from e

    def __getitem__(self, i: int) -> tuple[Any, int] | tuple[None, int, str]:
        label = self.targets[i]
        try:
            image = self.load(i)
        except ImageError as e:
            return None, label, str(e)
        return (self.transform(image) if self.transform is not None else image), label

    def subset(self, indices: Sequence[int], origin: str | None = None) -> ImageDataset:
        """The samples at `indices`, sharing this data set's reader, classes and transform."""
        return ImageDataset(
            [self.samples[i] for i in indices],
            self.classes,
            self.transform,
            reader=self.reader,
            origin=self.origin if origin is None else origin,
        )


def collate_skip(batch: Sequence[tuple]) -> tuple[Tensor, Tensor, list[str]]:
    """Default-collate the good samples; the third item names the skipped ones.

    Each skipped sample contributes its one-line message ("<source>: <what is wrong>"). When
    every sample of the batch was skipped, the images and labels are empty tensors
    (`len(labels) == 0`) and the caller skips the step.
    """
    good = [sample for sample in batch if sample[0] is not None]
    skipped = [sample[2] for sample in batch if sample[0] is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, labels = default_collate(good)
    return images, labels, skipped


def stratified_split(
    targets: Sequence[int], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of (train, test): round(test_fraction * n) of each class's n samples to test.

    Deterministic for a seed (torch's generator, the same on every platform).
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(list(targets), dtype=torch.long)
    train: list[int] = []
    test: list[int] = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        k = round(len(members) * test_fraction)
        test += members[:k].tolist()
        train += members[k:].tolist()
    return sorted(train), sorted(test)


def check_splits(train: ImageDataset, test: ImageDataset) -> None:
    """DataError unless both splits have samples and the same classes in the same order."""
    for name, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise DataError(f"the {name} split is empty ({ds.origin or 'no source'})")
    if train.classes != test.classes:
        raise DataError(_class_difference("train", train.classes, "test", test.classes))


def _class_difference(name_a: str, a: Sequence[str], name_b: str, b: Sequence[str]) -> str:
    parts = []
    if only := sorted(set(a) - set(b)):
        parts.append(f"only in {name_a}: {_some(only)}")
    if only := sorted(set(b) - set(a)):
        parts.append(f"only in {name_b}: {_some(only)}")
    if not parts:
        parts.append("the same names in a different order, so the labels would not match")
    return f"{name_a} has {len(a)} classes, {name_b} has {len(b)}: " + "; ".join(parts)


def _some(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _match_classes(found: list[str], expected: Sequence[str] | None, where: str) -> list[str]:
    """The label order: `expected` when given (it must name the same classes), else `found`."""
    if expected is None:
        return found
    expected = list(expected)
    if sorted(found) != sorted(expected):
        raise DataError(_class_difference(where, found, "the expected class list", expected))
    return expected


def _check_split(split: str, kind: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"{kind} has the splits 'train' and 'test', got {split!r}")


# ---------------------------------------------------------------------------------------------
# Readers: source -> RGB PIL image


class FileReader:
    """Image files on disk, through `preprocess.load_image`."""

    def __call__(self, source: str) -> Image.Image:
        return load_image(source)

    def describe(self, source: str) -> str:
        return str(source)


class ArrayReader:
    """Images held in a uint8 array, N x H x W (grayscale) or N x H x W x 3 (RGB)."""

    def __init__(self, images: np.ndarray, name: str) -> None:
        self.images = images
        self.name = name

    def __call__(self, index: int) -> Image.Image:
        return to_rgb(Image.fromarray(self.images[index]))

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


def decode_image(data: bytes, name: str) -> Image.Image:
    """Image bytes as 8-bit RGB, with the checks of `preprocess.load_image` (same messages)."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = preprocess.MAX_IMAGE_PIXELS  # read now: tests lower the limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: not a readable image ({e})") from None


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _log_ignored(ignored: list[str], where: object) -> None:
    if ignored:
        logger.warning(
            "%s: ignored %d files that are not images by their extension, e.g. %s",
            where,
            len(ignored),
            _some(ignored, 3),
        )


# ---------------------------------------------------------------------------------------------
# ImageFolder trees


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
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    found = sorted(p.name for p in entries if p.is_dir())
    if not found:
        what = "it is empty" if not entries else f"found {len(entries)} files directly in it"
        raise DataError(f"{root}: no class folders, expected {root}/<class>/<image> ({what})")
    names = _match_classes(found, classes, str(root))
    samples: list[tuple[str, int]] = []
    ignored: list[str] = []
    for label, name in enumerate(names):
        files = _image_files(root / name, ignored)
        if not files:
            raise DataError(f"{root / name}: class folder without image files")
        samples += [(f, label) for f in files]
    _log_ignored(ignored, root)
    return ImageDataset(samples, names, transform, origin=str(root))


def _image_files(folder: Path, ignored: list[str]) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                path = os.path.join(dirpath, name)
                (found if _is_image_name(name) else ignored).append(path)
    return found


# ---------------------------------------------------------------------------------------------
# Tar archives, read in place


class TarMember(NamedTuple):
    name: str  # path inside the archive
    offset: int  # of the member's data in the (decompressed) tar stream
    size: int


class TarArchive:
    """A tar archive read in place: the reader of `tar_images`'s samples (`TarMember`s).

    A plain .tar is read from disk at each member's offset, through one file handle per
    process (each DataLoader worker opens its own on first use). A compressed one (.tar.gz,
    .tar.bz2, .tar.xz) is decompressed once into memory, because seeking in a gzip stream
    means decompressing from the start: forked workers share those pages; pickling (spawn,
    forkserver) sends only the path, and each worker decompresses on first use (~0.4 s for
    CIFAR-10's 19 MB).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compression = _compression(path)
        self._data: bytes | None = None
        self._members: list[TarMember] | None = None
        self._file: io.BufferedReader | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {"path": self.path, "compression": self.compression}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def members(self) -> list[TarMember]:
        """Every regular file in the archive, in archive order (indexed once)."""
        if self._members is None:
            self._members = self._index()
        return self._members

    def read(self, member: TarMember) -> bytes:
        if self.compression:
            return self._decompressed()[member.offset : member.offset + member.size]
        if self._pid != os.getpid():
            self._file = open(self.path, "rb")  # noqa: SIM115 (lives as long as the reader)
            self._pid = os.getpid()
        if hasattr(os, "pread"):  # no shared file position: safe from threads as well
            return os.pread(self._file.fileno(), member.size, member.offset)
        self._file.seek(member.offset)
        return self._file.read(member.size)

    def __call__(self, member: TarMember) -> Image.Image:
        return decode_image(self.read(member), self.describe(member))

    def describe(self, member: TarMember) -> str:
        return f"{self.path}:{member.name}"

    def _decompressed(self) -> bytes:
        if self._data is None:
            self._data = _decompress(self.path, self.compression)
        return self._data

    def _index(self) -> list[TarMember]:
        if self.compression:
            data = self._decompressed()
            members = scan_tar_headers(lambda offset, n: data[offset : offset + n])
        else:
            with open(self.path, "rb") as f:

                def read_at(offset: int, n: int) -> bytes:
                    f.seek(offset)
                    return f.read(n)

                members = scan_tar_headers(read_at)
        return members if members is not None else self._index_with_tarfile()

    def _index_with_tarfile(self) -> list[TarMember]:
        if self.compression:
            source = {"fileobj": io.BytesIO(self._decompressed())}
        else:
            source = {"name": self.path}
        try:
            with tarfile.open(mode="r:", **source) as tar:
                return [
                    TarMember(_member_name(m.name), m.offset_data, m.size)
                    for m in tar
                    if m.isfile()
                ]
        except tarfile.TarError as e:
            raise DataError(f"{self.path}: not a readable tar archive ({e})") from None


_MAGIC = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
_OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
# One TarArchive per file and process, shared by its splits while any data set uses it.
_ARCHIVES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _compression(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), "")


def _decompress(path: Path, kind: str) -> bytes:
    chunks, total = [], 0
    try:
        with _OPENERS[kind](path, "rb") as f:
            while chunk := f.read(1 << 24):
                total += len(chunk)
                if total > MAX_ARCHIVE_BYTES:
                    raise DataError(
                        f"{path}: over {MAX_ARCHIVE_BYTES >> 30} GiB decompressed; decompress it "
                        "once to a plain .tar (for example `gunzip -k`), which is read in place"
                    )
                chunks.append(chunk)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"{path}: damaged {kind} archive ({e})") from None
    return b"".join(chunks)


def _member_name(name: str) -> str:
    """Without "./", a leading "/" and doubled slashes."""
    parts = name.split("/")
    if "" in parts or "." in parts:
        return "/".join(p for p in parts if p not in ("", "."))
    return name


def scan_tar_headers(read_at: Callable[[int, int], bytes]) -> list[TarMember] | None:
    """The regular files of a tar stream, read from its 512-byte headers (POSIX ustar, GNU long
    names, pax records): about ten times faster than `tarfile`, which builds an object per
    member (an index of 60,000 members in well under a second). None when something unusual
    appears (a bad checksum, sparse files, base-256 sizes): `tarfile` then decides."""
    members: list[TarMember] = []
    headers: list[bytes] = []  # checksums are verified in batches, with numpy
    offset, long_name, pax = 0, b"", {}
    try:
        while True:
            block = read_at(offset, 512)
            if not block or (block[0] == 0 and not block.strip(b"\0")):  # end of archive
                return members if _checksums_ok(headers) else None
            if len(block) < 512 or block[124] & 0x80:
                return None
            headers.append(block)
            if len(headers) == 4096:
                if not _checksums_ok(headers):
                    return None
                headers.clear()
            kind, size, data = block[156:157], _octal(block[124:136]), offset + 512
            if kind == b"x":  # pax: records for the next member
                pax = _pax_records(read_at(data, size))
            elif kind == b"L":  # GNU: the next member's long name
                long_name = read_at(data, size).split(b"\0", 1)[0]
            elif kind == b"S":
                return None
            elif kind not in (b"g", b"K"):
                if kind in (b"0", b"\0", b"7"):  # regular (and contiguous) files
                    name = pax.get(b"path") or long_name or _header_name(block)
                    size = int(pax.get(b"size", size))
                    name = _member_name(name.decode("utf-8", "surrogateescape"))
                    members.append(TarMember(name, data, size))
                long_name, pax = b"", {}
            offset = data + (size + 511) // 512 * 512
    except ValueError:  # a malformed number or record
        return None


def _octal(field: bytes) -> int:
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _checksums_ok(headers: list[bytes]) -> bool:
    """Each header's checksum: the sum of its bytes, its checksum field counted as spaces."""
    if not headers:
        return True
    rows = np.frombuffer(b"".join(headers), dtype=np.uint8).reshape(-1, 512).astype(np.int64)
    computed = rows.sum(axis=1) - rows[:, 148:156].sum(axis=1) + 8 * ord(" ")
    return computed.tolist() == [_octal(h[148:156]) for h in headers]


def _header_name(block: bytes) -> bytes:
    name = block[:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\0":  # POSIX ustar: a prefix field extends the name
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """pax extended header: records "<length> <key>=<value>\\n"."""
    records, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


def _open_archive(path: Path) -> TarArchive:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    archive = _ARCHIVES.get(key)
    if archive is None:
        archive = _ARCHIVES[key] = TarArchive(path)
    return archive


def tar_images(
    archive: str | Path,
    split: str,
    transform: Callable | None = None,
    classes: Sequence[str] | None = None,
) -> ImageDataset:
    """The `<split>/<class>/<image>` members of a .tar or .tar.gz, read in place (no unpacking).

    The tree may sit inside one top-level folder (`cifar10/train/cat/0001.jpg`). Works with
    DataLoader workers; see `TarArchive` for how each process reads.
    """
    path = Path(archive)
    reader = _open_archive(path)
    by_class, ignored = _split_members(reader.members(), split, path)
    names = _match_classes(sorted(by_class), classes, f"{path}:{split}")
    samples = [
        (member, label)
        for label, name in enumerate(names)
        for member in sorted(by_class[name], key=lambda m: m.name)
    ]
    _log_ignored(ignored, f"{path}:{split}")
    return ImageDataset(samples, names, transform, reader=reader, origin=f"{path}:{split}")


def _split_members(
    members: list[TarMember], split: str, path: Path
) -> tuple[dict[str, list[TarMember]], list[str]]:
    """Group the members under `[top/]split/<class>/` by class."""
    found: dict[int, dict[tuple[str, ...], dict[str, list[TarMember]]]] = {0: {}, 1: {}}
    for member in members:
        parts = member.name.split("/")
        depth = 0 if parts[0] == split else 1 if len(parts) > 1 and parts[1] == split else -1
        if depth < 0 or len(parts) < depth + 3 or any(p.startswith(".") for p in parts):
            continue
        tree = found[depth].setdefault(tuple(parts[:depth]), {})
        tree.setdefault(parts[depth + 1], []).append(member)
    trees = found[0] or found[1]  # `split/` at the top wins over `top/split/`
    if len(trees) > 1:
        tops = sorted("/".join(top) for top in trees)
        raise DataError(f"{path}: several '{split}' folders ({_some(tops)}); keep one")
    if not trees:
        tops = sorted({m.name.split("/")[0] for m in members if "/" in m.name})
        raise DataError(
            f"{path}: no images under '{split}/<class>/' (top-level folders: {_some(tops) or '-'})"
        )
    by_class = next(iter(trees.values()))
    ignored = [m.name for ms in by_class.values() for m in ms if not _is_image_name(m.name)]
    by_class = {c: [m for m in ms if _is_image_name(m.name)] for c, ms in by_class.items()}
    if empty := sorted(c for c, ms in by_class.items() if not ms):
        raise DataError(f"{path}:{split}: class folders without image files: {_some(empty)}")
    return by_class, ignored


# ---------------------------------------------------------------------------------------------
# MNIST IDX files


_IDX_STEMS = {"train": "train", "test": "t10k"}


def _idx_path(folder: Path, split: str, kind: str) -> Path | None:
    """`train-images-idx3-ubyte[.gz]`, also spelt `train-images.idx3-ubyte`."""
    ndim = 3 if kind == "images" else 1
    for sep in ("-", "."):
        for ext in ("", ".gz"):
            path = folder / f"{_IDX_STEMS[split]}-{kind}{sep}idx{ndim}-ubyte{ext}"
            if path.is_file():
                return path
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format) as a uint8 array; gzip-compressed or not.

    Header: two zero bytes, the type (0x08: unsigned byte), the number of dimensions, then
    each size as a big-endian int32; MNIST's magic numbers 2051 (images) and 2049 (labels)
    are 0x0803 and 0x0801.
    """
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'none'})")
    dtype, ndim = raw[2], raw[3]
    if dtype != 0x08:
        raise DataError(f"{path}: IDX type 0x{dtype:02x}, only unsigned bytes (0x08) are read")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, but its header {dims} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def mnist_idx(folder: str | Path, split: str, transform: Callable | None = None) -> ImageDataset:
    """MNIST (or Fashion-/K-MNIST) in the official IDX files: `train-images-idx3-ubyte[.gz]`,
    `train-labels-idx1-ubyte[.gz]`, `t10k-images-...`, `t10k-labels-...`. Classes "0".."9"."""
    _check_split(split, "MNIST")
    folder = Path(folder)
    paths = {kind: _idx_path(folder, split, kind) for kind in ("images", "labels")}
    if missing := [kind for kind, path in paths.items() if path is None]:
        stem = _IDX_STEMS[split]
        raise DataError(
            f"{folder}: no MNIST {split} "
            + " or ".join(f"{stem}-{k}-idx{3 if k == 'images' else 1}-ubyte[.gz]" for k in missing)
        )
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"{folder}: expected images N x H x W (magic 2051) and labels N (magic 2049), "
            f"got {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    classes = [str(d) for d in range(max(10, int(labels.max(initial=0)) + 1))]
    samples = list(enumerate(labels.tolist()))
    reader = ArrayReader(images, str(paths["images"]))
    return ImageDataset(samples, classes, transform, reader=reader, origin=f"{folder}:{split}")


# ---------------------------------------------------------------------------------------------
# CIFAR python batches


def cifar_batches(
    folder: str | Path, split: str, transform: Callable | None = None
) -> ImageDataset:
    """CIFAR-10 (`data_batch_1`..`5`, `test_batch`, `batches.meta`) or CIFAR-100 (`train`,
    `test`, `meta`) in the official "python version" files, or the folder holding
    `cifar-10-batches-py/`. These files are pickles: they are read as the dataset's authors
    document, `pickle.load(f, encoding="bytes")`, with an unpickler that admits only the numpy
    array constructors they contain, so a tampered file cannot run code."""
    _check_split(split, "CIFAR")
    folder = Path(folder)
    for sub in ("cifar-10-batches-py", "cifar-100-python"):
        if (folder / sub).is_dir():
            folder = folder / sub
    if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key, meta_file, names_key = "labels", "batches.meta", "label_names"
    elif (folder / "meta").is_file():
        files, label_key, meta_file, names_key = [split], "fine_labels", "meta", "fine_label_names"
    else:
        raise DataError(f"{folder}: no CIFAR batches (data_batch_1..5 and test_batch)")
    images, labels = [], []
    for name in files:
        batch = _unpickle(folder / name)
        data = np.asarray(_field(batch, "data", folder / name), dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{folder / name}: data of shape {data.shape}, expected N x 3072")
        # each row: the 1024 red values, then green, then blue, each 32 x 32 row-major
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels += [int(label) for label in _field(batch, label_key, folder / name)]
    array = np.ascontiguousarray(np.concatenate(images))
    if len(array) != len(labels):
        raise DataError(f"{folder}: {len(array)} {split} images but {len(labels)} labels")
    classes = list(CIFAR10_CLASSES)
    if (folder / meta_file).is_file():
        meta = _unpickle(folder / meta_file)
        classes = [_text(n) for n in _field(meta, names_key, folder / meta_file)]
    samples = list(enumerate(labels))
    reader = ArrayReader(array, str(folder / files[0]))
    return ImageDataset(samples, classes, transform, reader=reader, origin=f"{folder}:{split}")


def _unpickle(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            return _NumpyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a CIFAR batch ({e})") from None


class _NumpyUnpickler(pickle.Unpickler):
    """`pickle.load(encoding="bytes")` that builds only numpy arrays and plain Python data."""

    _NUMPY = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> Any:
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # protocol 2 writes bytes this way
            return codecs.encode
        base, _, leaf = module.rpartition(".")
        if base in ("numpy.core", "numpy._core") and (leaf, name) in self._NUMPY:
            for real in ("numpy._core", "numpy.core"):  # the files predate numpy 2's rename
                try:
                    return getattr(importlib.import_module(f"{real}.{leaf}"), name)
                except (ImportError, AttributeError):
                    continue
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _field(batch: Any, key: str, path: Path) -> Any:
    if isinstance(batch, dict):
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
    raise DataError(f"{path}: no {key!r} entry, not a CIFAR batch")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# scikit-learn's digits and torchvision's data sets


def digits(
    split: str, transform: Callable | None = None, seed: int = 0, test_fraction: float = 0.2
) -> ImageDataset:
    """scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8 x 8 images,
    no download. A stratified `test_fraction` is 'test' (deterministic for a seed), the rest
    'train'. The 0..16 ink counts become 8-bit grayscale (x 255/16)."""
    _check_split(split, "digits")
    ink, labels = _digits_arrays()
    images = np.rint(ink * (255.0 / 16.0)).astype(np.uint8)
    targets = [int(t) for t in labels]
    everything = ImageDataset(
        list(enumerate(targets)),
        [str(d) for d in range(10)],
        transform,
        reader=ArrayReader(images, "digits"),
        origin="scikit-learn digits",
    )
    train, test = stratified_split(targets, test_fraction, seed)
    return everything.subset(train if split == "train" else test, f"scikit-learn digits:{split}")


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797 x 8 x 8 ink counts 0..16, labels), from scikit-learn's bundled digits.csv.gz.

    Read directly where scikit-learn keeps it: importing sklearn.datasets (SciPy and all) costs
    seconds at every start; `load_digits` is the fallback when the file is not there.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None:
        message = "the 'digits' data set needs scikit-learn: pip install scikit-learn"
        raise DataError(message)
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float64)  # 64 pixels, then label
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


class TorchvisionReader:
    """Images of a torchvision data set built without a transform."""

    def __init__(self, dataset: Any, name: str) -> None:
        self.dataset = dataset
        self.name = name

    def __call__(self, index: int) -> Image.Image:
        image = self.dataset[index][0]
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        return to_rgb(image)

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"


def torchvision_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: Callable | None = None,
    download: bool = False,
) -> ImageDataset:
    """One of torchvision's data sets (`TORCHVISION_DATASETS`), downloaded into `root` when
    `download` is true (needs internet)."""
    canonical = {n.lower(): n for n in TORCHVISION_DATASETS}.get(name.lower())
    if canonical is None:
        raise DataError(
            f"unknown torchvision data set {name!r}; known: {', '.join(TORCHVISION_DATASETS)}"
        )
    import torchvision.datasets

    if TORCHVISION_DATASETS[canonical] == "train":
        _check_split(split, canonical)
        kwargs = {"train": split == "train"}
    else:
        kwargs = {"split": split}
    try:
        dataset = getattr(torchvision.datasets, canonical)(str(root), download=download, **kwargs)
    except (RuntimeError, OSError) as e:
        hint = "" if download else "; pass download=True (needs internet) to fetch it"
        raise DataError(f"torchvision {canonical} under {root}: {e}{hint}") from None
    except ValueError as e:  # an unknown split
        raise DataError(f"torchvision {canonical}: {e}") from None
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if targets is None:
        targets = [label for _, label in dataset]
    targets = [int(t) for t in targets]
    classes = list(getattr(dataset, "classes", [])) or [str(c) for c in range(max(targets) + 1)]
    return ImageDataset(
        list(enumerate(targets)),
        classes,
        transform,
        reader=TorchvisionReader(dataset, f"torchvision {canonical}:{split}"),
        origin=f"torchvision {canonical} {root}:{split}",
    )


# ---------------------------------------------------------------------------------------------
# One entry point


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
            if _compression(path) or tarfile.is_tarfile(path):
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
            _class_difference(dataset.origin, dataset.classes, "the expected list", classes)
        )
    return dataset


_SPLIT_FOLDERS = ("train", "test", "val", "valid", "validation")


def _open_folder(
    path: Path, split: str, transform: Callable | None, classes: Sequence[str] | None
) -> ImageDataset:
    if _idx_path(path, "train", "images") or _idx_path(path, "test", "images"):
        return mnist_idx(path, split, transform)
    markers = ("data_batch_1", "test_batch", "cifar-10-batches-py", "cifar-100-python")
    if any((path / m).exists() for m in markers) or (path / "meta").is_file():
        return cifar_batches(path, split, transform)
    if (path / split).is_dir():
        return image_folder(path / split, transform, classes)
    if present := [s for s in _SPLIT_FOLDERS if (path / s).is_dir()]:
        raise DataError(f"{path}: no '{split}' folder (found: {', '.join(present)})")
    _check_split(split, f"{path} (a flat class tree)")
    everything = image_folder(path, transform, classes)
    train, test = stratified_split(everything.targets, 0.2, seed=0)
    logger.info("%s: no train/test folders; holding out a stratified fifth as 'test'", path)
    return everything.subset(train if split == "train" else test, f"{path}:{split}")
