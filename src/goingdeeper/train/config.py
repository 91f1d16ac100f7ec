"""One config type for training: a dataclass, loaded from TOML, YAML or JSON, overridable
field by field, saved beside every run.

The presets live in `presets/*.toml` beside this file; `paper` is section 6 of the GoogLeNet
paper with the values Caffe's replication filled in where the paper gives none.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

PRESETS = Path(__file__).parent / "presets"


@dataclass
class TrainConfig:
    # what to train, on what
    model: str = "googlenet"
    model_args: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    input_size: int = 224  # square training crop
    data: str = "digits"  # see goingdeeper.data.open_dataset
    init_weights: str = ""  # start from a .safetensors file (fine-tuning); "" = from scratch
    new_head: bool = False  # with init_weights: a fresh classifier for this data's classes
    freeze: list[str] = field(default_factory=list)  # modules kept fixed, e.g. ["conv1"]
    # memory (GB) for the frozen first modules' outputs, reused when an input comes back
    # (whole-image recipes: an image or its mirror each epoch); 0 = off
    cache_frozen_gb: float = 0.0

    # augmentation (section 6 by default)
    recipe: str = "googlenet"  # googlenet | vgg | alexnet | simple | lenet | none
    flip: bool = True
    photometric: bool | None = None  # None: what the recipe's paper did (googlenet: on)
    interpolations: list[str] = field(
        default_factory=lambda: ["bilinear", "area", "nearest", "bicubic"]
    )
    scale_jitter: list[int] = field(
        default_factory=list
    )  # VGG's S range; [] = [256, 512] x size/224
    pca_lighting: bool | None = None  # AlexNet section 4.1; None: on for alexnet and vgg
    distortion: float = 1.0  # lenet recipe: scale of AffineDistort's ranges (0: none)

    # optimisation
    epochs: int = 30
    batch_size: int = 32  # global: split over the processes of a distributed run
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 2e-4
    lr_schedule: str = "step"  # step | cosine | constant
    lr_step_epochs: float = 8.0  # section 6: "decreasing the learning rate by 4% every 8 epochs"
    lr_gamma: float = 0.96
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    aux_weight: float = 0.3  # section 5: aux losses weighted 0.3, training only
    polyak: bool = True  # section 6: Polyak averaging for the final model
    polyak_decay: float = 0.999  # exponential average per step
    max_filter_rms: float = 0.0  # ZFNet: renormalise conv filters whose RMS exceeds this; 0 = off

    # runtime
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (fp16 on CUDA only)
    channels_last: bool = True
    workers: int = 2
    threads: int = 0  # torch intra-op threads; 0 = torch's default (small models: 1 is faster)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms
    out: str = "runs/train"
    progress: bool = True
    tensorboard: bool = True
    log_every: int = 50  # steps between rows of steps.csv (loss, accuracy, lr, images/s); 0 = off
    plots: bool = True
    eval_views: list[str] = field(default_factory=lambda: ["1"])  # final protocol: 1, 10, 144
    eval_limit: int = 0  # multi-view evaluations on N test images spread over the set; 0 = all
    shuffle: bool = True  # a new order of the training images each epoch (seeded)
    limit_train: int = 0  # N training samples spread evenly over the set (every class); 0 = all
    limit_test: int = 0  # the same for the test set

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return from_dict({**self.to_dict(), **changes})


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def from_dict(values: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
        )
    return TrainConfig(**values)


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text) or {}
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"{path}: cannot parse ({e})") from None
    raise ConfigError(f"{path}: config files are .toml, .yaml or .json")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(list_presets())}")
    return load_file(path)


def parse_override(pair: str) -> tuple[str, Any]:
    """`key=value` with the value typed like the field (JSON for lists and dicts)."""
    if "=" not in pair:
        raise ConfigError(f"expected KEY=VALUE, got {pair!r} (e.g. --set lr=0.05)")
    key, text = (s.strip() for s in pair.split("=", 1))
    if key not in _FIELDS:
        raise ConfigError(f"unknown config field {key!r}; known: {', '.join(_FIELDS)}")
    default = TrainConfig().to_dict()[key]
    if default is None:  # the optional booleans
        default = False
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return key, text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return key, int(text)
        if isinstance(default, float):
            return key, float(text)
        if isinstance(default, list):
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v]
            return key, value
        if isinstance(default, dict):
            return key, json.loads(text)
    except (ValueError, json.JSONDecodeError):
        kind = type(default).__name__
        raise ConfigError(f"{key}: expected a {kind}, got {text!r}") from None
    return key, text


def resolve(
    preset: str = "",
    files: list[str] | None = None,
    overrides: list[str] | None = None,
    **direct: Any,
) -> TrainConfig:
    """Defaults, then a preset, then config files, then KEY=VALUE overrides, then `direct`."""
    values: dict[str, Any] = {}
    if preset:
        values.update(load_preset(preset))
    for path in files or []:
        values.update(load_file(path))
    for pair in overrides or []:
        key, value = parse_override(pair)
        values[key] = value
    values.update({k: v for k, v in direct.items() if v is not None})
    config = from_dict(values)
    validate(config)
    return config


def validate(c: TrainConfig) -> None:
    choices = {
        "recipe": ("googlenet", "vgg", "alexnet", "simple", "lenet", "none"),
        "optimizer": ("sgd", "adamw"),
        "lr_schedule": ("step", "cosine", "constant"),
        "amp": ("none", "bf16", "fp16"),
    }
    for key, allowed in choices.items():
        if getattr(c, key) not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {getattr(c, key)!r}")
    if c.distortion < 0:
        raise ConfigError(f"distortion must be at least 0, got {c.distortion}")
    for key in ("epochs", "batch_size", "input_size"):
        if getattr(c, key) < 1:
            raise ConfigError(f"{key} must be at least 1, got {getattr(c, key)}")
    if c.lr <= 0:
        raise ConfigError(f"lr must be positive, got {c.lr}")
    if not 0 <= c.polyak_decay < 1:
        raise ConfigError(f"polyak_decay must be in [0, 1), got {c.polyak_decay}")
    if c.new_head and not c.init_weights:
        raise ConfigError("new_head needs init_weights (the weights to fine-tune)")
    if c.cache_frozen_gb < 0:
        raise ConfigError(f"cache_frozen_gb must be at least 0, got {c.cache_frozen_gb}")
    if c.cache_frozen_gb and not c.freeze:
        raise ConfigError("cache_frozen_gb needs freeze (the first modules, kept fixed)")
    if c.cache_frozen_gb and c.max_filter_rms:
        raise ConfigError(
            "cache_frozen_gb and max_filter_rms exclude each other: the renormalisation "
            "changes frozen filters too"
        )


def save(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
