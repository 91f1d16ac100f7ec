"""Class maps: which of a model's classes a folder or a file name means, decided by identity.

A data set names its classes in its own way: ImageNet trees by WordNet id (`n01440764/`),
others by name (`tench/`, `great_white_shark/`), some by index (`0/`). A `ClassMap` holds a
model's class list (names, and WordNet ids where known) and resolves each of those spellings to
the model's class index, never by the position of a folder in a listing. A name that is
unknown or that fits several classes is a `DataError` naming the closest classes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from torchvision.models._meta import _IMAGENET_CATEGORIES

from ...errors import DataError

WNID = re.compile(r"n\d{8}")
_WNID_PREFIX = re.compile(r"^(n\d{8})(?:[_.\-\s]|$)")


@cache
def _imagenet_ids() -> tuple[str, ...]:
    return tuple(resources.files(__package__).joinpath("imagenet_wnids.txt").read_text().split())


def imagenet_class_ids() -> list[str]:
    """The WordNet ids of the 1,000 ImageNet-1k classes in the standard class order."""
    return list(_imagenet_ids())


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in the standard order (torchvision ships them, with
    the two cranes and the two maillots named apart)."""
    return list(_IMAGENET_CATEGORIES)


@cache
def _imagenet_names_by_id() -> dict[str, str]:
    return dict(zip(_imagenet_ids(), _IMAGENET_CATEGORIES, strict=True))


def imagenet_names_of(ids: Sequence[str]) -> list[str] | None:
    """ImageNet-1k's names for `ids` when every one is one of its WordNet ids, else None."""
    known = _imagenet_names_by_id()
    if not ids or not all(i in known for i in ids):
        return None
    return [known[i] for i in ids]


def wnid_prefix(name: str) -> str | None:
    """The WordNet id a file name starts with (`n01440764_tench.JPEG`, `n01440764_10026.JPEG`)."""
    found = _WNID_PREFIX.match(name)
    return found.group(1) if found else None


def _spaced(name: str) -> str:
    return re.sub(r"[_\s]+", " ", name).strip()


def _folded(name: str) -> str:
    return re.sub(r"[_\-\s]+", " ", name).strip().casefold()


@dataclass(frozen=True)
class ClassMap:
    """A model's classes: `names[i]` and, where known, the WordNet id `ids[i]` of class i."""

    names: tuple[str, ...]
    ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "ids", tuple(self.ids))
        if self.ids and len(self.ids) != len(self.names):
            raise DataError(
                f"{len(self.ids)} class ids for {len(self.names)} class names; give one per class"
            )
        index = {
            "id": _group(self.ids),
            "name": _group(_spaced(n) for n in self.names),
            "folded": _group(_folded(n) for n in self.names),
        }
        object.__setattr__(self, "_index", index)

    @classmethod
    def of(cls, names: Sequence[str], ids: Sequence[str] = (), num_classes: int = 0) -> ClassMap:
        """The map for a class list; indices stand for names when there are none, and the
        ImageNet-1k names bring their WordNet ids when `ids` is empty."""
        names = tuple(names) or tuple(str(i) for i in range(num_classes))
        ids = tuple(ids)
        if not ids and names == tuple(_IMAGENET_CATEGORIES):
            ids = _imagenet_ids()
        return cls(names, ids)

    @classmethod
    def for_card(cls, card) -> ClassMap:
        """The classes of a weights card (`class_names`, `class_ids`, `num_classes`)."""
        return cls.of(card.class_names, card.class_ids, card.num_classes)

    def __len__(self) -> int:
        return len(self.names)

    def describe(self, i: int) -> str:
        wnid = f" ({self.ids[i]})" if self.ids else ""
        return f"{i} {self.names[i]!r}{wnid}"

    def resolve(self, token: str, where: str = "") -> int:
        """The index of the class `token` names: a WordNet id, a class name (exact, then with
        `_`/spaces and case ignored when that fits one class only) or an index."""
        found = self.lookup(token)
        if len(found) == 1:
            return found[0]
        at = f"{where}: " if where else ""
        if found:
            fits = ", ".join(self.describe(i) for i in found[:5])
            raise DataError(
                f"{at}{token!r} fits several classes ({fits}); "
                "name the folder by its exact class name or its WordNet id"
            )
        raise DataError(f"{at}{token!r} is not one of the {len(self)} classes; {self._hint(token)}")

    def lookup(self, token: str) -> list[int]:
        """Every class `token` could mean (one when it is unambiguous, none when unknown)."""
        if self.ids and WNID.fullmatch(token):
            return list(self._index["id"].get(token, ()))
        exact = self._index["name"].get(_spaced(token), [])
        if exact:
            return list(exact)
        folded = self._index["folded"].get(_folded(token), [])
        if folded:
            return list(folded)
        if token.isdigit() and int(token) < len(self):
            return [int(token)]
        return []

    def resolve_all(self, tokens: Sequence[str], where: str) -> dict[str, int]:
        """Every token resolved (the first problem raised); two tokens that mean the same class
        are a `DataError` too, since their images would be counted as one class."""
        resolved = {t: self.resolve(t, f"{where}/{t}") for t in tokens}
        seen: dict[int, str] = {}
        for token, index in resolved.items():
            if index in seen:
                raise DataError(
                    f"{where}: {seen[index]!r} and {token!r} both mean class "
                    f"{self.describe(index)}; keep one folder per class"
                )
            seen[index] = token
        return resolved

    def _hint(self, token: str) -> str:
        spellings = {_folded(n): i for i, n in enumerate(self.names)}
        close = difflib.get_close_matches(_folded(token), list(spellings), n=3, cutoff=0.6)
        if self.ids and WNID.fullmatch(token):
            close = difflib.get_close_matches(token, list(self.ids), n=3, cutoff=0.8)
            spellings = {w: i for i, w in enumerate(self.ids)}
        kinds = "a WordNet id, a class name" if self.ids else "a class name"
        expected = f"expected {kinds} or an index 0..{len(self) - 1}"
        if not close:
            return expected
        return f"{expected}; closest: " + ", ".join(self.describe(spellings[c]) for c in close)


def _group(keys) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


@cache
def imagenet_classes() -> ClassMap:
    """ImageNet-1k's 1,000 classes, names and WordNet ids, in the standard order."""
    return ClassMap(imagenet_class_names(), imagenet_class_ids())


def data_classes(names: Sequence[str], where: str) -> ClassMap:
    """A data set's own classes (folder names, say) with their WordNet ids where they are
    ImageNet-1k's: every name a WordNet id, or at least half of them ImageNet class names,
    each of which must then resolve the way `eval` resolves it against an ImageNet model (a
    `DataError` for `tenchh`). Names given as indices are not taken for ImageNet's."""
    names = list(names)
    if names and all(wnid_prefix(n) == n for n in names):
        return ClassMap(names, names)
    imagenet = imagenet_classes()
    known = [n for n in names if not n.isdigit() and len(imagenet.lookup(n)) == 1]
    if not names or 2 * len(known) < len(names):
        return ClassMap(names)
    index = imagenet.resolve_all(names, where)
    return ClassMap(names, [imagenet.ids[index[n]] for n in names])
