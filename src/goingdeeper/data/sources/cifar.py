"""CIFAR-10 and CIFAR-100 in their authors' "python version" batches, read without running
any pickled code."""

from __future__ import annotations

import codecs
import importlib
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .dataset import ArrayReader, ImageDataset
from .splits import check_split

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


def cifar_batches(
    folder: str | Path, split: str, transform: Callable | None = None
) -> ImageDataset:
    """CIFAR-10 (`data_batch_1`..`5`, `test_batch`, `batches.meta`) or CIFAR-100 (`train`,
    `test`, `meta`) in the official "python version" files, or the folder holding
    `cifar-10-batches-py/`. These files are pickles: they are read as the dataset's authors
    document, `pickle.load(f, encoding="bytes")`, with an unpickler that admits only the numpy
    array constructors they contain, so a tampered file cannot run code."""
    check_split(split, "CIFAR")
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


class _Array(np.ndarray):
    """An ndarray as numpy pickles one, its state checked before it is set: a shape larger
    than the bytes that come with it is refused, never allocated."""

    def __setstate__(self, state: tuple) -> None:
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not (isinstance(dtype, np.dtype) and isinstance(data, bytes | bytearray)):
            raise pickle.UnpicklingError("an array that is not one of plain numbers")
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise pickle.UnpicklingError(f"an array of shape {shape}")
        if math.prod(shape) * dtype.itemsize != len(data):
            raise pickle.UnpicklingError(
                f"an array of shape {tuple(shape)} stored in {len(data):,} bytes"
            )
        super().__setstate__(state)


def _reconstruct(cls: type, shape: tuple, dtype: Any) -> np.ndarray:
    """numpy's `_reconstruct`, which pickles write with an empty shape; its shape is set by
    the state that follows (checked by `_Array`), never allocated from the pickle's word."""
    if not (
        isinstance(shape, tuple) and math.prod(n if isinstance(n, int) else 1 for n in shape) == 0
    ):
        raise pickle.UnpicklingError(f"an array pickled with the shape {shape!r}")
    return np.ndarray.__new__(_Array, (0,), dtype)


class _NumpyUnpickler(pickle.Unpickler):
    """`pickle.load(encoding="bytes")` that builds only numpy arrays and plain Python data."""

    _NUMPY = {("multiarray", "scalar"), ("numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> Any:
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _reconstruct
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
