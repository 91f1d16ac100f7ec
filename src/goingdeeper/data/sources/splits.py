"""Splits and class lists: a stratified hold-out, the checks two splits must pass, and
indices spread over a set."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ...errors import DataError

logger = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")  # folder names a split goes by


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


def check_splits(train, test) -> None:
    """DataError unless both splits have samples and the same classes in the same order."""
    for name, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise DataError(f"the {name} split is empty ({ds.origin or 'no source'})")
    if train.classes != test.classes:
        raise DataError(class_difference("train", train.classes, "test", test.classes))


def class_difference(name_a: str, a: Sequence[str], name_b: str, b: Sequence[str]) -> str:
    parts = []
    if only := sorted(set(a) - set(b)):
        parts.append(f"only in {name_a}: {some(only)}")
    if only := sorted(set(b) - set(a)):
        parts.append(f"only in {name_b}: {some(only)}")
    if not parts:
        parts.append("the same names in a different order, so the labels would not match")
    return f"{name_a} has {len(a)} classes, {name_b} has {len(b)}: " + "; ".join(parts)


def some(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def match_classes(found: list[str], expected: Sequence[str] | None, where: str) -> list[str]:
    """The label order: `expected` when given (it must name the same classes), else `found`."""
    if expected is None:
        return found
    expected = list(expected)
    if sorted(found) != sorted(expected):
        raise DataError(class_difference(where, found, "the expected class list", expected))
    return expected


def check_split(split: str, kind: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"{kind} has the splits 'train' and 'test', got {split!r}")


def spread(n: int, total: int) -> list[int]:
    """n indices spread evenly over range(total): folders and archives list their samples class
    by class, so the first n would hold only the first classes."""
    if n >= total:
        return list(range(total))
    return [i * total // n for i in range(n)]


def log_ignored(ignored: list[str], where: object) -> None:
    if ignored:
        logger.warning(
            "%s: ignored %d files that are not images by their extension, e.g. %s",
            where,
            len(ignored),
            some(ignored, 3),
        )
