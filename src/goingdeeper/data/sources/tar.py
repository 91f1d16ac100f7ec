"""Tar archives of `<split>/<class>/<image>` trees, read in place (no unpacking)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import mmap
import os
import tarfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ...errors import DataError
from ...images import OpenedImage, decode_image, is_image_name, open_encoded
from .dataset import ImageDataset
from .splits import SPLIT_NAMES, log_ignored, match_classes, some

# Random access into a gzip stream is slow, so a compressed archive is decompressed once into
# memory; past this size, decompress it to a plain .tar on disk, which is read in place.
MAX_ARCHIVE_BYTES = 4 << 30
# Images barely compress (JPEG, PNG), raw pixel arrays a few times; a stream that grows more
# than this (plus a margin for small archives) is a decompression bomb, stopped as it grows.
MAX_EXPANSION = 20
_EXPANSION_MARGIN = 64 << 20


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
        self.compression = compression(path)
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

    def encoded(self, member: TarMember) -> bytes:
        """The image's bytes as stored, for a decoder of its own (`data.pipelines.tensor`)."""
        return self.read(member)

    def open(self, member: TarMember) -> OpenedImage:
        return open_encoded(self.read(member), self.describe(member))

    def _decompressed(self) -> mmap.mmap:
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


def compression(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), "")


def _decompress(path: Path, kind: str) -> mmap.mmap:
    """The whole decompressed stream, in anonymous memory that forked workers share. Stopped
    as soon as it outgrows `MAX_ARCHIVE_BYTES` or `MAX_EXPANSION` times the file, whatever the
    archive declares; the chunks are moved into place one by one, so the archive is never held
    twice."""
    limit = min(MAX_ARCHIVE_BYTES, MAX_EXPANSION * path.stat().st_size + _EXPANSION_MARGIN)
    chunks, total = [], 0
    try:
        with _OPENERS[kind](path, "rb") as f:
            while chunk := f.read(1 << 24):
                total += len(chunk)
                if total > limit:
                    raise DataError(_too_large(path, limit))
                chunks.append(chunk)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"{path}: damaged {kind} archive ({e})") from None
    data = mmap.mmap(-1, max(total, 1))
    for i in range(len(chunks)):
        data.write(chunks[i])
        chunks[i] = b""
    return data


def _too_large(path: Path, limit: int) -> str:
    what = (
        f"over {MAX_ARCHIVE_BYTES >> 30} GiB"
        if limit == MAX_ARCHIVE_BYTES
        else f"more than {MAX_EXPANSION} times its {path.stat().st_size:,} bytes (a "
        "decompression bomb?)"
    )
    return (
        f"{path}: decompresses to {what}; if it is real data, decompress it once to a plain "
        ".tar (for example `gunzip -k`), which is read in place"
    )


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
                    if size < 0:
                        raise ValueError(f"a member of {size} bytes")
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
        if length <= space - pos:  # a record holds its own length: it would not move on
            raise ValueError(f"a pax record of length {length}")
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
    names = match_classes(sorted(by_class), classes, f"{path}:{split}")
    samples = [
        (member, label)
        for label, name in enumerate(names)
        for member in sorted(by_class[name], key=lambda m: m.name)
    ]
    log_ignored(ignored, f"{path}:{split}")
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
        raise DataError(f"{path}: several '{split}' folders ({some(tops)}); keep one")
    if not trees:
        tops = sorted({m.name.split("/")[0] for m in members if "/" in m.name})
        raise DataError(
            f"{path}: no images under '{split}/<class>/' (top-level folders: {some(tops) or '-'})"
        )
    by_class = next(iter(trees.values()))
    ignored = [m.name for ms in by_class.values() for m in ms if not is_image_name(m.name)]
    by_class = {c: [m for m in ms if is_image_name(m.name)] for c, ms in by_class.items()}
    if empty := sorted(c for c, ms in by_class.items() if not ms):
        raise DataError(f"{path}:{split}: class folders without image files: {some(empty)}")
    return by_class, ignored


def tar_splits(archive: str | Path) -> tuple[str, ...]:
    """The splits a .tar holds: the folders `[top/]<split>/` named like splits (train, test,
    val, valid, validation), in that order."""
    path = Path(archive)
    named = set()
    for member in _open_archive(path).members():
        parts = member.name.split("/")
        named.update(parts[depth] for depth in (0, 1) if len(parts) >= depth + 3)
    splits = tuple(s for s in SPLIT_NAMES if s in named)
    if not splits:
        raise DataError(
            f"{path}: no '<split>/<class>/<image>' members (splits: {', '.join(SPLIT_NAMES)})"
        )
    return splits
