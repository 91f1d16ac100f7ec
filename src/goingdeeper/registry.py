"""One registry of models: list them, create one by name, read its card."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache

import torch
from torch import nn

from .preprocess import IMAGENET_RGB, Preprocessing


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is for people
        return str(self.args[0])


@dataclass(frozen=True)
class ModelCard:
    """What a model is: its paper, its default input, what its weights expect, what it costs."""

    name: str
    family: str
    title: str  # the paper
    authors: str
    year: int
    arxiv: str
    input_size: int = 224
    num_classes: int = 1000
    preprocessing: Preprocessing = IMAGENET_RGB
    summary: str = ""
    deviations: tuple[str, ...] = field(default=())
    top5_error: str = ""  # as the paper reports it, with its protocol
    params: int | None = None  # filled by model_card(): at input_size, default kwargs
    macs: int | None = None
    depth: int | None = None  # layers with weights along the longest path

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
            "params": self.params,
            "macs": self.macs,
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


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (registers the builders on import)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in registration order."""
    _ensure_loaded()
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "run `goingdeeper models` for the list"
        )
        raise UnknownModelError(f"unknown model {name!r}: {hint}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its constructor."""
    entry = _entry(name)
    try:
        return entry.builder(**kwargs)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None


@cache
def model_card(name: str) -> ModelCard:
    """The model's card, with its parameter and MAC counts at its default input size."""
    from .analysis import summarize

    entry = _entry(name)
    # counting needs shapes, not values: build on the meta device (VGG would take seconds),
    # and without moving anybody's random numbers
    with torch.random.fork_rng(), torch.device("meta"):
        model = entry.builder(aux_logits=False) if _takes_aux(entry) else entry.builder()
    summary = summarize(model, entry.card.input_size, name=name)
    depth = sum(row.depth for row in summary.rows)
    return replace(entry.card, params=summary.total_params, macs=summary.total_macs, depth=depth)


def _takes_aux(entry: _Entry) -> bool:
    return entry.card.family == "GoogLeNet"
