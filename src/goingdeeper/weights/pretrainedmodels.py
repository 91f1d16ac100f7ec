"""Cadene's `pretrainedmodels` weights for the architectures it shares with us.

`import_pretrainedmodels(source)` reads a model, its state dict, or a .pth file of one (what
the package downloads: `bn_inception-52deb4733.pth`), finds the architecture from the tensors
(`from_pretrainedmodels` in bn_inception.py says how its keys read in ours), loads it checked
and writes the card. Its `bninception`, a port of a Caffe BN-Inception, is covered: it takes
BGR 0-255 input minus (104, 117, 128), 224 crops, as the package's settings state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn

from ..models import bn_inception
from ..models.base import ImportedState
from ..preprocess import Preprocessing
from .format import WeightsCard
from .loading import load_checked, read_state_dict, recognise_state

ARCHITECTURES: list[Callable[[dict[str, Tensor]], ImportedState | None]] = [
    bn_inception.from_pretrainedmodels,
]


def recognise_pretrainedmodels(state: dict[str, Tensor]) -> ImportedState:
    """Which registered model a pretrainedmodels state dict is for, with its keys made ours."""
    return recognise_state(state, ARCHITECTURES, "pretrainedmodels state dict of bninception")


def import_pretrainedmodels(
    source: str | Path | nn.Module | dict,
    *,
    preprocessing: Preprocessing | None = None,
) -> tuple[nn.Module, WeightsCard]:
    """Load pretrainedmodels weights (a model, a state dict, or a .pth file of one) into the
    registered model the tensors fit; return it in eval mode with its card.
    `preprocessing`: the input transform, when not the one the package states."""
    state, origin = read_state_dict(source, "pretrainedmodels")
    found = recognise_pretrainedmodels(state)
    model = load_checked(found.model, found.kwargs, found.state)
    card = WeightsCard.imported(
        found.model,
        found.kwargs,
        preprocessing or found.preprocessing,
        {"source": origin, "origin": f"pretrainedmodels {found.source}", "notes": []},
    )
    return model, card
