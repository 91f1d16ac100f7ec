"""What numbers may be: the ranges that settings, model arguments and cards are checked against
before any work starts, and the sizes beyond which an input is a mistake rather than data.

A leaf of the package, like `errors`: the registry, the weights cards and the training config
all read their bounds here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_CLASSES = 100_000  # a classifier beyond this is a mistake, not a model (5e6 took 20 GB)


@dataclass(frozen=True)
class Limit:
    """The values a number allows: from `low` to `high`, each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
