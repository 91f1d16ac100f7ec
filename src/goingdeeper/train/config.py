"""One config type for training: a dataclass, loaded from TOML, YAML or JSON, overridable
field by field, saved beside every run.

The presets live in `presets/*.toml` beside this file; `paper` is section 6 of the GoogLeNet
paper with the values Caffe's replication filled in where the paper gives none; `alexnet`,
`zfnet` and `vgg` are those papers' recipes (SGD, momentum 0.9, weight decay 5e-4, learning
rate 0.01 divided by 10 at each plateau of the validation error), `vgg` the last of VGG's four
stages (`vgg_a`, `vgg_256`, `vgg_384`, `vgg`: section 3.1), each started from the one before;
`inception-v3` is section 8 of "Rethinking the Inception Architecture" (RMSProp, exponential
step decay, clipping), `inception-v4` section 4 of the Inception-v4 paper (the same optimiser
and decay; also for the Inception-ResNets).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.recipes import DALI_RECIPES, GOOGLENET_INTERPOLATIONS, RECIPES, TENSOR_RECIPES
from ..errors import ConfigError
from ..files import atomic_write
from ..limits import Limit
from ..registry import build_shell

PRESETS = Path(__file__).parent / "presets"


@dataclass
class TrainConfig:
    # what to train, on what
    model: str = "googlenet"
    model_args: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    input_size: int = 224  # square training crop
    data: str = "digits"  # any path `goingdeeper.data.discover` reads
    # a data set of one split (a class tree): this fraction of each class held out as 'test'
    # (seed 0), said in the log; 0 = none, and such a set is refused
    holdout: float = 0.0
    # start from weights (fine-tuning): a .safetensors file or a name of `goingdeeper weights
    # list` (googlenet.bvlc_in1k); "" = from scratch
    init_weights: str = ""
    new_head: bool = False  # with init_weights: a fresh classifier for this data's classes
    # weights of a trained shallower net whose layers the model takes, the others freshly
    # initialised, as the model declares (VGG 3.1: B-E take net A's first four convolutions
    # and its three FC layers); "" = none
    init_from: str = ""
    freeze: list[str] = field(default_factory=list)  # modules kept fixed, e.g. ["conv1"]
    # memory (GB) for the frozen first modules' outputs, reused when an input comes back
    # (whole-image recipes: an image or its mirror each epoch); 0 = off
    cache_frozen_gb: float = 0.0

    # augmentation (section 6 by default)
    recipe: str = "googlenet"  # googlenet | vgg | alexnet | zfnet | simple | lenet | none
    flip: bool = True
    photometric: bool | None = None  # None: what the recipe's paper did (googlenet: on)
    interpolations: list[str] = field(default_factory=lambda: list(GOOGLENET_INTERPOLATIONS))
    # vgg recipe: the training scale, [S] fixed or [S_min, S_max] jittered; [] = [256, 512]
    # x size/224 (section 3.1). Recorded in the weights' card (training_scale).
    scale_jitter: list[int] = field(default_factory=list)
    pca_lighting: bool | None = None  # AlexNet section 4.1; None: on for alexnet and vgg
    distortion: float = 1.0  # lenet recipe: scale of AffineDistort's ranges (0: none)

    # optimisation
    epochs: int = 30
    batch_size: int = 32  # global: split over the processes of a distributed run
    optimizer: str = "sgd"  # sgd | adamw | rmsprop
    lr: float = 0.01
    momentum: float = 0.9
    rms_decay: float = 0.9  # rmsprop: decay of the mean square (Inception v3 section 8: 0.9)
    rms_eps: float = 1.0  # rmsprop: added to its root (section 8: epsilon 1.0)
    nesterov: bool = False
    weight_decay: float = 2e-4
    lr_schedule: str = "step"  # step | cosine | constant | plateau
    lr_step_epochs: float = 8.0  # section 6: "decreasing the learning rate by 4% every 8 epochs"
    lr_gamma: float = 0.96  # the factor of each step (step) or each plateau (plateau)
    # plateau: AlexNet 5, ZFNet 3, VGG 3.1 divide by 10 "when the validation error stopped
    # improving"; none says after how long: epochs without a new lowest top-1 error
    lr_patience: int = 3
    # plateau: the divisions after which the rate stays where it is; AlexNet 5 ("reduced three
    # times prior to termination") and VGG 3.1 ("decreased 3 times"): 3; 0 = no limit
    lr_plateau_divisions: int = 0
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    # each aux head's loss times this; None: the model's own (GoogLeNet 0.3, section 5)
    aux_weight: float | None = None
    polyak: bool = True  # section 6: Polyak averaging for the final model
    # uniform: Polyak & Juditsky's mean of the iterates, as section 6 cites; ema: an
    # exponential moving average (a departure: recent steps weigh more), decay per step
    polyak_average: str = "ema"  # ema | uniform
    polyak_decay: float = 0.999  # ema only
    # the share of the epochs before the average starts; it then takes every step to the end
    # (0: all of them, 0.8: those of the last fifth)
    polyak_start: float = 0.0
    # conv filters whose RMS exceeds this renormalised to it after each step; 0 = off; None: the
    # model's own (ZFNet 0.1, section 3; others off)
    max_filter_rms: float | None = None

    # runtime
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (fp16 on CUDA only)
    channels_last: bool = True
    # pil: each image decoded and augmented by a loader worker (Pillow); tensor: workers only
    # read the files, and the batch is decoded and augmented on the training device (nvJPEG
    # and the GPU on a GPU; the googlenet recipe); dali: the same in an NVIDIA DALI pipeline
    # (pip install 'goingdeeper[dali]'; googlenet and simple recipes, images stored encoded);
    # auto: tensor on a CUDA device when the recipe and the data allow it, else pil
    loader: str = "auto"
    compile: bool = False  # torch.compile the training step
    # a JPEG decoded at 1/2, 1/4 or 1/8 of its size when the recipe's first resize shrinks it
    # at least that much (Pillow's draft mode: the DCT scaled, then the usual resize)
    draft_decode: bool = True
    workers: int = 2
    threads: int = 0  # torch intra-op threads; 0 = torch's default (small models: 1 is faster)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms
    out: str = "runs/train"
    progress: bool = True
    tensorboard: bool = True
    log_every: int = 50  # steps between rows of steps.csv (loss, accuracy, lr, images/s); 0 = off
    plots: bool = True
    # the final test protocol(s), `EVAL_VIEWS`; dense's scales follow the training scale
    eval_views: list[str] = field(default_factory=lambda: ["1"])
    eval_limit: int = 0  # multi-view evaluations on N test images spread over the set; 0 = all
    shuffle: bool = True  # a new order of the training images each epoch (seeded)
    limit_train: int = 0  # N training samples spread evenly over the set (every class); 0 = all
    limit_test: int = 0  # the same for the test set

    @property
    def polyak_start_epoch(self) -> int:
        """The first epoch (0-based) whose steps the Polyak average takes; the last epoch at
        the latest, as `polyak_start` is below 1."""
        return math.floor(self.polyak_start * self.epochs)

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


MAX_CONFIG_BYTES = 1 << 20  # a config is a few dozen lines


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON config file into a dict."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a .toml, .yaml or .json config file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{path}: config files are .toml, .yaml or .json")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is not a config file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            values = yaml.safe_load(text)
            values = {} if values is None else values
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as e:  # JSON's, UTF-8's too
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"{path}: cannot parse ({first})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deep to be a config") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: holds a {type(values).__name__}, expected a table of settings (key = value)"
        )
    return values


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
    if default is None:  # the optional booleans and numbers
        if text.lower() in ("none", "null"):
            return key, None
        default = 0.0 if _FIELDS[key].type == "float | None" else False
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


LIMITS = {
    "input_size": Limit(8, 4096),
    "cache_frozen_gb": Limit(0, 4096),
    "distortion": Limit(0, 10),
    "epochs": Limit(1, 100_000),
    "batch_size": Limit(1, 65_536),
    "lr": Limit(0, 10, low_open=True),
    "momentum": Limit(0, 1, high_open=True),
    "rms_decay": Limit(0, 1, high_open=True),
    "rms_eps": Limit(0, 10, low_open=True),
    "weight_decay": Limit(0, 1),
    "lr_step_epochs": Limit(0, low_open=True),
    "lr_gamma": Limit(0, 1, low_open=True),
    "lr_patience": Limit(1, 100_000),
    "lr_plateau_divisions": Limit(0, 100_000),
    "warmup_epochs": Limit(0),
    "label_smoothing": Limit(0, 1, high_open=True),
    "grad_clip": Limit(0),
    "aux_weight": Limit(0, 100),
    "polyak_decay": Limit(0, 1, high_open=True),
    "polyak_start": Limit(0, 1, high_open=True),
    "max_filter_rms": Limit(0),
    "workers": Limit(0, 512),
    "threads": Limit(0, 4096),
    "seed": Limit(0, 2**63 - 1),
    "log_every": Limit(0),
    "eval_limit": Limit(0),
    "limit_train": Limit(0),
    "limit_test": Limit(0),
    "holdout": Limit(0, 1, high_open=True),
}

# AlexNet's 10 crops, GoogLeNet's 144, VGG's 150 and dense evaluation (VGG section 3.2) and
# both averaged (VGG Table 5): the protocols of `goingdeeper.evaluate.VIEWS` the papers used
EVAL_VIEWS = ("1", "10", "144", "150", "dense", "dense+150")
CHOICES = {
    "recipe": tuple(RECIPES),
    "optimizer": ("sgd", "adamw", "rmsprop"),
    "lr_schedule": ("step", "cosine", "constant", "plateau"),
    "polyak_average": ("ema", "uniform"),
    "amp": ("none", "bf16", "fp16"),
    "loader": ("auto", "pil", "tensor", "dali"),
}


def _type_error(key: str, kind: str, value: Any) -> str | None:
    """What is wrong with `value` for a field declared `kind` (None when nothing is)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": number and math.isfinite(value),
        "bool": isinstance(value, bool),
        "bool | None": value is None or isinstance(value, bool),
        "float | None": value is None or (number and math.isfinite(value)),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "list[int]": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        "dict[str, Any]": isinstance(value, dict),
    }
    if checks.get(kind, True):
        return None
    wanted = {"float": "a finite number", "int": "a whole number", "bool": "true or false"}
    return f"{key}: expected {wanted.get(kind, kind)}, got {value!r}"


def _check_scale_jitter(c: TrainConfig) -> None:
    jitter = c.scale_jitter
    if jitter and (len(jitter) > 2 or jitter != sorted(jitter) or jitter[0] < c.input_size):
        raise ConfigError(
            f"scale_jitter is [S] (a fixed training scale) or [S_min, S_max], each at least "
            f"input_size {c.input_size}, got {jitter}"
        )


def validate(c: TrainConfig) -> None:
    """A `ConfigError` naming the first field whose value has the wrong type or lies outside
    what it means (`LIMITS`, `CHOICES`), and the combinations that exclude each other."""
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if (problem := _type_error(f.name, str(f.type), value)) is not None:
            raise ConfigError(problem)
        if f.name in LIMITS and value is not None and not LIMITS[f.name].allows(value):
            raise ConfigError(f"{f.name} must lie in {LIMITS[f.name]}, got {value!r}")
        if f.name in CHOICES and value not in CHOICES[f.name]:
            raise ConfigError(
                f"{f.name} must be one of {', '.join(CHOICES[f.name])}, got {value!r}"
            )
    if c.loader == "tensor" and c.recipe not in TENSOR_RECIPES:
        raise ConfigError(
            f"loader=tensor runs the {' and '.join(TENSOR_RECIPES)} recipes on the device; "
            f"recipe {c.recipe!r} runs in the loader workers (loader=pil)"
        )
    if c.loader == "dali" and (c.recipe not in DALI_RECIPES or c.pca_lighting):
        what = "PCA lighting" if c.recipe in DALI_RECIPES else f"recipe {c.recipe!r}"
        raise ConfigError(
            f"loader=dali runs the {' and '.join(DALI_RECIPES)} recipes in its pipeline, "
            f"without PCA lighting; {what} runs in the loader workers (loader=pil)"
        )
    if c.init_from and c.init_weights:
        raise ConfigError(
            "init_from and init_weights exclude each other: init_from takes some layers of "
            "another net, init_weights starts from all of this one's"
        )
    _check_scale_jitter(c)
    if c.new_head and not c.init_weights:
        raise ConfigError("new_head needs init_weights (the weights to fine-tune)")
    if c.cache_frozen_gb and not c.freeze:
        raise ConfigError("cache_frozen_gb needs freeze (the first modules, kept fixed)")
    if c.cache_frozen_gb and c.max_filter_rms:
        raise ConfigError(
            "cache_frozen_gb and max_filter_rms exclude each other: the renormalisation "
            "changes frozen filters too"
        )
    bad_views = [v for v in c.eval_views if v not in EVAL_VIEWS]
    if bad_views:
        raise ConfigError(f"eval_views takes {', '.join(EVAL_VIEWS)}, got {bad_views[0]!r}")


# What a resumed run may change: where and how it runs, what it logs, and how many epochs it
# trains in all (the learning-rate schedule is then the one for the new total, from the step
# the run is at). Anything else would not be the same run.
RESUMABLE = frozenset(
    {
        "epochs",
        "out",
        "device",
        "workers",
        "threads",
        "channels_last",
        "loader",
        "compile",
        "deterministic",
        "progress",
        "tensorboard",
        "log_every",
        "plots",
        "eval_views",
        "eval_limit",
    }
)


# the fields whose None means what the model declares (`models.base.Classifier`)
MODEL_DECLARED = ("aux_weight", "max_filter_rms")


def resume_changes(saved: dict[str, Any], c: TrainConfig, done_epochs: int) -> list[str]:
    """The settings a resume changes, as 'field: old -> new'; a `ConfigError` when it changes
    one a run cannot change midway, or leaves no epoch to train."""
    now = c.to_dict()
    for key in MODEL_DECLARED:  # None: the model's own, as a run saved before it took None
        if now[key] is None and saved.get(key) is not None:
            now[key] = getattr(build_shell(c.model, **c.model_args), key)
    changed = {k: (saved[k], now[k]) for k in now if k in saved and saved[k] != now[k]}
    fixed = [k for k in changed if k not in RESUMABLE]
    if fixed:
        shown = "; ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in fixed[:4])
        raise ConfigError(
            f"--resume continues the run as it was set up, and this changes {shown}; keep "
            "them, or start a new run from its weights (init_weights=OUT/model.safetensors)"
        )
    if c.epochs <= done_epochs:
        raise ConfigError(
            f"--resume: the run has trained {done_epochs} epochs already and epochs={c.epochs}; "
            f"give --epochs above {done_epochs} to train on"
        )
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()]


def save(config: TrainConfig, path: str | Path) -> None:
    text = json.dumps(config.to_dict(), indent=2) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
