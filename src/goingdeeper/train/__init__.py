"""Training: the paper's recipe as a preset, every value overridable."""

from .config import TrainConfig, list_presets, resolve
from .engine import TrainStep, evaluate_accuracy, train_one_epoch
from .trainer import fit

__all__ = [
    "TrainConfig",
    "TrainStep",
    "evaluate_accuracy",
    "fit",
    "list_presets",
    "resolve",
    "train_one_epoch",
]
