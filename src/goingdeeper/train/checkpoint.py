"""Training checkpoints: everything needed to continue exactly, written atomically.

A checkpoint is written to a temporary file in the same folder and renamed over the old one,
so a run killed while writing leaves the previous checkpoint intact. It holds tensors and plain
containers only and is read back with `torch.load(weights_only=True)`: no arbitrary objects
are unpickled.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..files import atomic_write


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple | list) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)

    def write(tmp: str) -> None:
        # serialised in memory first: torch.save turns a failed write (a full disk) into a
        # RuntimeError of its own, where writing the bytes raises the OSError that says so
        buffer = io.BytesIO()
        torch.save(state, buffer)
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())

    atomic_write(path, write, sync=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from; start without --resume")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is not usable
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({e.__class__.__name__}: "
            f"{(str(e).splitlines() or [''])[0][:120]})"
        ) from None
