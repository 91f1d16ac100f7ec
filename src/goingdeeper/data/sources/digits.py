"""scikit-learn's bundled handwritten digits: the data set that needs no download."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import DataError
from .dataset import ArrayReader, ImageDataset
from .splits import check_split, stratified_split


def digits(
    split: str, transform: Callable | None = None, seed: int = 0, test_fraction: float = 0.2
) -> ImageDataset:
    """scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8 x 8 images,
    no download. A stratified `test_fraction` is 'test' (deterministic for a seed), the rest
    'train'. The 0..16 ink counts become 8-bit grayscale (x 255/16)."""
    check_split(split, "digits")
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
