"""The mistakes a person can fix, one class each, under one base.

`goingdeeper` (the command) catches `GoingDeeperError` alone: it prints the message as one line
and exits with code 2. Every other exception is a bug and keeps its traceback. Each class also
derives from the built-in exception its callers would expect (`ValueError` for a bad value,
`KeyError` for an unknown name), so that Python code can catch either.
"""

from __future__ import annotations


class GoingDeeperError(Exception):
    """A mistake in what was asked, with a one-line message for a person."""


class UsageError(GoingDeeperError, ValueError):
    """Command-line options that do not go together or cannot be read."""


class UnknownModelError(GoingDeeperError, KeyError):
    """A model name the registry does not know (the message names the closest ones)."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is for people
        return str(self.args[0])


class ArgumentError(GoingDeeperError, ValueError):
    """An argument with a value the function cannot take (the message says which it takes)."""


class ModelArgumentError(ArgumentError):
    """A model constructor argument that the model cannot take."""


class PreprocessingError(ArgumentError):
    """An input transform (a weights card's preprocessing, an augmentation) with bad values."""


class InputError(GoingDeeperError, ValueError):
    """A tensor that a model cannot take (wrong rank, channels or size)."""


class ImageError(GoingDeeperError, ValueError):
    """An image file that cannot be used."""


class DataError(GoingDeeperError, ValueError):
    """A data set (folder, archive, label file) that cannot be used as a whole."""


class WeightsError(GoingDeeperError, ValueError):
    """A weights file that cannot be read or does not fit its model."""


class ConfigError(GoingDeeperError, ValueError):
    """A training config value that cannot be used."""


class CheckpointError(GoingDeeperError, ValueError):
    """A training checkpoint that cannot be resumed from."""


class TrainingError(GoingDeeperError, RuntimeError):
    """Training stopped for a reason a person must act on (a NaN loss, say)."""


class EvalError(GoingDeeperError, ValueError):
    """An evaluation that cannot run as asked."""


class VisualizeError(GoingDeeperError, ValueError):
    """A visualization that cannot be made."""


class UnknownLayerError(VisualizeError):
    """A layer name the model does not have (the message lists the ones it has)."""


class UnsupportedLayerError(VisualizeError):
    """A layer on the way back to pixels that the deconvnet has no inverse for."""
