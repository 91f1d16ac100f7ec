"""One registry of models: list them, build one by name, read its card.

A leaf of the package: it imports nothing of it but its errors. The model files register
their builders when `goingdeeper.models` is imported, which `import goingdeeper` does first.
A card holds what the paper and the model file declare; `goingdeeper.analysis.model_costs`
counts the parameters and multiply-adds; `goingdeeper.create_model` adds weights, feature maps
and the pretrained config to what `build_model` builds.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ModelArgumentError, UnknownModelError
from .limits import MAX_CLASSES, Limit

_FRACTION = Limit(0, 1, high_open=True)
# Constructor arguments that several models share, bounded by what they mean and checked
# before anything is allocated: a 5,000,000-way head takes 20 GB, a dropout of 2 flips signs.
ARGUMENT_LIMITS = {
    "num_classes": Limit(1, MAX_CLASSES),
    "in_channels": Limit(1, 64),
    "input_size": Limit(8, 4096),
    "fc_width": Limit(1, 65_536),
    "dropout": _FRACTION,
    "aux_dropout": _FRACTION,
    "drop_rate": _FRACTION,
    "bn_eps": Limit(0, 1, low_open=True),
    "growth_rate": Limit(1, 1024),
    "bn_size": Limit(1, 64),
    "compression": Limit(0, 1, low_open=True),
    "reduction": Limit(1, 4096),
}
# What a value of each declared type must be (bool is not a number here, nor a number a bool).
_TYPES: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: (
        "a finite number",
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    ),
    str: ("a string", lambda v: isinstance(v, str)),
}


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """What a model is: its paper, its default input, what its weights expect, what it has."""

    name: str
    family: str
    title: str  # the paper
    authors: str
    year: int
    arxiv: str
    preprocessing: Any  # a goingdeeper.preprocess.Preprocessing: the input the model expects
    input_size: int = 224
    num_classes: int = 1000
    summary: str = ""
    deviations: tuple[str, ...] = field(default=())
    top5_error: str = ""  # as the paper reports it, with its protocol
    # what the builder takes besides num_classes, declared rather than guessed from the name:
    has_aux: bool = False  # training-only aux heads, switched by `aux_logits`
    takes_input_size: bool = False  # `input_size`: the training input the heads are sized for

    @property
    def pretrained_cfg(self) -> dict:
        """The card in the keys of timm's `pretrained_cfg`: the input transform, the classes,
        the paper; `create_model` puts it on the model as `model.pretrained_cfg`."""
        return {
            "architecture": self.name,
            **self.preprocessing.data_config(),
            "num_classes": self.num_classes,
            "paper_ids": f"arXiv:{self.arxiv}" if self.arxiv else "",
        }

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "paper": self.title,
            "authors": self.authors,
            "year": self.year,
            "arxiv": self.arxiv,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "preprocessing": self.preprocessing.to_dict(),
            "summary": self.summary,
            "deviations": list(self.deviations),
            "top5_error": self.top5_error,
            "has_aux": self.has_aux,
            "takes_input_size": self.takes_input_size,
        }


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    card: ModelCard


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    card: ModelCard,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder `fn(**kwargs) -> nn.Module` under `card.name`."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} is registered twice")
        _REGISTRY[card.name] = _Entry(fn, card)
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in registration order."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "run `goingdeeper models` for the list"
        )
        raise UnknownModelError(f"unknown model {name!r}: {hint}")
    return _REGISTRY[name]


def model_card(name: str) -> ModelCard:
    """The card the model file declares for `name`."""
    return _entry(name).card


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its constructor. (With
    weights, feature maps or a pretrained config: `goingdeeper.create_model`.)

    Arguments that do not bind to the builder (an unknown keyword, a value given twice) are a
    `ModelArgumentError`; a TypeError raised inside the model's code is a bug and stays one.
    """
    entry = _entry(name)
    check_arguments(name, kwargs)
    try:
        return entry.builder(**kwargs)
    except TypeError as e:
        if _raised_in(e, entry.builder, build_model):  # the call's arguments did not bind
            raise ModelArgumentError(f"{name}: {e}") from None
        raise


def check_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """A `ModelArgumentError` for the first argument whose type is not the one the model
    declares (its builder's annotations, then its class's) or whose value lies outside
    `ARGUMENT_LIMITS`. Names the model does not take are left to the call, which refuses them."""
    declared = _declared_types(_entry(name).builder)
    for key, value in kwargs.items():
        if key not in declared:
            continue
        kind = declared[key]
        if kind in _TYPES and not _TYPES[kind][1](value):
            raise ModelArgumentError(f"{name}: {key} expects {_TYPES[kind][0]}, got {value!r}")
        limit = ARGUMENT_LIMITS.get(key)
        if limit is not None and not limit.allows(value):
            raise ModelArgumentError(f"{name}: {key} must lie in {limit}, got {value!r}")


@functools.cache
def _declared_types(builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """The keyword types a builder declares, with those of the class it returns beneath (a
    builder can be a class, or a `functools.partial` of one)."""
    target = builder.func if isinstance(builder, functools.partial) else builder
    own = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    returned = own.pop("return", None)
    declared = typing.get_type_hints(returned.__init__) if isinstance(returned, type) else {}
    return {**declared, **own}


def build_shell(name: str, **kwargs) -> nn.Module:
    """A registered model without storage, on the meta device, built without moving the global
    random state: what counting, map shapes and key checks need (VGG-16 builds in no time)."""
    with torch.random.fork_rng(), torch.device("meta"):
        return build_model(name, **kwargs)


def _raised_in(error: BaseException, *functions: Callable) -> bool:
    """Whether `error` was raised by one of `functions` themselves (its innermost frame), as
    Python does when the arguments of a call they make do not bind."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    codes = {getattr(f, "__code__", None) for f in functions}  # a partial has none
    return tb is not None and tb.tb_frame.f_code in codes
