"""Training: the paper's recipe as a preset, every value overridable; a run is `setup_run`,
`run_epoch` for each epoch and `finish`, all three in `fit`."""

from .cache import CacheError, FrozenPrefixCache, frozen_prefix
from .config import TrainConfig, list_presets, resolve
from .engine import TrainStep, evaluate_accuracy, freeze, lr_factor, train_one_epoch
from .fit import Run, finish, fit, run_epoch, setup_run

__all__ = [
    "CacheError",
    "FrozenPrefixCache",
    "Run",
    "TrainConfig",
    "TrainStep",
    "evaluate_accuracy",
    "finish",
    "fit",
    "freeze",
    "frozen_prefix",
    "list_presets",
    "lr_factor",
    "resolve",
    "run_epoch",
    "setup_run",
    "train_one_epoch",
]
