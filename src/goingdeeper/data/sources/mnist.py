"""MNIST (and Fashion-/K-MNIST) in LeCun's official IDX files."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import DataError
from .dataset import ArrayReader, ImageDataset
from .splits import check_split

_IDX_STEMS = {"train": "train", "test": "t10k"}
MAX_IDX_BYTES = 1 << 32  # MNIST's largest file holds 47 MB


def idx_path(folder: Path, split: str, kind: str) -> Path | None:
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
            dims = _idx_header(f, path)
            size = int(np.prod(dims))
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: its header {dims} declares over {MAX_IDX_BYTES:,} bytes")
            raw = f.read(size)  # what the header declares and no more, however the file grows
            more = f.read(1)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) != size or more:
        what = f"{len(raw):,} bytes" if len(raw) != size else "more bytes"
        raise DataError(f"{path}: its header {dims} needs {size:,} bytes of data, found {what}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _idx_header(f: BinaryIO, path: Path) -> tuple[int, ...]:
    head = f.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number {head.hex() or 'none'})")
    dtype, ndim = head[2], head[3]
    if dtype != 0x08:
        raise DataError(f"{path}: IDX type 0x{dtype:02x}, only unsigned bytes (0x08) are read")
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    return struct.unpack(f">{ndim}I", sizes)


def mnist_idx(folder: str | Path, split: str, transform: Callable | None = None) -> ImageDataset:
    """MNIST (or Fashion-/K-MNIST) in the official IDX files: `train-images-idx3-ubyte[.gz]`,
    `train-labels-idx1-ubyte[.gz]`, `t10k-images-...`, `t10k-labels-...`. Classes "0".."9"."""
    check_split(split, "MNIST")
    folder = Path(folder)
    paths = {kind: idx_path(folder, split, kind) for kind in ("images", "labels")}
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
