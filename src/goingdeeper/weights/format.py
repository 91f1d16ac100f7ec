"""Our weights format: a safetensors file and a JSON card that says how to use it.

`NAME.safetensors` holds the tensors; its header metadata holds the card too, so the file is
complete on its own. `NAME.json` beside it is the same card for people to read. Loading parses
JSON and raw tensors only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..data.imagenet.classes import imagenet_class_ids, imagenet_class_names
from ..errors import GoingDeeperError, WeightsError
from ..files import atomic_write
from ..limits import MAX_CLASSES
from ..preprocess import Preprocessing
from .loading import load_checked

FORMAT = "goingdeeper.weights/1"
CARD_KEY = "goingdeeper.card"


@dataclass
class WeightsCard:
    model: str  # registry name
    model_kwargs: dict = field(default_factory=dict)
    num_classes: int = 1000
    class_names: list[str] = field(default_factory=list)
    class_ids: list[str] = field(default_factory=list)  # WordNet ids, where the classes have them
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    provenance: dict = field(default_factory=dict)  # source, converter, date, notes
    metrics: dict = field(default_factory=dict)
    # the shorter side S of the training images, in pixels: [S] for a fixed S, [S_min, S_max]
    # for VGG's scale jittering; [] when not known or not one scale (random-sized crops).
    # VGG's dense evaluation takes its test scales from it (sections 4.1-4.2).
    training_scale: list[int] = field(default_factory=list)
    format: str = FORMAT

    @classmethod
    def imported(
        cls, model: str, kwargs: dict, preprocessing: Preprocessing, provenance: dict
    ) -> WeightsCard:
        """The card of weights imported from another project: ImageNet's class names and
        WordNet ids when the head has 1000 outputs (none otherwise)."""
        num_classes = kwargs.get("num_classes", 1000)
        imagenet = num_classes == 1000
        return cls(
            model=model,
            model_kwargs=dict(kwargs),
            num_classes=num_classes,
            class_names=imagenet_class_names() if imagenet else [],
            class_ids=imagenet_class_ids() if imagenet else [],
            preprocessing=preprocessing,
            provenance=provenance,
        )

    @property
    def pretrained_cfg(self) -> dict:
        """These weights in the keys of timm's `pretrained_cfg`: the input transform they
        expect, their classes and names, where they come from."""
        return {
            "architecture": self.model,
            **self.preprocessing.data_config(),
            "num_classes": self.num_classes,
            "label_names": list(self.class_names),
            "source": self.provenance.get("origin", self.provenance.get("source", "")),
            "license": self.provenance.get("license", ""),
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        return d

    def __post_init__(self) -> None:
        n = self.num_classes
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES:
            raise WeightsError(f"num_classes must be from 1 to {MAX_CLASSES:,}, got {n!r}")
        for key in ("class_names", "class_ids"):
            values = getattr(self, key)
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
                raise WeightsError(f"{key} must be a list of strings")
            if values and len(values) != n:
                raise WeightsError(
                    f"{len(values)} {key} for {n} outputs; give one per class (or none)"
                )
        scale = self.training_scale
        whole = isinstance(scale, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in scale
        )
        if not whole or len(scale) > 2 or list(scale) != sorted(scale):
            raise WeightsError(
                f"training_scale must be [], [S] or [S_min, S_max] in pixels, got {scale!r}"
            )
        if not isinstance(self.model_kwargs, dict):
            raise WeightsError(f"model_kwargs must be a table, got {self.model_kwargs!r}")
        if self.model_kwargs.get("num_classes", n) != n:
            raise WeightsError(
                f"model_kwargs num_classes={self.model_kwargs['num_classes']!r} but the card "
                f"has {n} classes"
            )

    @classmethod
    def from_dict(cls, d: dict) -> WeightsCard:
        if not isinstance(d, dict):
            raise WeightsError("a weights card is a JSON object")
        d = dict(d)
        if d.get("format") != FORMAT:
            raise WeightsError(
                f"unknown weights card format {d.get('format')!r}; expected {FORMAT}"
            )
        known = {f.name for f in fields(cls)}
        if missing := [k for k in ("model", "preprocessing") if k not in d]:
            raise WeightsError(f"the weights card has no {missing[0]!r}")
        if unknown := sorted(set(d) - known):
            raise WeightsError(f"the weights card has unknown field(s) {', '.join(unknown)}")
        d["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
        return cls(**d)


def card_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def weights_path(path: str | Path) -> Path:
    """The file `save_weights` writes for `path`: its name with the .safetensors suffix."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")


def save_weights(model: nn.Module, card: WeightsCard, path: str | Path) -> Path:
    """Write `path` (.safetensors, card in its metadata) and the card beside it (.json)."""
    path = weights_path(path)
    card.provenance.setdefault("saved", datetime.now(UTC).isoformat(timespec="seconds"))
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    text = json.dumps(card.to_dict(), indent=2)
    atomic_write(path, lambda tmp: _save_file(tensors, tmp, {CARD_KEY: text}, path))
    atomic_write(card_path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


_OS_ERROR = re.compile(r"I/O error: .*\(os error (\d+)\)")


def _save_file(tensors: dict, path: str, metadata: dict[str, str], named: Path) -> None:
    """safetensors' `save_file` to `path` (the temporary file for `named`), whose failure to
    write (a full disk) is the `OSError` it was, naming `named`, not a `SafetensorError`
    that no caller expects."""
    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as e:
        found = _OS_ERROR.search(str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(named)) from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give the .safetensors file")


def read_card(path: str | Path) -> WeightsCard:
    """The card stored in a weights file."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    if CARD_KEY not in meta:
        raise WeightsError(
            f"{path}: a safetensors file without a goingdeeper card; "
            "convert it with `goingdeeper weights import`"
        )
    try:
        return WeightsCard.from_dict(json.loads(meta[CARD_KEY]))
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: its card is not valid JSON ({e})") from None
    except GoingDeeperError as e:
        raise WeightsError(f"{path}: {e}") from None


def load_weights(
    path: str | Path, *, map_location: str = "cpu", **overrides
) -> tuple[nn.Module, WeightsCard]:
    """Build the model the card names (its arguments, then `overrides`) and load the tensors
    into it, checked key for key and shape for shape; in eval mode."""
    path = Path(path)
    card = read_card(path)
    kwargs = {**card.model_kwargs, **overrides}
    state = load_file(str(path), device=map_location)
    try:
        model = load_checked(card.model, kwargs, state)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    outputs = getattr(model, "num_classes", card.num_classes)  # what the model declares
    if outputs != card.num_classes:
        raise WeightsError(
            f"{path}: the card says {card.num_classes} classes but its tensors give {outputs} "
            "outputs; give the card model_kwargs num_classes, or the right num_classes"
        )
    return model, card
